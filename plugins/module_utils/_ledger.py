# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this place started: the version a lone ``start`` sent, for the ``complete`` / ``cancel`` after it.

Single calls (``fab retrace.start`` ... ``fab retrace.complete``) run in separate processes, and a
version detected with ``git describe`` can change between them (a build step rewrites a tracked file:
``v1.4.2`` becomes ``v1.4.2-dirty``).  The start records the version it sent under the API URL, app,
environment and the directory it ran in; a later complete or cancel with no explicit version, for the
same four, uses that version.  The entry goes when Retrace accepts the complete or cancel.

The record is one JSON file, ``$XDG_STATE_HOME/stackify-retrace/started.json`` (default
``~/.local/state/...``), in a directory only this user can enter (0700), written with mode 0600 and
replaced atomically under an ``flock``.  It never holds the API key.  Entries older than
:data:`ENTRY_LIFETIME` seconds are ignored and pruned.  Standard library only (``plugins/module_utils``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
import typing as t

from .errors import InvalidInput
from .settings import normalise_api_url

#: seconds after which a recorded start no longer names the deployment (a week)
ENTRY_LIFETIME = 7 * 24 * 3600.0
FILE_NAME = "started.json"


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


def remember_start(key: str, version: str, *, environ=None, now: float | None = None) -> None:
    """Record that a start for ``version`` was accepted for place ``key``.  Raises OSError if unwritable."""
    with _locked_entries(environ, write=True) as entries:
        entries[key] = {"version": version, "started_at": time.time() if now is None else now}


def started_version(key: str, *, environ=None, now: float | None = None) -> str | None:
    """The version the last accepted start for place ``key`` sent, or None (never raises OSError)."""
    try:
        with _locked_entries(environ, write=False) as entries:
            entry = entries.get(key)
    except OSError:
        return None
    now = time.time() if now is None else now
    if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
        return None
    if now - float(entry.get("started_at") or 0) > ENTRY_LIFETIME:
        return None
    return entry["version"]


def forget_start(key: str, *, environ=None) -> None:
    """Remove place ``key`` (its deployment was completed or cancelled).  Never raises OSError."""
    with contextlib.suppress(OSError):
        with _locked_entries(environ, write=True) as entries:
            entries.pop(key, None)


@contextlib.contextmanager
def _locked_entries(environ, write: bool) -> t.Iterator[dict]:
    directory = state_directory(environ)
    if write:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, FILE_NAME)
    lock_path = path + ".lock"
    if not write and not os.path.exists(path):
        yield {}
        return
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        entries = _read(path)
        yield entries
        if write:
            now = time.time()
            kept = {key: entry for key, entry in entries.items()
                    if isinstance(entry, dict) and now - float(entry.get("started_at") or 0) <= ENTRY_LIFETIME}
            _write(directory, path, kept)
    finally:
        os.close(lock)


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = json.load(handle)
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # a damaged record is as good as none: detection applies again
    return loaded if isinstance(loaded, dict) else {}


def _write(directory: str, path: str, entries: dict) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=".started-", dir=directory)  # mkstemp creates it 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(entries, handle, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
