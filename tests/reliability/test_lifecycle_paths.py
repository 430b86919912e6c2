"""The ways a run exits, each run for real: every started deployment ends, whatever ends the run.

Real processes, real signals (``os.killpg`` / ``os.kill`` on the real pid), ansible-runner's own
cancel and ``job_timeout``, a real sshd for ``fab deploy``, the emulator's journal read afterwards.
A run killed outright cannot end its deployment itself: the cancel then comes from the orphan guard
(plugins/module_utils/_guard.py), a detached process, so the journal is polled for up to
``GUARD_WINDOW`` (15 s) and then watched a little longer, so that a second end would be seen too.
Only the cases no entry point's own suite runs live here; tests/reliability/matrix.py cites both.
"""

from __future__ import annotations

import subprocess
import time

import ansible_runner
import pytest

from ansible_run import BIN, play, run_playbook, write_playbook
from fabric_sshd import free_port
from reliability_helpers import (SETTLE, FabDirectory, calls_once_ended, journal_calls, role_playbook, run_and_stop)

ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")
TWO_HOSTS = "web1 ansible_connection=local\nweb2 ansible_connection=local\n"
STARTED_THEN_CANCELLED = [("start", 202), ("cancel", 202)]

CHANGE_NOTIFYING = [{"name": "Change the configuration", "ansible.builtin.command": "true", "changed_when": True,
                     "notify": "Restart the service"}]
FAILING_HANDLER = [{"name": "Restart the service", "ansible.builtin.fail": {"msg": "the service did not restart"}}]


def unreachable_hosts(port: int) -> str:
    """Two hosts over ssh to a loopback port nothing listens on: ssh fails at once."""
    return "".join(f'{name} ansible_host=127.0.0.1 ansible_port={port} ansible_connection=ssh '
                   f'ansible_ssh_args="-o ConnectTimeout=3"\n' for name in ("web1", "web2"))


def sleeping_step(marker) -> dict:
    """A deployment step that says when it is running (``marker``) and then takes 30 s: the moment to stop the run."""
    return {"name": "Long deployment step", "ansible.builtin.shell": f"touch {marker} && sleep 30"}


def inventory_file(directory, text: str = TWO_HOSTS):
    path = directory / "hosts.ini"
    path.write_text(text, encoding="utf-8")
    return path


# --- ansible-runner: cancel and job_timeout (what AWX and Automation Platform do) -------------------------

def run_under_ansible_runner(root, env: dict, monkeypatch, inventory: str, **options):
    """ansible_runner.run() on root/project/site.yml, as AWX runs a job (pexpect, its own pty and process group)."""
    monkeypatch.setenv("PATH", env["PATH"])  # ansible-runner looks ansible-playbook up in its own PATH
    envvars = {name: value for name, value in env.items() if name.startswith(("ANSIBLE_", "RETRACE_"))}
    envvars.pop("ANSIBLE_CONFIG", None)
    # pexpect_timeout: how often ansible-runner polls the cancel callback and the clock (default 5 s)
    settings = {"pexpect_timeout": 0.5, **options.pop("settings", {})}
    return ansible_runner.run(private_data_dir=str(root), playbook="site.yml", inventory=inventory, envvars=envvars,
                              quiet=True, settings=settings, **options)


def runner_project(tmp_path):
    """root/project/site.yml running the role with one long deployment step."""
    root = tmp_path / "runner"
    project = root / "project"
    project.mkdir(parents=True)
    marker = tmp_path / "step-is-running"
    role_playbook(project, [sleeping_step(marker)], name="site.yml")
    return root, marker, TWO_HOSTS


def test_ansible_runner_cancel_ends_the_role_s_deployment(tmp_path, ansible_env, retrace_emulator, monkeypatch):
    # Runner.handle_termination sends SIGKILL to the job's process group (the callback's suite has the same case).
    root, marker, inventory = runner_project(tmp_path)
    result = run_under_ansible_runner(root, ansible_env, monkeypatch, inventory, cancel_callback=marker.exists)
    assert result.status == "canceled", result.stdout.read()
    assert calls_once_ended(retrace_emulator) == STARTED_THEN_CANCELLED


def test_ansible_runner_job_timeout_ends_the_role_s_deployment(tmp_path, ansible_env, retrace_emulator, monkeypatch):
    # The same process-group SIGKILL, decided by the clock.
    root, marker, inventory = runner_project(tmp_path)
    began = time.monotonic()
    # a cancel callback that never cancels keeps ansible-runner from installing signal handlers in pytest
    result = run_under_ansible_runner(root, ansible_env, monkeypatch, inventory, settings={"job_timeout": 20},
                                      cancel_callback=lambda: False)
    assert result.status == "timeout", result.stdout.read()
    assert marker.exists() and time.monotonic() - began < 45, "the job was not cut by job_timeout mid-task"
    assert calls_once_ended(retrace_emulator) == STARTED_THEN_CANCELLED


# --- the callback: endings its own suite (tests/integration/callback/) does not try -------------------

def test_callback_run_ended_early_by_end_play_completes(tmp_path, callback_env, retrace_emulator):
    tasks = [{"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}},
             {"name": "Nothing more to do", "ansible.builtin.meta": "end_play"},
             {"name": "Never reached", "ansible.builtin.debug": {"msg": "after end_play"}}]
    run = run_playbook(write_playbook(tmp_path, [play(*tasks)]), env=callback_env)
    assert run.returncode == 0, run.stdout
    assert calls_once_ended(retrace_emulator) == [("start", 202), ("complete", 202)], run.stdout


def test_callback_failing_handler_cancels(tmp_path, callback_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [play(*CHANGE_NOTIFYING, handlers=FAILING_HANDLER)]), env=callback_env)
    assert run.returncode == 2, run.stdout
    assert calls_once_ended(retrace_emulator) == STARTED_THEN_CANCELLED, run.stdout


def test_callback_run_with_every_host_unreachable_cancels(tmp_path, callback_env, retrace_emulator, closed_port):
    inventory = inventory_file(tmp_path, unreachable_hosts(closed_port))
    run = run_playbook(write_playbook(tmp_path, [play({"ansible.builtin.ping": {}}, hosts="all")]), "-i", str(inventory),
                       env=callback_env)
    assert run.returncode == 4, run.stdout
    assert calls_once_ended(retrace_emulator) == STARTED_THEN_CANCELLED, run.stdout


def test_ad_hoc_job_under_ansible_runner_sends_nothing(tmp_path, callback_env, retrace_emulator, monkeypatch):
    monkeypatch.setenv("PATH", callback_env["PATH"])
    (tmp_path / "runner").mkdir()
    envvars = {name: value for name, value in callback_env.items() if name.startswith(("ANSIBLE_", "RETRACE_"))}
    result = ansible_runner.run(private_data_dir=str(tmp_path / "runner"), host_pattern="localhost",
                                module="ansible.builtin.ping", inventory="localhost ansible_connection=local",
                                envvars=envvars, quiet=True, cancel_callback=lambda: False)
    assert result.status == "successful", result.stdout.read()
    time.sleep(SETTLE)
    assert journal_calls(retrace_emulator) == []


# --- the role: signals its own suite does not send -----------------------------------------------------

# The role's own suite (tests/integration/role/test_role_lifecycle.py) sends SIGINT, SIGTERM and SIGHUP to
# ansible-playbook and SIGKILL to its group; these are the ways it does not: Ctrl-C and a closed terminal
# reach the whole group, the OOM killer only the main process.
@pytest.mark.parametrize("stop", ["SIGINT-group", "SIGHUP-group", "SIGKILL-main"])
def test_role_run_stopped_during_the_tracked_tasks_is_cancelled(tmp_path, ansible_env, retrace_emulator, stop):
    marker = tmp_path / "step-is-running"
    playbook = role_playbook(tmp_path, [sleeping_step(marker)])
    stopped = run_and_stop([ANSIBLE_PLAYBOOK, str(playbook), "-i", str(inventory_file(tmp_path))], cwd=tmp_path,
                           env=ansible_env, marker=marker, stop=stop)
    assert stopped.returncode != 0, stopped.output
    assert calls_once_ended(retrace_emulator) == STARTED_THEN_CANCELLED, stopped.output


# --- fab deploy: hung up, every host unreachable, Retrace down with strict ------------------------------

TICKING_STEP = "touch {marker} && for i in $(seq 300); do echo tick; sleep 0.1; done"


# Fabric's own suite (tests/integration/fabric/) kills fab alone and its group with SIGKILL, and sends SIGHUP to
# fab; a terminal or SSH session that closes sends SIGHUP to the whole foreground group, remote step included.
@pytest.mark.fabric
def test_fab_deploy_hung_up_over_ssh_is_cancelled(tmp_path, retrace_emulator, sshd):
    marker = tmp_path / "step-is-running"
    fab = FabDirectory(tmp_path, retrace_emulator, ssh=sshd.fabric_config())
    fab.settings({"steps": [TICKING_STEP.format(marker=marker)]})
    stopped = run_and_stop(fab.command("-H", sshd.host_strings[0], "deploy", "--version", "9.1.0"), cwd=tmp_path,
                           env=fab.environment(), marker=marker, stop="SIGHUP-group")
    assert stopped.returncode != 0, stopped.output
    assert calls_once_ended(retrace_emulator) == STARTED_THEN_CANCELLED, stopped.output


@pytest.mark.fabric
def test_fab_deploy_with_every_host_unreachable_cancels(tmp_path, retrace_emulator, sshd):
    fab = FabDirectory(tmp_path, retrace_emulator, ssh=sshd.fabric_config())
    hosts = ",".join(f"{sshd.user}@127.0.0.1:{free_port()}" for _host in range(2))  # nothing listens there
    result = fab.run("-H", hosts, "deploy", "--version", "9.3.0")
    assert result.returncode != 0, result.stdout + result.stderr
    assert calls_once_ended(retrace_emulator) == STARTED_THEN_CANCELLED, result.stdout + result.stderr


@pytest.mark.fabric
def test_fab_deploy_strict_with_retrace_down_runs_no_step(tmp_path, retrace_emulator, closed_port):
    # Without strict it deploys with one warning: Fabric's own suite (test_fabric_conventions.py).
    marker = tmp_path / "deployed"
    fab = FabDirectory(tmp_path, retrace_emulator)
    fab.settings({"api_url": f"http://127.0.0.1:{closed_port}", "deadline": 1.5, "steps": [f"touch {marker}"],
                  "strict": True})
    result = fab.run("deploy", "--version", "9.2.0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert not marker.exists(), "strict: the steps ran although the start failed"
    assert journal_calls(retrace_emulator) == []


# --- fab retrace.start / cancel around a tree that changes -------------------------------------------------

def git(directory, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(directory), "GIT_CEILING_DIRECTORIES": str(directory.parent)}
    command = ["git", "-c", "user.name=Release", "-c", "user.email=release@example.com", *args]
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, check=True, env=env).stdout.strip()


@pytest.mark.fabric
def test_single_call_cancel_ends_the_version_the_start_opened_though_the_tree_changed(tmp_path, retrace_emulator):
    # retrace.complete after the same change: Fabric's own suite (test_fabric_conventions.py).
    fab = FabDirectory(tmp_path, retrace_emulator)
    lock = tmp_path / "app.lock"
    lock.write_text("dependency==1.0\n", encoding="utf-8")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "app.lock")
    git(tmp_path, "commit", "-q", "-m", "Release 1.4.2")
    git(tmp_path, "tag", "v1.4.2")

    started = fab.run("retrace.start")
    assert started.returncode == 0, started.stderr
    lock.write_text("dependency==1.0.1\n", encoding="utf-8")  # a build step rewrote a tracked lock file
    assert git(tmp_path, "describe", "--tags", "--always", "--dirty").endswith("-dirty")
    ended = fab.run("retrace.cancel")

    assert ended.returncode == 0, ended.stderr
    assert journal_calls(retrace_emulator) == [("start", 202), ("cancel", 202)]
    (start,), (finish,) = retrace_emulator.requests("start"), retrace_emulator.requests("cancel")
    assert "1.4.2" in start["body"]["Version"] and "dirty" not in start["body"]["Version"]
    assert finish["body"]["Version"] == start["body"]["Version"]
    assert not any(entry["state"] == "in_progress" for entry in retrace_emulator.deployments())
