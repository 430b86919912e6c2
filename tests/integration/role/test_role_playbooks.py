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


def _warnings(run) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("[WARNING]: Retrace: ")]


@pytest.mark.parametrize("bad_vars, expected", [
    ({"tracked_deployment_tasks": None}, "missing required arguments: tracked_deployment_tasks"),
    ({"tracked_deployment_tasks": "missing.yml"}, "tracked_deployment_tasks: missing.yml not found"),
])
def test_a_bad_tasks_file_fails_before_the_start_is_sent(tmp_path, role_env, retrace_emulator, bad_vars, expected):
    play = _role_play(tmp_path, {name: value for name, value in bad_vars.items() if value is not None})
    if bad_vars.get("tracked_deployment_tasks", "") is None:
        del play["tasks"][0]["vars"]["tracked_deployment_tasks"]
    run = run_playbook(write_playbook(tmp_path, [play]), env=role_env, inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert expected in run.stdout and "deploying" not in run.stdout
    assert retrace_emulator.journal() == []


BAD_SETTINGS = [
    ({"retrace_timeout": "soon"}, "timeout: must be a number of seconds, got 'soon'"),
    ({"retrace_stale_start": "never"}, "stale_start: must be one of recover, fail, got 'never'"),
    ({"retrace_version": "v" * 300}, "version: must be at most 255 characters"),
    ({"retrace_version": 1.10}, "version: must be a string, got the number 1.1"),
    ({"retrace_api_url": "http://retrace.example.com"}, "api_url: plain http:// would send the API key unencrypted"),
]


@pytest.mark.parametrize("bad_vars, expected", BAD_SETTINGS)
def test_a_bad_setting_warns_once_and_the_deployment_goes_on(tmp_path, role_env, retrace_emulator, bad_vars, expected):
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, bad_vars)]), env=role_env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("deploying") == 2
    [warning] = _warnings(run)
    assert "NOT recorded" in warning and expected in warning and "(strict is off: the deployment goes on)" in warning
    assert retrace_emulator.journal() == []


@pytest.mark.parametrize("bad_vars, expected", BAD_SETTINGS[:2])
def test_a_bad_setting_with_strict_fails_the_play_before_the_tasks(tmp_path, role_env, retrace_emulator, bad_vars, expected):
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {**bad_vars, "retrace_strict": True})]), env=role_env,
                       inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert expected in run.stdout and "(strict: the run stops)" in run.stdout and "deploying" not in run.stdout
    assert retrace_emulator.journal() == []


def test_a_strict_that_is_no_boolean_counts_as_strict_and_is_named(tmp_path, role_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {"retrace_strict": "ture"})]), env=role_env,
                       inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert "strict: must be true or false, got 'ture'" in run.stdout and "deploying" not in run.stdout
    assert retrace_emulator.journal() == []


def test_no_key_anywhere_runs_the_tasks_with_one_warning(tmp_path, role_env, retrace_emulator):
    env = {**role_env, "RETRACE_API_KEY": ""}
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {})]), env=env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("deploying") == 2
    [warning] = _warnings(run)
    assert "NOT recorded: api_key: is not set" in warning and "RETRACE_API_KEY" in warning
    assert "retrace_api_key in group_vars" in warning and "argument" not in warning  # the role's task takes none
    assert retrace_emulator.journal() == []


def test_no_key_with_strict_fails_the_play_before_the_tasks(tmp_path, role_env, retrace_emulator):
    env = {**role_env, "RETRACE_API_KEY": "", "RETRACE_STRICT": "true"}
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {})]), env=env, inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert "NOT recorded: api_key: is not set" in run.stdout and "deploying" not in run.stdout
    assert retrace_emulator.journal() == []


def test_an_unknown_retrace_variable_is_one_warning_and_the_deployment_recorded(tmp_path, role_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {"retrace_stirct": True})]), env=role_env,
                       inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert _warnings(run) == ["[WARNING]: Retrace: unknown setting 'retrace_stirct' in the play's variables and extra vars "
                              "(did you mean retrace_strict?): it is ignored"]
    assert [entry["action"] for entry in retrace_emulator.requests()] == ["start", "complete"]


def test_extra_vars_outrank_the_role_s_vars(tmp_path, role_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [_role_play(tmp_path, {})]), "-e", "retrace_version=1.1", env=role_env,
                       inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert [(entry["action"], entry["body"]["Version"]) for entry in retrace_emulator.requests()] == [("start", "1.1"),
                                                                                                      ("complete", "1.1")]


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
