"""A sliced job: N jobs of one workflow (JobTemplate.create_unified_job, awx/main/models/jobs.py), each with its
share of the hosts, running at once, perhaps on different execution nodes, against one Retrace.

What they record: one deployment, the first slice's.  Its start is accepted; the others are answered 409 and
join it, never "recovering" it (which would cancel a live sibling) and sending nothing at their end: the slice
that started it ends it with its own outcome.  A failure on another slice shows in the controller (the
workflow fails), not in Retrace -- there is no shared state to do better with (Retrace has no read endpoint,
AWX gives a slice neither its number nor its siblings), and a cancel from that slice would be undone anyway:
the starter's complete after it is a one-shot "completed" deployment for Retrace.  No slice warns about the
others in non-strict mode.
"""

from __future__ import annotations

import threading

import pytest

from ansible_collections.stackify.retrace.tests.integration.awx.controller import REVISION, Job, wait_for_file, waiting_playbook

WORKFLOW_JOB_ID = 4710
JOINED = (f"Retrace: deployment {REVISION} of Shop to Production is already in progress: started by another job, e.g. a "
          f"sibling slice of workflow {WORKFLOW_JOB_ID}; this job joins it and sends no end")


def slice_job(number: int) -> Job:
    """Slice ``number`` as AWX launches it: its own job id, launched by the slice workflow named after the template."""
    return Job(job_id=WORKFLOW_JOB_ID + number, launch_type="workflow", workflow_job_id=WORKFLOW_JOB_ID,
               workflow_job_name="Deploy shop")


def first_slice_playbook(controller):
    """Slice 1 starts, then waits (its hosts are slow) until the test lets it finish."""
    return waiting_playbook(controller.workdir, "slice-1")


def step(fails: bool) -> str:
    task = "ansible.builtin.fail:\n        msg: broken on purpose" if fails else "ansible.builtin.debug:\n        msg: deploying"
    return f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: Deployment step
      {task}
"""


def run_slices(controller, failing_slice: int | None, first_slice_env: dict):
    """Slice 1 starts the deployment; slices 2 and 3 run at once while it is still deploying; then slice 1 ends."""
    playbook, started, release = first_slice_playbook(controller)
    results = {}

    def launch(number, text, env=None):
        results[number] = controller.launch(slice_job(number), text, hosts=(f"web{number}",), extra_env=env)

    first = threading.Thread(target=launch, args=(1, playbook, first_slice_env))
    first.start()
    try:
        wait_for_file(started)
        others = [threading.Thread(target=launch, args=(number, step(number == failing_slice))) for number in (2, 3)]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join(120)
    finally:
        release.touch()
        first.join(120)
    return results


#: slice 1's guard visible on this machine (all slices on one execution node), or not (slices on other nodes,
#: stood in for by a first slice with no orphan guard: nothing on this machine says it is alive)
SIBLING_PLACES = {"same-node": {}, "other-node": {"RETRACE_ORPHAN_GUARD": "false"}}


@pytest.mark.parametrize("place", SIBLING_PLACES)
def test_slices_that_all_succeed_record_one_deployment(controller, place):
    results = run_slices(controller, failing_slice=None, first_slice_env=SIBLING_PLACES[place])
    assert all(result.status == "successful" for result in results.values()), {n: r.stdout for n, r in results.items()}
    actions = [(entry["action"], entry["status"]) for entry in controller.emulator.requests()]
    # never a cancel: a 409 in a workflow is a sibling's start, never a stale one to recover
    assert actions == [("start", 202), ("start", 409), ("start", 409), ("complete", 202)]
    for number in (2, 3):
        assert JOINED in results[number].stdout
        assert "WARNING" not in results[number].stdout, results[number].stdout
        assert "succeeded; the job that started it ends it" in results[number].stdout
    assert "WARNING" not in results[1].stdout
    assert f"Retrace: deployment {REVISION} of Shop to Production completed" in results[1].retrace_lines()
    # every slice named the same deployment, linked to its own job page
    assert {entry["body"]["Version"] for entry in controller.emulator.requests()} == {REVISION}
    assert sorted(entry["body"]["Uri"] for entry in controller.emulator.requests("start")) == [
        f"https://awx.example.com/#/jobs/playbook/{WORKFLOW_JOB_ID + n}" for n in (1, 2, 3)]


@pytest.mark.parametrize("place", SIBLING_PLACES)
def test_a_failing_slice_never_ends_the_first_slices_deployment(controller, place):
    results = run_slices(controller, failing_slice=2, first_slice_env=SIBLING_PLACES[place])
    assert (results[1].status, results[2].status, results[3].status) == ("successful", "failed", "successful")
    actions = [(entry["action"], entry["status"]) for entry in controller.emulator.requests()]
    assert actions == [("start", 202), ("start", 409), ("start", 409), ("complete", 202)]
    assert all("WARNING" not in result.stdout for result in results.values()), {n: r.stdout for n, r in results.items()}
    assert ("this job's part of deployment 3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b of Shop to Production failed "
            "(failed on web2); the job that started it ends the deployment, so this failure is not recorded in Retrace"
            ) in " ".join(results[2].stdout.split())


def test_a_slice_whose_first_start_got_503_still_joins(controller):
    """Found by a breaker: a slice answered 503 then 409 took the 409 for its own lost start (tracked), and a
    failing slice then cancelled the first slice's live deployment.  An answered 503 was not processed: it joins."""
    playbook, started, release = first_slice_playbook(controller)
    results = {}

    def launch(number, text):
        results[number] = controller.launch(slice_job(number), text, hosts=(f"web{number}",),
                                            extra_env={"RETRACE_ORPHAN_GUARD": "false"} if number == 1 else None)

    first = threading.Thread(target=launch, args=(1, playbook))
    first.start()
    try:
        wait_for_file(started)
        controller.emulator.inject("start", [{"status": 503, "retry_after": "1"}])
        launch(2, step(fails=True))
    finally:
        release.touch()
        first.join(120)
    assert (results[1].status, results[2].status) == ("successful", "failed")
    actions = [(entry["action"], entry["status"]) for entry in controller.emulator.requests()]
    assert actions == [("start", 202), ("start", 503), ("start", 409), ("complete", 202)], results[2].stdout
    assert JOINED in " ".join(results[2].stdout.split())


def test_role_slices_record_one_deployment_and_the_joined_slice_sends_no_end(controller):
    """The role in a sliced job: the same outcome as the callback (its module start joins, nothing more is sent)."""
    started, release = controller.workdir / "slice-1-running", controller.workdir / "slice-1-may-finish"
    controller.callback_settings = {}
    controller.project_files = {
        "slow-steps.yml": f"- name: Slow step\n  ansible.builtin.shell: touch {started} && while [ ! -e {release} ]; do sleep 0.1; done\n",
        "steps.yml": "- name: Step\n  ansible.builtin.debug:\n    msg: deploying\n"}
    role_playbook = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Deploy, tracked
      ansible.builtin.include_role:
        name: stackify.retrace.tracked_deployment
      vars:
        tracked_deployment_tasks: "{{{{ playbook_dir }}}}/{steps}"
"""
    env = {"RETRACE_APP_NAME": "Shop", "RETRACE_ENVIRONMENT_NAME": "Production", "RETRACE_ORPHAN_GUARD": "false"}
    results = {}

    def launch(number, steps):
        results[number] = controller.launch(slice_job(number), role_playbook.format(steps=steps), hosts=(f"web{number}",),
                                            extra_env=env, callback=False)

    first = threading.Thread(target=launch, args=(1, "slow-steps.yml"))
    first.start()
    try:
        wait_for_file(started)
        launch(2, "steps.yml")
    finally:
        release.touch()
        first.join(120)
    assert (results[1].status, results[2].status) == ("successful", "successful"), results[2].stdout
    assert [(entry["action"], entry["status"]) for entry in controller.emulator.requests()] == [
        ("start", 202), ("start", 409), ("complete", 202)]
    assert "WARNING" not in results[2].stdout, results[2].stdout


#: the module in a sliced job template, the way its docs show it: start, then the steps and complete, cancel on failure
MODULE_SLICE_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Start the deployment
      stackify.retrace.deployment:
        state: started
      run_once: true
    - name: Deploy
      block:
        - name: Deployment step
          {step}
        - name: Complete the deployment
          stackify.retrace.deployment:
            state: completed
          run_once: true
          register: end_call
        - name: Show what the complete did
          ansible.builtin.debug:
            msg: "end: joined={{{{ end_call.joined | default(false) }}}} {{{{ end_call.msg }}}}"
      rescue:
        - name: Cancel the deployment
          stackify.retrace.deployment:
            state: cancelled
          run_once: true
          register: end_call
        - name: Show what the cancel did
          ansible.builtin.debug:
            msg: "end: joined={{{{ end_call.joined | default(false) }}}} {{{{ end_call.msg }}}}"
        - name: Fail the play
          ansible.builtin.fail:
            msg: deployment failed
"""


@pytest.mark.parametrize("place", SIBLING_PLACES)
def test_module_slices_that_joined_send_no_end_so_a_failing_slice_never_cancels_a_live_sibling(controller, place):
    """A slice whose start joined sends nothing from its completed or cancelled task (found by a breaker: its rescue
    cancelled the first slice's live deployment, and a succeeding slice completed it early)."""
    started, release = controller.workdir / "slice-1-running", controller.workdir / "slice-1-may-finish"
    steps = {1: f"ansible.builtin.shell: touch {started} && while [ ! -e {release} ]; do sleep 0.1; done",
             2: "ansible.builtin.fail:\n            msg: broken on purpose",
             3: "ansible.builtin.debug:\n            msg: deploying"}
    env = {"RETRACE_APP_NAME": "Shop", "RETRACE_ENVIRONMENT_NAME": "Production", **SIBLING_PLACES[place]}
    results = {}

    def launch(number):
        results[number] = controller.launch(slice_job(number), MODULE_SLICE_PLAYBOOK.format(step=steps[number]),
                                            hosts=(f"web{number}",), extra_env=env, callback=False)

    first = threading.Thread(target=launch, args=(1,))
    first.start()
    try:
        wait_for_file(started)
        launch(2)
        launch(3)
    finally:
        release.touch()
        first.join(120)
    assert (results[1].status, results[2].status, results[3].status) == ("successful", "failed", "successful")
    assert [(entry["action"], entry["status"]) for entry in controller.emulator.requests()] == [
        ("start", 202), ("start", 409), ("start", 409), ("complete", 202)]
    text = {number: " ".join(result.stdout.split()) for number, result in results.items()}
    assert all("WARNING" not in result.stdout for result in results.values()), text
    deployment = "deployment 3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b of Shop to Production"
    assert (f"end: joined=True Retrace: this job's part of {deployment} failed; the job that started it ends the deployment, so "
            "this failure is not recorded in Retrace: nothing sent") in text[2], text[2]
    assert (f"end: joined=True Retrace: this job's part of {deployment} succeeded; the job that started it ends it: "
            "nothing sent") in text[3], text[3]
    assert "end: joined=False Retrace: " in text[1] and f"{deployment} completed" in text[1], text[1]
