"""Demo step: ``fab deploy`` and ``fab retrace.*`` for real, as subprocesses, against the emulator.

With sshd installed, two loopback "hosts" are deployed to over real SSH (one run succeeds, one has a
host that fails); without it the same runs happen locally.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration" / "fabric"))

from fabric_sshd import LoopbackSshd, sshd_available  # noqa: E402  (path set above)

FAB = str(pathlib.Path(sys.executable).with_name("fab"))


def run(emulator_url: str, api_key: str, workdir: pathlib.Path) -> list[str]:
    (workdir / "fabfile.py").symlink_to(REPO_ROOT / "fabfile.py")
    shutil.copy(REPO_ROOT / "demo" / "fabric" / "fabric.yaml", workdir / "fabric.yaml")
    environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RETRACE_API_URL": emulator_url, "RETRACE_API_KEY": api_key,
               "HOME": str(workdir)}
    if not sshd_available():
        return _local_runs(workdir, environ)
    with LoopbackSshd(workdir / "sshd", hosts=2) as sshd:
        return _ssh_runs(workdir, environ, sshd)


def _fab(workdir: pathlib.Path, environ: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FAB, *args], cwd=workdir, env=environ, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)


def _ssh_runs(workdir: pathlib.Path, environ: dict, sshd: LoopbackSshd) -> list[str]:
    hosts = ",".join(sshd.host_strings)
    ssh_config = workdir / "ssh.yaml"
    ssh_config.write_text(yaml.safe_dump(sshd.fabric_config()), encoding="utf-8")
    failing_config = workdir / "failing-host.yaml"
    failing_config.write_text(yaml.safe_dump({**sshd.fabric_config(), "retrace": {"steps": [
        "echo unpacking shop-$RETRACE_VERSION", f'test "${{SSH_CONNECTION##* }}" != {sshd.ports[1]} || (echo disk full >&2; exit 1)']}}),
        encoding="utf-8")
    good = _fab(workdir, environ, "-f", str(ssh_config), "-H", hosts, "deploy", "--version", "2.0.0")
    bad = _fab(workdir, environ, "-f", str(failing_config), "-H", hosts, "deploy", "--version", "2.0.1")
    return [
        f"fabric: fab -H <2 loopback sshd hosts> deploy --version 2.0.0 -> exit {good.returncode}, sent {_sent(good)}",
        f"fabric: fab -H <2 hosts> deploy --version 2.0.1, a step fails on one host -> exit {bad.returncode}, "
        f"sent {_sent(bad)} ({_failed_hosts(bad.stdout)})",
        *_ci_runs(workdir, environ),
    ]


def _local_runs(workdir: pathlib.Path, environ: dict) -> list[str]:
    good = _fab(workdir, environ, "deploy", "--version", "2.0.0")
    return [f"fabric: fab deploy --version 2.0.0 (no sshd here: steps run locally) -> exit {good.returncode}, sent {_sent(good)}",
            *_ci_runs(workdir, environ)]


def _ci_runs(workdir: pathlib.Path, environ: dict) -> list[str]:
    started = _fab(workdir, environ, "retrace.start", "--version", "2.1.0", "--branch", "main")
    completed = _fab(workdir, environ, "retrace.complete", "--version", "2.1.0")
    return [f"fabric: CI-style single calls: {_first_line(started)} / {_first_line(completed)}"]


def _first_line(result: subprocess.CompletedProcess) -> str:
    line = (result.stdout or result.stderr).strip().splitlines()[0]
    return line.split(":")[0] + " -> " + line.split(" -> ")[-1] if " -> " in line else line


def _sent(result: subprocess.CompletedProcess) -> str:
    """The Retrace calls fab reported, e.g. "start + complete"."""
    actions = [line.split(":")[0].removeprefix("retrace.") for line in result.stdout.splitlines() if line.startswith("retrace.")]
    return " + ".join(actions) or "nothing"


def _failed_hosts(stdout: str) -> str:
    failed = [line.split()[0] for line in stdout.splitlines() if line.startswith("  ") and " failed " in line]
    return "failed on " + ", ".join(failed) if failed else "no host failed?"
