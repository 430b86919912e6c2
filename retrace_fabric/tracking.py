# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tracking for any Fabric task: a context manager, a decorator, signals, and the one place outcomes become ``Exit``.

::

    from retrace_fabric import tracked, track

    @task
    def deploy(c):
        with tracked(c, version="1.4.2"):   # start now, complete at the end, cancel on any error
            c.run("./release.sh")

    @task
    @track                                 # the same, around the whole task
    def migrate(c, version=None): ...      # a task's own version / app_name ... arguments are used

The core's run engine (:mod:`.core._run`) decides everything about the deployment and words every line; this
module shows its lines, handles signals and turns how the run ended into one exit code (docs/fabric.md has the
table): 0 done, or tracking failed without ``strict``; 1 the deployment failed, or Retrace refused / could not be
reached with ``strict``; 2 a setting is missing or invalid with ``strict`` (nothing sent); 128 + N interrupted by
signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import sys
import threading
import time
import typing as t

from invoke.exceptions import Exit

from .core._resolve import Resolved
from .core._run import DeploymentRun, Step, Target, policy_of
from .core.errors import InvalidInput
from .core.transport import UrllibTransport
from .remote import CONNECT_ERRORS, RemoteCommands
from .settings import FLAG_OPTIONS, TARGETS_NOT_HERE, deploy_targets, forget_key_variables, resolve

#: when this package was loaded (the fabfile's import): ``fab deploy`` counts its start's deadline from here
LOADED_AT = time.monotonic()
ENTRY_POINT = "fabric"
EXIT_FAILED = 1
EXIT_INVALID = 2
#: the signals a run turns into a cancel and an exit code of 128 + the signal's number
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: seconds local commands get to end after SIGTERM before they are killed
LOCAL_GRACE = 1.0


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP as an exception, so the wrapper cancels exactly as for any error.

    Not a KeyboardInterrupt: Invoke's command runner catches those and keeps waiting for the command.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


#: another name for :class:`Interrupted`, kept for fabfiles that catch it by this name
Terminated = Interrupted


def say(message: str) -> None:
    print(message, flush=True)


class Reporter:
    """The engine's lines, as Fabric shows them: what happened on stdout, what went wrong on stderr."""

    @staticmethod
    def info(line: str) -> None:
        say(f"retrace: {line}")

    @staticmethod
    def detail(line: str) -> None:
        say(f"retrace.{line}")  # each call's line starts with its action: retrace.start: sent {...} -> HTTP 202

    @staticmethod
    def warning(line: str) -> None:
        print(f"retrace: WARNING: {line}", file=sys.stderr, flush=True)

    @staticmethod
    def error(line: str) -> None:
        print(f"retrace: ERROR: {line}", file=sys.stderr, flush=True)

    @staticmethod
    def debug(line: str) -> None:
        """The client's progress (a retry, a lost answer found accepted): worth seeing, not a warning."""
        print(f"retrace: {line}", file=sys.stderr, flush=True)


def is_dry_run(config) -> bool:
    """``fab --dry``: commands are printed, not run, and nothing is sent to Retrace."""
    run = config.get("run") if config is not None else None
    return bool(run and run.get("dry"))


def new_run(config, flags: t.Mapping[str, t.Any] | None = None, *, owner_pid: int | None, place: str | None = None,
            ends_a_start: bool = False, calls_are_tasks: bool = False) -> tuple[DeploymentRun, Target, Resolved]:
    """A run of the engine holding the one deployment the settings describe; nothing is sent.

    ``place``: single calls' directory, where a start's version is recorded; ``ends_a_start``: this run sends the
    end of a start sent from ``place`` earlier, whose version it takes when none is given.  Once the key is read,
    its variables leave this process's environment.  ``retrace.targets`` in the config is one warning: it applies to
    ``fab deploy``'s hosts, and this run records the deployment the other settings describe.
    """
    resolved = resolve(config, flags, started_here=place if ends_a_start else None)
    run, transport = new_engine(config, resolved, owner_pid=owner_pid, place=place, calls_are_tasks=calls_are_tasks)
    target = run.target(resolved, transport, entry_point=ENTRY_POINT)
    if deploy_targets(config) is not None:
        run.reporter.warning(TARGETS_NOT_HERE)
    forget_key_variables(os.environ)
    return run, target, resolved


def new_engine(config, resolved: Resolved, *, owner_pid: int | None, place: str | None = None,
               calls_are_tasks: bool = False) -> tuple[DeploymentRun, UrllibTransport]:
    """A run of the engine with no target yet, by the run-level settings ``resolved``, and the transport its targets
    share."""
    run = DeploymentRun(policy_of(resolved), Reporter(), owner_pid=owner_pid, place=place, calls_are_tasks=calls_are_tasks,
                        dry_run="--dry" if is_dry_run(config) else None)
    return run, UrllibTransport(resolved["validate_certs"], resolved["ca_path"])


def stop_if_it_fails(step: Step) -> Step:
    """``Exit`` when the engine says the run must stop (``strict``); its line was said already."""
    if step.fails_run:
        raise Exit(code=EXIT_INVALID if isinstance(step.error, InvalidInput) else EXIT_FAILED)
    return step


# --- signals ------------------------------------------------------------------------------------

@contextlib.contextmanager
def signals_raise(on_signal: t.Callable[[], None] | None = None) -> t.Iterator[None]:
    """While the block runs, SIGINT / SIGTERM / SIGHUP call ``on_signal()`` then raise :class:`Interrupted`.

    ``on_signal`` stops what is running (closes SSH sessions, ends local commands), so that nothing
    waits for a command's end before the cancel.  Only the main thread can install handlers; a signal
    this process ignores (``nohup``, SIGINT of a background job) stays ignored.  The first signal decides
    the exit code and the cancel's reason: a later one (a second Ctrl-C, a CI's SIGTERM after it) neither
    starts the stop again nor interrupts the stop and the cancel under way, which are bounded, nor kills the
    process on its way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopped_by: list[int] = []

    def handler(signum, frame):
        if stopped_by:
            return  # the first signal's stop and cancel are under way and end the run as it decided
        stopped_by.append(signum)
        if on_signal is not None:
            on_signal()
        raise Interrupted(signum)

    previous = {}
    for signum in HANDLED_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        # Once a signal stopped the run, the process is on its way out with that signal's exit status: a later
        # signal, even one arriving after the summary, is ignored rather than let its default action kill fab.
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_IGN if stopped_by else old)


def stop_local_commands(grace: float = LOCAL_GRACE) -> None:
    """SIGTERM every process this one started (local steps and their children), SIGKILL those left after ``grace``.

    The orphan guard is not among them: it detached itself (double fork), so it is no descendant.
    """
    pids = _descendants(os.getpid())
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    ends_at = time.monotonic() + grace
    while pids and time.monotonic() < ends_at:
        pids = [pid for pid in pids if _running(pid)]
        if pids:
            time.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), ()):
            found.append(child)
            pending.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


# --- one tracked run ----------------------------------------------------------------------------

class TrackedRun:
    """One deployment around a block of work: opened before it, closed by how it ended, and that ending as ``Exit``.

    Without ``target``: every deployment the run holds (:meth:`each_lifecycle`).
    """

    def __init__(self, run: DeploymentRun, target: Target | None = None):
        self.run = run
        self.target = target

    @contextlib.contextmanager
    def lifecycle(self, since: float | None = None, reason: t.Callable[[BaseException], str] | None = None) -> t.Iterator[t.Any]:
        """Open the deployment, yield it (None if the settings do not describe one), then complete it, or cancel it with
        ``reason(error)``.

        ``since`` (a ``time.monotonic()``): the start's deadline counts from then.  A signal at any moment, even with
        a call in flight, ends whatever this run holds open (:meth:`DeploymentRun.close_all`).
        """
        try:
            stop_if_it_fails(self.run.open(self.target, since=since))
            try:
                yield self.target.deployment
            except (Interrupted, KeyboardInterrupt):
                raise
            except BaseException as error:
                self.run.close(self.target, succeeded=False, reason=(reason or failure_reason)(error))
                raise
            stop_if_it_fails(self.run.close(self.target, succeeded=True))
        except Interrupted as interruption:
            self.run.close_all(succeeded=False, reason=f"interrupted by {interruption.signal_name}")
            raise
        except KeyboardInterrupt:
            self.run.close_all(succeeded=False, reason="interrupted")
            raise

    @contextlib.contextmanager
    def each_lifecycle(self, what_happened: t.Callable[[], t.Mapping[str, str]], since: float | None = None) -> t.Iterator[None]:
        """Open every deployment of the run, one after another, before the block; then end each by what happened on its
        own hosts (``what_happened()``: :meth:`DeploymentRun.close_each`).

        The deployments that cannot be recorded (a setting missing or invalid) are opened first: with ``strict`` one
        of them stops the run before any start is sent.  A start that stops the run (``strict``: refused, unreachable)
        cancels the deployments opened before it.  An exception from the block, or a signal at any moment, ends every
        deployment still open (:meth:`DeploymentRun.close_all`).
        """
        try:
            for target in sorted(self.run.targets, key=lambda target: target.recordable):
                step = self.run.open(target, since=since)
                if step.fails_run:
                    self.run.close_all(succeeded=False, reason="the run stopped before any step (strict)")
                    stop_if_it_fails(step)
            try:
                yield
            except (Interrupted, KeyboardInterrupt):
                raise
            except BaseException as error:
                self.run.close_all(succeeded=False, reason=failure_reason(error))
                raise
            for step in self.run.close_each(failed=what_happened()):
                stop_if_it_fails(step)
        except Interrupted as interruption:
            self.run.close_all(succeeded=False, reason=f"interrupted by {interruption.signal_name}")
            raise
        except KeyboardInterrupt:
            self.run.close_all(succeeded=False, reason="interrupted")
            raise

    def told_retrace(self) -> str:
        dry_run = self.run.dry_run is not None
        if self.target is not None:
            return self.target.told_retrace(dry_run)
        return "; ".join(f"{target.label}: {target.told_retrace(dry_run)}" for target in self.run.targets)

    @contextlib.contextmanager
    def exits(self, expected: tuple[type[Exception], ...] = (), failure: t.Callable[[Exception], str] = str) -> t.Iterator[None]:
        """Turn how the run ended into one ``Exit``; ``failure(error)`` words the ``expected`` failures.

        Anything else (a task's own exception) is re-raised unchanged, after the cancel.
        """
        try:
            yield
        except Interrupted as interruption:
            raise Exit(f"retrace: interrupted by {interruption.signal_name}; {self.told_retrace()}",
                       code=interruption.exit_code) from None
        except KeyboardInterrupt:
            raise Exit(f"retrace: interrupted; {self.told_retrace()}", code=128 + signal.SIGINT) from None
        except (Exit, SystemExit) as early:
            if early.code in (0, None):
                # A clean exit in the middle of a deployment is not a finished deployment: Retrace got a
                # cancel, and CI must not read the run as a success either.
                said = f" ({early.message})" if isinstance(early, Exit) and early.message else ""
                raise Exit(f"retrace: the task exited (status 0){said} before the tracked block finished; {self.told_retrace()}. "
                           "Return from the block instead to complete the deployment.", code=EXIT_FAILED) from None
            raise
        except expected as error:
            raise Exit(f"{failure(error)}; {self.told_retrace()}", code=EXIT_FAILED) from None


def failure_reason(error: BaseException) -> str:
    """Why a tracked block failed, for the cancel's line."""
    if isinstance(error, (Exit, SystemExit)):
        return f"the task exited (status {error.code or 0}) before the tracked block finished"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@contextlib.contextmanager
def commands_stopped_on_signal(c) -> t.Iterator[None]:
    """While a user's tracked block runs, SIGINT / SIGTERM / SIGHUP stop what it runs -- the remote commands of every
    Connection using ``c``'s config (``c`` itself when it is one, and those made with ``config=c.config``: a
    ``SerialGroup`` or ``ThreadingGroup`` of hosts), then ``c``'s session, and local commands -- and raise
    :class:`Interrupted`.  A remote command left running would also keep Invoke waiting for its output, so the
    interruption would never surface."""
    remote_commands = RemoteCommands()

    def stop() -> None:
        remote_commands.stop()
        close = getattr(c, "close", None)
        if callable(close):
            with contextlib.suppress(*CONNECT_ERRORS):  # a half-closed session must not block the cancel
                close()
        stop_local_commands()

    with remote_commands.kept(c) if _makes_remote_runners(c) else contextlib.nullcontext(), signals_raise(stop):
        yield


def _makes_remote_runners(c) -> bool:
    """True when Connections built from ``c``'s config get their runners there (Fabric's config; not Invoke's own)."""
    try:
        return callable(c.config.runners.remote)
    except AttributeError:
        return False


@contextlib.contextmanager
def tracked(c, **flags: t.Any) -> t.Iterator[t.Any]:
    """Start a Retrace deployment, run the block, then complete it -- or cancel it on any error,
    ``Exit``/``sys.exit`` (the run then exits 1), SIGINT, SIGTERM or SIGHUP (exit 128 + signal).

    ``flags`` take the task flag names (``version="1.4.2"``); everything else comes from the ``retrace:``
    config and the ``RETRACE_*`` / ``FABRIC_RETRACE_*`` environment.  Yields the deployment (None when the settings
    do not describe one).  A deployment that cannot be recorded (a setting missing or invalid, Retrace refusing or
    unreachable) is one warning, and the block runs; with ``strict`` it raises ``Exit`` before the block (2: a
    setting, 1: Retrace).  Under ``fab --dry`` nothing is sent.
    """
    run, target, _resolved = new_run(c.config, flags, owner_pid=os.getpid())
    tracked_run = TrackedRun(run, target)
    # contextlib drives this generator to its end or throws the block's exception in: the inner blocks always exit.
    # pylint: disable-next=contextmanager-generator-missing-cleanup
    with commands_stopped_on_signal(c), tracked_run.exits(), tracked_run.lifecycle() as deployment:
        yield deployment


def track(function: t.Callable) -> t.Callable:
    """Decorator form of :func:`tracked` for a task ``function(c, ...)``; put it under ``@task``.

    Arguments of the task named like the flags (``version``, ``app_name``, ``environment_name``, ``name``,
    ``branch``, ``commit``, ``uri``, ``api_url``) are used for the deployment when given.
    """
    signature = inspect.signature(function)

    @functools.wraps(function)
    def tracked_task(c, *args, **kwargs):
        bound = signature.bind_partial(c, *args, **kwargs).arguments
        flags = {option: bound[option] for option in FLAG_OPTIONS if bound.get(option) is not None}
        with tracked(c, **flags):
            return function(c, *args, **kwargs)

    return tracked_task
