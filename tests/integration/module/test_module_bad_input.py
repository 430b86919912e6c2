"""Bad input fails the task with a message naming the option, before any request reaches Retrace."""

import pytest

from ansible_run import DEMO, play, run_playbook, write_playbook

VALID = {"state": "started", "version": "1.0", **DEMO}

#: (case, options replacing VALID's, text the failure message must contain)
CASES = [
    ("missing app_name", {"app_name": None}, "app_name: is required but was not set"),
    ("missing version", {"version": None}, "version: is required but was not set"),
    ("missing state", {"state": None}, "missing required arguments: state"),
    ("empty version", {"version": ""}, "version: is required but is empty"),
    ("blank environment", {"environment_name": "   "}, "environment_name: is required but is empty"),
    ("empty key", {"api_key": ""}, "api_key: is required"),
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
    ("unknown state", {"state": "finished"}, "value of state must be one of: started, completed, cancelled, got: finished"),
    ("text as timeout", {"timeout": "soon"}, "timeout"),
    ("zero deadline", {"deadline": 0}, "deadline: must be more than 0"),
    ("text as validate_certs", {"validate_certs": "perhaps"}, "validate_certs"),
    ("unknown option", {"colour": "red"}, "unsupported parameters colour. Supported parameters include: api_key"),
    ("relative uri", {"uri": "builds/7"}, "uri: must be an absolute http:// or https:// URL"),
    ("plain http to a remote host", {"api_url": "http://retrace.example.com"}, "api_url: plain http:// would send the API key unencrypted"),
    ("credentials in api_url", {"api_url": "https://user:secret@api.stackify.net"}, "api_url: must not carry credentials"),
    ("not a URL", {"api_url": "api.stackify.net"}, "api_url: must be an absolute https:// URL"),
]


def _case_tasks(index: int, options: dict, expected: str) -> list[dict]:
    arguments = {name: value for name, value in {**VALID, **options}.items() if value is not None}
    return [
        {"name": f"Case {index}", "stackify.retrace.deployment": arguments, "register": f"case_{index}", "ignore_errors": True},
        {"name": f"Check case {index}", "ansible.builtin.assert": {
            "that": [f"case_{index} is failed", f"case_{index}.error == 'invalid_input'",
                     f"{expected!r} in case_{index}.msg"],
            "fail_msg": f"case {index}: expected {expected!r} in {{{{ case_{index}.msg }}}}"}},
    ]


def test_every_bad_input_fails_before_anything_is_sent(tmp_path, ansible_env, retrace_emulator):
    tasks = [step for index, (_case, options, expected) in enumerate(CASES) for step in _case_tasks(index, options, expected)]
    run = run_playbook(write_playbook(tmp_path, [play(*tasks)]), env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("...ignoring") == len(CASES)
    assert retrace_emulator.journal() == []


@pytest.mark.parametrize("variable", ["RETRACE_API_KEY", "STACKIFY_API_KEY"])
def test_missing_key_is_reported_with_where_to_set_it(tmp_path, ansible_env, retrace_emulator, variable):
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_API_KEY"}
    env[variable] = ""  # empty counts as unset
    run = run_playbook(write_playbook(tmp_path, [play({"stackify.retrace.deployment": VALID})]), env=env)
    assert run.returncode == 2
    assert "api_key: is required: set api_key or api_key_file" in run.stdout
    assert retrace_emulator.journal() == []
