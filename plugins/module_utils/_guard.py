# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The orphan guard: a detached watcher that cancels the deployments a run died without ending.

Why another process: AWX, Automation Platform and ansible-runner cancel a job, or end it past
``job_timeout``, with ``os.killpg(pgid, SIGKILL)`` (ansible-runner 2.4 ``Runner.handle_termination``);
the OOM killer, a crash or SIGHUP end a run just as abruptly.  No signal handler, ``atexit`` or
``finally`` runs then, so only a process outside the run can still send the cancel.

How it keeps the promises of the README:

* **One watcher per run and API account.**  The first :func:`arm_orphan_guard` of a run forks the watcher; every
  later one, from the run itself or from another of its processes (each module task is one), asks that watcher to
  hold one more deployment.  It holds a table of them and, when the run is gone, ends each one it still holds.  A
  deployment sent with another key, API URL, certificate or proxy setting gets a watcher of its own: the key never
  crosses the socket, so the watcher can only send with the client it was forked with.
* **Outlives the run.**  :func:`arm_orphan_guard` forks twice; the watcher calls ``os.setsid()``, so
  the process-group SIGKILL does not reach it, and it is reparented to init at once.
* **Forks safely from a run with threads.**  The watcher is a copy of the run with one thread; it takes no lock
  another thread of the run could have held at the fork: the one module its requests would import on first use (the
  IDNA codec) is imported before the fork (:func:`_import_what_the_watcher_needs`).  A stop signal (SIGINT, SIGTERM,
  SIGHUP) arriving during the fork is handled just after it (:class:`_HeldBackSignals`), never inside the
  interpreter's after-fork hooks.
* **Holds nothing open.**  It closes every descriptor it inherited and points 0, 1 and 2 at
  ``/dev/null``: it never keeps the run's terminal or pty open (ansible-runner waits for EOF on it)
  and never delays the run's exit.
* **Never exposes the key.**  It is a fork, not an exec: the key stays in memory, never in an argv, an
  environment or a file.  The watcher prints nothing.
* **Says nothing when not needed.**  The run, or another process of the same run (the module's
  ``completed`` task runs in another Ansible worker), calls :meth:`OrphanGuard.release` /
  :func:`release_orphan_guard`; the watcher drops that deployment without sending anything, and exits once it
  holds none.
* **Cancels within seconds otherwise.**  It waits on a pidfd of the owner process (Linux 5.3+), or polls
  every :data:`POLL_INTERVAL` seconds; when the owner is gone it sends one cancel for each deployment it still
  holds, all at once (one thread each), through the run's own client (its retries and deadline apply), then
  exits.  After a 409 (the start not processed yet: it was in flight when the run stopped) it sends it again
  until the start can no longer land (:func:`_send_end`).  A deployment whose complete was being sent when the
  run died (:meth:`OrphanGuard.completing`) gets a complete instead: never two opposite ends.

The rendezvous is a set of Unix sockets in ``/tmp/stackify-retrace-<uid>``, a directory only this user can enter
(0700; if another user pre-created it, the guard is not armed and the run says so).  The watcher listens on one
socket per deployment, named after the deployment (a hash of API URL, app, environment and version) and the
owner's pid, and on one control socket of the run and account, ``run.<owner pid>.<account hash>.sock``, where
later arms add deployments.  Arming and the watcher's exit take turns under an ``flock`` of the file of the same
name ending in ``.lock``: a deployment added as the watcher leaves lands in a new watcher, never in none.  Any
process can ask "is a live run on this machine holding this deployment?" (:func:`live_guard_owner`):
stale-start recovery uses that so that it never cancels a sibling run that is alive on the same machine.  The
same directory holds the module's join markers (:func:`remember_join`): which deployments a controller job joined
instead of starting, so that its later end tasks leave them to the job that started them.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import fcntl
import gc
import glob
import hashlib
import json
import os
import select
import signal
import socket
import threading
import time
import typing as t
import warnings

from .errors import BadTransition, RetraceError
from .transport import CA_BUNDLE_VARIABLES

if t.TYPE_CHECKING:  # pragma: no cover
    from .client import DeploymentClient
    from .deployment import Deployment
    from .settings import ApiSettings

#: seconds between liveness checks of the owner where no pidfd is available
POLL_INTERVAL = 0.5
#: seconds a release or a liveness question waits for the watcher's answer
ANSWER_TIMEOUT = 2.0
#: seconds the watcher waits before sending its end again after a 409, doubling up to the longest
FIRST_PAUSE_AFTER_409 = 0.5
LONGEST_PAUSE_AFTER_409 = 5.0
#: seconds an arm waits for the run's lock while another process of the run arms (it holds it a few milliseconds)
LOCK_TIMEOUT = 3 * ANSWER_TIMEOUT
#: seconds between attempts to take a busy lock (arming) and between a watcher's attempts to leave
LOCK_PAUSE = 0.005
LEAVE_PAUSE = 0.05
#: the longest message the control socket reads (an ``add`` carries one deployment's fields)
MESSAGE_LIMIT = 65536
_RELEASE, _PING, _COMPLETING, _ADD = b"release\n", b"ping\n", b"completing\n", b"add "
#: the variables besides the client's own settings that decide where and how it connects (:mod:`.transport`)
_CONNECTION_VARIABLES = (*CA_BUNDLE_VARIABLES, "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
#: where every run of this machine meets its watchers (a short path: Unix socket paths hold 107 bytes)
RUNTIME_DIRECTORY = "/tmp"


class OrphanGuard:
    """Handle of an armed watcher (or of none, when arming was not possible: :attr:`armed` is False)."""

    def __init__(self, path: str | None, created: bool = True):
        self.path = path
        #: False when the owner already had a watcher for this deployment (an earlier task or host of the same run)
        self.created = created

    @property
    def armed(self) -> bool:
        return self.path is not None

    def release(self) -> bool:
        """The run ended the deployment itself: stand the watcher down.  True if it acknowledged."""
        path, self.path = self.path, None
        return path is not None and _ask(path, _RELEASE) == b"ok"

    def completing(self) -> bool:
        """The run is about to send complete: if it dies before :meth:`release`, the watcher sends complete.

        A run killed while its complete is on the wire may or may not have reached Retrace; a cancel
        from the watcher could then land first and the complete after it, two opposite ends.  The
        watcher sends the same end the run chose instead: at worst Retrace hears "complete" twice.
        """
        return self.path is not None and _ask(self.path, _COMPLETING) == b"ok"


def arm_orphan_guard(client: "DeploymentClient", deployment: "Deployment", *, owner_pid: int | None = None,
                     log: t.Callable[[str], None] | None = None) -> OrphanGuard:
    """Have a watcher cancel ``deployment`` if process ``owner_pid`` (default: this one) dies first.

    The run's watcher for this API account holds it from now on; the first arm of the run forks that watcher.
    Returns at once (the fork costs a few milliseconds, an added deployment less; nothing is sent).  Never raises:
    when no watcher can hold it (no ``fork``, no private directory) it says why through ``log`` and returns an
    unarmed guard, and the run goes on.  Only the run's own signal handlers may raise, for a stop signal that arrived
    meanwhile (one that arrived during the fork is handled just after it): the deployment is then stood down.
    """
    log = log or (lambda message: None)
    owner_pid = owner_pid or os.getpid()
    if not hasattr(os, "fork"):
        log("orphan guard not available on this platform (no fork)")
        return OrphanGuard(None)
    try:
        path = _socket_path(client.settings, deployment, owner_pid)
        account = _account(client)
        control_path = _control_path(owner_pid, account)
        with _run_lock(_lock_path(control_path)):
            if _ask(path, _PING):  # this owner already has a live watcher holding this deployment
                return OrphanGuard(path, created=False)
            try:
                answer = _ask(control_path, _add_message(client, deployment, account))
            except BaseException:
                _ask(path, _RELEASE)  # a handler raised (the run stops) mid-add: the caller never gets this guard
                raise
            if answer in (b"ok", b"exists"):
                return OrphanGuard(path, created=answer == b"ok")
            # No watcher of this run and account yet: fork it.  One that answered otherwise (it cannot hold this
            # deployment) keeps the control socket, and the new one serves this deployment alone.
            child, held_back = _fork_watcher(client, deployment, owner_pid, path, control_path if answer == b"" else None)
    except OSError as error:
        log(f"orphan guard not armed ({error.strerror or error})")
        return OrphanGuard(None)
    guard = OrphanGuard(path)
    try:
        os.waitpid(child, 0)
        held_back.deliver()  # the run's own handlers, at a safe point
    except BaseException:
        guard.release()  # a handler raised (the run stops): the caller never gets this watcher, so stand it down
        raise
    return guard


def _fork_watcher(client: "DeploymentClient", deployment: "Deployment", owner_pid: int, path: str,
                  control_path: str | None) -> tuple[int, "_HeldBackSignals"]:
    """Listen on ``path`` (and ``control_path``) and fork the watcher; in the run, the intermediate child's pid."""
    paths = [path] + ([control_path] if control_path else [])
    with contextlib.ExitStack() as listening:
        try:
            listeners = [listening.enter_context(_listen(each)) for each in paths]
        except OSError:
            for each in paths:
                _unlink(each)
            raise
        _import_what_the_watcher_needs()
        held_back = _HeldBackSignals()
        try:
            child = _fork(held_back)
        except OSError:
            for each in paths:
                _unlink(each)
            held_back.deliver()
            raise
        if child == 0:
            _become_watcher(listeners, client, deployment, owner_pid, control_path)  # never returns
    return child, held_back


def _import_what_the_watcher_needs() -> None:
    """Import, in the run, every module the watcher would otherwise import lazily: only the IDNA codec.

    ``socket.getaddrinfo`` encodes the host name with it, and the first use imports ``encodings.idna``.  A thread of
    the run importing it at the moment of the fork (Fabric's SSH connections encode host names too) holds that
    module's import lock, and in the watcher, a copy with no such thread, the lock stays held for ever: the watcher
    would hang in its first request.  Importing it here waits for that thread to finish the import, so the watcher
    inherits the module whole and its lock free.  Measured: with the codec loaded, a first request of either
    transport (http and https, to a host name or an address, answered or failed) imports nothing else, and neither
    does the watcher's own path (select, pidfds, Unix sockets: all loaded by this module).

    Locks of modules the watcher does not need may still be held in the copy: they stay unused.  Resetting
    importlib's per-module locks in the watcher would not be sound: a held lock means its module is half executed,
    and a fresh lock would hand the watcher that half module, or run its body a second time.
    """
    codecs.lookup("idna")


class _HeldBackSignals:
    """While the guard forks, the run's Python handlers of stop signals only note them; :meth:`deliver` runs them after.

    ``os.fork`` runs the interpreter's after-fork hooks in the run, and Python runs a pending signal handler between
    any two steps of them.  A handler that raises there (Fabric's raises ``Interrupted``, Python's default SIGINT
    handler ``KeyboardInterrupt``) is reported as "Exception ignored" and lost, and the hook it broke off never
    finishes: logging's releases logging's module lock, which then stays held, and the next ``logging.getLogger`` of
    any other thread waits for ever.  Python handlers run in the main thread only, and only there can they be set:
    elsewhere this holds nothing back.  Blocking the signals in this thread alone would not do: another thread takes
    the signal, and Python still runs the handler in the main thread at its next check.
    """

    def __init__(self) -> None:
        self.noted: list[int] = []
        self.replaced: dict[int, t.Callable] = {}

    def hold(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signum = getattr(signal, name)
            handler = signal.getsignal(signum)
            if callable(handler):  # not SIG_DFL, SIG_IGN, nor a handler installed outside Python (None)
                self.replaced[signum] = handler
                signal.signal(signum, self._note)

    def _note(self, signum: int, _frame) -> None:
        self.noted.append(signum)

    def restore(self) -> None:
        replaced, self.replaced = self.replaced, {}
        for signum, handler in replaced.items():
            signal.signal(signum, handler)

    def deliver(self) -> None:
        """Send each signal noted meanwhile again, in order: the restored handlers run now (and may raise)."""
        self.restore()
        noted, self.noted = self.noted, []
        for signum in noted:
            signal.raise_signal(signum)  # runs the handler before it returns


def _fork(held_back: _HeldBackSignals) -> int:
    """``os.fork`` with the run's stop signals held back; the parent restores its handlers, the child keeps the
    noting ones until the watcher sets its own (:func:`_detach_from_run`)."""
    held_back.hold()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a multi-threaded process.  The watcher takes no lock another thread
            # could hold: it uses select, sockets and the HTTP client, whose modules are all imported before the fork
            # (_import_what_the_watcher_needs).
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
    except BaseException:
        held_back.restore()
        raise
    if child != 0:
        held_back.restore()
    return child


def orphan_guard_of(settings: "ApiSettings", deployment: "Deployment", owner_pid: int) -> OrphanGuard:
    """From any process of the run: the watcher ``owner_pid`` armed for ``deployment`` (unarmed if none can be)."""
    try:
        return OrphanGuard(_socket_path(settings, deployment, owner_pid, create=False))
    except OSError:
        return OrphanGuard(None)  # no private directory: no watcher could have been armed there


def release_orphan_guard(settings: "ApiSettings", deployment: "Deployment", owner_pid: int) -> bool:
    """From any process of the run: stand down the watcher ``owner_pid`` armed for ``deployment``.

    True if a watcher acknowledged; False if there was none (never armed, or already gone).
    """
    return orphan_guard_of(settings, deployment, owner_pid).release()


def live_guard_owner(settings: "ApiSettings", deployment: "Deployment", excluding: int | None = None) -> int | None:
    """The pid of a live run on this machine holding ``deployment`` open, or None; never ``excluding`` (this run,
    which arms its guard before it sends the start).

    Only runs whose orphan guard is armed can be seen: runs with ``orphan_guard: false``, and runs on
    other machines, cannot.  Sockets of watchers that no longer exist are removed on the way.
    """
    try:
        directory = _private_directory(create=False)
    except OSError:
        return None  # no private directory: no watcher could have been armed there
    pattern = os.path.join(glob.escape(directory), f"{_deployment_token(settings, deployment)}.*.sock")
    for path in sorted(glob.glob(pattern)):
        answer = _ask(path, _PING)
        if answer.startswith(b"alive ") and int(answer.split()[1]) != excluding:
            return int(answer.split()[1])
        if answer == b"":
            _unlink(path)
    return None


# --- joins: which deployments a controller job joined instead of starting ----------------------------

#: seconds after which a join marker is stale and removed (a job runs for hours at most; a week is generous)
JOIN_MARKER_LIFETIME = 7 * 24 * 3600.0


def remember_join(settings: "ApiSettings", deployment: "Deployment", job_id: str) -> bool:
    """Note that controller job ``job_id`` joined ``deployment`` (its start was answered 409 in a workflow).

    ``job_id``: the job's key, ``<workflow job id>-<job id>`` (ansible_task.py), so that a job id alone, reused
    by another controller or workflow, does not match.

    The module's later ``completed`` / ``cancelled`` tasks of the same job (other Ansible workers, so another
    process) ask :func:`joined_in_job` and send nothing: the job that started the deployment ends it, as the
    callback's joined slices do.  An empty file in the private directory, named after the deployment and the
    job id (unique in a controller); markers older than :data:`JOIN_MARKER_LIFETIME` are removed on the way.
    Returns False if it could not be written (no private directory): the ends are then sent as before.
    """
    try:
        path = _join_marker(settings, deployment, job_id, create=True)
        for old in glob.glob(os.path.join(glob.escape(os.path.dirname(path)), "*.joined")):
            with contextlib.suppress(OSError):
                if time.time() - os.lstat(old).st_mtime > JOIN_MARKER_LIFETIME:
                    os.unlink(old)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600))
        return True
    except OSError:
        return False


def forget_join(settings: "ApiSettings", deployment: "Deployment", job_id: str) -> None:
    """Job ``job_id`` started ``deployment`` itself after all (a later start, accepted): its ends are its own again."""
    with contextlib.suppress(OSError):
        os.unlink(_join_marker(settings, deployment, job_id, create=False))


def joined_in_job(settings: "ApiSettings", deployment: "Deployment", job_id: str) -> bool:
    """True if controller job ``job_id`` joined ``deployment`` earlier (:func:`remember_join`)."""
    try:
        return os.path.isfile(_join_marker(settings, deployment, job_id, create=False))
    except OSError:
        return False


def _join_marker(settings, deployment, job_id: str, create: bool) -> str:
    job = "".join(char for char in str(job_id) if char.isascii() and (char.isalnum() or char == "-"))[:64] or "none"
    return os.path.join(_private_directory(create=create), f"{_deployment_token(settings, deployment)}.job-{job}.joined")


# --- the rendezvous ---------------------------------------------------------------------------------

def private_directory() -> str:
    """The private directory of this user's runs on this machine (created if need be); OSError if it is not private.

    The run ledger of the module's tasks (:mod:`._ledger`) keeps its record there too: it lives as long as the run.
    """
    return _private_directory(create=True)


def _private_directory(create: bool = True) -> str:
    """``/tmp/stackify-retrace-<uid>``, mode 0700, refused if another user owns it or can enter it.

    A fixed place, not ``$TMPDIR``: runs of one user on one machine must find each other's watchers
    even when their CI jobs set different temporary directories (stale-start recovery must never take
    a live sibling for a dead run).  :data:`RUNTIME_DIRECTORY` moves it (tests).
    """
    directory = os.path.join(RUNTIME_DIRECTORY, f"stackify-retrace-{os.getuid()}")
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    info = os.lstat(directory) if os.path.lexists(directory) else None
    if info is not None and (info.st_uid != os.getuid() or info.st_mode & 0o077 or not os.path.isdir(directory)
                             or os.path.islink(directory)):
        raise OSError(f"{directory} is not a private directory of this user")
    return directory


def _deployment_token(settings: "ApiSettings", deployment: "Deployment") -> str:
    identity = "\n".join((settings.api_url, deployment.app_name, deployment.environment_name, deployment.version))
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:24]


def _socket_path(settings, deployment, owner_pid: int, create: bool = True) -> str:
    directory = _private_directory(create=create)
    return os.path.join(directory, f"{_deployment_token(settings, deployment)}.{owner_pid}.sock")


def _account(client: "DeploymentClient") -> str:
    """Who the client sends as, and where and how it connects, as a hash: the key itself never leaves the process.

    Deployments whose clients agree on it share a watcher, which sends every end with the client it was forked with.
    """
    settings, transport = client.settings, client.transport
    environ = getattr(transport, "environ", None)
    environ = os.environ if environ is None else environ
    key = settings.api_key.reveal() if hasattr(settings.api_key, "reveal") else str(settings.api_key)
    identity = [type(transport).__qualname__, settings.api_url, str(settings.validate_certs),
                hashlib.sha256(key.encode("utf-8")).hexdigest()]
    identity += [f"{name}={getattr(transport, name, None)!r}" for name in ("validate_certs", "ca_path", "use_proxy")]
    identity += [f"{name}={environ.get(name)!r}" for name in _CONNECTION_VARIABLES]
    return hashlib.sha256("\n".join(identity).encode("utf-8")).hexdigest()[:16]


def _control_path(owner_pid: int, account: str) -> str:
    return os.path.join(_private_directory(create=True), f"run.{owner_pid}.{account}.sock")


def _lock_path(control_path: str) -> str:
    return control_path.removesuffix(".sock") + ".lock"


@contextlib.contextmanager
def _run_lock(path: str) -> t.Iterator[None]:
    """Hold an ``flock`` of ``path``: arms of one run and its watcher's exit take turns.

    The watcher removes the file as it leaves, holding the lock; a process that was waiting for it then holds a lock
    of a file no one else will open, so it locks the new file instead.  OSError after :data:`LOCK_TIMEOUT` seconds.
    """
    gives_up_at = time.monotonic() + LOCK_TIMEOUT
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            while not _try_lock(descriptor):
                if time.monotonic() > gives_up_at:
                    raise OSError(f"another process of this run held {os.path.basename(path)} for {LOCK_TIMEOUT:g} s")
                time.sleep(LOCK_PAUSE)
            if _is_file_at(descriptor, path):
                break
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)
    try:
        yield
    finally:
        # Unlock before closing: a watcher forked meanwhile shares this open file until it closes its copy.
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _is_file_at(descriptor: int, path: str) -> bool:
    try:
        named, held = os.stat(path, follow_symlinks=False), os.fstat(descriptor)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _add_message(client: "DeploymentClient", deployment: "Deployment", account: str) -> bytes:
    """What a watcher needs to hold one more deployment: its fields and the client's, all but the key."""
    fields = {"account": account, "deployment": dataclasses.asdict(deployment), "timeout": client.settings.timeout,
              "deadline": client.settings.deadline, "user_agent": client.user_agent}
    return _ADD + json.dumps(fields, separators=(",", ":")).encode("utf-8") + b"\n"


def _listen(path: str) -> socket.socket:
    _unlink(path)  # a watcher killed outright leaves its socket file behind
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(8)
    except OSError:
        listener.close()
        raise
    return listener


def _ask(path: str, question: bytes) -> bytes:
    """Send ``question`` to the watcher at ``path``; its one-line answer, or b"" if there is none."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(ANSWER_TIMEOUT)
            connection.connect(path)
            connection.sendall(question)
            return connection.recv(64).strip()
    except OSError:
        return b""


def _read_message(connection: socket.socket) -> bytes:
    """One line (at most :data:`MESSAGE_LIMIT` bytes) with its newline, or what came before the sender stopped."""
    message = b""
    while not message.endswith(b"\n") and len(message) < MESSAGE_LIMIT:
        part = connection.recv(MESSAGE_LIMIT - len(message))
        if not part:
            break
        message += part
    return message


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- the watcher (runs in the forked child; never returns) --------------------------------------------

def _become_watcher(listeners: list, client, deployment, owner_pid: int, control_path: str | None) -> t.NoReturn:
    """``listeners``: the first deployment's socket, then the control socket if ``control_path``."""
    status = 0
    try:
        os.setsid()  # out of the run's session and process group: killpg(SIGKILL) does not reach us
        if os.fork() != 0:
            os._exit(0)  # the intermediate child: the watcher is reparented to init at once
        # Objects inherited from the run still reference descriptors closed below: no collector run
        # may finalise them (and close a descriptor number reused by the watcher).
        gc.disable()
        _detach_from_run(keep={listener.fileno() for listener in listeners})
        quiet_client = client.replace(log=None, transport=_fresh_transport(client.transport))
        watcher = _Watcher(owner_pid, quiet_client, deployment, _account(client),
                           listeners[1] if control_path else None, control_path)
        watcher.hold(listeners[0], deployment, quiet_client, client.user_agent)
        _send_ends(watcher.watch())
    except BaseException:  # pylint: disable=broad-exception-caught
        status = 1  # nothing to tell anyone: the watcher has no terminal
    os._exit(status)


def _detach_from_run(keep: t.Collection[int]) -> None:
    """Reset inherited signal handlers, close every inherited descriptor but ``keep``, 0-2 -> /dev/null."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # an administrator can still stop it
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for fd in _open_descriptors():
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _open_descriptors() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, min(os.sysconf("SC_OPEN_MAX"), 65536)))


def _fresh_transport(transport):
    """A transport sharing no pooled connection with the run (their descriptors are closed)."""
    renew = getattr(transport, "for_new_process", None)
    return renew() if callable(renew) else transport


@dataclasses.dataclass
class _Held:
    """A deployment the watcher holds: the socket where its run reaches it, and what to send if the run dies."""

    deployment: "Deployment"
    client: "DeploymentClient"
    path: str
    end: str = "cancel"  # "complete" once the run said it was completing (OrphanGuard.completing)


class _Watcher:
    """The table of deployments one run holds through one API account, served until the run ends or dies."""

    def __init__(self, owner_pid: int, client: "DeploymentClient", deployment: "Deployment", account: str,
                 control: socket.socket | None, control_path: str | None):
        self.owner_pid, self.client, self.account = owner_pid, client, account
        self.template = deployment  # added deployments are copies of it with their own fields
        self.control, self.control_path = control, control_path
        self.held: dict[socket.socket, _Held] = {}

    def hold(self, listener: socket.socket, deployment: "Deployment", client: "DeploymentClient", user_agent: str) -> None:
        # The run's User-Agent, marked: whoever reads the requests (Retrace's side, the emulator's page) can tell the
        # watcher's ends from the run's own.
        client = client.replace()
        client.user_agent = user_agent.removesuffix(")") + "; orphan-guard)"
        self.held[listener] = _Held(deployment, client, listener.getsockname())

    def watch(self) -> list[_Held]:
        """Serve the run's messages until it released every deployment (nothing to send) or died: then what it held."""
        pidfd = _open_pidfd(self.owner_pid)
        if pidfd is None and not is_alive(self.owner_pid):
            return self._last_messages()
        while True:
            timeout = None if pidfd is not None else POLL_INTERVAL
            if not self.held:  # leaving, but an arm of the run holds the lock: its add comes first
                timeout = LEAVE_PAUSE if timeout is None else min(timeout, LEAVE_PAUSE)
            listeners = ([self.control] if self.control is not None else []) + list(self.held)
            readable = select.select(listeners + ([pidfd] if pidfd is not None else []), [], [], timeout)[0]
            # A message that arrived with the owner's exit still counts: serve the sockets first.
            for listener in readable:
                if listener is self.control or listener in self.held:
                    with contextlib.suppress(BlockingIOError):  # its caller gave up before it was accepted
                        self._serve(listener)
            if (pidfd is not None and pidfd in readable) or (pidfd is None and not is_alive(self.owner_pid)):
                return self._last_messages()
            if not self.held and self._leave():
                return []

    def _last_messages(self) -> list[_Held]:
        """The owner is gone: serve what it (or another process of the run) sent meanwhile, close every socket."""
        for listener in [self.control, *self.held]:
            if listener is not None:
                self._serve_waiting(listener)
        held = list(self.held.values())
        for listener, each in list(self.held.items()):
            self._drop(listener, each)  # a new run asking now sees no live holder
        if self.control is not None:
            # An arm adding now finds no watcher and forks its own, which sees the owner gone and ends that deployment
            # at once.  The lock file goes too, unless that arm holds it.
            lock_path = _lock_path(self.control_path)
            self._close_control()
            with _lock_if_free(lock_path) as locked, contextlib.suppress(OSError):
                if locked:
                    os.unlink(lock_path)
        return held

    def _leave(self) -> bool:
        """Holding nothing: close the control socket and exit, unless an arm of the run holds the lock or added."""
        if self.control is None:
            return True
        lock_path = _lock_path(self.control_path)
        with _lock_if_free(lock_path) as locked:
            if not locked:
                return False
            self._serve_waiting(self.control)  # an add sent before the lock was free (its sender gave up waiting)
            if self.held:
                return False
            self._close_control()
            with contextlib.suppress(OSError):  # still locked: an arm that was waiting for it locks a new file
                os.unlink(lock_path)
            return True

    def _serve_waiting(self, listener: socket.socket) -> None:
        """Answer every message already waiting on ``listener``; a release may close it on the way."""
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while listener is self.control or listener in self.held:
                self._serve(listener)
        if listener is self.control or listener in self.held:
            listener.setblocking(True)

    # Each socket's name goes before the socket itself: a process that reached the socket is answered (or reset, and
    # then forks a watcher of its own, which binds the name anew), never left with a name this watcher removes later.
    def _close_control(self) -> None:
        _unlink(self.control_path)
        self.control.close()
        self.control = None

    def _drop(self, listener: socket.socket, held: _Held) -> None:
        del self.held[listener]
        _unlink(held.path)
        listener.close()

    def _serve(self, listener: socket.socket) -> None:
        """Answer one message on ``listener`` (BlockingIOError if none is waiting on a non-blocking one)."""
        connection, _address = listener.accept()
        with connection:
            connection.setblocking(True)
            connection.settimeout(ANSWER_TIMEOUT)
            try:
                if listener is self.control:
                    connection.sendall(self._answer_control(_read_message(connection)))
                else:
                    connection.sendall(self._answer(listener, connection.recv(64)))
            except OSError:
                pass

    def _answer(self, listener: socket.socket, message: bytes) -> bytes:
        if message == _RELEASE:
            self._drop(listener, self.held[listener])  # before the answer: the run then sees no socket left
            return b"ok\n"
        if message == _COMPLETING:
            self.held[listener].end = "complete"
            return b"ok\n"
        return f"alive {self.owner_pid}\n".encode()

    def _answer_control(self, message: bytes) -> bytes:
        if message == _PING:
            return f"alive {self.owner_pid} {os.getpid()}\n".encode()
        if not message.startswith(_ADD):
            return b"unknown\n"
        try:
            fields = json.loads(message[len(_ADD):])
            if fields["account"] != self.account:
                return b"other account\n"
            known = {field.name for field in dataclasses.fields(self.template)}
            deployment = dataclasses.replace(self.template, **{key: value for key, value in fields["deployment"].items()
                                                               if key in known})
            settings = dataclasses.replace(self.client.settings, timeout=float(fields["timeout"]),
                                           deadline=float(fields["deadline"]))
            path = _socket_path(settings, deployment, self.owner_pid)
            if any(held.path == path for held in self.held.values()):
                return b"exists\n"
            listener = _listen(path)
            self.hold(listener, deployment, self.client.replace(settings=settings), str(fields["user_agent"]))
        except (ValueError, KeyError, TypeError, OSError):
            return b"refused\n"
        return b"ok\n"


@contextlib.contextmanager
def _lock_if_free(path: str) -> t.Iterator[bool]:
    """The run's lock (:func:`_run_lock`), never waiting for it: yields whether this process holds it now.

    A lock file that cannot be opened counts as held: an arm of the run could not open it either, so none is arming.
    """
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        yield True
        return
    try:
        yield _try_lock(descriptor) and _is_file_at(descriptor, path)
    finally:
        os.close(descriptor)


def _send_ends(held: list[_Held]) -> None:
    """Send each deployment's end at once, each in its own thread: one's 409 window does not delay the others."""
    senders = [threading.Thread(target=_send_end, args=(each.client, each.end, each.deployment)) for each in held[1:]]
    for sender in senders:
        sender.start()
    if held:
        _send_end(held[0].client, held[0].end, held[0].deployment)
    for sender in senders:
        sender.join()


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _send_end(client: "DeploymentClient", action: str, deployment: "Deployment") -> None:
    """Send ``action``; while Retrace answers 409, send it again, until a start of the run can no longer land.

    A run stopped while its start was in flight may have had its own end refused (Retrace had not processed the start
    yet) and Retrace may process that start later still: after the run's end, after the watcher's first.  The start
    was sent at most ``deadline`` ago and each attempt waits ``timeout``, so the watcher keeps trying that long, less
    and less often.  A live run on this machine holding the deployment meanwhile (a new run of the same version) has it
    to end: the watcher stops.  A new run elsewhere, or one without a guard, cannot be seen: the watcher's cancel could
    end its deployment within that window, the price of not leaving a late start in progress.
    """
    gives_up_at = time.monotonic() + client.settings.deadline + client.settings.timeout
    pause = FIRST_PAUSE_AFTER_409
    while True:
        try:
            client.send(action, deployment)
            return
        except BadTransition:
            if time.monotonic() + pause > gives_up_at:
                return
            time.sleep(pause)
            pause = min(2 * pause, LONGEST_PAUSE_AFTER_409)
            if live_guard_owner(client.settings, deployment) is not None:
                return  # asked just before sending again: a run that arms its guard as it sends its start is seen
        except RetraceError:
            return  # nobody to tell: the next run's stale-start recovery is the fallback
