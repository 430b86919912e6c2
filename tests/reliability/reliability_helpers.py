"""Helpers shared by the reliability tests (a plain module: `from conftest import` is ambiguous under pytest)."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FAB = str(pathlib.Path(sys.executable).with_name("fab"))
CALLBACK = "stackify.retrace.deployment"
DEMO_KEY = "emulator-demo-key"


class FabDirectory:
    """A directory with a fabfile (this repository's, or one given), fabric.yaml and a clean HOME."""

    def __init__(self, directory: pathlib.Path, emulator, fabfile: str | None = None, ssh: dict | None = None):
        self.directory = directory
        self.home = directory / "home"
        self.home.mkdir(exist_ok=True)
        self.emulator = emulator
        if fabfile is None:
            (directory / "fabfile.py").symlink_to(REPO_ROOT / "fabfile.py")
        else:
            (directory / "fabfile.py").write_text(fabfile, encoding="utf-8")
        self.runtime = directory / "runtime.yaml"
        self.runtime.write_text(yaml.safe_dump({"run": {"in_stream": False}, **(ssh or {})}), encoding="utf-8")
        self.settings({})

    def settings(self, retrace: dict) -> None:
        base = {"api_url": self.emulator.url, "app_name": "DemoApp", "environment_name": "Production", "steps": ["true"],
                "timeout": 2, "deadline": 10}
        (self.directory / "fabric.yaml").write_text(yaml.safe_dump({"retrace": {**base, **retrace}}), encoding="utf-8")

    def environment(self, env: dict | None = None) -> dict:
        """A minimal environment: the demo key, this checkout on PYTHONPATH, git confined to this directory."""
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LANG": "C.UTF-8",
                   "PYTHONPATH": str(REPO_ROOT), "RETRACE_API_KEY": DEMO_KEY,
                   "GIT_CEILING_DIRECTORIES": str(self.directory.parent), **(env or {})}
        return {name: value for name, value in environ.items() if value is not None}

    def command(self, *args: str) -> list[str]:
        return [FAB, "-f", str(self.runtime), *args]

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=self.directory, capture_output=True, text=True,
                              env=self.environment(env), stdin=subprocess.DEVNULL, timeout=60, check=False)


def retrace_warnings(output: str) -> list[str]:
    """Ansible's warnings about Retrace, each as one string (a warning's continuation lines joined)."""
    return [" ".join(parts) for parts in _warning_lines(output) if "Retrace" in parts[0]]


def ansible_warnings(output: str) -> list[str]:
    """Every Ansible [WARNING], each on one line."""
    return [" ".join(parts) for parts in _warning_lines(output)]


def _warning_lines(output: str) -> list[list[str]]:
    warnings, current = [], None
    for line in output.splitlines():
        if line.startswith("[WARNING]:"):
            current = [line]
            warnings.append(current)
        elif current is not None and line.strip() and not line.startswith(("[", "PLAY", "TASK", "ok:", "changed:", "fatal:")):
            current.append(line.strip())
        else:
            current = None
    return warnings


# --- runs that end abruptly (tests/reliability/test_lifecycle_paths.py) ----------------------------------------

#: seconds the orphan guard has to land its cancel after the run died ("within 15 s", docs/lifecycle.md)
GUARD_WINDOW = 15.0
#: seconds to keep listening after an end arrived, so that a second end would be seen too
SETTLE = 1.0
END_ACTIONS = ("complete", "cancel")


def journal_calls(emulator) -> list[tuple[str, int | None]]:
    """(action, status) of every deployment API request the emulator received, in order."""
    return [(entry["action"], entry["status"]) for entry in emulator.requests()]


def calls_once_ended(emulator, window: float = GUARD_WINDOW, settle: float = SETTLE) -> list[tuple[str, int | None]]:
    """The journal once an accepted complete or cancel arrived (waiting up to ``window`` seconds), plus ``settle``.

    A run killed with SIGKILL cannot end its deployment itself: the cancel comes from the orphan guard,
    a detached process, some time after the run is gone.  Reading the journal at once would miss it.
    """
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        if any(entry["action"] in END_ACTIONS and entry["status"] == 202 for entry in emulator.requests()):
            break
        time.sleep(0.1)
    time.sleep(settle)
    return journal_calls(emulator)


@dataclasses.dataclass
class Stopped:
    """What became of a run stopped on purpose."""
    returncode: int | None
    output: str
    stopped_at: float  # time.monotonic() when the signal was sent
    exited_after: float  # seconds from the signal to the main process's exit


#: how a run is stopped: (signal, sent to the whole process group?)
STOPS = {
    "SIGINT-group": (signal.SIGINT, True),  # Ctrl-C in a terminal
    "SIGTERM": (signal.SIGTERM, False),  # kill PID, systemd, a CI runner's cancel
    "SIGHUP": (signal.SIGHUP, False),  # kill -HUP PID
    "SIGHUP-group": (signal.SIGHUP, True),  # the terminal or SSH session closed
    "SIGKILL-group": (signal.SIGKILL, True),  # ansible-runner / AWX cancel and job_timeout, podman kill
    "SIGKILL-main": (signal.SIGKILL, False),  # the OOM killer, a crash
}


def run_and_stop(command: list[str], *, cwd: pathlib.Path, env: dict, marker: pathlib.Path, stop: str,
                 timeout: float = 90) -> Stopped:
    """Start ``command`` in its own session, wait until a step creates ``marker``, then stop it as ``stop`` says.

    Output goes to a file, not a pipe: after SIGKILL of the main process alone its workers live on and
    would hold a pipe open.  Whatever is left of the process group is killed before returning (after
    the main process exited), so that no step outlives the test.
    """
    signum, whole_group = STOPS[stop]
    log = cwd / f"output-{stop}.log"
    with open(log, "wb") as output, subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_default_signals) as process:
        try:
            deadline = time.monotonic() + timeout
            while not marker.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the run never reached its marker step (exit {process.poll()}):\n"
                                         f"{log.read_text(errors='replace')}")
                time.sleep(0.05)
            stopped_at = time.monotonic()
            if whole_group:
                os.killpg(process.pid, signum)
            else:
                os.kill(process.pid, signum)
            returncode = process.wait(timeout=timeout)
            exited_after = time.monotonic() - stopped_at
        finally:
            _kill_group(process.pid)
            if process.poll() is None:
                process.kill()
                process.wait()
    return Stopped(returncode, log.read_text(errors="replace"), stopped_at, exited_after)


def _default_signals() -> None:
    """A CI shell may start us with SIGINT or SIGHUP ignored; children inherit that unless reset."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def role_playbook(directory: pathlib.Path, steps, name: str = "playbook.yml", play_keywords: dict | None = None,
                  **role_vars) -> pathlib.Path:
    """A playbook running the tracked_deployment role on all hosts with ``steps`` (YAML text or data) as its tasks.

    ``play_keywords`` are added to the play (e.g. ``handlers``); ``role_vars`` override the role's variables.
    """
    (directory / "steps.yml").write_text(steps if isinstance(steps, str) else json.dumps(steps), encoding="utf-8")
    variables = {"tracked_deployment_tasks": "steps.yml", "retrace_app_name": "DemoApp",
                 "retrace_environment_name": "Production", "retrace_version": "1.0", **role_vars}
    plays = [{"name": "Tracked deployment", "hosts": "all", "gather_facts": False, **(play_keywords or {}), "tasks": [
        {"name": "Deploy", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"}, "vars": variables}]}]
    path = directory / name
    path.write_text(json.dumps(plays, indent=2), encoding="utf-8")
    return path
