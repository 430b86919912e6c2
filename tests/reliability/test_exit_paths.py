"""Exit-path rows that the role and Fabric suites did not already cover (matrix.py)."""

from __future__ import annotations

import pytest

from ansible_run import calls, run_playbook
from reliability_helpers import FabDirectory, role_playbook

TWO_HOSTS = "web1 ansible_connection=local\nweb2 ansible_connection=local\n"


def test_role_completes_when_the_deployment_tasks_rescue_or_ignore_a_failure(tmp_path, ansible_env, retrace_emulator):
    steps = [
        {"name": "Guarded", "block": [{"name": "Break", "ansible.builtin.fail": {"msg": "broken on purpose"}}],
         "rescue": [{"name": "Recover", "ansible.builtin.debug": {"msg": "recovered"}}]},
        {"name": "Ignored", "ansible.builtin.fail": {"msg": "ignored"}, "ignore_errors": True},
    ]
    run = run_playbook(role_playbook(tmp_path, steps), env=ansible_env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert "rescued=1" in run.stdout and "ignored=1" in run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]


def test_role_cancels_when_a_deployment_task_errors(tmp_path, ansible_env, retrace_emulator):
    # A templating error (an undefined variable) aborts the task on every host, after the start.
    steps = [{"name": "Use a variable nobody set", "ansible.builtin.debug": {"msg": "{{ release_directory_not_defined }}"}}]
    run = run_playbook(role_playbook(tmp_path, steps), env=ansible_env, inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert "release_directory_not_defined" in run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("cancel", 202)]


@pytest.mark.parametrize("content, problem", [
    ("- name: Broken\n  ansible.builtin.debug: {msg: [unclosed\n", "did not find expected"),
    ("just: a mapping\n", "must hold a YAML list of tasks"),
])
def test_role_sends_nothing_when_the_deployment_tasks_file_does_not_parse(tmp_path, ansible_env, retrace_emulator, content, problem):
    run = run_playbook(role_playbook(tmp_path, content), env=ansible_env, inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert problem in run.stdout
    assert calls(retrace_emulator) == []


def test_role_in_two_playbook_files_is_two_deployments(tmp_path, ansible_env, retrace_emulator):
    steps = [{"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}}]
    first, second = role_playbook(tmp_path, steps, "first.yml"), role_playbook(tmp_path, steps, "second.yml")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(TWO_HOSTS)
    run = run_playbook(first, str(second), "-i", str(inventory), env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202), ("start", 202), ("complete", 202)]


CRASHING_FABFILE = '''\
from fabric import task

import retrace_fabric


@task
def release(c, version):
    with retrace_fabric.tracked(c, version=version):
        c.run("echo migrating", in_stream=False)
        raise RuntimeError("migration script crashed")
'''


@pytest.mark.fabric
def test_fabric_tracked_block_cancels_on_a_python_error(tmp_path, retrace_emulator):
    project = FabDirectory(tmp_path, retrace_emulator, fabfile=CRASHING_FABFILE)
    result = project.run("release", "--version", "8.0")
    assert result.returncode != 0
    assert "migration script crashed" in result.stderr
    assert [(entry["action"], entry["status"]) for entry in retrace_emulator.requests()] == [("start", 202), ("cancel", 202)]
