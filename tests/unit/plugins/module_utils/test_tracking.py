"""The public Python wrapper, tracked_deployment (plugins/module_utils/tracking.py): what it adds to the engine.

The engine's own rules (stale start, joins, guard hand-off, budgets) are tested once, in test_run.py.
"""

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import _run
from ansible_collections.stackify.retrace.plugins.module_utils.client import DeploymentClient, RetryPolicy
from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable, AuthenticationRejected, InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils.settings import ApiSettings, TrackingPolicy
from ansible_collections.stackify.retrace.plugins.module_utils.tracking import tracked_deployment
from ansible_collections.stackify.retrace.plugins.module_utils.transport import ConnectionFailed

from ansible_collections.stackify.retrace.tests.unit.plugins.module_utils.fakes import FakeClock, answer

DEPLOYMENT = Deployment.create(app_name="Shop", environment_name="Production", version="7")
#: the orphan guard forks a real watcher: tests/integration/core/test_orphan_guard.py drives it
STRICT = TrackingPolicy(strict=True, orphan_guard=False)
LENIENT = TrackingPolicy(strict=False, orphan_guard=False)


class Transport:
    """Answers 202, or fails the actions told to (connection refused: never sent)."""

    def __init__(self, failing=()):
        self.failing = set(failing)
        self.sent = []

    def post(self, url, body, headers, timeout):
        action = url.rsplit("/", 1)[1]
        self.sent.append(action)
        if action in self.failing:
            raise ConnectionFailed("connection refused")
        return answer(202)


def client_for(transport):
    clock = FakeClock()
    return DeploymentClient(ApiSettings.create(api_key="k", api_url="http://127.0.0.1:9"), transport, entry_point="unit",
                            retry=RetryPolicy(max_attempts=1), clock=clock, sleep=clock.sleep)


def test_success_sends_start_then_complete():
    transport = Transport()
    with tracked_deployment(client_for(transport), DEPLOYMENT, STRICT) as deployment:
        assert transport.sent == ["start"] and deployment is DEPLOYMENT
    assert transport.sent == ["start", "complete"]


@pytest.mark.parametrize("raised", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3), GeneratorExit()])
def test_any_exception_sends_cancel_and_is_reraised_unchanged(raised):
    transport = Transport()
    with pytest.raises(type(raised)) as caught:
        with tracked_deployment(client_for(transport), DEPLOYMENT, STRICT):
            raise raised
    assert caught.value is raised and transport.sent == ["start", "cancel"]


def test_failing_cancel_never_hides_the_original_error():
    transport, warnings = Transport(failing={"cancel"}), []
    with pytest.raises(RuntimeError, match="boom") as caught:
        with tracked_deployment(client_for(transport), DEPLOYMENT, STRICT, warn=warnings.append):
            raise RuntimeError("boom")
    assert transport.sent == ["start", "cancel"]
    assert len(warnings) == 1 and warnings[0].startswith("deployment 7 of Shop to Production: the cancel was NOT recorded")
    assert caught.value.__notes__[0].startswith("Retrace cancel also failed: Retrace API at http://127.0.0.1:9 unreachable")


def test_strict_start_failure_stops_before_the_work():
    transport, ran = Transport(failing={"start"}), []
    with pytest.raises(ApiUnreachable):
        with tracked_deployment(client_for(transport), DEPLOYMENT, STRICT):
            ran.append(True)
    assert ran == [] and transport.sent == ["start"]


def test_lenient_start_failure_runs_the_work_untracked_and_sends_no_end():
    transport, ran, warnings = Transport(failing={"start"}), [], []
    with pytest.raises(ValueError):
        with tracked_deployment(client_for(transport), DEPLOYMENT, LENIENT, warn=warnings.append):
            ran.append(True)
            raise ValueError("x")
    assert ran == [True] and transport.sent == ["start"]
    assert warnings[0].startswith("deployment 7 of Shop to Production NOT recorded: start failed: Retrace API at")
    assert warnings[0].endswith("(strict is off: the deployment goes on)")


def test_complete_failure_is_raised_when_strict_and_warned_when_lenient():
    with pytest.raises(ApiUnreachable):
        with tracked_deployment(client_for(Transport(failing={"complete"})), DEPLOYMENT, STRICT):
            pass
    warnings = []
    with tracked_deployment(client_for(Transport(failing={"complete"})), DEPLOYMENT, LENIENT, warn=warnings.append):
        pass
    assert warnings[0].startswith("deployment 7 of Shop to Production: the complete was NOT recorded")


def test_say_gets_what_happened():
    said = []
    with tracked_deployment(client_for(Transport()), DEPLOYMENT, LENIENT, say=said.append):
        pass
    assert said[0].startswith("start: sent") and said[1] == "deployment 7 of Shop to Production started"
    assert said[-1] == "deployment 7 of Shop to Production completed"


def test_works_as_a_decorator_once_per_call():
    transport = Transport()

    @tracked_deployment(client_for(transport), DEPLOYMENT, STRICT)
    def deploy(fail):
        if fail:
            raise AuthenticationRejected("nope")
        return "done"

    assert deploy(False) == "done"
    with pytest.raises(AuthenticationRejected):
        deploy(True)
    assert transport.sent == ["start", "complete", "start", "cancel"]


def test_the_default_policy_is_lenient_recovering_guarded_and_unbudgeted():
    assert TrackingPolicy() == TrackingPolicy.create() == TrackingPolicy(strict=False, stale_start="recover",
                                                                         orphan_guard=True, time_budget=None)


@pytest.mark.parametrize("given, option", [({"strict": "maybe"}, "strict"), ({"stale_start": "retry"}, "stale_start"),
                                           ({"stale_start": "Fail"}, "stale_start"), ({"orphan_guard": 2}, "orphan_guard"),
                                           ({"time_budget": "soon"}, "time_budget"), ({"time_budget": 0}, "time_budget")])
def test_policy_settings_are_checked_by_name(given, option):
    with pytest.raises(InvalidInput) as caught:
        TrackingPolicy.create(**given)
    assert caught.value.option == option


@pytest.mark.parametrize("word, meaning", [("yes", True), ("TRUE", True), ("on", True), ("1", True),
                                           ("no", False), ("false", False), ("off", False), ("0", False)])
def test_policy_reads_boolean_words(word, meaning):
    assert TrackingPolicy.create(strict=word, orphan_guard=word).strict is meaning


@pytest.mark.parametrize("problem, flag, may_have_landed", [("no answer within 1.0 s", True, True), ("HTTP 503", True, True),
                                                            ("connection refused", False, False), ("HTTP 503", None, False)])
def test_a_start_may_have_landed_when_the_client_says_so(problem, flag, may_have_landed):
    """The last problem may be a 503 although an earlier attempt went unanswered (and may have landed): the client's
    flag decides, never the last problem's words."""
    assert _run.start_may_have_landed(ApiUnreachable("down", last_problem=problem, may_have_landed=flag)) is may_have_landed
    assert _run.start_may_have_landed(AuthenticationRejected("no")) is False
