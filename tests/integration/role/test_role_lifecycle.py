"""Every way a tracked_deployment run ends closes the deployment exactly once, for real.

Endings no task survives (meta: end_play, signals) are closed by the orphan guard the start armed on
ansible-playbook; failing handlers are brought inside the deployment by flush_handlers; a start that
Retrace cannot receive is a warning unless retrace_strict is true.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from ansible_run import BIN, calls, run_playbook, stop_run, write_playbook

TWO_HOSTS = "web1 ansible_connection=local\nweb2 ansible_connection=local\n"
GUARD_LANDS_WITHIN = 15.0


def _playbook(tmp_path, steps, handlers=(), **role_vars):
    (tmp_path / "steps.yml").write_text(json.dumps(steps))
    (tmp_path / "inventory.ini").write_text(TWO_HOSTS)
    variables = {"tracked_deployment_tasks": "steps.yml", "retrace_app_name": "DemoApp",
                 "retrace_environment_name": "Production", "retrace_version": "3.0", **role_vars}
    return write_playbook(tmp_path, [{"name": "Tracked", "hosts": "all", "gather_facts": False, "handlers": list(handlers),
                                      "tasks": [{"name": "Deploy", "ansible.builtin.include_role": {
                                          "name": "stackify.retrace.tracked_deployment"}, "vars": variables}]}])


@pytest.fixture
def unused_port():
    """A loopback port nothing listens on: bound but not listening, so connections are refused, and held for the
    whole test, so that no emulator on another pytest worker can be given it meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def _until(emulator, expected, seconds=GUARD_LANDS_WITHIN):
    deadline = time.monotonic() + seconds
    while calls(emulator) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return calls(emulator)


def test_meta_end_play_in_the_tracked_tasks_is_cancelled(tmp_path, role_env, retrace_emulator):
    playbook = _playbook(tmp_path, [{"name": "Already deployed", "ansible.builtin.meta": "end_play"}])
    run = run_playbook(playbook, env=role_env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert _until(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]


def test_a_failing_handler_notified_by_the_tracked_tasks_cancels(tmp_path, role_env, retrace_emulator):
    steps = [{"name": "Change the config", "ansible.builtin.command": "true", "changed_when": True, "notify": "Restart"}]
    handlers = [{"name": "Restart", "ansible.builtin.fail": {"msg": "restart failed"}}]
    run = run_playbook(_playbook(tmp_path, steps, handlers), env=role_env, inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert "Deployment failed on web1: Restart: restart failed" in run.stdout
    time.sleep(1)  # no second end from the guard
    assert calls(retrace_emulator) == [("start", 202), ("cancel", 202)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_during_the_tracked_tasks_cancels(tmp_path, role_env, retrace_emulator, signum):
    marker = tmp_path / "deploying"
    playbook = _playbook(tmp_path, [{"name": "Long step", "ansible.builtin.shell": f"touch {marker} && sleep 60"}])
    output = (tmp_path / "output.txt").open("wb")  # a worker may outlive a killed ansible-playbook: no pipe
    process = subprocess.Popen([str(BIN / "ansible-playbook"), str(playbook), "-i", str(tmp_path / "inventory.ini")],
                               env=role_env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=output,
                               stderr=subprocess.STDOUT, start_new_session=True)
    process.output = tmp_path / "output.txt"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.output.read_text()
        time.sleep(0.05)
    if signum == signal.SIGKILL:
        os.killpg(process.pid, signum)
        process.wait(timeout=30)
    else:
        stop_run(process, signum)
    assert _until(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]


def test_every_host_unreachable_is_cancelled(tmp_path, role_env, retrace_emulator):
    inventory = "web1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh\n"
    playbook = _playbook(tmp_path, [{"name": "Needs the host", "ansible.builtin.command": "true"}])
    run = run_playbook(playbook, env=role_env, inventory=inventory)
    assert run.returncode == 4, run.stdout
    assert _until(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]


def test_retrace_down_at_the_start_warns_and_deploys_anyway(tmp_path, role_env, unused_port):
    env = {**role_env, "RETRACE_API_URL": f"http://127.0.0.1:{unused_port}"}
    playbook = _playbook(tmp_path, [{"name": "Deployment step", "ansible.builtin.debug": {"msg": "deployed 3.0"}}],
                         retrace_deadline=1)
    run = subprocess.run([str(BIN / "ansible-playbook"), str(playbook), "-i", str(tmp_path / "inventory.ini")], env=env,
                         cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("deployed 3.0") == 2
    assert run.stderr.count("[WARNING]: Retrace: deployment 3.0 of DemoApp to Production NOT recorded: start failed") == 1


@pytest.mark.parametrize("how", ["retrace_strict", "RETRACE_STRICT"])
def test_strict_fails_the_play_before_any_tracked_task(tmp_path, role_env, unused_port, how):
    env = {**role_env, "RETRACE_API_URL": f"http://127.0.0.1:{unused_port}"}
    role_vars = {"retrace_deadline": 1}
    if how == "retrace_strict":
        role_vars["retrace_strict"] = True
    else:
        env["RETRACE_STRICT"] = "true"
    playbook = _playbook(tmp_path, [{"name": "Deployment step", "ansible.builtin.debug": {"msg": "deployed 3.0"}}], **role_vars)
    run = run_playbook(playbook, env=env, inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    # Seen once in CI (one run of ~10): a host ran the step and the run still exited 2; the whole output says why next time.
    assert "deployed 3.0" not in run.stdout and "unreachable: start failed" in run.stdout, run.stdout + run.stderr
