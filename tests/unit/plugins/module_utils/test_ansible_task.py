"""One task on the engine: the Step translated once into the module's documented result (RETURN)."""

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import _ansible_task, _guard, _run
from ansible_collections.stackify.retrace.plugins.module_utils._resolve import PROJECT, Source, resolve
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import MODULE_SETTINGS
from ansible_collections.stackify.retrace.plugins.module_utils.transport import ConnectionFailed, Response

KEY = "unit-test-key-9d3f"
SETTINGS = {"api_key": KEY, "api_url": "https://retrace.test", "app_name": "Shop", "environment_name": "Production",
            "version": "2.4.1", "timeout": 1.0, "deadline": 1.0, "orphan_guard": False}


class Answers:
    """Transport answering with the given statuses in turn (or raising a given exception)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.posts = []

    def __call__(self, *args):
        return self

    def post(self, url, body, headers, timeout):
        self.posts.append(url.rsplit("/", 1)[1])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, message = answer
        return Response(status, {}, b'{"Message": "%s"}' % message.encode())


@pytest.fixture(autouse=True)
def private_directories(monkeypatch, tmp_path):
    monkeypatch.setattr(_guard, "RUNTIME_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def task(state, transport, monkeypatch, *, dry_run=None, hosts_in_task=1, owner_pid=None, **settings):
    monkeypatch.setattr(_ansible_task, "AnsibleUrlsTransport", transport)
    resolved = resolve([Source("the task's arguments", {**SETTINGS, **settings}, PROJECT)], MODULE_SETTINGS)
    lines = _ansible_task.TaskLines()
    place = f"run:{owner_pid}:1" if owner_pid is not None else None
    run = _run.DeploymentRun(_run.policy_of(resolved), lines, owner_pid=owner_pid, hosts_in_task=hosts_in_task, place=place,
                             calls_are_tasks=True, dry_run=dry_run, sleep=lambda seconds: None)
    return _ansible_task.deployment_task(state, resolved, run, entry_point="unit")


def test_an_accepted_call_returns_what_was_sent(monkeypatch):
    result = task("completed", Answers((202, "Accepted")), monkeypatch, branch="main")
    assert result == {
        "changed": True, "state": "completed", "tracked": True, "attempts": 1, "status": 202, "api_url": "https://retrace.test",
        "deployment": {"Name": "2.4.1", "Branch": "main", "Version": "2.4.1", "AppName": "Shop", "EnvironmentName": "Production"},
        "msg": "Retrace: deployment 2.4.1 of Shop to Production completed",
    }


def test_check_mode_sends_nothing_and_returns_the_request(monkeypatch):
    transport = Answers()
    result = task("cancelled", transport, monkeypatch, dry_run="check mode", branch="main")
    assert transport.posts == [] and "status" not in result
    assert (result["changed"], result["tracked"], result["attempts"]) == (True, False, 0)
    assert result["deployment"] == {"Version": "2.4.1", "AppName": "Shop", "EnvironmentName": "Production"}
    assert result["msg"].startswith("Retrace: deployment 2.4.1 of Shop to Production: would send cancel")


def test_an_invalid_setting_is_a_warning_without_strict_and_a_failure_with_it(monkeypatch):
    lenient = task("started", Answers(), monkeypatch, api_url="https://user:pw@retrace.test")
    assert "failed" not in lenient and lenient["error"] == "invalid_input" and lenient["attempts"] == 0
    assert "deployment" not in lenient and "api_url" not in lenient
    assert lenient["warnings"] == ["Retrace: deployment 2.4.1 of Shop to Production NOT recorded: api_url: must not carry "
                                   "credentials, a query or a fragment (strict is off: the deployment goes on)"]
    strict = task("started", Answers(), monkeypatch, api_url="https://user:pw@retrace.test", strict=True)
    assert strict["failed"] is True and "warnings" not in strict
    assert strict["msg"] == ("Retrace: deployment 2.4.1 of Shop to Production NOT recorded: api_url: must not carry credentials, "
                             "a query or a fragment (strict: the run stops)")


def test_a_refusal_returns_its_status_attempts_and_kind(monkeypatch):
    result = task("started", Answers((401, "bad key")), monkeypatch)
    assert "failed" not in result and (result["tracked"], result["changed"]) == (False, False)
    assert (result["status"], result["attempts"], result["error"]) == (401, 1, "authentication_rejected")
    assert result["deployment"]["Version"] == "2.4.1"


def test_an_unreachable_api_has_attempts_and_no_status(monkeypatch):
    result = task("started", Answers(*[ConnectionFailed("connection refused")] * 50), monkeypatch, deadline=0.2, strict=True)
    assert result["failed"] is True and result["error"] == "api_unreachable" and "status" not in result and result["attempts"] >= 1


def test_the_key_never_appears_in_a_result_even_when_the_server_echoes_it(monkeypatch):
    for answers in ((401, f"bad key {KEY}"), (400, f"key {KEY} has no app Shop")):
        for strict in (False, True):
            assert KEY not in repr(task("started", Answers(answers), monkeypatch, strict=strict))


def test_this_run_s_own_earlier_start_is_tracked_and_nothing_is_sent_again(monkeypatch):
    """The second batch of a serial play: its run_once start meets the deployment the first batch started."""
    monkeypatch.setattr(_guard, "orphan_guard_of", lambda settings, deployment, owner: _guard.OrphanGuard(None))
    first = Answers((202, "Accepted"))
    assert task("started", first, monkeypatch, owner_pid=4242)["tracked"] is True
    transport = Answers((409, "already in progress"))
    result = task("started", transport, monkeypatch, owner_pid=4242)
    assert transport.posts == []  # this run recorded its accepted start: nothing to send
    assert (result["tracked"], result["changed"]) == (True, False) and "warnings" not in result and "status" not in result
    assert result["msg"] == ("Retrace: deployment 2.4.1 of Shop to Production is already in progress, started earlier by this run: "
                             "nothing sent again")


def test_an_end_without_its_settings_says_why_nothing_was_sent(monkeypatch):
    transport = Answers()
    result = task("completed", transport, monkeypatch, api_key=None)
    assert transport.posts == [] and result["tracked"] is False and "failed" not in result
    assert "NOT recorded: api_key" in result["warnings"][0]


def test_several_hosts_starting_at_once_get_the_run_once_hint(monkeypatch):
    """Without run_once, a second host's 409 is the first host's start, when this run recorded that start (the
    sibling's record is waited for a moment): tracked, with the hint; else someone else's, not this run's."""
    monkeypatch.setattr(_guard, "live_guard_owner", lambda settings, deployment: 4242)
    monkeypatch.setattr(_guard, "orphan_guard_of", lambda settings, deployment, owner: _guard.OrphanGuard(None))
    result = task("started", Answers((409, "already in progress")), monkeypatch, owner_pid=4242, hosts_in_task=2)
    assert result["tracked"] is False and result["status"] == 409
    assert "This task ran for 2 hosts, and each sent its own start: add 'run_once: true'" in result["warnings"][0]
    assert task("started", Answers((202, "Accepted")), monkeypatch, owner_pid=4242, hosts_in_task=2)["tracked"] is True
    second = task("started", Answers((409, "already in progress")), monkeypatch, owner_pid=4242, hosts_in_task=2)
    assert second["tracked"] is True and "add 'run_once: true'" in second["warnings"][0]
