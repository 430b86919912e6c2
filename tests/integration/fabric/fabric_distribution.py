"""The pip distribution, built once per test session: the wheel and the sdist, and a fresh venv holding the wheel alone.

``python -m build --no-isolation`` uses this environment's hatchling (requirements-dev.txt): no index is needed.
The fresh venvs get their dependencies (fabric, invoke, paramiko) from this environment through a ``.pth`` file,
so nothing is downloaded, and no ``PYTHONPATH`` reaches them: what they import is what the wheel installed.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
PIP = str(pathlib.Path(sys.executable).with_name("pip"))
DEPENDENCIES = next(pathlib.Path(sys.executable).parent.parent.glob("lib/python*/site-packages"))


@dataclasses.dataclass
class Distribution:
    wheel: pathlib.Path
    sdist: pathlib.Path
    #: a fresh venv with only the wheel installed (its dependencies from this environment)
    venv: pathlib.Path

    @property
    def command(self) -> str:
        return str(self.venv / "bin" / "retrace-deploy")


def environment(extra: dict | None = None) -> dict:
    """This process's environment without PYTHONPATH (which would put the checkout before the installed wheel)."""
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environ.update(extra or {})
    return environ


def fresh_venv(directory: pathlib.Path, *install: str) -> pathlib.Path:
    """A venv with ``install`` (pip arguments) and, through a .pth file, this environment's packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=120)
    site = next(directory.glob("lib/python*/site-packages"))
    (site / "dependencies.pth").write_text(DEPENDENCIES.as_posix())
    subprocess.run([PIP, "--python", str(directory / "bin" / "python"), "install", "--no-deps", "-q", *install],
                   check=True, timeout=300, env=environment())
    return directory


def build(out: pathlib.Path) -> Distribution:
    """Build into ``out`` and install the wheel into a fresh venv there (conftest's ``distribution``, once a session)."""
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out / "dist"), str(REPO_ROOT)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((out / "dist").glob("*.whl"))
    sdist = next((out / "dist").glob("*.tar.gz"))
    return Distribution(wheel, sdist, fresh_venv(out / "wheel-venv", str(wheel)))
