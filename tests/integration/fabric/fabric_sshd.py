"""A throw-away OpenSSH server on loopback: several ports of one sshd act as several hosts.

Used by the Fabric integration tests and scripts/bench_fabric.py.  Nothing is mocked: Fabric
connects over real TCP with a real key to a real sshd.
"""

from __future__ import annotations

import getpass
import os
import pathlib
import shutil
import socket
import subprocess
import time

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
START_TIMEOUT = 10.0


def sshd_available() -> bool:
    return os.access(SSHD, os.X_OK) and os.access(SSH_KEYGEN, os.X_OK)


def free_port() -> int:
    """A port nothing listens on right now (also used as an 'unreachable host')."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoopbackSshd:
    """``with LoopbackSshd(directory, hosts=3) as sshd: sshd.host_strings`` -> ['root@127.0.0.1:40001', ...]"""

    def __init__(self, directory: pathlib.Path, hosts: int = 3):
        self.directory = pathlib.Path(directory)
        self.user = getpass.getuser()
        self.ports = [free_port() for _host in range(hosts)]
        self.client_key = self.directory / "client_ed25519"
        self._process: subprocess.Popen | None = None

    @property
    def host_strings(self) -> list[str]:
        return [f"{self.user}@127.0.0.1:{port}" for port in self.ports]

    def __enter__(self) -> "LoopbackSshd":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        host_key = self.directory / "host_ed25519"
        for key in (host_key, self.client_key):
            if not key.exists():
                subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        shutil.copy(f"{self.client_key}.pub", self.directory / "authorized_keys")
        config = self.directory / "sshd_config"
        config.write_text(self._config(host_key), encoding="utf-8")
        if os.geteuid() == 0:
            pathlib.Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        log = open(self.directory / "sshd.log", "ab")  # pylint: disable=consider-using-with
        self._process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        log.close()
        self._wait_until_listening()

    def _config(self, host_key: pathlib.Path) -> str:
        lines = [f"Port {port}" for port in self.ports] + [
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            f"PidFile {self.directory / 'sshd.pid'}",
            "UsePAM no",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "MaxStartups 100",
            "MaxSessions 100",
            "LogLevel ERROR",
        ]
        return "\n".join(lines) + "\n"

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = set(self.ports)
        while pending:
            if self._process.poll() is not None:
                log = (self.directory / "sshd.log").read_text(errors="replace")
                raise RuntimeError(f"sshd exited with status {self._process.returncode}: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not listen on ports {sorted(pending)} within {START_TIMEOUT} s")
            for port in list(pending):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pending.discard(port)
                except OSError:
                    time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def fabric_config(self) -> dict:
        """Runtime Fabric config to reach these hosts with the throw-away key only."""
        return {
            "connect_kwargs": {"key_filename": [str(self.client_key)], "look_for_keys": False, "allow_agent": False},
            "load_ssh_configs": False,
            "timeouts": {"connect": 5},
        }
