# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tracking for any Fabric task: a context manager, a decorator, signals, and the one place errors become ``Exit``.

::

    from retrace_fabric import tracked, track

    @task
    def deploy(c):
        with tracked(c, version="1.4.2"):   # start now, complete at the end, cancel on any error
            c.run("./release.sh")

    @task
    @track                                 # the same, around the whole task
    def migrate(c, version=None): ...      # a task's own version / app_name ... arguments are used

Exit codes (docs/fabric.md has the table): 0 done; 1 the deployment failed, or Retrace refused / could
not be reached with ``strict`` on; 2 a setting is wrong (nothing sent); 128 + N interrupted by signal N
(130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import signal
import sys
import threading
import time
import typing as t

from invoke.exceptions import Exit

from .core.client import CallResult, DeploymentClient, create_client
from .core.deployment import CANCEL, COMPLETE, START, Deployment
from .core.errors import BadTransition, InvalidInput, RetraceError
from .core.tracking import describe, tracked_deployment
from .core.transport import UrllibTransport
from .settings import FLAG_OPTIONS, FabricSettings, forget_key_variables, read_settings, resolve_options

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


#: the name this exception had when only SIGTERM was handled
Terminated = Interrupted


def say(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    """A line that says something was NOT done (loud: these are what a reader of a CI log must see)."""
    print(f"retrace: WARNING: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """The client's progress lines (a retry...): worth seeing, not a warning."""
    print(f"retrace: {message}", file=sys.stderr, flush=True)


def is_dry_run(config) -> bool:
    """``fab --dry``: commands are printed, not run, and nothing is sent to Retrace."""
    run = config.get("run") if config is not None else None
    return bool(run and run.get("dry"))


def build_client(config, flags: t.Mapping[str, t.Any] | None = None, settings: FabricSettings | None = None,
                 version_fallback=None) -> tuple[DeploymentClient, Deployment]:
    """Resolve the settings (see :mod:`retrace_fabric.settings`) and validate them; nothing is sent.

    Raises :class:`InvalidInput`.  Once the key is read, its variables leave this process's environment.
    """
    settings = settings or read_settings(config)
    options = resolve_options(config, flags, settings=settings, version_fallback=version_fallback)
    transport = UrllibTransport(settings.validate_certs, settings.ca_path)
    client, deployment = create_client(options, transport, entry_point=ENTRY_POINT, log=note)
    forget_key_variables(os.environ)
    return client, deployment


def describe_call(client: DeploymentClient, result: CallResult) -> str:
    """One line: what was sent (never the key) and what Retrace answered."""
    sent = json.dumps(result.payload, ensure_ascii=False, separators=(", ", ": "))
    answer = f"HTTP {result.status}" + (f" {result.server_message}" if result.server_message else "")
    if result.recovered_from_conflict:
        answer += " (an earlier attempt had already been accepted)"
    attempts = "1 attempt" if result.attempts == 1 else f"{result.attempts} attempts"
    return f"retrace.{result.action}: sent {sent} to {client.settings.endpoint(result.action)} -> {answer} ({attempts}, {result.elapsed:.2f} s)"


def describe_dry_run(client: DeploymentClient, deployment: Deployment, action: str) -> str:
    sent = json.dumps(deployment.payload(action), ensure_ascii=False, separators=(", ", ": "))
    return f"retrace.{action}: would send {sent} to {client.settings.endpoint(action)} (--dry: nothing sent)"


@contextlib.contextmanager
def exit_on_retrace_error(prefix: str = "retrace") -> t.Iterator[None]:
    """Translate the core's exceptions into ``Exit`` -- the one place this happens for Fabric."""
    try:
        yield
    except InvalidInput as error:
        raise Exit(f"{prefix}: invalid setting {error} (nothing was sent to Retrace)", code=EXIT_INVALID) from None
    except RetraceError as error:
        raise Exit(f"{prefix}: {error}", code=EXIT_FAILED) from None


# --- signals ------------------------------------------------------------------------------------

@contextlib.contextmanager
def signals_raise(on_signal: t.Callable[[], None] | None = None) -> t.Iterator[None]:
    """While the block runs, SIGINT / SIGTERM / SIGHUP call ``on_signal()`` then raise :class:`Interrupted`.

    ``on_signal`` stops what is running (closes SSH sessions, ends local commands), so that nothing
    waits for a command's end before the cancel.  Only the main thread can install handlers; a signal
    this process ignores (``nohup``, SIGINT of a background job) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
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
        for signum, old in previous.items():
            signal.signal(signum, old)


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

STARTING, WORKING, COMPLETING, ENDED = "starting", "working", "completing", "ended"


class TrackedRun:
    """One deployment's start -> work -> complete / cancel, with what Retrace was told, in words.

    The core's :func:`tracked_deployment` does the lifecycle (stale-start recovery, orphan guard,
    cancel on any exception, fail-open unless strict).  What it leaves to entry points is handled
    here: an interruption while start or complete is in flight sends a cancel (a 409 then means
    nothing was left in progress), and every ending becomes one ``Exit`` with the right code.
    """

    def __init__(self, client: DeploymentClient, deployment: Deployment, settings: FabricSettings, *, dry_run: bool = False,
                 budget_from: float | None = None):
        self.client = client
        #: what the core's wrapper calls: the client, with start's deadline counted from ``budget_from`` if given
        self.lifecycle_client = client if budget_from is None else StartWithinBudget(client, budget_from)
        self.deployment = deployment
        self.settings = settings
        self.dry_run = dry_run
        self.phase = STARTING
        self.sent: list[str] = []
        self.notes: list[str] = []

    def announce(self, result: CallResult) -> None:
        self.sent.append(result.action)
        say(describe_call(self.client, result))

    @contextlib.contextmanager
    def lifecycle(self) -> t.Iterator[Deployment]:
        if self.dry_run:
            say(describe_dry_run(self.client, self.deployment, START))
            self.phase = WORKING
            yield self.deployment
            self.phase = ENDED
            say(describe_dry_run(self.client, self.deployment, COMPLETE))
            return
        try:
            with tracked_deployment(self.lifecycle_client, self.deployment, self.settings.lifecycle, warn=warn,
                                    on_sent=self.announce):
                self.phase = WORKING
                yield self.deployment
                self.phase = COMPLETING
        except (Interrupted, KeyboardInterrupt):
            if self.phase in (STARTING, COMPLETING):
                self._cancel_in_flight()
            raise

    def _cancel_in_flight(self) -> None:
        """Start or complete was interrupted mid-call, and may or may not have landed.

        An interrupted start is cancelled (409: it had not been processed yet).  An interrupted complete is
        sent again, never followed by a cancel: the deployment's work was done, and a cancel landing before
        the first complete would give Retrace two opposite ends.  At worst Retrace hears complete twice.
        """
        completing = self.phase == COMPLETING
        try:
            self.announce(self.client.complete(self.deployment) if completing else self.client.cancel(self.deployment))
        except BadTransition:
            self.notes.append("the start had not been processed by Retrace when the cancel arrived; if it lands "
                              "later, the next run of this version recovers it")
        except RetraceError as error:
            warn(f"{describe(self.deployment)}: the {'complete' if completing else 'cancel'} after the interruption "
                 f"failed: {error}")
            self.notes.append(f"the {'complete' if completing else 'cancel'} failed: see the warning above")

    def outcome(self) -> str:
        """What Retrace was told, in words, for the last line of a run that did not succeed."""
        if self.dry_run:
            return "nothing was sent to Retrace (--dry)"
        if self.notes and not self.sent:
            return f"nothing was left in progress in Retrace ({self.notes[-1]})"
        if not self.sent:
            return "Retrace was not told (start was not accepted)"
        if self.sent[-1] == CANCEL:
            return "the deployment was cancelled in Retrace"
        if self.sent[-1] == COMPLETE:
            return "the deployment was completed in Retrace"
        if self.notes:
            return f"the deployment is left to Retrace as it is ({self.notes[-1]})"
        if self.settings.orphan_guard:
            return "the cancel did not get through: the orphan guard sends it once fab has exited"
        return "the cancel did not get through (see the warning above): the deployment is still in progress in Retrace"

    @contextlib.contextmanager
    def exits(self, expected: tuple[type[Exception], ...] = (), failure: t.Callable[[Exception], str] = str) -> t.Iterator[None]:
        """Turn how the run ended into one ``Exit``; ``failure(error)`` words the ``expected`` failures.

        Anything else (a task's own exception) is re-raised unchanged, after the cancel.
        """
        try:
            yield
        except Interrupted as interruption:
            raise Exit(f"retrace: interrupted by {interruption.signal_name}; {self.outcome()}", code=interruption.exit_code) from None
        except KeyboardInterrupt:
            raise Exit(f"retrace: interrupted; {self.outcome()}", code=128 + signal.SIGINT) from None
        except (Exit, SystemExit) as early:
            code = early.code
            if code in (0, None):
                # A clean exit in the middle of a deployment is not a finished deployment: Retrace got a
                # cancel, and CI must not read the run as a success either.
                said = f" ({early.message})" if isinstance(early, Exit) and early.message else ""
                raise Exit(f"retrace: the task exited (status 0){said} before the tracked block finished; {self.outcome()}. "
                           "Return from the block instead to complete the deployment.", code=EXIT_FAILED) from None
            raise
        except RetraceError as error:
            if isinstance(error, InvalidInput):
                raise Exit(f"retrace: invalid setting {error} (nothing was sent to Retrace)", code=EXIT_INVALID) from None
            raise Exit(f"retrace: {error} (strict: tracking failures fail the run); {self.outcome()}", code=EXIT_FAILED) from None
        except expected as error:
            raise Exit(f"{failure(error)}; {self.outcome()}", code=EXIT_FAILED) from None


class StartWithinBudget:
    """A client whose ``start`` gets the deadline minus the time spent since ``since`` (a ``time.monotonic()``).

    With Retrace hanging, ``fab deploy`` then adds no more than ``deadline`` to the run, its own setup
    included (issue #10 case 18).  Never less than half the deadline.  Everything else is the client's.
    """

    def __init__(self, client: DeploymentClient, since: float):
        self._client = client
        self._since = since

    def start(self, deployment: Deployment) -> CallResult:
        settings = self._client.settings
        budget = max(settings.deadline - (time.monotonic() - self._since), settings.deadline / 2)
        return self._client.replace(settings=dataclasses.replace(settings, deadline=budget), log=note).start(deployment)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def stop_commands_of(c) -> t.Callable[[], None]:
    """What a signal stops in a user's tracked block: the Connection's session, and local commands."""
    def stop() -> None:
        close = getattr(c, "close", None)
        if callable(close):
            with contextlib.suppress(OSError, EOFError):  # a half-closed session must not block the cancel
                close()
        stop_local_commands()
    return stop


@contextlib.contextmanager
def tracked(c, **flags: t.Any) -> t.Iterator[Deployment]:
    """Start a Retrace deployment, run the block, then complete it -- or cancel it on any error,
    ``Exit``/``sys.exit`` (the run then exits 1), SIGINT, SIGTERM or SIGHUP (exit 128 + signal).

    ``flags`` take the task flag names (``version="1.4.2"``); everything else comes from the ``retrace:``
    config and the ``RETRACE_*`` / ``FABRIC_RETRACE_*`` environment.  Raises ``Exit`` (code 2) for an
    invalid setting before anything is sent.  Under ``fab --dry`` nothing is sent.
    """
    with exit_on_retrace_error():
        settings = read_settings(c.config)
        client, deployment = build_client(c.config, flags, settings)
    run = TrackedRun(client, deployment, settings, dry_run=is_dry_run(c.config))
    with signals_raise(stop_commands_of(c)), run.exits(), run.lifecycle():
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
