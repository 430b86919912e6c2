"""Every row of the API contract (docs/retrace-api.md, "Status codes"), through ansible-playbook and the emulator.

Rows that must not be retried run as tasks of one playbook and each must reach the emulator
exactly once; rows that must be retried are injected as faults before a request that finally
succeeds, and the attempts are counted.
"""

from ansible_run import DEMO, DEMO_KEY, calls, play, run_playbook, task, write_playbook

IGNORE = {"ignore_errors": True}


def _checks(*conditions: str) -> dict:
    return {"name": "Check the results", "ansible.builtin.assert": {"that": list(conditions)}}


def test_refusals_fail_at_once_with_one_clear_message(tmp_path, ansible_env, retrace_emulator):
    retrace_emulator.inject("complete", [{"status": 404}])
    retrace_emulator.inject("cancel", [{"status": 400, "body": {"Message": "Version has an unsupported format"}}])
    playbook = write_playbook(tmp_path, [play(
        task("started", version="1.0", **DEMO, api_key="not-a-known-key", keywords={"register": "unauthorised", **IGNORE}),
        task("started", version="1.0", app_name="NoSuchApp", environment_name="Production",
             keywords={"register": "unknown_app", **IGNORE}),
        # Other versions than 1.0, whose start this run sent and Retrace refused: an end of that one sends nothing.
        task("completed", version="1.2", **DEMO, keywords={"register": "other_4xx", **IGNORE}),
        task("completed", version="1.1", **DEMO, keywords={"register": "one_shot", **IGNORE}),
        task("cancelled", version="1.3", **DEMO, keywords={"register": "bad_request", **IGNORE}),
        task("cancelled", version="1.3", **DEMO, keywords={"register": "not_started", **IGNORE}),
        _checks(
            "unauthorised is failed and unauthorised.error == 'authentication_rejected' and unauthorised.status == 401",
            "unknown_app.error == 'unknown_app_or_environment' and unknown_app.status == 400",
            "other_4xx.error == 'request_rejected' and other_4xx.status == 404",
            "one_shot is not failed and one_shot.tracked and one_shot.status == 202",
            "not_started.error == 'bad_transition' and not_started.status == 409",
            "bad_request.error == 'request_rejected' and bad_request.status == 400",
            "[unauthorised, unknown_app, other_4xx, not_started, bad_request] | map(attribute='attempts') | unique == [1]",
        ),
    )])
    run = run_playbook(playbook, env={**ansible_env, "RETRACE_STRICT": "true"})
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 401), ("start", 400), ("complete", 404), ("complete", 202), ("cancel", 400),
                                       ("cancel", 409)]
    for message in (
        "Retrace rejected the API key (HTTP 401) on start: check api_key / RETRACE_API_KEY",
        "Retrace does not know app 'NoSuchApp' or environment 'Production' for this account: create them in Retrace",
        "Retrace rejected the complete request (HTTP 404).",
        "Retrace refused to cancel deployment 1.3 of DemoApp in Production (HTTP 409): this deployment is not in progress",
        "Retrace rejected the cancel request (HTTP 400). Retrace said: Version has an unsupported format",
    ):
        assert message in run.stdout


def test_overload_and_server_errors_are_retried(tmp_path, ansible_env, retrace_emulator):
    retrace_emulator.inject("start", [{"status": 429, "retry_after": "1"}, {"status": 503}])
    retrace_emulator.inject("complete", [{"status": 500}, {"status": 502}, {"status": 504}])
    playbook = write_playbook(tmp_path, [play(
        task("started", version="2.0", **DEMO, keywords={"register": "started"}),
        task("completed", version="2.0", **DEMO, keywords={"register": "completed"}),
        _checks("started is changed and started.attempts == 3 and started.status == 202",
                "completed is changed and completed.attempts == 4 and completed.status == 202"),
    )])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 429), ("start", 503), ("start", 202),
                                       ("complete", 500), ("complete", 502), ("complete", 504), ("complete", 202)]
    first, second = retrace_emulator.requests("start")[:2]
    assert second["monotonic"] - first["monotonic"] >= 1.0  # Retry-After was honoured


def test_lost_answers_and_broken_connections_are_retried(tmp_path, ansible_env, retrace_emulator):
    retrace_emulator.inject("start", [{"process": True, "drop": True}])
    retrace_emulator.inject("cancel", [{"drop": True}, {"reset": True}, {"hang": True}])
    playbook = write_playbook(tmp_path, [play(
        task("started", version="3.0", **DEMO, keywords={"register": "started"}),
        task("cancelled", version="3.0", **DEMO, timeout=1, keywords={"register": "cancelled"}),
        _checks("started is changed and started.attempts == 2 and started.status == 409",
                "cancelled is changed and cancelled.attempts == 4 and cancelled.status == 202"),
    )])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert [entry["action"] for entry in retrace_emulator.requests()] == ["start"] * 2 + ["cancel"] * 4
    assert retrace_emulator.deployments()[0]["state"] == "cancelled"


def test_unreachable_api_fails_within_the_deadline(tmp_path, ansible_env, retrace_emulator, unused_port):
    retrace_emulator.inject("start", [{"status": 503}] * 20)
    playbook = write_playbook(tmp_path, [play(
        task("started", version="4.0", **DEMO, deadline=2, keywords={"register": "overloaded", **IGNORE}),
        task("started", version="4.0", **DEMO, deadline=1.5, api_url=f"http://127.0.0.1:{unused_port}", api_key=DEMO_KEY,
             keywords={"register": "refused", **IGNORE}),
        _checks("overloaded is failed and overloaded.error == 'api_unreachable' and overloaded.attempts > 1",
                "refused is failed and refused.error == 'api_unreachable' and refused.attempts > 1"),
    )])
    run = run_playbook(playbook, env={**ansible_env, "RETRACE_STRICT": "true"})
    assert run.returncode == 0, run.stdout
    assert f"Retrace API at {retrace_emulator.url} unreachable: start failed after" in run.stdout
    assert "last problem: HTTP 503" in run.stdout
    assert f"Retrace API at http://127.0.0.1:{unused_port} unreachable" in run.stdout
    assert "last problem: connection refused" in run.stdout
    assert 1 < len(retrace_emulator.requests()) < 20


def test_without_strict_a_tracking_failure_warns_and_the_play_goes_on(tmp_path, ansible_env, retrace_emulator, unused_port):
    playbook = write_playbook(tmp_path, [play(
        task("started", version="4.2", **DEMO, deadline=1, api_url=f"http://127.0.0.1:{unused_port}", api_key=DEMO_KEY,
             keywords={"register": "down"}),
        task("started", version="4.2", **DEMO, api_key="not-a-known-key", keywords={"register": "refused"}),
        {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying anyway"}},
        _checks("down is not failed and not down.tracked and down.error == 'api_unreachable'",
                "refused is not failed and not refused.tracked and refused.status == 401"),
    )])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert "deploying anyway" in run.stdout
    assert run.stdout.count("[WARNING]: Retrace: deployment 4.2 of DemoApp to Production NOT recorded: start failed") == 2
    assert calls(retrace_emulator) == [("start", 401)]


def test_strict_true_fails_the_task(tmp_path, ansible_env, retrace_emulator, unused_port):
    playbook = write_playbook(tmp_path, [play(
        task("started", version="4.3", **DEMO, deadline=1, strict=True, api_url=f"http://127.0.0.1:{unused_port}", api_key=DEMO_KEY),
        {"name": "Deployment step", "ansible.builtin.debug": {"msg": "never reached"}},
    )])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 2, run.stdout
    assert "never reached" not in run.stdout and "unreachable: start failed after" in run.stdout
