"""A setting that is missing, invalid or unknown, through ansible-playbook: nothing reaches Retrace, and the line names
the setting.  Without strict the task is ok with one warning and the play goes on; with strict it fails the task.
Only a bad ``state`` (a bug in the playbook) fails the task either way."""

import pytest

from ansible_run import DEMO, calls, play, run_playbook, task, write_playbook

VALID = {"state": "started", "version": "1.0", **DEMO}
SETTINGS = {"version": "1.0", **DEMO}

#: (case, options replacing VALID's, text the line must contain)
CASES = [
    ("missing app_name", {"app_name": None}, "app_name: is not set: set it with the task's app_name argument, -e retrace_app_name=..."),
    ("missing version", {"version": None}, "version: is not set: set it with the task's version argument, -e retrace_version=..."),
    ("empty version", {"version": ""}, "version: is empty"),
    ("blank environment", {"environment_name": "   "}, "environment_name: is empty"),
    ("empty key", {"api_key": ""}, "api_key: is not set"),
    ("overlong name", {"name": "n" * 256}, "name: must be at most 255 characters, got 256"),
    ("overlong uri", {"uri": "https://ci.example.com/" + "u" * 2048}, "uri: must be at most 2048 characters"),
    ("newline in key", {"api_key": "emulator-demo-key\nX-Injected: 1"}, "api_key: must not contain spaces, newlines"),
    ("space in key", {"api_key": "emulator demo key"}, "api_key: must not contain spaces"),
    ("non-ASCII key", {"api_key": "ключ-🔑"}, "api_key: must contain only ASCII characters"),
    ("newline in version", {"version": "1.0\n2.0"}, "version: must not contain control characters"),
    ("control character in name", {"name": "Release\x07"}, "name: must not contain control characters"),
    ("list as version", {"version": ["1", "2"]}, "version: must be a string, got list"),
    ("mapping as app_name", {"app_name": {"name": "DemoApp"}}, "app_name: must be a string, got dict"),
    ("YAML float as version", {"version": 1.1}, "version: must be a string, got the number 1.1"),
    ("boolean as branch", {"branch": True}, "branch: must be a string, got bool"),
    ("text as timeout", {"timeout": "soon"}, "timeout: must be a number of seconds, got 'soon'"),
    ("zero deadline", {"deadline": 0}, "deadline: must be more than 0"),
    ("text as validate_certs", {"validate_certs": "perhaps"}, "validate_certs: must be true or false, got 'perhaps'"),
    ("unknown stale_start", {"stale_start": "never"}, "stale_start: must be one of recover, fail, got 'never'"),
    ("relative uri", {"uri": "builds/7"}, "uri: must be an absolute http:// or https:// URL"),
    ("plain http to a remote host", {"api_url": "http://retrace.example.com"}, "api_url: plain http:// would send the API key unencrypted"),
    ("credentials in api_url", {"api_url": "https://user:secret@api.stackify.net"}, "api_url: must not carry credentials"),
    ("not a URL", {"api_url": "api.stackify.net"}, "api_url: must be an absolute https:// URL"),
]


def _case_tasks(index: int, options: dict, expected: str, strict: bool) -> list[dict]:
    arguments = {name: value for name, value in {**VALID, **options}.items() if value is not None}
    outcome = [f"case_{index} is failed"] if strict else [f"case_{index} is not failed", f"not case_{index}.tracked"]
    return [
        {"name": f"Case {index}", "stackify.retrace.deployment": arguments, "register": f"case_{index}", "ignore_errors": strict},
        {"name": f"Check case {index}", "ansible.builtin.assert": {
            "that": [*outcome, f"case_{index}.error == 'invalid_input'", f"{expected!r} in case_{index}.msg"],
            "fail_msg": f"case {index}: expected {expected!r} in {{{{ case_{index}.msg }}}}"}},
    ]


@pytest.mark.parametrize("strict", [False, True], ids=["fail-open", "strict"])
def test_every_bad_setting_sends_nothing_and_names_the_setting(tmp_path, ansible_env, retrace_emulator, strict):
    tasks = [step for index, (_case, options, expected) in enumerate(CASES) for step in _case_tasks(index, options, expected, strict)]
    env = {**ansible_env, "RETRACE_STRICT": "true"} if strict else ansible_env
    run = run_playbook(write_playbook(tmp_path, [play(*tasks)]), env=env)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("...ignoring") == (len(CASES) if strict else 0)
    if not strict:
        # each case's line; the two with a space or a newline in the key say the same line, which Ansible shows once
        assert run.stdout.count("[WARNING]: Retrace: ") == len(CASES) - 1
    assert retrace_emulator.journal() == []


@pytest.mark.parametrize("state, expected", [
    (None, "missing required arguments: state"),
    ("finished", "value of state must be one of: started, completed, cancelled, got: finished"),
])
def test_a_bad_state_fails_the_task_without_strict(tmp_path, ansible_env, retrace_emulator, state, expected):
    arguments = {name: value for name, value in {**VALID, "state": state}.items() if value is not None}
    run = run_playbook(write_playbook(tmp_path, [play({"stackify.retrace.deployment": arguments},
                                                      {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}})]),
                       env=ansible_env)
    assert run.returncode == 2 and expected in run.stdout and "deploying" not in run.stdout
    assert retrace_emulator.journal() == []


def test_an_unknown_argument_is_named_with_a_suggestion_and_the_deployment_recorded(tmp_path, ansible_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [play(task("started", **SETTINGS, stirct=True),
                                                      task("completed", **SETTINGS, stirct=True))]), env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("[WARNING]: Retrace: unknown setting 'stirct' in the task's arguments (did you mean strict?): it is "
                            "ignored") == 1  # the end task's identical line is not repeated
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]


def test_an_unknown_retrace_variable_is_named_with_a_suggestion(tmp_path, ansible_env, retrace_emulator):
    run = run_playbook(write_playbook(tmp_path, [play(task("started", **SETTINGS), vars={"retrace_enviroment_name": "Staging"})]),
                       env={**ansible_env, "RETRACE_ORPHAN_GUARD": "false"})
    assert run.returncode == 0, run.stdout
    assert ("unknown setting 'retrace_enviroment_name' in the play's variables and extra vars (did you mean "
            "retrace_environment_name?)") in run.stdout
    assert calls(retrace_emulator) == [("start", 202)]


@pytest.mark.parametrize("variable", ["RETRACE_API_KEY", "STACKIFY_API_KEY"])
def test_no_key_anywhere_warns_once_and_the_deployment_goes_on(tmp_path, ansible_env, retrace_emulator, variable):
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_API_KEY"}
    env[variable] = ""  # empty counts as unset
    playbook = write_playbook(tmp_path, [play(task("started", **SETTINGS, keywords={"run_once": True}),
                                              {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}},
                                              task("completed", **SETTINGS, keywords={"run_once": True}))])
    run = run_playbook(playbook, env=env)
    assert run.returncode == 0, run.stdout
    assert "deploying" in run.stdout
    # The start and the end say the same line; Ansible shows it once.
    warnings = [line for line in run.stdout.splitlines() if line.startswith("[WARNING]: Retrace: ")]
    assert len(warnings) == 1, run.stdout
    assert "NOT recorded: api_key: is not set" in warnings[0] and "RETRACE_API_KEY" in warnings[0]
    assert retrace_emulator.journal() == []


def test_no_key_with_strict_fails_before_the_deploy_step(tmp_path, ansible_env, retrace_emulator):
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_API_KEY"}
    playbook = write_playbook(tmp_path, [play(task("started", **SETTINGS, strict=True),
                                              {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}})])
    run = run_playbook(playbook, env=env)
    assert run.returncode == 2 and "deploying" not in run.stdout
    assert "NOT recorded: api_key: is not set" in run.stdout and "(strict: the run stops)" in run.stdout
    assert retrace_emulator.journal() == []
