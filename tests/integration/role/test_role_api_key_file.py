"""stackify.retrace.tracked_deployment with retrace_api_key_file / RETRACE_API_KEY_FILE."""

import json

import pytest

from ansible_run import run_playbook, write_playbook

FILE_KEY = "f1le-Role-Key-6d02ab"
ONE_HOST = "web1 ansible_connection=local\n"


def _play(tmp_path, role_vars: dict) -> dict:
    (tmp_path / "steps.yml").write_text(json.dumps([{"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}}]))
    variables = {"tracked_deployment_tasks": "steps.yml", "retrace_app_name": "DemoApp",
                 "retrace_environment_name": "Production", "retrace_version": "1.0", **role_vars}
    return {"name": "Tracked deployment", "hosts": "all", "gather_facts": False,
            "tasks": [{"name": "Deploy", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"},
                       "vars": variables}]}


def _key_file(tmp_path):
    path = tmp_path / "retrace.key"
    path.write_text(f"  {FILE_KEY}\n")
    path.chmod(0o600)
    return path


@pytest.mark.retrace_emulator(accounts={FILE_KEY: {"apps": ["DemoApp"], "environments": ["Production"]}})
@pytest.mark.parametrize("source", ["role_variable", "environment"])
def test_the_key_comes_from_the_file(tmp_path, role_env, retrace_emulator, source):
    key_file = _key_file(tmp_path)
    role_vars = {"retrace_api_key_file": str(key_file)} if source == "role_variable" else {}
    env = dict(role_env, RETRACE_API_KEY="")  # empty: unset; the emulator knows only FILE_KEY
    if source == "environment":
        env["RETRACE_API_KEY_FILE"] = str(key_file)
    run = run_playbook(write_playbook(tmp_path, [_play(tmp_path, role_vars)]), "-vvvv", env=env, inventory=ONE_HOST)
    assert run.returncode == 0, run.stdout
    assert [(entry["action"], entry["status"]) for entry in retrace_emulator.requests()] == [("start", 202), ("complete", 202)]
    assert FILE_KEY not in run.stdout


@pytest.mark.parametrize("strict", [False, True], ids=["fail-open", "strict"])
def test_a_key_and_a_key_file_send_nothing(tmp_path, role_env, retrace_emulator, strict):
    """retrace_api_key_file and RETRACE_API_KEY (the role's environment): NOT recorded; the steps run unless strict."""
    role_vars = {"retrace_api_key_file": str(_key_file(tmp_path)), "retrace_strict": strict}
    run = run_playbook(write_playbook(tmp_path, [_play(tmp_path, role_vars)]), env=role_env, inventory=ONE_HOST)
    assert run.returncode == (2 if strict else 0), run.stdout
    assert "NOT recorded: api_key, api_key_file: both are set: set api_key or api_key_file, not both" in run.stdout
    assert ("deploying" in run.stdout) is not strict
    assert retrace_emulator.journal() == []
