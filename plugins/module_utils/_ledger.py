# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this place started: the version a start sent, and what became of it, for the ``complete`` / ``cancel`` after it.

Single calls (``fab retrace.start`` ... ``fab retrace.complete``) run in separate processes, and a
version detected with ``git describe`` can change between them (a build step rewrites a tracked file:
``v1.4.2`` becomes ``v1.4.2-dirty``).  The start records the version it sent under the API URL, app,
environment and the directory it ran in; a later complete or cancel with no explicit version, for the
same four, uses that version.  The tasks of one ``ansible-playbook`` run (the module's ``started`` and
``completed``, in separate worker processes) keep the same record, in the run's private directory: so that an end
is sent only for a start this run sent and Retrace recorded, and once (:func:`claim_end`), whichever host sends it.

The record is one JSON file, ``$XDG_STATE_HOME/stackify-retrace/started.json`` (default
``~/.local/state/...``), in a directory only this user can enter (0700), written with mode 0600 and
replaced atomically under an ``flock``.  It never holds the API key.  Entries older than
:data:`ENTRY_LIFETIME` seconds are ignored and pruned.  Standard library only (``plugins/module_utils``).

**Only this user's own record is used.**  Another local user who owned the directory, or could write to
it, could choose the version a later ``complete`` completes.  So the directory must be this user's, not a
symbolic link, and writable by nobody else (as the orphan guard's is), and so must the record and its lock
file; otherwise :class:`UnsafeStateDirectory` says why and nothing there is read or written.  Every file is
opened relative to the directory's descriptor, checked once: whoever controls a parent directory cannot
swap the directory afterwards, and can only put one of their own (refused) or none in its place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import stat
import time
import typing as t

from .errors import InvalidInput
from .settings import normalise_api_url

#: seconds after which a recorded start no longer names the deployment (a week)
ENTRY_LIFETIME = 7 * 24 * 3600.0
FILE_NAME = "started.json"
LOCK_NAME = FILE_NAME + ".lock"
#: bytes of the record read at most (an entry is about 100 bytes; a week of starts is far less)
RECORD_LIMIT = 1024 * 1024
_NO_FOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnsafeStateDirectory(OSError):
    """The state directory, or a file in it, is not this user's own with safe permissions: nothing there is used."""


def state_directory(environ: t.Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/stackify-retrace``, or ``~/.local/state/stackify-retrace`` (XDG Base Directory 0.8)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "stackify-retrace")


def place_key(api_url: str, app_name: str, environment_name: str, place: str) -> str:
    """The entry's name: a hash of where the deployment goes and where it was started from.

    ``place``: a directory (real path) for single calls (``fab retrace.start``), ``run:<pid>:<start time>`` for the
    tasks of one ``ansible-playbook`` run.
    """
    try:
        url = normalise_api_url(api_url).lower()  # HTTPS://Host:443/ and https://host are one place
    except InvalidInput:
        url = api_url.strip().rstrip("/").lower()  # refused later, when the client is built
    parts = (url, app_name, environment_name, place)
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]


#: what became of a start sent from a place
STARTED, REFUSED, UNANSWERED, ENDING, ENDED = "started", "refused", "unanswered", "ending", "ended"
#: versions whose outcome a place keeps (the last one is its entry's ``version``)
VERSIONS_KEPT = 20
#: an accepted start is never downgraded by a sibling's refused or unanswered one
_HELD = (STARTED, ENDING)


class Entry(t.NamedTuple):
    version: str
    state: str


def remember_start(key: str, version: str, *, state: str = STARTED, directory: str | None = None, environ=None,
                   now: float | None = None) -> None:
    """Record what became of a start for ``version`` sent from place ``key``: accepted (``STARTED``), certainly not
    landed (``REFUSED``: Retrace refused it, or it was never sent), or sent with no answer (``UNANSWERED``).  A refused
    or unanswered start never overwrites an accepted one of the same version (another host's, of the same run).

    ``directory``: where the record is (default :func:`state_directory`).  Raises OSError if the record cannot be
    written, :class:`UnsafeStateDirectory` (an OSError) if it must not be.
    """
    with _locked_entries(environ, write=True, directory=directory) as entries:
        versions = _versions(entries.get(key))
        if not (state in (REFUSED, UNANSWERED) and versions.get(version) in _HELD):
            versions[version] = state
        kept = dict(list({**{name: value for name, value in versions.items() if name != version},
                          version: versions[version]}.items())[-VERSIONS_KEPT:])
        entries[key] = {"version": version, "state": kept[version], "versions": kept,
                        "started_at": time.time() if now is None else now}


def recall(key: str, *, directory: str | None = None, environ=None, now: float | None = None) -> Entry | None:
    """The last start sent from place ``key`` and what became of it, or None (nothing recorded, or unreadable).

    Raises :class:`UnsafeStateDirectory` when the directory or the record is not this user's own: the caller
    says so once and goes on as if nothing were recorded.
    """
    entry = _entry(key, directory, environ, now)
    return None if entry is None else Entry(entry["version"], _versions(entry).get(entry["version"], STARTED))


def state_of(key: str, version: str, *, directory: str | None = None, environ=None) -> str | None:
    """What became of the last start of ``version`` sent from place ``key``; None if none is recorded.  Never raises."""
    try:
        entry = _entry(key, directory, environ, None)
    except OSError:
        return None
    return None if entry is None else _versions(entry).get(version)


def started_version(key: str, *, directory: str | None = None, environ=None, now: float | None = None) -> str | None:
    """The version the last start from place ``key`` sent, whatever became of it; None if none is recorded."""
    entry = recall(key, directory=directory, environ=environ, now=now)
    return None if entry is None else entry.version


def claim_end(key: str, version: str, *, directory: str | None = None, environ=None) -> str | None:
    """Before an end for ``version`` is sent from place ``key``: what is recorded of its start, claimed atomically.

    A ``STARTED`` start becomes ``ENDING`` and ``STARTED`` is returned: this caller sends the end, and another process
    of the same place (the next host of a module task without ``run_once``) finds ``ENDING`` and sends none.  None
    when nothing is recorded for that version (an end sent on its own: send it as asked).  Never raises OSError.
    """
    try:
        with _locked_entries(environ, write=True, directory=directory) as entries:
            entry = _live(entries.get(key))
            state = None if entry is None else _versions(entry).get(version)
            if state == STARTED:
                entry["versions"] = dict(_versions(entry), **{version: ENDING})
                entry["state"] = entry["versions"][entry["version"]]
                entries[key] = entry
            return state
    except OSError:
        return None


def end_sent(key: str, version: str, *, answered: bool, directory: str | None = None, environ=None) -> None:
    """The end claimed with :func:`claim_end` was sent: ``ENDED`` if Retrace answered, else ``STARTED`` again (the
    orphan guard sends it once more; another end from the place may too).  Never raises OSError."""
    with contextlib.suppress(OSError):
        with _locked_entries(environ, write=True, directory=directory) as entries:
            entry = _live(entries.get(key))
            if entry is not None and version in _versions(entry):
                entry["versions"] = dict(_versions(entry), **{version: ENDED if answered else STARTED})
                entry["state"] = entry["versions"].get(entry["version"], STARTED)
                entries[key] = entry


@contextlib.contextmanager
def start_lock(key: str, *, directory: str | None = None, environ=None) -> t.Iterator[bool]:
    """Hold place ``key``'s start to this caller: the hosts of one module task (one worker process each) look at the
    record, send their start and record it one after another, so the first host's start is the others' own.

    Yields True when held; False when the record's directory cannot be used (the starts then go as they come).
    """
    try:
        directory = directory or state_directory(environ)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        directory_fd = _open_private_directory(directory)
    except OSError:
        yield False
        return
    try:
        lock = _open_own_file(directory, f"{key}.start.lock", directory_fd, os.O_RDWR | os.O_CREAT)
    except OSError:
        os.close(directory_fd)
        yield False
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(lock)
        os.close(directory_fd)


def forget_start(key: str, *, directory: str | None = None, environ=None) -> None:
    """Remove place ``key``.  Never raises OSError; an unsafe directory is left alone, silently."""
    with contextlib.suppress(OSError):
        with _locked_entries(environ, write=True, directory=directory) as entries:
            entries.pop(key, None)


def _entry(key: str, directory: str | None, environ, now: float | None) -> dict | None:
    try:
        with _locked_entries(environ, write=False, directory=directory) as entries:
            entry = entries.get(key)
    except UnsafeStateDirectory:
        raise
    except OSError:
        return None
    return _live(entry, now)


def _live(entry, now: float | None = None) -> dict | None:
    """``entry`` if it names a version and is younger than :data:`ENTRY_LIFETIME`, else None."""
    now = time.time() if now is None else now
    if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
        return None
    if now - float(entry.get("started_at") or 0) > ENTRY_LIFETIME:
        return None
    return entry


def _versions(entry) -> dict[str, str]:
    """version -> state of a record entry (an entry written before states were kept: its version, started)."""
    if not isinstance(entry, dict):
        return {}
    versions = entry.get("versions")
    if isinstance(versions, dict):
        return {name: state for name, state in versions.items() if isinstance(name, str) and isinstance(state, str)}
    if isinstance(entry.get("version"), str):
        return {entry["version"]: entry.get("state") if isinstance(entry.get("state"), str) else STARTED}
    return {}


@contextlib.contextmanager
def _locked_entries(environ, write: bool, directory: str | None = None) -> t.Iterator[dict]:
    directory = directory or state_directory(environ)
    if write:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    elif not os.path.lexists(directory):
        yield {}
        return
    directory_fd = _open_private_directory(directory)
    try:
        if not write and not _lexists(FILE_NAME, directory_fd):
            yield {}
            return
        lock = _open_own_file(directory, LOCK_NAME, directory_fd, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            entries = _read(directory, directory_fd)
            yield entries
            if write:
                now = time.time()
                kept = {key: entry for key, entry in entries.items()
                        if isinstance(entry, dict) and now - float(entry.get("started_at") or 0) <= ENTRY_LIFETIME}
                _write(directory_fd, kept)
        finally:
            os.close(lock)
    finally:
        os.close(directory_fd)


def _open_private_directory(directory: str) -> int:
    """A descriptor of ``directory``, refused unless it is a directory (not a link) of this user that nobody else can write."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | _NO_FOLLOW)
    except OSError:
        if os.path.islink(directory):
            raise UnsafeStateDirectory(f"{directory} is a symbolic link: not used") from None
        raise
    try:
        _check_own(directory, os.fstat(descriptor))
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _open_own_file(directory: str, name: str, directory_fd: int, flags: int) -> int:
    """``name`` in the directory, opened without following a link, refused unless a regular file of this user that only they can write."""
    path = os.path.join(directory, name)
    try:
        descriptor = os.open(name, flags | _NO_FOLLOW, 0o600, dir_fd=directory_fd)
    except OSError:
        if _is_link(name, directory_fd):
            raise UnsafeStateDirectory(f"{path} is a symbolic link: not used") from None
        raise
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeStateDirectory(f"{path} is not a regular file: not used")
        _check_own(path, info)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _check_own(path: str, info: os.stat_result) -> None:
    if info.st_uid != os.getuid():
        raise UnsafeStateDirectory(f"{path} belongs to another user (uid {info.st_uid}): not used")
    if info.st_mode & 0o022:
        raise UnsafeStateDirectory(f"{path} can be written by other users (mode {stat.S_IMODE(info.st_mode):04o}): not used")


def _lexists(name: str, directory_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_link(name: str, directory_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=directory_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _read(directory: str, directory_fd: int) -> dict:
    try:
        descriptor = _open_own_file(directory, FILE_NAME, directory_fd, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(RECORD_LIMIT)
    try:
        loaded = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}  # a damaged record is as good as none: detection applies again
    return loaded if isinstance(loaded, dict) else {}


def _write(directory_fd: int, entries: dict) -> None:
    temporary = f".started-{secrets.token_hex(8)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o600, dir_fd=directory_fd)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(entries, handle, indent=1, sort_keys=True)
        os.replace(temporary, FILE_NAME, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
