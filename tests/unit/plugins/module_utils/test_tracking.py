import types

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable, AuthenticationRejected, BadTransition
from ansible_collections.stackify.retrace.plugins.module_utils.settings import ApiSettings, Lifecycle
from ansible_collections.stackify.retrace.plugins.module_utils.tracking import open_deployment, tracked_deployment

DEPLOYMENT = Deployment.create(app_name="Shop", environment_name="Production", version="7")
#: the orphan guard forks a real watcher: tests/integration/core/test_orphan_guard.py drives it
STRICT = Lifecycle(strict=True, orphan_guard=False)
LENIENT = Lifecycle(strict=False, orphan_guard=False)


class RecordingClient:
    """Stands in for DeploymentClient: records calls, fails the ones told to."""

    settings = ApiSettings.create(api_key="k", api_url="http://127.0.0.1:9")

    def __init__(self, failing=(), conflicts=0):
        self.calls = []
        self.failing = set(failing)
        self.conflicts = conflicts  # how many starts get 409 "already in progress"
        self.recovered = False  # accepted calls report "409 on a retry, counted as done"

    def _call(self, action, deployment):
        self.calls.append(action)
        if action == "start" and self.conflicts:
            self.conflicts -= 1
            raise BadTransition("already in progress (HTTP 409)", action=action, status=409, attempts=1)
        if action in self.failing:
            raise ApiUnreachable(f"{action} could not reach Retrace", action=action)
        return types.SimpleNamespace(action=action, status=202, attempts=1, server_message=None,
                                     recovered_from_conflict=self.recovered)

    def start(self, deployment):
        return self._call("start", deployment)

    def complete(self, deployment):
        return self._call("complete", deployment)

    def cancel(self, deployment):
        return self._call("cancel", deployment)


def test_success_sends_start_then_complete():
    client = RecordingClient()
    with tracked_deployment(client, DEPLOYMENT, STRICT) as deployment:
        assert client.calls == ["start"] and deployment is DEPLOYMENT
    assert client.calls == ["start", "complete"]


@pytest.mark.parametrize("raised", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3), GeneratorExit()])
def test_any_exception_sends_cancel_and_is_reraised_unchanged(raised):
    client = RecordingClient()
    with pytest.raises(type(raised)) as caught:
        with tracked_deployment(client, DEPLOYMENT, STRICT):
            raise raised
    assert caught.value is raised and client.calls == ["start", "cancel"]


def test_failing_cancel_never_hides_the_original_error():
    client, warnings = RecordingClient(failing={"cancel"}), []
    with pytest.raises(RuntimeError, match="boom") as caught:
        with tracked_deployment(client, DEPLOYMENT, STRICT, warn=warnings.append):
            raise RuntimeError("boom")
    assert client.calls == ["start", "cancel"]
    assert warnings == ["Retrace cancel also failed: cancel could not reach Retrace"]
    assert caught.value.__notes__ == warnings


def test_strict_start_failure_stops_before_the_work():
    client, ran = RecordingClient(failing={"start"}), []
    with pytest.raises(ApiUnreachable):
        with tracked_deployment(client, DEPLOYMENT, STRICT):
            ran.append(True)
    assert ran == [] and client.calls == ["start"]


def test_lenient_start_failure_runs_the_work_untracked():
    client, ran, warnings = RecordingClient(failing={"start"}), [], []
    with tracked_deployment(client, DEPLOYMENT, LENIENT, warn=warnings.append):
        ran.append(True)
    assert ran == [True] and client.calls == ["start"]
    assert warnings == ["deployment 7 of Shop to Production NOT recorded: start failed: start could not reach Retrace"]


def test_lenient_untracked_work_that_fails_sends_no_cancel():
    client = RecordingClient(failing={"start"})
    with pytest.raises(ValueError):
        with tracked_deployment(client, DEPLOYMENT, LENIENT):
            raise ValueError("x")
    assert client.calls == ["start"]


def test_complete_failure_is_raised_when_strict_and_warned_when_lenient():
    with pytest.raises(ApiUnreachable):
        with tracked_deployment(RecordingClient(failing={"complete"}), DEPLOYMENT, STRICT):
            pass
    warnings = []
    with tracked_deployment(RecordingClient(failing={"complete"}), DEPLOYMENT, LENIENT, warn=warnings.append):
        pass
    assert warnings == ["deployment 7 of Shop to Production NOT recorded: complete failed: complete could not reach Retrace"]


def test_works_as_a_decorator_once_per_call():
    client = RecordingClient()

    @tracked_deployment(client, DEPLOYMENT, STRICT)
    def deploy(fail):
        if fail:
            raise AuthenticationRejected("nope")
        return "done"

    assert deploy(False) == "done"
    with pytest.raises(AuthenticationRejected):
        deploy(True)
    assert client.calls == ["start", "complete", "start", "cancel"]


def test_the_default_lifecycle_is_lenient_recovering_and_guarded():
    assert Lifecycle() == Lifecycle.create() == Lifecycle(strict=False, stale_start="recover", orphan_guard=True)


def test_a_stale_start_is_cancelled_and_started_again_once(monkeypatch):
    client, warnings, sent = RecordingClient(conflicts=1), [], []
    monkeypatch.setattr("ansible_collections.stackify.retrace.plugins.module_utils.tracking.live_guard_owner", lambda *a: None)
    open_deployment(client, DEPLOYMENT, warn=warnings.append, on_sent=sent.append)
    assert client.calls == ["start", "cancel", "start"] and [result.action for result in sent] == ["cancel", "start"]
    assert warnings == ["deployment 7 of Shop to Production was left in progress by a run that ended without closing it "
                        "(stale_start: recover): cancelling it and starting again"]


def test_a_second_conflict_after_recovering_is_raised(monkeypatch):
    client = RecordingClient(conflicts=2)
    monkeypatch.setattr("ansible_collections.stackify.retrace.plugins.module_utils.tracking.live_guard_owner", lambda *a: None)
    with pytest.raises(BadTransition):
        open_deployment(client, DEPLOYMENT)
    assert client.calls == ["start", "cancel", "start"]


def test_a_live_run_on_this_machine_is_never_cancelled(monkeypatch):
    client = RecordingClient(conflicts=1)
    monkeypatch.setattr("ansible_collections.stackify.retrace.plugins.module_utils.tracking.live_guard_owner", lambda *a: 4242)
    with pytest.raises(BadTransition, match="live run on this machine \\(process 4242\\)"):
        open_deployment(client, DEPLOYMENT)
    assert client.calls == ["start"]


def test_stale_start_fail_raises_the_conflict():
    client = RecordingClient(conflicts=1)
    with pytest.raises(BadTransition):
        open_deployment(client, DEPLOYMENT, stale_start="fail")
    assert client.calls == ["start"]


@pytest.mark.parametrize("given, option", [({"strict": "maybe"}, "strict"), ({"stale_start": "retry"}, "stale_start"), ({"stale_start": "Fail"}, "stale_start"),
                                           ({"orphan_guard": 2}, "orphan_guard")])
def test_lifecycle_settings_are_checked_by_name(given, option):
    from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
    with pytest.raises(InvalidInput) as caught:
        Lifecycle.create(**given)
    assert caught.value.option == option


@pytest.mark.parametrize("word, meaning", [("yes", True), ("TRUE", True), ("on", True), ("1", True),
                                           ("no", False), ("false", False), ("off", False), ("0", False)])
def test_lifecycle_from_environment_reads_boolean_words(word, meaning):
    lifecycle = Lifecycle.from_environment({"RETRACE_STRICT": word, "RETRACE_ORPHAN_GUARD": word, "RETRACE_STALE_START": "fail"})
    assert lifecycle == Lifecycle(strict=meaning, stale_start="fail", orphan_guard=meaning)


def test_lifecycle_given_values_win_over_the_environment():
    assert Lifecycle.from_environment({"RETRACE_STRICT": "true"}, strict=False).strict is False


def test_a_409_on_a_retried_start_is_not_ours_when_a_live_run_holds_the_deployment(monkeypatch):
    client = RecordingClient()
    client.recovered = True
    monkeypatch.setattr("ansible_collections.stackify.retrace.plugins.module_utils.tracking.live_guard_owner", lambda *a: 4242)
    with pytest.raises(BadTransition, match="process 4242"):
        open_deployment(client, DEPLOYMENT)
    monkeypatch.setattr("ansible_collections.stackify.retrace.plugins.module_utils.tracking.live_guard_owner", lambda *a: None)
    assert open_deployment(client, DEPLOYMENT).recovered_from_conflict is True


@pytest.mark.parametrize("problem, may_have_landed", [("no answer within 1.0 s", True), ("connection reset by the server", True),
                                                      ("the server closed the connection without answering", True),
                                                      ("connection refused", False), ("HTTP 503", False), (None, False)])
def test_only_a_start_with_no_answer_may_have_landed(problem, may_have_landed):
    from ansible_collections.stackify.retrace.plugins.module_utils.tracking import start_may_have_landed
    assert start_may_have_landed(ApiUnreachable("down", last_problem=problem)) is may_have_landed
    assert start_may_have_landed(AuthenticationRejected("no")) is False


@pytest.mark.parametrize("flag", [True, False])
def test_the_client_s_word_on_whether_a_start_may_have_landed_wins_over_its_last_problem(flag):
    """The last problem may be a 503 although an earlier attempt went unanswered (and may have landed)."""
    from ansible_collections.stackify.retrace.plugins.module_utils.tracking import start_may_have_landed
    assert start_may_have_landed(ApiUnreachable("down", last_problem="HTTP 503", may_have_landed=flag)) is flag
