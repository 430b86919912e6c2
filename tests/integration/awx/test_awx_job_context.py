"""A playbook run as an AWX job records where it came from, with nothing templated by the user: the same
deployment whether the callback, the module or the role records it."""

from __future__ import annotations

import pytest

from ansible_collections.stackify.retrace.tests.integration.awx.controller import OK_PLAYBOOK, REVISION, Job

JOB_PAGE = "https://awx.example.com/#/jobs/playbook/4711"


def actions(controller):
    return [(entry["action"], entry["status"]) for entry in controller.emulator.requests()]


def test_the_deployment_links_the_job_and_uses_the_project_revision(controller):
    result = controller.launch(Job(), OK_PLAYBOOK)
    assert (result.status, result.rc) == ("successful", 0), result.stdout
    assert actions(controller) == [("start", 202), ("complete", 202)]
    start = controller.emulator.requests("start")[0]["body"]
    # Name is the version, as without a controller: the user opts into more with name_format.
    assert start == {"Version": REVISION, "Name": REVISION, "AppName": "Shop", "EnvironmentName": "Production",
                     "Branch": "main", "Commit": REVISION, "Uri": JOB_PAGE}
    assert f"Retrace: deployment {REVISION} of Shop to Production completed" in result.retrace_lines()


def test_name_format_records_the_user_and_the_job_template(controller):
    result = controller.launch(Job(), OK_PLAYBOOK, template_extra_vars={
        "retrace_version": "1.4.2", "retrace_name_format": "{version} by {user} via {job_template} ({commit:.7})"})
    assert result.status == "successful", result.stdout
    bodies = [entry["body"] for entry in controller.emulator.requests()]
    assert [body["Name"] for body in bodies] == ["1.4.2 by alice via Deploy shop (3f2c1b0)"] * 2
    assert bodies[0]["Version"] == "1.4.2" and bodies[0]["Uri"] == JOB_PAGE


def test_a_scheduled_job_names_its_schedule(controller):
    job = Job(user=None, launch_type="scheduled")
    controller.callback_settings["name_format"] = "{version:.7} by {user}"
    launched = controller.launch(job, OK_PLAYBOOK, template_extra_vars={"awx_schedule_name": "nightly", "tower_schedule_name": "nightly"})
    assert launched.status == "successful", launched.stdout
    assert controller.emulator.requests("start")[0]["body"]["Name"] == "3f2c1b0 by schedule nightly"


def test_values_the_user_gives_win_over_the_job(controller):
    result = controller.launch(Job(), OK_PLAYBOOK, template_extra_vars={
        "retrace_version": "2.0.0", "retrace_uri": "https://ci.example.com/r/9", "retrace_commit": "c0ffee"})
    assert result.status == "successful", result.stdout
    body = controller.emulator.requests("start")[0]["body"]
    assert (body["Version"], body["Uri"], body["Commit"], body["Branch"]) == ("2.0.0", "https://ci.example.com/r/9", "c0ffee", "main")


def test_no_page_link_when_the_controller_url_was_never_set(controller):
    result = controller.launch(Job(controller_url="https://platformhost"), OK_PLAYBOOK)
    assert result.status == "successful", result.stdout
    assert "Uri" not in controller.emulator.requests("start")[0]["body"]


def test_a_bad_name_format_is_refused_and_nothing_is_sent(controller):
    result = controller.launch(Job(), OK_PLAYBOOK, template_extra_vars={"retrace_name_format": "{version} by {password}"})
    assert result.status == "successful"  # tracking never fails the job unless strict
    assert "name_format: has {password}" in " ".join(result.stdout.split())
    assert controller.emulator.requests() == []


MODULE_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Start
      stackify.retrace.deployment:
        state: started
      run_once: true
    - name: Deploy
      ansible.builtin.debug:
        msg: deploying
    - name: Complete
      stackify.retrace.deployment:
        state: completed
      run_once: true
"""
ROLE_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Deploy, tracked
      ansible.builtin.include_role:
        name: stackify.retrace.tracked_deployment
      vars:
        tracked_deployment_tasks: "{{ playbook_dir }}/steps.yml"
"""


@pytest.mark.parametrize("entry_point", ["callback", "module", "role"])
def test_one_job_one_deployment_from_every_entry_point(controller, entry_point):
    """The same job and settings give the same start body from the callback, a module task and the role."""
    controller.callback_settings = {}
    env = {"RETRACE_APP_NAME": "Shop", "RETRACE_ENVIRONMENT_NAME": "Production",
           "RETRACE_NAME_FORMAT": "{version:.7} by {user} via {job_template}"}
    playbook = {"callback": OK_PLAYBOOK, "module": MODULE_PLAYBOOK, "role": ROLE_PLAYBOOK}[entry_point]
    controller.project_files = {"steps.yml": "- name: Deploy\n  ansible.builtin.debug:\n    msg: deploying\n"}
    result = controller.launch(Job(), playbook, extra_env=env, callback=entry_point == "callback")
    assert result.status == "successful", result.stdout
    assert actions(controller) == [("start", 202), ("complete", 202)], result.stdout
    assert controller.emulator.requests("start")[0]["body"] == {
        "Version": REVISION, "Name": "3f2c1b0 by alice via Deploy shop", "AppName": "Shop", "EnvironmentName": "Production",
        "Branch": "main", "Commit": REVISION, "Uri": JOB_PAGE}
