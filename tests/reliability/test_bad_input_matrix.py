"""Bad-input rows that the callback and Fabric suites did not already cover (matrix.py).

Nothing may reach the emulator, and the message must name the field.  The callback never fails
a playbook: it warns once, names the setting and lets the playbook run untracked.
"""

from __future__ import annotations

import pytest

from ansible_run import run_playbook, write_playbook
from reliability_helpers import retrace_warnings

# (environment overrides, text the one warning must contain)
CALLBACK_CASES = {
    "key-with-newline": ({"RETRACE_API_KEY": "emulator-demo-key\nX-Injected: 1"}, "api_key: must not contain"),
    "plain-http": ({"RETRACE_API_URL": "http://retrace.example.com"}, "api_url: plain http:// would send the API key unencrypted"),
    "api-url-not-a-url": ({"RETRACE_API_URL": "api.stackify.net"}, "api_url: must be an absolute https:// URL"),
    "blank-environment": ({"RETRACE_ENVIRONMENT_NAME": "   "}, "environment_name"),
    "version-too-long": ({"RETRACE_VERSION": "v" * 256}, "version: must be at most 255 characters"),
    "name-control-character": ({"RETRACE_DEPLOYMENT_NAME": "Release\x07"}, "name: must not contain control characters"),
    "relative-uri": ({"RETRACE_URI": "builds/7"}, "uri: must be an absolute http:// or https:// URL"),
    "negative-timeout": ({}, "timeout: must be more than 0"),
    "validate-certs-not-boolean": ({}, "validate_certs: must be true or false, got 'perhaps'"),
}


@pytest.mark.parametrize("case", CALLBACK_CASES)
def test_callback_rejects_bad_settings_before_sending(tmp_path, callback_env, retrace_emulator, case):
    overrides, message = CALLBACK_CASES[case]
    extra = {"negative-timeout": ("-e", "retrace_timeout=-1"),
             "validate-certs-not-boolean": ("-e", "retrace_validate_certs=perhaps")}.get(case, ())
    playbook = write_playbook(tmp_path, [{"hosts": "localhost", "gather_facts": False,
                                          "tasks": [{"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}}]}])
    run = run_playbook(playbook, *extra, env=dict(callback_env, **overrides))
    assert run.returncode == 0, run.stdout
    warnings = retrace_warnings(run.stdout)
    assert len(warnings) == 1 and message in warnings[0], run.stdout
    assert retrace_emulator.journal() == []
    assert "emulator-demo-key" not in run.stdout


@pytest.mark.fabric
@pytest.mark.parametrize("steps, message", [([], "steps: must be a non-empty list"),
                                            ([{"run": "true", "sudo": "maybe"}], "steps: step 1: sudo must be true or false"),
                                            ([42], "steps: step 1 must be a command")], ids=["empty", "bad-sudo", "not-a-command"])
def test_fabric_deploy_rejects_bad_steps_before_the_start(fab, retrace_emulator, steps, message):
    fab.settings({"steps": steps})
    result = fab.run("deploy", "--version", "9.0")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "nothing was sent" in result.stderr
    assert retrace_emulator.journal() == []
