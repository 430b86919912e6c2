"""Values a controller job hands over: a template's extra var holding Jinja is templated as a task would template it
(the callback, the role and the module agree); a launch-time extra var holding Jinja (AWX tags it ``!unsafe``) stays
as written and is refused before anything is sent; a Name rendered from name_format that a long job template name
makes too long is cut, not refused."""

from __future__ import annotations

import pytest

from ansible_collections.stackify.retrace.tests.integration.awx.controller import OK_PLAYBOOK, Job
from ansible_collections.stackify.retrace.tests.integration.awx.test_awx_job_context import ROLE_PLAYBOOK


def test_a_template_extra_var_holding_jinja_is_templated_as_a_task_templates_it(controller):
    template_extra_vars = {"retrace_version": "{{ app_version }}", "app_version": "2.0.1"}
    result = controller.launch(Job(), OK_PLAYBOOK, template_extra_vars=template_extra_vars)
    assert result.status == "successful", result.stdout
    assert [entry["body"]["Version"] for entry in controller.emulator.requests()] == ["2.0.1", "2.0.1"]


def test_a_launch_time_extra_var_holding_jinja_stays_as_written_and_is_refused(controller):
    from ansible_collections.stackify.retrace.tests.integration.awx.test_awx_key_destination import LaunchedWith
    result = controller.launch(LaunchedWith(launch_vars={"retrace_version": "{{ lookup('env', 'HOME') }}"}), OK_PLAYBOOK)
    text = " ".join(result.stdout.split())
    assert result.status == "successful", text  # tracking never fails the job unless strict
    assert "NOT recorded: version: holds a Jinja expression that was not rendered" in text
    assert controller.emulator.requests() == []


@pytest.mark.parametrize("entry_point", ["callback", "role"])
def test_a_long_job_template_name_cuts_the_rendered_name(controller, entry_point):
    controller.project_files = {"steps.yml": "- name: Deploy\n  ansible.builtin.debug:\n    msg: deploying\n"}
    env = {"RETRACE_NAME_FORMAT": "{version:.7} by {user} via {job_template}"}
    if entry_point == "role":
        env.update(RETRACE_APP_NAME="Shop", RETRACE_ENVIRONMENT_NAME="Production")
    result = controller.launch(Job(job_template="T" * 300), OK_PLAYBOOK if entry_point == "callback" else ROLE_PLAYBOOK,
                               extra_env=env, callback=entry_point == "callback")
    assert result.status == "successful", result.stdout
    assert [entry["action"] for entry in controller.emulator.requests()] == ["start", "complete"], result.stdout
    name = controller.emulator.requests("start")[0]["body"]["Name"]
    assert len(name) == 255 and name.startswith("3f2c1b0 by alice via TTT") and name.endswith("T\u2026")
