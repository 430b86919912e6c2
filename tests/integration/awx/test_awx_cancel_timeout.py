"""Cancel and job_timeout in the controller end the deployment: ansible-runner SIGKILLs the job's process group,
and the orphan guard the callback armed sends the cancel."""

from __future__ import annotations

import time

from ansible_collections.stackify.retrace.tests.integration.awx.controller import SECRET_KEY, Job, RemoteJob, files_containing, wait_for_file
from ansible_collections.stackify.retrace.tests.integration.callback.conftest import wait_for_actions


def sleeper(controller):
    marker = controller.workdir / "task-is-running"
    playbook = f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: Long deployment step
      ansible.builtin.shell: touch {marker} && sleep 60
"""
    return playbook, marker


def test_cancel_of_a_job_on_an_execution_node_cancels_the_deployment(controller):
    """receptor's work cancel: SIGINT to ansible-runner worker, which SIGKILLs the playbook's process group."""
    playbook, marker = sleeper(controller)
    began = time.monotonic()
    job = RemoteJob(controller, Job(), playbook)
    wait_for_file(marker)
    job.cancel()
    result = job.wait()
    assert result.status == "canceled", result.stdout
    assert time.monotonic() - began < 40  # the 60 s step was cut short
    assert wait_for_actions(controller.emulator, 2) == [("start", 202), ("cancel", 202)]
    # killed outright: the run printed its start and never its cancel, which the orphan guard sent
    assert [line for line in result.retrace_lines() if "cancelled" in line or "started" in line] == [
        line for line in result.retrace_lines() if line.endswith("started")] != []
    # the execution node's copy of the job (worker's private data dir) holds the key only in the credential's file,
    # like the controller's copy (AWX's worker runs with --delete: that copy goes after the job)
    assert SECRET_KEY not in result.stdout
    assert controller.credential_files and files_containing(job.worker_dir, SECRET_KEY) == controller.credential_files


def test_cancel_from_the_controller_callback_cancels_the_deployment(controller):
    """A job run in the controller's own process (AWX runs system jobs so): ansible-runner's cancel_callback."""
    playbook, marker = sleeper(controller)
    result = controller.launch(Job(), playbook, cancel_callback=marker.exists)
    assert result.status == "canceled", result.stdout
    assert wait_for_actions(controller.emulator, 2) == [("start", 202), ("cancel", 202)]


def test_job_timeout_cancels_the_deployment(controller):
    """The job template's timeout reaches ansible-runner as settings job_timeout (env/settings, BaseTask.run)."""
    playbook, marker = sleeper(controller)
    began = time.monotonic()
    # Long enough for the start to be sent and the guard armed on a loaded machine: ansible-runner reads the
    # clock only between polls (pexpect_timeout, 5 s in AWX), so a 3 s timeout could kill the job before either.
    result = controller.launch(Job(), playbook, job_timeout=15)
    assert result.status == "timeout", result.stdout
    assert marker.exists() and time.monotonic() - began < 45, "the job was not cut by job_timeout mid-task"
    assert wait_for_actions(controller.emulator, 2) == [("start", 202), ("cancel", 202)]
