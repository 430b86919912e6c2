"""stackify.retrace.tracked_deployment in plain playbooks: bad input, secrecy, serial batches."""

import json

import pytest

from ansible_run import run_playbook, write_playbook

SECRET_KEY = "s3cr3t-Role-Key-0b7e41"
TWO_HOSTS = "web1 ansible_connection=local\nweb2 ansible_connection=local\n"
STEPS = [
    {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying {{ retrace_version }}"}},
    {"name": "Failing step", "ansible.builtin.fail": {"msg": "broken on {{ inventory_hostname }}"},
     "when": "inventory_hostname in failing_hosts | default([])"},
]


def _role_play(tmp_path, role_vars: dict, **keywords) -> dict:
    (tmp_path / "steps.yml").write_text(json.dumps(STEPS))
    variables = {"tracked_deployment_tasks": "steps.yml", "retrace_app_name": "DemoApp",
                 "retrace_environment_name": "Production", "retrace_version": "1.0", **role_vars}
    return {"name": "Tracked deployment", "hosts": "all", "gather_facts": False, **keywords,
            "tasks": [{"name": "Deploy", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"},
                       "vars": variables}]}


def test_bad_role_input_fails_before_the_start_is_sent(tmp_path, role_env, retrace_emulator):
    for bad_vars, expected in (
        ({"tracked_deployment_tasks": None}, "missing required arguments: tracked_deployment_tasks"),
        ({"tracked_deployment_tasks": "missing.yml"}, "tracked_deployment_tasks: missing.yml not found"),
        ({"retrace_timeout": "soon"}, "retrace_timeout"),
        ({"retrace_version": "v" * 300}, "version: must be at most 255 characters"),
        ({"retrace_api_url": "http://retrace.example.com"}, "api_url: plain http:// would send the API key unencrypted"),
    ):
        role_vars = {name: value for name, value in bad_vars.items() if value is not None}
        play = _role_play(tmp_path, role_vars)
        if bad_vars.get("tracked_deployment_tasks", "") is None:
            del play["tasks"][0]["vars"]["tracked_deployment_tasks"]
        run = run_playbook(write_playbook(tmp_path, [play]), env=role_env, inventory=TWO_HOSTS)
        assert run.returncode == 2, run.stdout
        assert expected in run.stdout
        assert "deploying" not in run.stdout
    assert retrace_emulator.journal() == []


@pytest.mark.retrace_emulator(accounts={SECRET_KEY: {"apps": ["DemoApp"], "environments": ["Production"]}})
def test_key_stays_secret_when_the_role_fails_at_vvvv(tmp_path, role_env, retrace_emulator):
    (tmp_path / "secrets.yml").write_text(json.dumps({"retrace_api_key": SECRET_KEY}))
    play = _role_play(tmp_path, {"failing_hosts": ["web2"]}, vars_files=["secrets.yml"])
    env = dict(role_env, RETRACE_API_KEY="")
    run = run_playbook(write_playbook(tmp_path, [play]), "-vvvv", env=env, inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert [entry["action"] for entry in retrace_emulator.requests()] == ["start", "cancel"]
    assert "Deployment failed on web2: Failing step: broken on web2" in run.stdout
    assert SECRET_KEY not in run.stdout


def test_each_serial_batch_is_its_own_deployment(tmp_path, role_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {}, serial=1)]), env=role_env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert [entry["action"] for entry in retrace_emulator.requests()] == ["start", "complete", "start", "complete"]


def test_check_mode_sends_nothing(tmp_path, role_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {})]), "--check", env=role_env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert "deploying 1.0" in run.stdout
    assert retrace_emulator.journal() == []
