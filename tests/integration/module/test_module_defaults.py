"""module_defaults for the collection's action group (meta/runtime.yml): settings given once per play, with the
key-destination rule applied to them as to a task's own arguments."""

import json

import pytest

from ansible_run import DEMO, DEMO_KEY, calls, child_environment, play, run_playbook, task, write_playbook

GROUP = "group/stackify.retrace.retrace"
DEPLOY_STEP = {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}}


def _environment(tmp_path):
    """The key exported and no RETRACE_API_URL: the URL from the environment is the default, not the emulator."""
    return child_environment(tmp_path, RETRACE_API_KEY=DEMO_KEY)


@pytest.mark.parametrize("entry", [GROUP, "stackify.retrace.deployment"])
def test_a_literal_api_url_in_module_defaults_is_the_project_s(tmp_path, retrace_emulator, entry):
    """Written in the playbook, like a task's literal argument: the exported key goes there."""
    defaults = {entry: {**DEMO, "api_url": retrace_emulator.url, "strict": True}}
    playbook = write_playbook(tmp_path, [play(task("started", version="2.0"), DEPLOY_STEP, task("completed", version="2.0"),
                                              module_defaults=defaults)])
    run = run_playbook(playbook, env=_environment(tmp_path))
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]
    [record] = retrace_emulator.deployments()
    assert (record["AppName"], record["EnvironmentName"], record["Version"], record["state"]) == ("DemoApp", "Production", "2.0", "completed")


def test_a_templated_api_url_in_module_defaults_never_gets_the_environment_s_key(tmp_path, retrace_emulator):
    """A template in module_defaults is a variable's value, which whoever launches the run can set: nothing is sent."""
    defaults = {GROUP: {**DEMO, "api_url": "{{ deploy_target }}"}}
    playbook = write_playbook(tmp_path, [play(task("started", version="2.0"), DEPLOY_STEP,
                                              module_defaults=defaults, vars={"deploy_target": retrace_emulator.url})])
    run = run_playbook(playbook, env=_environment(tmp_path))
    assert run.returncode == 0, run.stdout
    assert (f"NOT recorded: api_url: {retrace_emulator.url} (from module_defaults given by variables) is refused"
            in " ".join(run.stdout.split())), run.stdout
    assert "deploying" in run.stdout
    assert calls(retrace_emulator) == []


# module_defaults are defaults: every retrace_* variable outranks them, the task's own argument outranks both.

def _staging_defaults(retrace_emulator):
    return {GROUP: {"app_name": "DemoApp", "environment_name": "Staging", "api_url": retrace_emulator.url}}


def _recorded(retrace_emulator):
    return [(record["EnvironmentName"], record["Version"], record["state"]) for record in retrace_emulator.deployments()]


@pytest.mark.parametrize("role_vars, extra_vars", [
    ({"retrace_environment_name": "Production"}, ()),
    ({}, ("-e", "retrace_environment_name=Production")),
], ids=["role vars", "extra vars"])
def test_the_role_under_group_module_defaults_records_its_variables_environment(tmp_path, retrace_emulator, role_vars,
                                                                                extra_vars):
    """The role's own deployment tasks inherit the play's module_defaults; the role's variables still decide."""
    (tmp_path / "steps.yml").write_text(json.dumps([DEPLOY_STEP]))
    include = {"name": "Deploy", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"},
               "vars": {"tracked_deployment_tasks": "steps.yml", "retrace_version": "role-1", **role_vars}}
    playbook = write_playbook(tmp_path, [play(include, module_defaults=_staging_defaults(retrace_emulator))])
    run = run_playbook(playbook, *extra_vars, env=_environment(tmp_path))
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]
    assert _recorded(retrace_emulator) == [("Production", "role-1", "completed")]


def test_a_retrace_variable_outranks_module_defaults(tmp_path, retrace_emulator):
    # a one-shot complete: a start would be left to the orphan guard, which cancels it once ansible-playbook is gone
    playbook = write_playbook(tmp_path, [play(task("completed", version="2.0"), module_defaults=_staging_defaults(retrace_emulator),
                                              vars={"retrace_environment_name": "Production"})])
    run = run_playbook(playbook, env=_environment(tmp_path))
    assert run.returncode == 0, run.stdout
    assert _recorded(retrace_emulator) == [("Production", "2.0", "completed")]


@pytest.mark.retrace_emulator(accounts={DEMO_KEY: {"apps": ["DemoApp"], "environments": ["Production", "Staging", "QA"]}})
def test_a_task_s_own_argument_outranks_retrace_variables_and_module_defaults(tmp_path, retrace_emulator):
    playbook = write_playbook(tmp_path, [play(task("completed", version="2.0", environment_name="QA"),
                                              module_defaults=_staging_defaults(retrace_emulator),
                                              vars={"retrace_environment_name": "Production"})])
    run = run_playbook(playbook, env=_environment(tmp_path))
    assert run.returncode == 0, run.stdout
    assert _recorded(retrace_emulator) == [("QA", "2.0", "completed")]
