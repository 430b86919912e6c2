"""One deployment task, from validated parameters to the Ansible result, with a scripted transport."""

from ansible_collections.stackify.retrace.plugins.module_utils._ansible_task import run_deployment_task
from ansible_collections.stackify.retrace.plugins.module_utils.transport import ConnectionFailed, Response

KEY = "unit-test-key-9d3f"
PARAMS = {"state": "started", "api_key": KEY, "api_url": "https://retrace.test", "app_name": "Shop",
          "environment_name": "Production", "version": "2.4.1", "validate_certs": True, "use_proxy": True,
          "timeout": 1.0, "deadline": 1.0, "strict": True, "stale_start": "recover", "orphan_guard": True}


class Answers:
    """Transport answering with the given statuses in turn (or raising a given exception)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.posts = []

    def post(self, url, body, headers, timeout):
        self.posts.append((url, body, dict(headers)))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, message = answer
        return Response(status, {}, b'{"Message": "%s"}' % message.encode())


def run(transport, check_mode=False, hosts_in_task=1, **changes):
    return run_deployment_task({**PARAMS, **changes}, check_mode=check_mode, entry_point="unit", transport=transport,
                               hosts_in_task=hosts_in_task)


def test_accepted_call_returns_what_was_sent():
    transport = Answers((202, "Accepted"))
    result = run(transport, state="completed", branch="main")
    assert result == {
        "changed": True, "state": "completed", "api_url": "https://retrace.test", "status": 202, "attempts": 1,
        "tracked": True, "warnings": [],
        "deployment": {"Name": "2.4.1", "Branch": "main", "Version": "2.4.1", "AppName": "Shop", "EnvironmentName": "Production"},
        "msg": "Retrace accepted the request to complete deployment 2.4.1 of Shop in Production (HTTP 202, 1 attempt).",
    }
    url, headers = transport.posts[0][0], transport.posts[0][2]
    assert url == "https://retrace.test/api/v1/deployments/complete" and headers["Authorization"] == f"ApiKey {KEY}"


def test_check_mode_sends_nothing():
    transport = Answers()
    result = run(transport, check_mode=True, state="cancelled", branch="main")
    assert transport.posts == []
    assert result["changed"] is True and result["attempts"] == 0 and "status" not in result
    assert result["deployment"] == {"Version": "2.4.1", "AppName": "Shop", "EnvironmentName": "Production"}
    assert result["msg"].startswith("Would cancel deployment 2.4.1 of Shop in Production")


def test_invalid_input_fails_before_sending_and_echoes_no_url():
    transport = Answers()
    result = run(transport, api_url="https://user:pw@retrace.test")
    assert transport.posts == []
    assert result == {"changed": False, "state": "started", "failed": True, "error": "invalid_input", "attempts": 0, "tracked": False,
                      "msg": "api_url: must not carry credentials, a query or a fragment"}


def test_conflict_on_start_hints_at_run_once_only_for_several_hosts():
    several = run(Answers((409, "already in progress")), hosts_in_task=3)
    alone = run(Answers((409, "already in progress")), hosts_in_task=1, stale_start="fail")
    assert several["failed"] and several["error"] == "bad_transition" and several["status"] == 409
    assert "This task ran for 3 hosts, and each sent its own start: add 'run_once: true'" in several["msg"]
    assert "run_once" not in alone["msg"]
    completing = run(Answers((409, "not in progress")), hosts_in_task=3, state="completed")
    assert "run_once" not in completing["msg"]


def test_key_never_appears_in_a_result_even_when_the_server_echoes_it():
    results = [run(Answers((401, f"bad key {KEY}"))), run(Answers((400, f"key {KEY} has no app Shop"))),
               run(Answers(*[ConnectionFailed(f"proxy said {KEY}")] * 5), deadline=0.001)]
    for result in results:
        assert result["failed"] and KEY not in repr(result)


def test_without_strict_a_refusal_is_a_warning_not_a_failure():
    result = run(Answers((401, "bad key")), strict=False)
    assert "failed" not in result and result["tracked"] is False and result["status"] == 401
    assert result["warnings"] == ["Retrace: deployment 2.4.1 of Shop to Production NOT recorded: start failed: Retrace rejected the "
                                  "API key (HTTP 401) on start: check api_key / RETRACE_API_KEY holds your Stackify license key. "
                                  "(strict: false, so the play goes on)"]


def test_invalid_lifecycle_setting_fails_even_without_strict():
    result = run(Answers(), strict=False, stale_start="sometimes")
    assert result["failed"] and result["error"] == "invalid_input" and result["msg"].startswith("stale_start:")


def test_a_stale_start_is_recovered_for_one_host_but_not_for_several(monkeypatch):
    monkeypatch.setattr("ansible_collections.stackify.retrace.plugins.module_utils.tracking.live_guard_owner", lambda *a: None)
    alone = Answers((409, "already in progress"), (202, "Accepted"), (202, "Accepted"))
    result = run(alone, hosts_in_task=1)
    assert result["tracked"] and [post[0].rsplit("/", 1)[1] for post in alone.posts] == ["start", "cancel", "start"]
    assert "cancelling it and starting again" in result["warnings"][0]
    several = Answers((409, "already in progress"))
    assert run(several, hosts_in_task=2)["failed"] and len(several.posts) == 1
