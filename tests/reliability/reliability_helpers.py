"""Helpers shared by the reliability tests (a plain module: `from conftest import` is ambiguous under pytest)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

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

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LANG": "C.UTF-8",
                   "PYTHONPATH": str(REPO_ROOT), "RETRACE_API_KEY": DEMO_KEY,
                   "GIT_CEILING_DIRECTORIES": str(self.directory.parent), **(env or {})}
        return subprocess.run([FAB, "-f", str(self.runtime), *args], cwd=self.directory, capture_output=True, text=True,
                              env={name: value for name, value in environ.items() if value is not None},
                              stdin=subprocess.DEVNULL, timeout=60, check=False)


def retrace_warnings(output: str) -> list[str]:
    """Ansible's warnings about Retrace, each on one line: ansible-core before 2.19 wraps them at 80 columns."""
    warnings, current = [], None
    for line in output.splitlines():
        if line.startswith("[WARNING]:"):
            current = [line]
            warnings.append(current)
        elif current is not None and line.strip() and not line.startswith(("[", "PLAY", "TASK", "ok:", "changed:", "fatal:")):
            current.append(line.strip())
        else:
            current = None
    return [" ".join(parts) for parts in warnings if "Retrace" in parts[0]]
