"""``fab -H ... deploy`` against a real sshd on loopback: one start, one end, whatever happens on the hosts."""

from __future__ import annotations

import signal
import time

import pytest

from retrace_emulator.accounts import DEMO_API_KEY

# The remote side learns which "host" (port) it is through sshd's SSH_CONNECTION variable.
SERVER_PORT = '"${SSH_CONNECTION##* }"'


def test_all_hosts_succeed_in_parallel_with_one_start_and_one_complete(ssh_project, sshd):
    ssh_project.fabric_yaml({"steps": [f"echo deployed $RETRACE_VERSION on port {SERVER_PORT}", "echo 'name: '$RETRACE_DEPLOYMENT_NAME"]})

    result = ssh_project.run("-H", ",".join(sshd.host_strings), "deploy", "--version", "2.0.1", "--name", "Release two")

    assert result.returncode == 0, result.stderr
    assert ssh_project.actions() == [("start", 202), ("complete", 202)]
    for host, port in zip(sshd.host_strings, sshd.ports):
        assert f"[{host}] deployed 2.0.1 on port {port}" in result.stdout
        assert f"[{host}] name: Release two" in result.stdout
        assert any(line.split()[:2] == [host, "ok"] for line in result.stdout.splitlines())
    body = ssh_project.emulator.requests("start")[0]["body"]
    assert body["Version"] == "2.0.1" and body["Name"] == "Release two"
    assert DEMO_API_KEY not in result.stdout + result.stderr


def test_parallel_hosts_overlap_in_time(ssh_project, sshd, tmp_path):
    # A meeting point, not a clock: each host checks in, then waits (up to 30 s) until every host has. Hosts run one
    # after another would never all meet; on a loaded machine the SSH handshakes may take seconds to line up.
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    hosts = len(sshd.host_strings)
    ssh_project.fabric_yaml({"steps": [
        f"touch {meeting}/{SERVER_PORT}; for i in $(seq 300); do "
        f"[ $(ls {meeting} | wc -l) -ge {hosts} ] && echo met && exit 0; sleep 0.1; done; echo alone; exit 1"]})

    result = ssh_project.run("-H", ",".join(sshd.host_strings), "deploy", "--version", "2.0.2")

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in meeting.iterdir()) == sorted(str(port) for port in sshd.ports)
    assert sum(line.endswith("] met") for line in result.stdout.splitlines()) == hosts, result.stdout
    assert ssh_project.actions() == [("start", 202), ("complete", 202)]


def _times(output: str, word: str) -> list[float]:
    return [float(line.split()[-1]) for line in output.splitlines() if f"] {word} " in line]


def test_serial_setting_runs_hosts_one_after_another(ssh_project, sshd):
    ssh_project.fabric_yaml({"parallel": False, "steps": ["echo began $(date +%s.%N); echo ended $(date +%s.%N)"]})

    result = ssh_project.run("-H", ",".join(sshd.host_strings), "deploy", "--version", "2.0.3")

    assert result.returncode == 0, result.stderr
    began, ended = _times(result.stdout, "began"), _times(result.stdout, "ended")
    assert all(end < next_begin for end, next_begin in zip(ended, began[1:])), "each host ended before the next began"
    assert [line.split()[0] for line in result.stdout.splitlines() if "] began" in line] == [f"[{host}]" for host in sshd.host_strings]
    assert ssh_project.actions() == [("start", 202), ("complete", 202)]


def test_a_failing_command_on_one_host_cancels_once(ssh_project, sshd):
    bad_port = sshd.ports[1]
    ssh_project.fabric_yaml({"steps": [f"test {SERVER_PORT} != {bad_port}", "echo second step"]})

    result = ssh_project.run("-H", ",".join(sshd.host_strings), "deploy", "--version", "2.1.0")

    assert result.returncode == 1
    assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
    summary = result.stdout[result.stdout.index("Deployment summary:"):]
    assert f"{sshd.host_strings[1]}  failed" in summary and "step 1" in summary
    assert f"{sshd.host_strings[0]}  ok" in summary and f"{sshd.host_strings[2]}  ok" in summary
    assert "cancelled in Retrace" in result.stderr


def test_an_unreachable_host_cancels_once(ssh_project, sshd, unreachable_host):
    hosts = [sshd.host_strings[0], unreachable_host]

    result = ssh_project.run("-H", ",".join(hosts), "deploy", "--version", "2.2.0")

    assert result.returncode == 1
    assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
    assert f"{unreachable_host}  unreachable" in result.stdout
    assert f"{sshd.host_strings[0]}  ok" in result.stdout


def test_sudo_steps_run_through_sudo(ssh_project, sshd):
    if ssh_project.run("-H", sshd.host_strings[0], "--", "command -v sudo").returncode != 0:
        pytest.fail("sudo is not installed: run scripts/bootstrap as root (it installs the sudo package)")
    ssh_project.fabric_yaml({"steps": [{"run": "id -u; echo v=$RETRACE_VERSION", "sudo": True}]})

    result = ssh_project.run("-H", sshd.host_strings[0], "deploy", "--version", "2.3.0")

    assert result.returncode == 0, result.stderr
    assert "$ sudo id -u" in result.stdout and "] 0" in result.stdout and "v=2.3.0" in result.stdout


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_deploy_cancels_once(ssh_project, sshd, signum, exit_code, tmp_path):
    # Writing keeps the remote loop honest: it dies of SIGPIPE once fab drops the session.
    running = tmp_path / "running"
    running.mkdir()
    ssh_project.fabric_yaml({"steps": [f"touch {running}/{SERVER_PORT}; for i in $(seq 300); do echo tick; sleep 0.1; done"]})
    process = ssh_project.spawn("-H", ",".join(sshd.host_strings[:2]), "deploy", "--version", "2.4.0")
    try:
        _wait_for_start(ssh_project, process)
        _wait_until(lambda: len(list(running.iterdir())) == 2, process, "both hosts never got into the step")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == exit_code, stderr
    assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
    assert "interrupted" in stdout and "cancelled in Retrace" in stderr
    assert DEMO_API_KEY not in stdout + stderr


def _wait_for_start(project, process, timeout: float = 15.0) -> None:
    _wait_until(lambda: project.emulator.requests("start"), process, "fab never sent start", timeout)


def _wait_until(condition, process, failure: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{failure}: {process.communicate()}")
        time.sleep(0.05)
