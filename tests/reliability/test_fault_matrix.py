"""Fault-matrix rows that the module, role, callback and Fabric suites did not already cover (matrix.py).

Faults are injected into the emulator; every entry point then runs for real and the journal is
read: which requests arrived, with which answer, and how long the client waited between them.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time

import pytest

from ansible_run import DEMO, DEMO_KEY, calls, play, run_playbook, task, write_playbook
from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport
from reliability_helpers import ansible_warnings, retrace_warnings

TWO_HOSTS = "web1 ansible_connection=local\nweb2 ansible_connection=local\n"
STEPS = [{"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying {{ retrace_version }}"}}]


def http_date(seconds_ahead: float) -> str:
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


def start_directly(emulator, version: str) -> None:
    """Put a deployment in progress the way another pipeline would."""
    client, deployment = create_client({"api_key": DEMO_KEY, "api_url": emulator.url, **DEMO, "version": version},
                                       UrllibTransport(), entry_point="reliability")
    client.start(deployment)


def role_play(tmp_path, **role_vars) -> dict:
    (tmp_path / "steps.yml").write_text(json.dumps(STEPS))
    variables = {"tracked_deployment_tasks": "steps.yml", "retrace_app_name": "DemoApp",
                 "retrace_environment_name": "Production", "retrace_version": "1.0", **role_vars}
    return {"name": "Tracked deployment", "hosts": "all", "gather_facts": False,
            "tasks": [{"name": "Deploy", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"},
                       "vars": variables}]}


# (faults per action, (action, status) the journal must show, whose wait to check, extra role/callback variables)
RECOVERIES = {
    "503x2-then-429-seconds": ({"start": [{"status": 503}, {"status": 503}], "complete": [{"status": 429, "retry_after": "1"}]},
                               [("start", 503), ("start", 503), ("start", 202), ("complete", 429), ("complete", 202)], "complete", {}),
    "reset-then-429-date": ({"start": [{"reset": True}], "complete": [{"status": 429, "retry_after": "HTTP-DATE"}]},
                            [("start", None), ("start", 202), ("complete", 429), ("complete", 202)], "complete", {}),
    "lost-answer-then-hang": ({"start": [{"process": True, "drop": True}], "complete": [{"hang": True}]},
                              [("start", None), ("start", 409), ("complete", None), ("complete", 202)], None, {"timeout": 1}),
    "lost-answer": ({"start": [{"process": True, "drop": True}]}, [("start", None), ("start", 409), ("complete", 202)], None, {}),
}
ROLE_RECOVERIES = ("503x2-then-429-seconds", "reset-then-429-date", "lost-answer-then-hang")
CALLBACK_RECOVERIES = ("503x2-then-429-seconds", "reset-then-429-date", "lost-answer")


def inject(emulator, faults: dict, ahead: float = 4) -> None:
    """Queue faults; an "HTTP-DATE" Retry-After becomes a date ``ahead`` seconds from now."""
    for action, queue in faults.items():
        emulator.inject(action, [dict(fault, retry_after=http_date(ahead)) if fault.get("retry_after") == "HTTP-DATE" else fault
                                 for fault in queue])


def check_wait(emulator, action: str | None) -> None:
    """The retry came no earlier than Retry-After said: 1 s after, or not before the date."""
    if not action:
        return
    first, second = emulator.requests(action)[:2]
    retry_after = (first["fault"] or {}).get("retry_after")
    if retry_after and not retry_after.isdigit():
        not_before = email.utils.parsedate_to_datetime(retry_after)
        assert datetime.datetime.fromisoformat(second["time"]) >= not_before, "retried before the Retry-After date"
    else:
        assert second["monotonic"] - first["monotonic"] >= 0.9, "Retry-After was not honoured"


# --- module ----------------------------------------------------------------------------------------

def test_module_retries_503_twice_and_honours_an_http_date(tmp_path, ansible_env, retrace_emulator):
    inject(retrace_emulator, {"start": [{"status": 503}, {"status": 503}], "complete": [{"status": 429, "retry_after": "HTTP-DATE"}]})
    playbook = write_playbook(tmp_path, [play(
        task("started", version="6.0", **DEMO, keywords={"register": "started"}),
        task("completed", version="6.0", **DEMO, keywords={"register": "completed"}),
        {"name": "Check the attempts", "ansible.builtin.assert": {"that": [
            "started is changed and started.attempts == 3 and started.status == 202",
            "completed is changed and completed.attempts == 2 and completed.status == 202"]}},
    )])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 503), ("start", 503), ("start", 202), ("complete", 429), ("complete", 202)]
    check_wait(retrace_emulator, "complete")


# --- role ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ROLE_RECOVERIES)
def test_role_recovers_from_retryable_faults(tmp_path, ansible_env, retrace_emulator, case):
    faults, expected, wait_for, options = RECOVERIES[case]
    inject(retrace_emulator, faults)
    play_ = role_play(tmp_path, **{f"retrace_{name}": value for name, value in options.items()})
    run = run_playbook(write_playbook(tmp_path, [play_]), env=ansible_env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert "deploying 1.0" in run.stdout
    assert calls(retrace_emulator) == expected
    check_wait(retrace_emulator, wait_for)


# (role variables, prepare, journal, message): Retrace refuses the start, or cannot be reached
REFUSALS = {
    "401": ({"retrace_api_key": "not-a-known-key"}, None, [("start", 401)], "Retrace rejected the API key (HTTP 401)"),
    "400-unknown-app": ({"retrace_app_name": "NoSuchApp"}, None, [("start", 400)], "does not know app 'NoSuchApp'"),
    "409-in-progress-stale-start-fail": ({"retrace_stale_start": "fail"}, "start", [("start", 202), ("start", 409)],
                                         "already in progress"),
    # The URL comes from the environment, beside the key: a URL from Ansible variables never gets the key.
    "connection-refused": ({"retrace_deadline": 1.5}, None, [], "Retrace API at http://127.0.0.1:CLOSED unreachable"),
}


def run_refused_role(tmp_path, ansible_env, emulator, closed_port, case, **more_vars):
    role_vars, prepare, _expected, _message = REFUSALS[case]
    if prepare:
        start_directly(emulator, "1.0")
    env = {**ansible_env, "RETRACE_API_URL": f"http://127.0.0.1:{closed_port}"} if case == "connection-refused" else ansible_env
    return run_playbook(write_playbook(tmp_path, [role_play(tmp_path, **role_vars, **more_vars)]), env=env, inventory=TWO_HOSTS)


def refusal_message(case, closed_port):
    return REFUSALS[case][3].replace("CLOSED", str(closed_port))


@pytest.mark.parametrize("case", REFUSALS)
def test_role_deploys_untracked_with_one_warning_when_the_start_is_refused(tmp_path, ansible_env, retrace_emulator,
                                                                           closed_port, case):
    _role_vars, _prepare, expected, _message = REFUSALS[case]
    run = run_refused_role(tmp_path, ansible_env, retrace_emulator, closed_port, case)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count('"msg": "deploying 1.0"') == 2, "every host must still deploy"
    (warning,) = [line for line in retrace_warnings(run.stdout) if "not recorded" in line.lower()]
    assert refusal_message(case, closed_port) in warning
    assert calls(retrace_emulator) == expected, "no end may follow a start Retrace did not record"
    assert "not-a-known-key" not in run.stdout


@pytest.mark.parametrize("case", REFUSALS)
def test_role_strict_stops_before_deploying_when_the_start_is_refused(tmp_path, ansible_env, retrace_emulator,
                                                                      closed_port, case):
    _role_vars, _prepare, expected, _message = REFUSALS[case]
    run = run_refused_role(tmp_path, ansible_env, retrace_emulator, closed_port, case, retrace_strict=True)
    assert run.returncode == 2, run.stdout
    assert refusal_message(case, closed_port) in " ".join(run.stdout.split())
    assert "deploying 1.0" not in run.stdout, "the deployment tasks ran although the start failed"
    assert calls(retrace_emulator) == expected
    assert "not-a-known-key" not in run.stdout


STALE_RECOVERED = [("start", 202), ("start", 409), ("cancel", 202), ("start", 202), ("complete", 202)]


def test_role_recovers_a_deployment_a_dead_run_left_in_progress(tmp_path, ansible_env, retrace_emulator):
    start_directly(retrace_emulator, "1.0")  # its process is gone: no orphan guard holds it
    run = run_playbook(write_playbook(tmp_path, [role_play(tmp_path)]), env=ansible_env, inventory=TWO_HOSTS)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count('"msg": "deploying 1.0"') == 2
    assert calls(retrace_emulator) == STALE_RECOVERED
    (warning,) = [warning for warning in ansible_warnings(run.stdout) if "left in progress" in warning]
    assert "Retrace" in warning, f"a warning among a playbook's output must say what it is about: {warning}"


# --- callback ----------------------------------------------------------------------------------------

def callback_playbook(tmp_path):
    return write_playbook(tmp_path, [play({"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}})])


@pytest.mark.parametrize("case", CALLBACK_RECOVERIES)
def test_callback_recovers_from_retryable_faults(tmp_path, callback_env, retrace_emulator, case):
    faults, expected, wait_for, _options = RECOVERIES[case]
    inject(retrace_emulator, faults)
    run = run_playbook(callback_playbook(tmp_path), env=callback_env)
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == expected
    assert "Retrace: deployment 1.0.0 of DemoApp to Production completed" in run.stdout
    assert retrace_warnings(run.stdout) == []
    check_wait(retrace_emulator, wait_for)


# --- Fabric ------------------------------------------------------------------------------------------

FABRIC_RECOVERIES = {
    "503x2": ([{"status": 503}, {"status": 503}], [503, 503, 202], False),
    "429-seconds": ([{"status": 429, "retry_after": "1"}], [429, 202], True),
    "429-http-date": ([{"status": 429, "retry_after": "HTTP-DATE"}], [429, 202], True),
}


@pytest.mark.fabric
@pytest.mark.parametrize("case", FABRIC_RECOVERIES)
def test_fabric_recovers_from_retryable_faults(fab, retrace_emulator, case):
    faults, statuses, check = FABRIC_RECOVERIES[case]
    inject(retrace_emulator, {"start": faults}, ahead=3)
    result = fab.run("retrace.start", "--version", "7.0")
    assert result.returncode == 0, result.stderr
    assert [entry["status"] for entry in retrace_emulator.requests("start")] == statuses
    assert f"({len(statuses)} attempts" in result.stdout
    check_wait(retrace_emulator, "start" if check else None)
