"""``fab retrace.start / complete / cancel`` against the emulator: each call, every fault row, bad input."""

from __future__ import annotations

import pytest

from retrace_emulator.accounts import DEMO_API_KEY

IDENTITY = ("--version", "3.0.0")


STRICT = {"FABRIC_RETRACE_STRICT": "yes"}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _no_key(result) -> None:
    assert DEMO_API_KEY not in result.stdout + result.stderr


def test_start_complete_cancel_each_send_one_call_and_say_what_happened(project):
    started = project.run("retrace.start", *IDENTITY, "--name", "Three", "--branch", "main", "--commit", "abc123",
                          "--uri", "https://ci.example.com/build/7")
    completed = project.run("retrace.complete", *IDENTITY)
    restarted = project.run("retrace.start", *IDENTITY)
    cancelled = project.run("retrace.cancel", *IDENTITY)

    for result, action, said in ((started, "start", "started"), (completed, "complete", "completed"),
                                 (restarted, "start", "started"), (cancelled, "cancel", "cancelled")):
        assert result.returncode == 0, result.stderr
        line, outcome = _lines(result.stdout)
        assert line.startswith(f"retrace.{action}: sent {{") and "-> HTTP 202 Accepted (1 attempt" in line
        assert f"{project.emulator.url}/api/v1/deployments/{action}" in line
        assert outcome == f"retrace: deployment 3.0.0 of DemoApp to Production {said}"
        assert result.stderr == ""
        _no_key(result)
    assert project.actions() == [("start", 202), ("complete", 202), ("start", 202), ("cancel", 202)]
    first, cancel = project.emulator.requests()[0]["body"], project.emulator.requests("cancel")[0]["body"]
    assert first == {"Name": "Three", "Uri": "https://ci.example.com/build/7", "Branch": "main", "Commit": "abc123",
                     "Version": "3.0.0", "AppName": "DemoApp", "EnvironmentName": "Production"}
    assert cancel == {"Version": "3.0.0", "AppName": "DemoApp", "EnvironmentName": "Production"}


def test_the_user_agent_names_the_fabric_entry_point(project):
    assert project.run("retrace.start", *IDENTITY).returncode == 0
    assert "(fabric; python" in project.emulator.requests("start")[0]["headers"]["User-Agent"]


# (fault queued for start, journal statuses expected, fabric.yaml overrides)
RECOVERED = {
    "503 with Retry-After": ([{"status": 503, "retry_after": "1"}], [503, 202], {}),
    "429": ([{"status": 429, "retry_after": "0"}], [429, 202], {}),
    "500": ([{"status": 500}], [500, 202], {}),
    "502": ([{"status": 502}], [502, 202], {}),
    "504": ([{"status": 504}], [504, 202], {}),
    "dropped connection": ([{"drop": True}], [None, 202], {}),
    "connection reset": ([{"reset": True}], [None, 202], {}),
    "hang past the timeout": ([{"hang": True}], [None, 202], {"timeout": 0.5}),
    "slow answer within the timeout": ([{"delay": 0.5}], [202], {}),
}


@pytest.mark.parametrize("faults, statuses, settings", RECOVERED.values(), ids=RECOVERED.keys())
def test_retryable_faults_are_retried_until_accepted(project, faults, statuses, settings):
    project.fabric_yaml(settings)
    project.emulator.inject("start", faults)

    result = project.run("retrace.start", *IDENTITY)

    assert result.returncode == 0, result.stderr
    assert [entry["status"] for entry in project.emulator.requests("start")] == statuses
    assert f"({len(statuses)} attempt" in result.stdout
    _no_key(result)


def test_an_accepted_call_whose_answer_was_lost_counts_as_done(project):
    project.emulator.inject("start", [{"process": True, "drop": True}])

    result = project.run("retrace.start", *IDENTITY)

    assert result.returncode == 0, result.stderr
    assert [entry["status"] for entry in project.emulator.requests("start")] == [None, 409]
    assert "earlier attempt had already been accepted" in result.stdout


def test_an_api_that_stays_overloaded_is_reported_unreachable_within_the_deadline(project):
    project.fabric_yaml({"deadline": 2})
    project.emulator.inject("start", [{"status": 503}] * 20)

    result = project.run("retrace.start", *IDENTITY, env=STRICT)

    assert result.returncode == 1
    assert "unreachable" in result.stderr and "HTTP 503" in result.stderr
    assert 2 <= len(project.emulator.requests("start")) < 20
    _no_key(result)


def test_a_closed_port_is_reported_unreachable(project):
    project.fabric_yaml({"deadline": 1.5})
    project.emulator.stop()

    result = project.run("retrace.start", *IDENTITY, env=STRICT)

    assert result.returncode == 1
    assert "unreachable" in result.stderr and "connection refused" in result.stderr


def test_another_4xx_fails_at_once(project):
    project.emulator.inject("start", [{"status": 404}])

    result = project.run("retrace.start", *IDENTITY, env=STRICT)

    assert result.returncode == 1 and "HTTP 404" in result.stderr
    assert len(project.emulator.requests("start")) == 1


def test_a_wrong_key_is_rejected_without_being_shown(project):
    wrong_key = "wrong-key-0123456789"

    result = project.run("retrace.start", *IDENTITY, env={"RETRACE_API_KEY": wrong_key, **STRICT})

    assert result.returncode == 1
    assert "rejected the API key" in result.stderr
    assert wrong_key not in result.stdout + result.stderr
    assert len(project.emulator.requests("start")) == 1


def test_an_unknown_app_is_named(project):
    result = project.run("retrace.start", *IDENTITY, "--app-name", "NoSuchApp", env={"RETRACE_STRICT": "true"})

    assert result.returncode == 1
    assert "does not know app 'NoSuchApp'" in result.stderr


def test_cancel_without_start_is_a_bad_transition(project):
    result = project.run("retrace.cancel", *IDENTITY, env=STRICT)

    assert result.returncode == 1
    assert "HTTP 409" in result.stderr and "not in progress" in result.stderr


@pytest.mark.parametrize("strict, code", [(None, 0), ("yes", 1), ("false", 0)])
def test_without_strict_a_refused_or_unreachable_call_warns_and_exits_0(project, strict, code):
    project.fabric_yaml({"deadline": 1})
    project.emulator.stop()

    result = project.run("retrace.start", *IDENTITY, env={"FABRIC_RETRACE_STRICT": strict})

    assert result.returncode == code, result.stderr
    if code == 0:
        assert result.stderr.count("WARNING") == 1 and "NOT recorded: start failed" in result.stderr


def test_complete_without_start_is_a_one_shot_deployment_with_every_field(project):
    result = project.run("retrace.complete", *IDENTITY, "--name", "Hotfix", "--branch", "main", "--commit", "abc123",
                         "--uri", "https://ci.example.com/build/7")

    assert result.returncode == 0, result.stderr
    assert project.actions() == [("complete", 202)]
    body = project.emulator.requests("complete")[0]["body"]
    assert {key: body.get(key) for key in ("Name", "Branch", "Commit", "Uri")} == {
        "Name": "Hotfix", "Branch": "main", "Commit": "abc123", "Uri": "https://ci.example.com/build/7"}


BAD_INPUT = {
    "no key": ((), {"RETRACE_API_KEY": None}, {}, "api_key: is not set"),
    "key with a newline": ((), {"RETRACE_API_KEY": "abc\ndef"}, {}, "api_key: must not contain"),
    "plain http to a remote host": ((), {}, {"api_url": "http://api.stackify.net"}, "api_url: plain http://"),
    "api_url not http": (("--api-url", "ftp://example.com"), {}, {}, "api_url: must be an absolute https:// URL"),
    "no app": ((), {}, {"app_name": None}, "app_name: is not set"),
    "empty environment flag": (("--environment-name", ""), {}, {}, "environment_name: is empty"),
    "version too long": (("--version", "v" * 256), {}, {}, "version: must be at most 255 characters"),
    "version not a string in fabric.yaml": ((), {}, {"version": 1.5}, "version: must be a string, got the number 1.5"),
    "name with a control character": (("--name", "a\x07b"), {}, {}, "name: must not contain control characters"),
    "uri not a URL": (("--uri", "build 7"), {}, {}, "uri: must be an absolute http:// or https:// URL"),
    "timeout negative": ((), {}, {"timeout": -1}, "timeout: must be more than 0"),
    "validate_certs not a boolean": ((), {}, {"validate_certs": "maybe"}, "validate_certs: must be true or false"),
    "retrace not a mapping": ((), {}, None, "retrace: must be a mapping"),
}


def _bad_input(project, flags, env, settings):
    if settings is None:
        (project.directory / "fabric.yaml").write_text(f"retrace: FooApp\napi_url: {project.emulator.url}\n", encoding="utf-8")
    else:
        project.fabric_yaml(settings)
    needs_version = "--version" not in flags and "version" not in (settings or {})
    arguments = ("--version", "3.1.0", *flags) if needs_version else flags
    return arguments


@pytest.mark.parametrize("flags, env, settings, message", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_fails_before_anything_is_sent(project, flags, env, settings, message):
    """With strict (here RETRACE_STRICT), exit 2 and nothing sent."""
    arguments = _bad_input(project, flags, env, settings)

    result = project.run("retrace.start", *arguments, env={"RETRACE_STRICT": "true", **env})

    assert result.returncode == 2, result.stderr
    (line,) = _lines(result.stderr)
    assert line.startswith("retrace: ERROR: ") and "NOT recorded" in line and message in line and "(strict: the run stops)" in line
    assert project.emulator.journal() == [] and result.stdout == ""
    _no_key(result)


@pytest.mark.parametrize("flags, env, settings, message", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_without_strict_warns_once_sends_nothing_and_exits_0(project, flags, env, settings, message):
    arguments = _bad_input(project, flags, env, settings)

    result = project.run("retrace.start", *arguments, env=env)

    assert result.returncode == 0, result.stderr
    (line,) = _lines(result.stderr)
    assert line.startswith("retrace: WARNING: ") and "NOT recorded" in line and message in line
    assert project.emulator.journal() == [] and result.stdout == ""
    _no_key(result)


@pytest.mark.parametrize("action", ["complete", "cancel"])
def test_an_end_without_a_key_says_how_to_give_it_and_exits_0(project, action):
    result = project.run(f"retrace.{action}", *IDENTITY, env={"RETRACE_API_KEY": None})

    assert result.returncode == 0, result.stderr
    (line,) = _lines(result.stderr)
    assert line.startswith("retrace: WARNING: deployment 3.0.0 of DemoApp to Production NOT recorded: api_key: is not set")
    assert "RETRACE_API_KEY" in line and "--api-key" not in line
    assert project.emulator.journal() == []


@pytest.mark.parametrize("value", ["maybe", "ture"])
def test_an_invalid_strict_value_counts_as_strict(project, value):
    result = project.run("retrace.start", *IDENTITY, env={"FABRIC_RETRACE_STRICT": value})

    assert result.returncode == 2, result.stderr
    assert f"strict: must be true or false, got '{value}'" in result.stderr and "retrace: ERROR: " in result.stderr
    assert project.emulator.journal() == []


@pytest.mark.parametrize("strict", [None, "true"])
def test_a_misspelt_setting_is_named_and_the_call_is_recorded(project, strict):
    project.fabric_yaml({"stirct": True, "app-name": "Other"})

    result = project.run("retrace.start", *IDENTITY, env={"RETRACE_STRICT": strict})

    assert result.returncode == 0, result.stderr
    assert "unknown setting 'stirct' in the retrace: section of Fabric's config (did you mean strict?)" in result.stderr
    assert "unknown setting 'app-name'" in result.stderr and "(did you mean app_name?)" in result.stderr
    assert project.actions() == [("start", 202)]


def test_no_version_anywhere_is_not_recorded_and_says_how_to_set_it(project):
    result = project.run("retrace.start")

    assert result.returncode == 0, result.stderr
    (line,) = _lines(result.stderr)
    assert "NOT recorded: version: is not set" in line
    assert "--version" in line and "RETRACE_VERSION" in line and "retrace.version in fabric.yaml" in line
    assert project.emulator.journal() == []


def test_the_key_is_never_shown_even_in_fabric_debug_output(project):
    project.emulator.inject("start", [{"status": 503, "retry_after": "0", "body": {"Message": f"bad {DEMO_API_KEY}"}}])

    result = project.run("-d", "retrace.start", *IDENTITY)

    assert result.returncode == 0, result.stderr
    _no_key(result)
    assert "Retrace start: attempt 1 failed (HTTP 503: bad ********)" in result.stderr


def test_help_says_the_key_never_comes_from_a_flag(project):
    result = project.run("--help", "retrace.start")

    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "never from a flag" in text
    for flag in ("--app-name", "--environment-name", "--version", "--name", "--branch", "--commit", "--uri", "--api-url"):
        assert flag in result.stdout
    assert "--api-key" not in result.stdout


def test_a_key_kept_in_fabric_yaml_or_fabric_env_is_redacted_from_fabric_debug_output(project):
    project.fabric_yaml({"api_key": DEMO_API_KEY})
    in_file = project.run("-d", "retrace.start", "--version", "3.2.0", env={"RETRACE_API_KEY": None})
    in_env = project.run("-d", "retrace.start", "--version", "3.2.1", env={"RETRACE_API_KEY": None, "FABRIC_RETRACE_API_KEY": DEMO_API_KEY})

    for result in (in_file, in_env):
        assert result.returncode == 0, result.stderr
        assert "'api_key': '********'" in result.stderr, "Fabric's debug output did show the setting"
        _no_key(result)
