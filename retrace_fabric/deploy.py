# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``fab deploy``: the configured steps on every host, wrapped in one Retrace deployment.

``fab -H a,b deploy`` makes Fabric call a task once per host, one after another, stopping at the
first failure.  One start before any host and one end after all of them needs the whole host
list at once, so the ``deploy`` task only *records* the Connection Fabric hands it for each
host, and its ``post`` hook -- which Fabric runs once, after the per-host calls -- runs the
recorded hosts (in parallel by default) inside the core's start -> complete / cancel wrapper.
"""

from __future__ import annotations

import dataclasses
import shlex
import socket
import threading
import time
import typing as t

import paramiko
from fabric import Connection
from invoke import Task, task
from invoke.exceptions import Exit, Failure, ThreadException

from .core.deployment import Deployment
from .core.errors import InvalidInput
from .core.settings import ENVIRONMENT_VARIABLES, Lifecycle
from .core.tracking import tracked_deployment
from .settings import config_section
from .tracking import (EXIT_FAILED, AnnouncingClient, build_client, cancel_on_sigterm, exit_on_retrace_error,
                       interrupted_exit, retrace_outcome, say, warn)

LOCAL = "local"
OK, FAILED, UNREACHABLE, INTERRUPTED, NOT_RUN = "ok", "failed", "unreachable", "interrupted", "not run"
CONNECT_ERRORS = (OSError, EOFError, paramiko.SSHException)
COMMAND_ERRORS = CONNECT_ERRORS + (Failure, ThreadException)
#: how often the main thread wakes while hosts run, so Ctrl-C and SIGTERM are handled promptly
WAIT_SLICE = 0.1

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
    if isinstance(item, dict) and set(item) <= {"run", "sudo"} and isinstance(item.get("run"), str) and item["run"].strip():
        if not isinstance(item.get("sudo", False), bool):
            raise InvalidInput("steps", f"step {index}: sudo must be true or false")
        return Step(item["run"].strip(), item.get("sudo", False))
    raise InvalidInput("steps", f"step {index} must be a command or a mapping {{run: <command>, sudo: true|false}}, got {item!r}")


def step_environment(deployment: Deployment, inline: bool) -> dict[str, str]:
    """RETRACE_VERSION, RETRACE_APP_NAME ... for the steps (never the key).

    Fabric writes SSH environment inline as ``export NAME=value && command`` without quoting,
    so values are shell-quoted for remote hosts.
    """
    values = {ENVIRONMENT_VARIABLES[option][0]: value for option, value in deployment.as_options().items()}
    values["RETRACE_DEPLOYMENT_NAME"] = deployment.display_name
    return {name: shlex.quote(value) if inline else value for name, value in values.items()}


class HostRunner:
    """Runs the steps on each target and keeps one :class:`HostOutcome` per target."""

    def __init__(self, targets: t.Sequence, steps: t.Sequence[Step], deployment: Deployment, parallel: bool):
        self.targets = list(targets)
        self.steps = list(steps)
        self.deployment = deployment
        self.parallel = parallel and len(self.targets) > 1
        self.outcomes = [HostOutcome(label_of(target)) for target in self.targets]
        self._print_lock = threading.Lock()
        self._abandoned = False

    def run(self) -> None:
        """Run every target; raise :class:`HostsFailed` if any did not succeed."""
        try:
            if self.parallel:
                self._run_parallel()
            else:
                for target, outcome in zip(self.targets, self.outcomes):
                    self._run_one(target, outcome)
        except KeyboardInterrupt:
            self._abandon()
            raise
        failed = [outcome for outcome in self.outcomes if outcome.state != OK]
        if failed:
            raise HostsFailed(", ".join(f"{outcome.host} ({outcome.state})" for outcome in failed))

    def _run_parallel(self) -> None:
        threads = [threading.Thread(target=self._run_one, args=pair, name=f"deploy-{pair[1].host}", daemon=True)
                   for pair in zip(self.targets, self.outcomes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(WAIT_SLICE)

    def _run_one(self, target, outcome: HostOutcome) -> None:
        outcome.started_at = time.monotonic()
        outcome.state, outcome.detail = INTERRUPTED, "running"
        state, detail = self._steps_on(target, outcome.host)
        with self._print_lock:
            # After an interruption the summary is frozen: a session closed under a running
            # command must not turn "interrupted" into "failed".
            if not self._abandoned:
                outcome.state, outcome.detail, outcome.elapsed = state, detail, time.monotonic() - outcome.started_at

    def _steps_on(self, target, host: str) -> tuple[str, str]:
        remote = isinstance(target, Connection)
        if remote:
            try:
                target.open()
            except CONNECT_ERRORS as error:
                self._print(host, f"cannot connect: {describe_error(error)}")
                return UNREACHABLE, describe_error(error)
        environment = step_environment(self.deployment, inline=remote and target.inline_ssh_env)
        for index, step in enumerate(self.steps, 1):
            self._print(host, f"$ {step}")
            run = target.sudo if step.sudo else target.run
            try:
                result = run(step.command, warn=True, hide=True, in_stream=False, env=environment)
            except COMMAND_ERRORS as error:
                return FAILED, f"step {index} ({step}) could not run: {describe_error(error)}"
            self._print(host, result.stdout + result.stderr)
            if result.failed:
                return FAILED, f"step {index} ({step}) exited with status {result.exited}"
        return OK, f"{len(self.steps)} step(s) done"

    def _abandon(self) -> None:
        """After Ctrl-C / SIGTERM: freeze the summary, then drop the SSH sessions so remote commands stop."""
        with self._print_lock:
            self._abandoned = True
            for outcome in self.outcomes:
                if outcome.state == INTERRUPTED and outcome.detail == "running":
                    outcome.detail = "stopped by the interruption"
                    outcome.elapsed = time.monotonic() - outcome.started_at
        for target in self.targets:
            if isinstance(target, Connection):
                target.close()

    def _print(self, host: str, text: str) -> None:
        lines = text.rstrip("\n").splitlines()
        with self._print_lock:
            for line in lines if not self._abandoned else ():
                say(f"[{host}] {line}")

    def summary(self) -> str:
        width = max(len(outcome.host) for outcome in self.outcomes)
        rows = [f"  {outcome.host.ljust(width)}  {outcome.state:<11}  {outcome.elapsed:6.1f} s  {outcome.detail}"
                for outcome in self.outcomes]
        return "\n".join(["Deployment summary:"] + rows)


def label_of(target) -> str:
    if isinstance(target, Connection):
        port = f":{target.port}" if target.port != 22 else ""
        return f"{target.user}@{target.host}{port}" if target.user else f"{target.host}{port}"
    return LOCAL


def describe_error(error: BaseException) -> str:
    if isinstance(error, socket.timeout):
        return "timed out"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def deploy_to(targets: t.Sequence, config, flags: t.Mapping[str, t.Any] | None = None) -> None:
    """Deploy to ``targets`` (Connections, or one local Context) as one tracked deployment.

    Usable from a user's own task: ``deploy_to([Connection("web1"), Connection("web2")], c.config)``.
    Raises ``Exit`` with a non-zero code on any failure, after printing the per-host summary.
    """
    section = config_section(config)
    with exit_on_retrace_error():
        steps = parse_steps(section["steps"])
        client, deployment = build_client(config, flags)
        announcing = AnnouncingClient(client)
        runner = HostRunner(targets, steps, deployment, parallel=bool(section["parallel"]))
        try:
            with cancel_on_sigterm(), tracked_deployment(announcing.client, deployment, Lifecycle.create(strict=section["strict"]), warn=warn,
                                                        on_sent=announcing.announce):
                runner.run()
        except HostsFailed as failure:
            say(runner.summary())
            raise Exit(f"deploy failed on {failure}; {retrace_outcome(announcing)}", code=EXIT_FAILED) from None
        except KeyboardInterrupt as interruption:
            say(runner.summary())
            raise interrupted_exit(interruption, announcing) from None
        say(runner.summary())


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
    remote = [context for context in contexts if isinstance(context, Connection)]
    deploy_to(remote or contexts[:1], config, flags)


run_recorded_hosts = Task(_run_recorded, name="deploy-run-hosts")


@task(help=FLAG_HELP, auto_shortflags=False, post=[run_recorded_hosts])
def deploy(c, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None, api_url=None):
    """Run retrace.steps on every host (-H) or locally, tracked in Retrace as one deployment.

    One start before any host is touched, one complete after every host succeeded, one cancel if
    a host fails, cannot be reached, or the run is interrupted (Ctrl-C, SIGTERM); then a per-host
    summary and a non-zero exit code on failure.  Hosts run in parallel unless retrace.parallel is
    false.  Steps see RETRACE_VERSION, RETRACE_APP_NAME, RETRACE_ENVIRONMENT_NAME ... in their
    environment.

    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    flags = {"app_name": app_name, "environment_name": environment_name, "version": version, "name": name,
             "branch": branch, "commit": commit, "uri": uri, "api_url": api_url}
    _RECORDER.record(c, flags)
