"""``retrace-deploy`` from a fresh venv holding only the wheel, against the emulator: the same settings, calls and exit
codes as the ``fab`` tasks, row by row, and its help."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import time

import pytest

from fabric_distribution import Distribution
from retrace_emulator.accounts import DEMO_API_KEY

STRICT = {"FABRIC_RETRACE_STRICT": "yes"}
NO_KEY = {"RETRACE_API_KEY": None}
TIMEOUT = 60


class Command:
    """``retrace-deploy`` in a directory with a fabric.yaml and no fabfile, the environment of a FabProject."""

    def __init__(self, project, installed: Distribution):
        self.project = project
        self.installed = installed
        (project.directory / "fabfile.py").unlink()

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=self.project.directory, env=self.environment(env), capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)

    def spawn(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), cwd=self.project.directory, env=self.environment(env), text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def command(self, *args: str) -> list[str]:
        return [self.installed.command, "-f", str(self.project.runtime_config), *args]

    def environment(self, env: dict | None) -> dict:
        # PYTHONPATH would put the checkout first: the wheel alone must be what runs
        return self.project.environment({"PYTHONPATH": None, **(env or {})})


@pytest.fixture(params=["retrace-deploy", "fab"])
def entry(request, project, distribution):
    """The same project driven by ``retrace-deploy`` (no fabfile) or by ``fab`` (the repository's fabfile)."""
    return (Command(project, distribution) if request.param == "retrace-deploy" else project), request.param


def _args(which: str, call: tuple[str, ...]) -> tuple[str, ...]:
    """``("start", ...)`` as each entry point spells it: ``retrace-deploy start`` / ``fab retrace.start``; deploy as is."""
    task, *rest = call
    if which == "fab" and task != "deploy":
        task = f"retrace.{task}"
    if which == "fab" and "--" in rest:  # fab deploy's steps come from fabric.yaml (the row's settings)
        rest = rest[:rest.index("--")]
    return (task, *rest)


V = ("--version", "7.1.0")
# (calls, settings for fabric.yaml, environment, exit code of each call, (action, status) Retrace got)
ROWS = {
    "start, complete": ([("start", *V), ("complete",)], {}, {}, [0, 0], [("start", 202), ("complete", 202)]),
    "start, cancel": ([("start", *V), ("cancel",)], {}, {}, [0, 0], [("start", 202), ("cancel", 202)]),
    "complete alone (one-shot)": ([("complete", *V)], {}, {}, [0], [("complete", 202)]),
    "no key": ([("start", *V)], {}, NO_KEY, [0], []),
    "no key, strict": ([("start", *V)], {}, {**NO_KEY, **STRICT}, [2], []),
    "cancel with no start, strict (409)": ([("cancel", *V)], {}, STRICT, [1], [("cancel", 409)]),
    "deploy: the step succeeds": ([("deploy", *V, "--", "true")], {"steps": ["true"]}, {}, [0],
                                  [("start", 202), ("complete", 202)]),
    "deploy: the step fails": ([("deploy", *V, "--", "false")], {"steps": ["false"]}, {}, [1],
                               [("start", 202), ("cancel", 202)]),
    "deploy: nothing to deploy": ([("deploy", *V)], {"steps": None}, {}, [2], []),
}


@pytest.mark.parametrize("calls, settings, env, codes, actions", ROWS.values(), ids=ROWS.keys())
def test_retrace_deploy_and_the_fab_tasks_agree(entry, calls, settings, env, codes, actions):
    runner, which = entry
    project = runner.project if which == "retrace-deploy" else runner
    project.fabric_yaml(settings)

    results = [runner.run(*_args(which, call), env=env) for call in calls]

    assert [result.returncode for result in results] == codes, [result.stderr for result in results]
    assert project.actions() == actions
    for result in results:
        assert DEMO_API_KEY not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_stops_the_command_and_cancels(entry, signum, code):
    runner, which = entry
    project = runner.project if which == "retrace-deploy" else runner
    started = project.directory / "started"
    step = f"touch {started} && exec sleep 30"
    project.fabric_yaml({"steps": [step]})
    process = runner.spawn(*_args(which, ("deploy", *V, "--", "sh", "-c", step)))
    try:
        ends_at = time.monotonic() + TIMEOUT
        while not started.exists():  # the step runs: Retrace answered the start
            assert process.poll() is None and time.monotonic() < ends_at, "the step never started"
            time.sleep(0.05)
        process.send_signal(signum)
        _out, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()

    assert process.returncode == code, err
    assert project.actions() == [("start", 202), ("cancel", 202)]


def test_the_command_after_the_double_dash_runs_as_typed_with_the_deployment_in_its_environment(project, distribution):
    command = Command(project, distribution)

    result = command.run("deploy", *V, "--", "sh", "-c", 'printf "%s|%s" "$RETRACE_VERSION" "$RETRACE_API_KEY" > "$0"', "seen")

    assert result.returncode == 0, result.stderr
    assert (project.directory / "seen").read_text() == "7.1.0|"
    assert "local  ok" in result.stdout and "retrace: deployment 7.1.0 of DemoApp to Production completed" in result.stdout
    both = command.run("deploy", *V, "--", "true", env={"FABRIC_RETRACE_STEPS": "true"})
    assert both.returncode == 2 and "both a command after -- and FABRIC_RETRACE_STEPS" in both.stderr


def test_help_version_and_what_to_add_for_fab(project, distribution):
    command = Command(project, distribution)

    bare, helped, task_help, version = command.run(), command.run("--help"), command.run("--help", "start"), command.run("--version")

    assert bare.returncode == helped.returncode == task_help.returncode == version.returncode == 0
    assert bare.stdout == helped.stdout
    for task in ("start", "complete", "cancel", "deploy"):
        assert f"\n  {task} " in helped.stdout
    assert helped.stdout.rstrip().splitlines()[-1].startswith(
        "With fab instead: a fabfile.py holding `from retrace_fabric import collection; ns = collection()`")
    for flag in ("--app-name", "--environment-name", "--version", "--name", "--branch", "--commit", "--uri", "--api-url"):
        assert flag in task_help.stdout
    assert "--api-key" not in task_help.stdout
    assert version.stdout.strip() == f"retrace-deploy {_version()}"
    assert project.emulator.requests() == []


def _version() -> str:
    settings = pathlib.Path(__file__).resolve().parents[3] / "plugins" / "module_utils" / "settings.py"
    return next(line.split('"')[1] for line in settings.read_text().splitlines() if line.startswith("VERSION = "))
