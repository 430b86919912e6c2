"""Run real ansible-playbook processes with the callback enabled, against a per-test emulator."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from retrace_emulator import DEMO_API_KEY

ANSIBLE_BIN = pathlib.Path(sys.executable).parent
#: variables of the developer's or CI's environment that would change what the callback sends
FOREIGN_VARIABLES = ("RETRACE_", "STACKIFY_", "ANSIBLE_")


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def retrace_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if "Retrace" in line]


class PlaybookRunner:
    """Writes playbooks into a temporary directory and runs ansible-playbook on them."""

    def __init__(self, emulator, workdir: pathlib.Path):
        self.emulator = emulator
        self.workdir = workdir
        self.env = self._base_environment()

    def _base_environment(self) -> dict:
        env = {name: value for name, value in os.environ.items() if not name.startswith(FOREIGN_VARIABLES)}
        env.update(
            ANSIBLE_COLLECTIONS_PATH=os.environ["ANSIBLE_COLLECTIONS_PATH"],
            ANSIBLE_CALLBACKS_ENABLED="stackify.retrace.deployment",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_CONFIG=str(self.workdir / "ansible.cfg"),  # absent unless a test writes it
            ANSIBLE_LOCAL_TEMP=str(self.workdir / "tmp"),
            ANSIBLE_HOME=str(self.workdir / "ansible-home"),
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            ANSIBLE_RETRY_FILES_ENABLED="false",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_HOST_KEY_CHECKING="false",
            PATH=f"{ANSIBLE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            RETRACE_API_URL=self.emulator.url,
            RETRACE_API_KEY=DEMO_API_KEY,
            RETRACE_APP_NAME="DemoApp",
            RETRACE_ENVIRONMENT_NAME="Production",
            RETRACE_VERSION="1.0.0",
        )
        # CI systems' variables would feed branch/commit/uri: tests decide those themselves.
        for marker in ("GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TF_BUILD", "APPVEYOR", "TEAMCITY_VERSION",
                       "bamboo_buildKey", "CODEBUILD_BUILD_ID", "JENKINS_URL"):
            env.pop(marker, None)
        return env

    def write(self, name: str, text: str) -> pathlib.Path:
        path = self.workdir / name
        path.write_text(textwrap.dedent(text))
        return path

    def playbook(self, name: str, tasks: str, hosts: str = "localhost", extra: str = "") -> pathlib.Path:
        """A one-play playbook with the given tasks (YAML list text)."""
        body = textwrap.indent(textwrap.dedent(tasks).strip(), "    ")
        play_extra = textwrap.indent(textwrap.dedent(extra).strip(), "  ")
        return self.write(name, f"- hosts: {hosts}\n  gather_facts: false\n{play_extra}\n  tasks:\n{body}\n")

    def command(self, *args: str) -> list[str]:
        return [str(ANSIBLE_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", *args]

    def run(self, *args: str, env: dict | None = None, unset: tuple = (), timeout: float = 120, merged: bool = False) -> Run:
        """Run ansible-playbook; ``merged``: stderr into stdout, in the order written (the callback's lines go to stderr)."""
        began = time.monotonic()
        completed = subprocess.run(self.command(*args), cwd=self.workdir, env=self._env(env, unset), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True, timeout=timeout,
                                   stdin=subprocess.DEVNULL, check=False)
        return Run(completed.returncode, completed.stdout, completed.stderr or "", time.monotonic() - began)

    def run_and_signal(self, signum: int, marker: pathlib.Path, *args: str, whole_group: bool = False, timeout: float = 60) -> Run:
        """Start ansible-playbook, wait until a task creates ``marker``, then send ``signum`` to it.

        ``whole_group`` sends it to the process group instead, as a terminal does on Ctrl-C.
        """
        began = time.monotonic()
        with subprocess.Popen(self.command(*args), cwd=self.workdir, env=self._env(None, ()), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True) as process:
            deadline = began + timeout
            while not marker.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    stdout, stderr = process.communicate()
                    raise AssertionError(f"the playbook never reached its marker task:\n{stdout}\n{stderr}")
                time.sleep(0.05)
            if whole_group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=timeout)
        return Run(process.returncode, stdout, stderr, time.monotonic() - began)

    def _env(self, env: dict | None, unset: tuple) -> dict:
        merged = {**self.env, **(env or {})}
        for name in unset:
            merged.pop(name, None)
        return merged

    # --- what the emulator saw ---------------------------------------------------------------------

    def actions(self) -> list[tuple[str, int | None]]:
        return [(entry["action"], entry["status"]) for entry in self.emulator.requests()]


@pytest.fixture
def runner(retrace_emulator, tmp_path):
    return PlaybookRunner(retrace_emulator, tmp_path)


@pytest.fixture
def sleeper(runner):
    """A playbook whose one task creates a marker file and then sleeps: the moment to send a signal."""
    marker = runner.workdir / "task-is-running"
    playbook = runner.playbook("sleeper.yml", f"""
        - name: Long task
          ansible.builtin.shell: touch {marker} && sleep 60
    """)
    return playbook, marker


def wait_for_actions(emulator, count: int, within: float = 15.0) -> list[tuple[str, int | None]]:
    """The emulator's (action, status) list once it holds ``count`` entries, or after ``within`` seconds.

    Waits a little longer once the count is reached, so that an extra (duplicate) call would show.
    """
    deadline = time.monotonic() + within
    while len(emulator.requests()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    return [(entry["action"], entry["status"]) for entry in emulator.requests()]


def kill_session(pid: int) -> None:
    """Clean up whatever a test left of a run started with ``start_new_session`` (workers, tasks)."""
    try:
        os.killpg(pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def runner_private_data(runner: PlaybookRunner, playbook: pathlib.Path) -> tuple[pathlib.Path, dict]:
    """An ansible-runner private data directory holding ``playbook``, and the envvars for the job."""
    private = runner.workdir / "runner"
    (private / "project").mkdir(parents=True, exist_ok=True)
    (private / "project" / "site.yml").write_text(playbook.read_text())
    env = {name: value for name, value in runner.env.items() if name.startswith(("ANSIBLE_", "RETRACE_"))}
    env.pop("ANSIBLE_CONFIG")
    return private, {**env, "ANSIBLE_CONNECTION": "local"}
