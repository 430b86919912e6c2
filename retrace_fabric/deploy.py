"""``fab deploy``: the configured steps on every host, wrapped in one Retrace deployment.

``fab -H a,b deploy`` makes Fabric call a task once per host, one after another, stopping at the
first failure.  One start before any host and one end after all of them needs the whole host
list at once, so the ``deploy`` task only *records* the Connection Fabric hands it for each
host, and its ``post`` hook -- which Fabric runs once, after the per-host calls -- runs the
recorded hosts inside the core's start -> complete / cancel wrapper.

Every host (or the local machine) runs in a worker thread, even alone, so that the main thread is
always free to take SIGINT / SIGTERM / SIGHUP at once: it sends the remote steps SIGTERM (SIGKILL after 1 s), closes
the SSH sessions, ends local commands, sends the cancel and exits 128 + the signal.  SSH connections are opened while the start
call is in flight; steps begin only once Retrace has answered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import socket
import sys
import threading
import time
import typing as t

from fabric import Connection
from invoke import Task, task
from invoke.exceptions import Exit, Failure, ThreadException
from invoke.runners import normalize_hide

from .core._resolve import Resolved
from .core._run import Target
from .core.errors import InvalidInput
from .core.settings import DEPLOYMENT_OPTIONS, OPTIONS, deployment_name
from .remote import CONNECT_ERRORS, REMOTE_STOP_LIMIT, RemoteCommands
from .settings import KEY_VARIABLES, deploy_settings
from .tracking import EXIT_INVALID, LOADED_AT, TrackedRun, is_dry_run, new_run, say, signals_raise, stop_local_commands

LOCAL = "local"
OK, FAILED, UNREACHABLE, INTERRUPTED, NOT_RUN = "ok", "failed", "unreachable", "interrupted", "not run"
#: ``fab --dry``: the steps were printed, not run
DRY_RUN = "dry run"
#: what a host is doing while it runs (its detail in the summary until it ends)
CONNECTING, RUNNING = "connecting", "running"
COMMAND_ERRORS = CONNECT_ERRORS + (Failure, ThreadException)
#: how often the main thread wakes while hosts run (signals are handled at once regardless)
WAIT_SLICE = 0.1
#: the summary's detail for a host whose stop was not confirmed within REMOTE_STOP_LIMIT: the kill command did not end
NOT_CONFIRMED = f"may still be running on the host: the stop did not complete within {REMOTE_STOP_LIMIT:g} s"
#: ... the kill command ended (the step's process tree got SIGKILL) but the step's channel got no exit status: a
#: process the tree no longer holds (a daemon it started) still has the step's output open
OUTPUT_HELD = (f"may still be running on the host: something it started still holds its output open "
               f"{REMOTE_STOP_LIMIT:g} s after the stop")
#: the summary's detail for a host a serial run had not reached when the signal came
NOT_REACHED = "skipped: the run was interrupted"

FLAG_HELP = {
    "app_name": "Retrace app (AppName). Default: FABRIC_RETRACE_APP_NAME, RETRACE_APP_NAME, retrace.app_name",
    "environment_name": "Retrace environment (EnvironmentName). Default: FABRIC_RETRACE_ENVIRONMENT_NAME, "
                        "RETRACE_ENVIRONMENT_NAME, retrace.environment_name",
    "version": "version being deployed. Default: FABRIC_RETRACE_VERSION, RETRACE_VERSION, retrace.version, `git describe`",
    "name": "deployment name shown in Retrace. Default: FABRIC_RETRACE_NAME, RETRACE_DEPLOYMENT_NAME, retrace.name, the version",
    "branch": "source branch. Default: FABRIC_RETRACE_BRANCH, RETRACE_BRANCH, retrace.branch, the CI system, git",
    "commit": "source commit. Default: FABRIC_RETRACE_COMMIT, RETRACE_COMMIT, retrace.commit, the CI system, git",
    "uri": "link to the build or release (http/https). Default: FABRIC_RETRACE_URI, RETRACE_URI, retrace.uri, the CI build URL",
    "api_url": "Retrace API base URL. Default: FABRIC_RETRACE_API_URL, RETRACE_API_URL, retrace.api_url, https://api.stackify.net",
}


class Step(t.NamedTuple):
    command: str
    sudo: bool = False

    def __str__(self) -> str:
        return f"sudo {self.command}" if self.sudo else self.command


@dataclasses.dataclass
class HostOutcome:
    host: str
    state: str = NOT_RUN
    detail: str = ""
    elapsed: float = 0.0
    started_at: float | None = None


class HostsFailed(Exception):
    """At least one host failed or was unreachable (the wrapper cancels on it)."""


def parse_steps(raw) -> list[Step]:
    """``retrace.steps``: a list of commands, or of ``{run: command, sudo: true}`` mappings."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise InvalidInput("steps", "must be a non-empty list of commands (set retrace.steps in fabric.yaml)")
    return [_parse_step(item, index) for index, item in enumerate(raw, 1)]


def _parse_step(item, index: int) -> Step:
    if isinstance(item, str) and item.strip():
        return Step(item.strip())
    if hasattr(item, "keys") and set(item.keys()) <= {"run", "sudo"} and isinstance(item.get("run"), str) and item["run"].strip():
        if not isinstance(item.get("sudo", False), bool):
            raise InvalidInput("steps", f"step {index}: sudo must be true or false")
        return Step(item["run"].strip(), item.get("sudo", False))
    raise InvalidInput("steps", f"step {index} must be a command or a mapping {{run: <command>, sudo: true|false}}, got {item!r}")


def deployment_fields(target: Target, resolved: Resolved) -> dict[str, str]:
    """The deployment's fields by option name, ``name`` defaulting to the version: as sent, or, when it is not
    recorded, as far as the settings give them (the steps run anyway)."""
    if target.deployment is not None:
        return {**target.deployment.as_options(), "name": target.deployment.display_name}
    fields = {option: resolved[option].strip() for option in DEPLOYMENT_OPTIONS
              if isinstance(resolved[option], str) and resolved[option].strip()}
    try:
        name = deployment_name(resolved.as_dict())
    except InvalidInput:
        name = None  # said in the NOT recorded line
    if name or fields.get("version"):
        fields["name"] = name or fields["version"]
    return fields


def step_environment(fields: t.Mapping[str, str], inline: bool) -> dict[str, str]:
    """RETRACE_VERSION, RETRACE_APP_NAME ... for the steps (never the key), from :func:`deployment_fields`.

    Fabric writes SSH environment inline as ``export NAME=value && command`` without quoting,
    so values are shell-quoted for remote hosts.
    """
    values = {OPTIONS[option].environment[0]: value for option, value in fields.items()}
    return {name: shlex.quote(value) if inline else value for name, value in values.items()}


class PrefixedLines:
    """A stream for Invoke's ``out_stream`` / ``err_stream``: each line, as it comes, as ``[host] line``."""

    def __init__(self, host: str, stream, lock: threading.Lock, silenced: t.Callable[[], bool]):
        self.host, self.stream, self.lock, self.silenced = host, stream, lock, silenced
        self.partial = ""

    def write(self, text: str) -> int:
        lines = (self.partial + text.replace("\r\n", "\n")).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self.lock:
            self.stream.flush()

    def finish(self) -> None:
        if self.partial:
            self._emit(self.partial)
            self.partial = ""

    def _emit(self, line: str) -> None:
        with self.lock:
            if not self.silenced():
                self.stream.write(f"[{self.host}] {line}\n")
                self.stream.flush()


class HostRunner:
    """Runs the steps on each target and keeps one :class:`HostOutcome` per target."""

    def __init__(self, targets: t.Sequence, steps: t.Sequence[Step], fields: t.Mapping[str, str], *, parallel: bool,
                 fail_fast: bool = True, labels: t.Sequence[str] | None = None):
        self.targets = list(targets)
        self.steps = list(steps)
        #: the deployment's fields, for the steps' environment (:func:`deployment_fields`)
        self.fields = dict(fields)
        self.parallel = parallel and len(self.targets) > 1
        self.fail_fast = fail_fast
        labels = list(labels) if labels and len(labels) == len(self.targets) else [label_of(target) for target in self.targets]
        self.outcomes = [HostOutcome(label) for label in labels]
        self._print_lock = threading.Lock()
        self._abandoned = False
        self._connecting: dict[int, threading.Thread] = {}
        self._connect_errors: dict[int, BaseException] = {}
        #: the remote steps running, for :meth:`abandon` to stop
        self._remote_commands = RemoteCommands()

    def start_connecting(self) -> None:
        """Open every SSH connection in the background (overlaps with the start call)."""
        for index, target in enumerate(self.targets):
            if isinstance(target, Connection):
                thread = threading.Thread(target=self._connect, args=(index, target), daemon=True, name=f"connect-{index}")
                self._connecting[index] = thread
                thread.start()

    def _connect(self, index: int, target) -> None:
        try:
            target.open()
        except CONNECT_ERRORS as error:
            self._connect_errors[index] = error

    def run(self) -> None:
        """Run every target in worker threads; raise :class:`HostsFailed` if any did not succeed."""
        if self.parallel:
            workers = [threading.Thread(target=self._run_one, args=(index,), daemon=True, name=f"deploy-{index}")
                       for index in range(len(self.targets))]
        else:
            workers = [threading.Thread(target=self._run_serially, daemon=True, name="deploy")]
        for worker in workers:
            worker.start()
        for worker in workers:
            while worker.is_alive():
                worker.join(WAIT_SLICE)
        failed = [outcome for outcome in self.outcomes if outcome.state not in (OK, NOT_RUN, DRY_RUN)]
        if failed:
            raise HostsFailed(", ".join(f"{outcome.host} ({outcome.state})" for outcome in failed))

    def _run_serially(self) -> None:
        for index, outcome in enumerate(self.outcomes):
            self._run_one(index)
            with self._print_lock:
                if self._abandoned:
                    return  # abandon() marked the hosts not reached
                if outcome.state not in (OK, DRY_RUN) and self.fail_fast:
                    for skipped in self.outcomes[index + 1:]:
                        skipped.detail = f"skipped: {outcome.host} failed first (fail_fast)"
                    return

    def _run_one(self, index: int) -> None:
        outcome = self.outcomes[index]
        with self._print_lock:
            if self._abandoned:
                return  # interrupted before this host's turn: not connected to, left "not run"
            outcome.started_at = time.monotonic()
            outcome.state, outcome.detail = INTERRUPTED, CONNECTING if isinstance(self.targets[index], Connection) else RUNNING
        state, detail = self._steps_on(index, self.targets[index], outcome.host)
        with self._print_lock:
            # After an interruption the summary is frozen: a session closed under a running
            # command must not turn "interrupted" into "failed".
            if not self._abandoned:
                outcome.state, outcome.detail, outcome.elapsed = state, detail, time.monotonic() - outcome.started_at

    def _steps_on(self, index: int, target, host: str) -> tuple[str, str]:
        remote = isinstance(target, Connection)
        if remote:
            if index in self._connecting:
                self._connecting[index].join()
            error = self._connect_errors.get(index)
            if error is None and not target.is_connected:
                try:
                    target.open()
                except CONNECT_ERRORS as failure:
                    error = failure
            if error is not None:
                self._print(host, f"cannot connect: {describe_error(error)}")
                return UNREACHABLE, describe_error(error)
            with self._print_lock:
                if not self._abandoned:
                    self.outcomes[index].detail = RUNNING
        with self._remote_commands.kept(target) if remote else contextlib.nullcontext():
            return self._run_steps(target, host, remote)

    def _run_steps(self, target, host: str, remote: bool) -> tuple[str, str]:
        dry = is_dry_run(target.config)
        environment = self._environment(target, remote)
        for index_, step in enumerate(self.steps, 1):
            if self._abandoned:  # a step that ended on the SIGTERM of abandon() must not be followed by the next
                return INTERRUPTED, "stopped by the interruption"
            self._print(host, f"$ {step}")
            if dry:
                continue  # the line above is the step's echo; Invoke's (run.echo, which --dry sets) would repeat it
            run = target.sudo if step.sudo else target.run
            out = PrefixedLines(host, sys.stdout, self._print_lock, lambda: self._abandoned)
            err = PrefixedLines(host, sys.stderr, self._print_lock, lambda: self._abandoned)
            # Invoke writes to a stream it is given even when --hide says not to: give it only the shown ones.
            hidden = normalize_hide(target.config.run.hide)
            streams = {name: stream for name, stream in (("out_stream", out), ("err_stream", err))
                       if ("stdout" if name == "out_stream" else "stderr") not in hidden}
            try:
                # echo=False: the "$ step" line above, with its host, is the echo (Invoke's would repeat it, bare)
                result = run(step.command, warn=True, in_stream=False, echo=False, **streams, **environment)
            except COMMAND_ERRORS as error:
                return FAILED, f"step {index_} ({step}) could not run: {describe_error(error)}"
            finally:
                out.finish()
                err.finish()
            if result.failed:
                return FAILED, f"step {index_} ({step}) exited with status {result.exited}"
        if dry:
            return DRY_RUN, f"{len(self.steps)} step(s) printed, none run (--dry)"
        return OK, f"{len(self.steps)} step(s) done"

    def _environment(self, target, remote: bool) -> dict:
        """``env`` (and ``replace_env``) for a step: Fabric's ``run.env``, then RETRACE_*; locally, never the key."""
        configured = dict(target.config.run.env or {})
        ours = step_environment(self.fields, inline=remote and target.inline_ssh_env)
        if remote:
            return {"env": {**configured, **ours}}
        inherited = {name: value for name, value in os.environ.items() if name not in KEY_VARIABLES}
        return {"env": {**inherited, **configured, **ours}, "replace_env": True}

    def abandon(self) -> None:
        """On a signal: freeze the summary, stop the remote steps, drop the SSH sessions and end local commands, so
        nothing runs on and nothing waits."""
        with self._print_lock:
            self._abandoned = True
            for outcome in self.outcomes:
                if outcome.state == INTERRUPTED and outcome.detail in (RUNNING, CONNECTING):
                    outcome.detail = "stopped by the interruption" if outcome.detail == RUNNING else "stopped while connecting: no step ran"
                    outcome.elapsed = time.monotonic() - outcome.started_at
                elif outcome.started_at is None and not outcome.detail:  # not a host fail_fast skipped
                    outcome.detail = NOT_REACHED
        # the transports on which a step's end was not confirmed, each with whether the kill command ended there
        not_stopped = self._remote_commands.stop()
        with self._print_lock:
            for index, outcome in enumerate(self.outcomes):
                target = self.targets[index]
                if isinstance(target, Connection) and target.transport in not_stopped and outcome.state == INTERRUPTED:
                    outcome.detail = OUTPUT_HELD if not_stopped[target.transport] else NOT_CONFIRMED
        for target in self.targets:
            if isinstance(target, Connection):
                try:
                    target.close()
                except CONNECT_ERRORS:
                    pass  # the session is going away either way
        stop_local_commands()

    def _print(self, host: str, text: str) -> None:
        lines = text.rstrip("\n").splitlines()
        with self._print_lock:
            for line in lines if not self._abandoned else ():
                say(f"[{host}] {line}")

    def summary(self) -> str:
        width = max((len(outcome.host) for outcome in self.outcomes), default=0)
        rows = [f"  {outcome.host.ljust(width)}  {outcome.state:<11}  {outcome.elapsed:6.1f} s  {outcome.detail}"
                for outcome in self.outcomes]
        return "\n".join(["Deployment summary:"] + rows)


def label_of(target) -> str:
    """The host by the name the user gave it (an ssh_config alias stays the alias), or ``local``."""
    if isinstance(target, Connection):
        port = f":{target.port}" if target.port != 22 else ""
        user = f"{target.user}@" if target.user else ""
        return f"{user}{target.original_host or target.host}{port}"
    return LOCAL


def typed_hosts(argv: t.Sequence[str]) -> list[str] | None:
    """The host strings of ``-H`` / ``--hosts`` exactly as typed (Fabric keeps only their parsed parts)."""
    for index, argument in enumerate(argv):
        if argument in ("-H", "--hosts") and index + 1 < len(argv):
            return argv[index + 1].split(",")
        if argument.startswith("--hosts="):
            return argument.split("=", 1)[1].split(",")
    return None


def describe_error(error: BaseException) -> str:
    if isinstance(error, socket.timeout):
        return "timed out"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def deploy_to(targets: t.Sequence, config, flags: t.Mapping[str, t.Any] | None = None, *,
              labels: t.Sequence[str] | None = None, budget_from: float | None = None) -> None:
    """Deploy to ``targets`` (Connections, or one local Context) as one tracked deployment.

    Usable from a user's own task: ``deploy_to([Connection("web1"), Connection("web2")], c.config)``.
    Raises ``Exit`` (codes: docs/fabric.md) on any failure, after printing the per-host summary.  What defines
    the deployment itself -- ``steps``, ``parallel``, ``fail_fast``, a non-empty ``targets`` -- is exit 2 when
    wrong, whatever ``strict`` says: there is nothing to deploy.  ``labels`` name the targets in the output
    (default: ``user@host:port`` with the host as given to the Connection).  ``budget_from`` (a
    ``time.monotonic()``) counts the start's deadline from then: ``fab deploy`` passes the moment the fabfile
    was loaded: a Retrace that never answers adds at most the deadline to the whole run, one that answers the
    start late and then hangs on the end up to twice the deadline.
    """
    run, target, resolved = new_run(config, flags, owner_pid=os.getpid())  # says unknown settings first
    settings = deploy_settings(config)
    try:
        if settings.problems:
            raise settings.problems[0]
        if not targets:
            raise InvalidInput("hosts", "no hosts to deploy to (the host list is empty)")
        steps = parse_steps(settings["steps"])
    except InvalidInput as problem:
        raise invalid(problem) from None
    runner = HostRunner(targets, steps, deployment_fields(target, resolved), parallel=settings["parallel"],
                        fail_fast=settings["fail_fast"], labels=labels)
    tracked_run = TrackedRun(run, target)
    runner.start_connecting()
    try:
        with signals_raise(runner.abandon), tracked_run.exits(expected=(HostsFailed,), failure=lambda error: f"deploy failed on {error}"):
            with tracked_run.lifecycle(since=budget_from, reason=lambda error: f"failed on {error}"):
                runner.run()
    finally:
        say(runner.summary())


def invalid(problem: InvalidInput) -> Exit:
    """The ``Exit`` for a deploy setting that leaves nothing to deploy."""
    return Exit(f"retrace: invalid setting {problem} (nothing was sent to Retrace, no step ran)", code=EXIT_INVALID)


class _Recorder:
    """The per-host calls Fabric makes to ``deploy``, kept until the post hook runs them all."""

    def __init__(self):
        self.contexts: list = []
        self.flags: dict = {}

    def record(self, c, flags: dict) -> None:
        self.contexts.append(c)
        self.flags = flags

    def take(self) -> tuple[list, dict]:
        contexts, flags = self.contexts, self.flags
        self.contexts, self.flags = [], {}
        return contexts, flags


_RECORDER = _Recorder()


def _run_recorded(c) -> None:
    """Run the hosts recorded by ``deploy`` (Fabric calls this once, after every per-host call)."""
    contexts, flags = _RECORDER.take()
    if not contexts:
        return
    config = contexts[0].config
    if empty_hosts_given(sys.argv) or any(isinstance(context, Connection) and not context.host for context in contexts):
        raise invalid(InvalidInput("hosts", "-H / --hosts was given but is empty (an unset $HOSTS?): refusing to deploy to "
                                            "this machine instead; leave -H out to deploy locally"))
    remote = [context for context in contexts if isinstance(context, Connection)]
    deploy_to(remote or contexts[:1], config, flags, labels=typed_hosts(sys.argv) if remote else None, budget_from=LOADED_AT)


def empty_hosts_given(argv: t.Sequence[str]) -> bool:
    """True for ``fab -H "" deploy`` / ``--hosts=``: Fabric then runs the task locally, without a word."""
    for index, argument in enumerate(argv):
        if argument in ("-H", "--hosts") and index + 1 < len(argv) and not argv[index + 1].strip(" ,"):
            return True
        if argument.startswith(("--hosts=", "-H=")) and not argument.split("=", 1)[1].strip(" ,"):
            return True
    return False


run_recorded_hosts = Task(_run_recorded, name="deploy-run-hosts")


@task(help=FLAG_HELP, auto_shortflags=False, post=[run_recorded_hosts])
def deploy(c, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None, api_url=None):
    """Run retrace.steps on every host (-H) or locally, tracked in Retrace as one deployment.

    One start before any host is touched, one complete after every host succeeded, one cancel if
    a host fails, cannot be reached, or the run is interrupted (SIGINT, SIGTERM, SIGHUP: exit 128 + N);
    then a per-host summary and a non-zero exit code on failure.  Hosts run in parallel unless
    retrace.parallel is false (then the first failure stops the rest unless retrace.fail_fast is
    false).  Retrace unreachable or refusing the start: one warning, and the deployment goes on
    (retrace.strict: true makes it fail instead).  Steps see RETRACE_VERSION, RETRACE_APP_NAME,
    RETRACE_ENVIRONMENT_NAME ... in their environment.

    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    flags = {"app_name": app_name, "environment_name": environment_name, "version": version, "name": name,
             "branch": branch, "commit": commit, "uri": uri, "api_url": api_url}
    _RECORDER.record(c, flags)
