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
from .core._run import HOST_FAILED, HOST_STOPPED, HOST_UNREACHABLE, PENDING, DeploymentRun, Target
from .core.errors import InvalidInput
from .core.settings import DEPLOYMENT_OPTIONS, OPTIONS, deployment_name
from .remote import CONNECT_ERRORS, REMOTE_STOP_LIMIT, RemoteCommands
from .settings import KEY_VARIABLES, TargetEntry, deploy_settings, deploy_targets, forget_key_variables, resolve
from .tracking import (ENTRY_POINT, EXIT_INVALID, LOADED_AT, TrackedRun, is_dry_run, new_engine, new_run, say, signals_raise,
                       stop_local_commands)

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
#: what the line about a malformed ``retrace.targets`` names, when no host is left in no entry
TARGETS_LABEL = "a deployment of retrace.targets"
#: the summary's state of a deployment whose start was never sent: the run stopped before (strict, a signal)
NOT_STARTED = "not started (the run stopped before its start)"
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
                 fail_fast: bool = True, labels: t.Sequence[str] | None = None,
                 fields_by_host: t.Sequence[t.Mapping[str, str]] | None = None):
        self.targets = list(targets)
        self.steps = list(steps)
        #: each host's deployment fields, for its steps' environment (:func:`deployment_fields`); ``fields`` for all
        #: hosts unless ``fields_by_host`` gives each its own
        self.fields = [dict(own) for own in fields_by_host] if fields_by_host is not None else [dict(fields)] * len(self.targets)
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
        self.run_hosts()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        failed = [outcome for outcome in self.outcomes if outcome.state not in (OK, NOT_RUN, DRY_RUN)]
        if failed:
            raise HostsFailed(", ".join(f"{outcome.host} ({outcome.state})" for outcome in failed))

    def what_happened(self) -> dict[str, str]:
        """Each host that did not succeed, as :meth:`DeploymentRun.close_each` takes it: failed, unreachable, or
        stopped (a host ``fail_fast`` skipped)."""
        happened = {}
        for outcome in self.outcomes:
            if outcome.state in (FAILED, UNREACHABLE):
                happened[outcome.host] = HOST_FAILED if outcome.state == FAILED else HOST_UNREACHABLE
            elif outcome.state == INTERRUPTED or (outcome.state == NOT_RUN and outcome.detail):
                happened[outcome.host] = HOST_STOPPED
        return happened

    def run_hosts(self) -> None:
        """Run every target in worker threads, until each has an outcome."""
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
            return self._run_steps(target, host, remote, self.fields[index])

    def _run_steps(self, target, host: str, remote: bool, fields: t.Mapping[str, str]) -> tuple[str, str]:
        dry = is_dry_run(target.config)
        environment = self._environment(target, remote, fields)
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

    @staticmethod
    def _environment(target, remote: bool, fields: t.Mapping[str, str]) -> dict:
        """``env`` (and ``replace_env``) for a step: Fabric's ``run.env``, then RETRACE_*; locally, never the key."""
        configured = dict(target.config.run.env or {})
        ours = step_environment(fields, inline=remote and target.inline_ssh_env)
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

    def summary(self, groups: t.Sequence[tuple[str, t.Sequence[str]]] | None = None) -> str:
        """One row per host; ``groups`` (a heading and its hosts, each): the rows under their deployment's heading."""
        width = max((len(outcome.host) for outcome in self.outcomes), default=0)

        def row(outcome: HostOutcome, indent: str) -> str:
            return f"{indent}{outcome.host.ljust(width)}  {outcome.state:<11}  {outcome.elapsed:6.1f} s  {outcome.detail}"
        if groups is None:
            return "\n".join(["Deployment summary:"] + [row(outcome, "  ") for outcome in self.outcomes])
        lines = ["Deployment summary:"]
        for heading, hosts in groups:
            lines.append(f"  {heading}")
            lines += [row(outcome, "    ") for outcome in self.outcomes if outcome.host in hosts]
        return "\n".join(lines)


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

    With ``retrace.targets`` in the config, each host is in the deployment of its entry there (docs/fabric.md,
    "Several apps or environments in one run"): every deployment starts before any step, and each ends by what
    happened on its own hosts.  The local machine alone is in no entry: one line says ``targets`` does not apply,
    and the deployment is the one the other settings describe.
    """
    found = deploy_targets(config)
    if found is not None and any(isinstance(target, Connection) for target in targets):
        _deploy_each(targets, config, flags, found, labels=labels, budget_from=budget_from)
        return
    run, target, resolved = new_run(config, flags, owner_pid=os.getpid())  # says unknown settings first
    steps, settings = _steps(targets, config)
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


def _steps(targets: t.Sequence, config) -> tuple[list[Step], Resolved]:
    """The steps and ``fab deploy``'s own settings; ``Exit`` (2) when they leave nothing to deploy."""
    settings = deploy_settings(config)
    try:
        if settings.problems:
            raise settings.problems[0]
        if not targets:
            raise InvalidInput("hosts", "no hosts to deploy to (the host list is empty)")
        return parse_steps(settings["steps"]), settings
    except InvalidInput as problem:
        raise invalid(problem) from None


def _deploy_each(targets: t.Sequence, config, flags: t.Mapping[str, t.Any] | None,
                 found: tuple[list[TargetEntry], list[InvalidInput]], *, labels: t.Sequence[str] | None,
                 budget_from: float | None) -> None:
    """:func:`deploy_to` with ``retrace.targets``: one deployment per entry, each host in its entry's."""
    entries, problems = found
    labels = list(labels) if labels and len(labels) == len(targets) else [label_of(target) for target in targets]
    # The run-level settings: the run's policy, and the deployment of a host in no entry (the problems of
    # retrace.targets are its own, said with it).
    run_resolved = resolve(config, flags, targets=True, problems=problems)
    run, transport = new_engine(config, run_resolved, owner_pid=os.getpid())
    resolved_by_entry: dict[str | None, Resolved] = {None: run_resolved}
    fields, wheres = [], set()
    for target, label in zip(targets, labels):
        entry = entry_of(target, label, entries)
        where = entry.where if entry is not None and entry.fields is not None else None
        if where is None and not isinstance(target, Connection):
            where = LOCAL  # no entry lists the local machine: its NOT recorded line offers none
        wheres.add(where)
        if where not in resolved_by_entry:
            resolved_by_entry[where] = resolve(config, flags, entry=entry, targets=where != LOCAL)
        host_target = run.target_for(label, resolved_by_entry[where], transport, entry_point=ENTRY_POINT)
        fields.append(deployment_fields(host_target, resolved_by_entry[where]))
    if problems and None not in wheres:
        # No host is in no entry: what is wrong with retrace.targets is said on its own (strict stops the run on it).
        run.add(Target(None, None, TARGETS_LABEL, problems))
    forget_key_variables(os.environ)
    steps, settings = _steps(targets, config)
    runner = HostRunner(targets, steps, {}, parallel=settings["parallel"], fail_fast=settings["fail_fast"], labels=labels,
                        fields_by_host=fields)
    tracked_run = TrackedRun(run)
    runner.start_connecting()
    try:
        with signals_raise(runner.abandon), tracked_run.exits(expected=(HostsFailed,), failure=lambda error: f"deploy failed on {error}"):
            with tracked_run.each_lifecycle(runner.what_happened, since=budget_from):
                runner.run_hosts()
            runner.raise_if_failed()
    finally:
        say(runner.summary(summary_groups(run)))


def entry_of(target, label: str, entries: t.Sequence[TargetEntry]) -> TargetEntry | None:
    """The ``retrace.targets`` entry listing this host: by the string typed (``-H``) or given, then as
    ``user@host:port``, then by its host name alone (an ssh_config alias as written)."""
    names = [label, label_of(target)]
    if isinstance(target, Connection):
        names.append(target.original_host)
    for name in names:
        for entry in entries:
            if name in entry.hosts:
                return entry
    return None


def summary_groups(run: DeploymentRun) -> list[tuple[str, list[str]]]:
    """Each deployment of the run with its hosts, as the summary shows them: ``Shop.Web 1.4.2 to Production: completed``."""
    groups = []
    for target in run.targets:
        if not target.hosts:
            continue
        deployment = target.deployment
        name = (f"{deployment.app_name} {deployment.version} to {deployment.environment_name}" if deployment is not None
                else target.label)
        state = NOT_STARTED if target.state == PENDING else target.state
        state += f" ({run.dry_run}: nothing sent)" if run.dry_run and target.recordable else ""
        groups.append((f"{name}: {state}", target.hosts))
    return groups


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
    found = deploy_targets(config)
    if not remote and found is not None:
        # No -H: the hosts of retrace.targets, in order (never this machine instead)
        hosts = list(dict.fromkeys(host for entry in found[0] for host in entry.hosts))
        if not hosts:
            raise invalid(found[1][0] if found[1] else InvalidInput("targets", "lists no hosts"))
        deploy_to([Connection(host, config=config) for host in hosts], config, flags, labels=hosts, budget_from=LOADED_AT)
        return
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
    """Run retrace.steps on every host (-H) or locally, tracked in Retrace: one deployment per app and environment (retrace.targets).

    One start before any host is touched, one complete after every host succeeded, one cancel if
    a host fails, cannot be reached, or the run is interrupted (SIGINT, SIGTERM, SIGHUP: exit 128 + N);
    then a per-host summary and a non-zero exit code on failure.  Hosts run in parallel unless
    retrace.parallel is false (then the first failure stops the rest unless retrace.fail_fast is
    false).  Retrace unreachable or refusing the start: one warning, and the deployment goes on
    (retrace.strict: true makes it fail instead).  Steps see RETRACE_VERSION, RETRACE_APP_NAME,
    RETRACE_ENVIRONMENT_NAME ... in their environment.  With retrace.targets in fabric.yaml: one deployment
    per entry, each ended by its own hosts (without -H: the entries' hosts).

    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    flags = {"app_name": app_name, "environment_name": environment_name, "version": version, "name": name,
             "branch": branch, "commit": commit, "uri": uri, "api_url": api_url}
    _RECORDER.record(c, flags)
