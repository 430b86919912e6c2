"""Fixtures for driving the real ``fab`` against a real sshd on loopback and the Retrace emulator."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest
import yaml

import fabric_distribution
from fabric_sshd import LoopbackSshd, free_port, sshd_available
from retrace_emulator.accounts import DEMO_API_KEY
from retrace_emulator.server import RetraceEmulator

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
FAB = str(pathlib.Path(sys.executable).with_name("fab"))
FAB_TIMEOUT = 60


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """One sshd listening on three loopback ports: three 'hosts'."""
    if not sshd_available():
        pytest.fail("sshd is not installed: run scripts/bootstrap (apt-get install openssh-server)")
    with LoopbackSshd(tmp_path_factory.mktemp("sshd"), hosts=3) as server:
        yield server


@pytest.fixture(scope="session")
def distribution(tmp_path_factory) -> fabric_distribution.Distribution:
    """The pip wheel and sdist built from this checkout, and a fresh venv holding the wheel alone."""
    return fabric_distribution.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def unreachable_host(sshd):
    return f"{sshd.user}@127.0.0.1:{free_port()}"


@pytest.fixture
def emulator():
    with RetraceEmulator() as running:
        yield running


class FabProject:
    """A directory with the repository's fabfile (linked, not copied), a fabric.yaml and a clean HOME."""

    def __init__(self, directory: pathlib.Path, emulator: RetraceEmulator, sshd: LoopbackSshd | None):
        self.directory = directory
        self.home = directory / "home"
        self.home.mkdir()
        (directory / "fabfile.py").symlink_to(REPO_ROOT / "fabfile.py")
        self.emulator = emulator
        self.runtime_config = directory / "runtime.yaml"
        runtime = {"run": {"in_stream": False}, **(sshd.fabric_config() if sshd else {})}
        self.runtime_config.write_text(yaml.safe_dump(runtime), encoding="utf-8")
        self.fabric_yaml({})

    def fabric_yaml(self, retrace: dict) -> None:
        """Write fabric.yaml beside the fabfile; the emulator's URL and the demo app are the base."""
        settings = {"api_url": self.emulator.url, "app_name": "DemoApp", "environment_name": "Production",
                    "steps": ["true"], "timeout": 2, "deadline": 4, **retrace}
        (self.directory / "fabric.yaml").write_text(yaml.safe_dump({"retrace": settings}), encoding="utf-8")

    def environment(self, extra: dict | None = None) -> dict:
        """A minimal environment: no RETRACE_*, FABRIC_* or CI variables leak in from the test runner."""
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LANG": "C.UTF-8",
                   "PYTHONPATH": str(REPO_ROOT), "RETRACE_API_KEY": DEMO_API_KEY,
                   # git detection must see this project only, not a repository some parent directory holds
                   "GIT_CEILING_DIRECTORIES": str(self.directory.parent)}
        environ.update(extra or {})
        return {name: value for name, value in environ.items() if value is not None}

    def command(self, *args: str) -> list[str]:
        return [FAB, "-f", str(self.runtime_config), *args]

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=self.directory, env=self.environment(env), capture_output=True,
                              text=True, timeout=FAB_TIMEOUT, stdin=subprocess.DEVNULL, check=False)

    def spawn(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        """Start fab in the background with SIGINT at its default (a CI shell may have ignored it)."""
        return subprocess.Popen(self.command(*args), cwd=self.directory, env=self.environment(env), text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_default_sigint)

    def actions(self) -> list[tuple[str, int | None]]:
        return [(entry["action"], entry["status"]) for entry in self.emulator.requests()]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def project(tmp_path, emulator):
    """A fab project talking to the emulator (no SSH settings: local or unreachable runs)."""
    return FabProject(tmp_path, emulator, None)


@pytest.fixture
def ssh_project(tmp_path, emulator, sshd):
    """A fab project that can reach the loopback sshd's hosts."""
    return FabProject(tmp_path, emulator, sshd)


def journal_text(emulator: RetraceEmulator) -> str:
    return json.dumps(emulator.journal())
