import pytest

from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable, AuthenticationRejected
from ansible_collections.stackify.retrace.plugins.module_utils.tracking import tracked_deployment

DEPLOYMENT = Deployment.create(app_name="Shop", environment_name="Production", version="7")


class RecordingClient:
    """Stands in for DeploymentClient: records calls, fails the ones told to."""

    def __init__(self, failing=()):
        self.calls = []
        self.failing = set(failing)

    def _call(self, action, deployment):
        self.calls.append(action)
        if action in self.failing:
            raise ApiUnreachable(f"{action} could not reach Retrace", action=action)

    def start(self, deployment):
        self._call("start", deployment)

    def complete(self, deployment):
        self._call("complete", deployment)

    def cancel(self, deployment):
        self._call("cancel", deployment)


def test_success_sends_start_then_complete():
    client = RecordingClient()
    with tracked_deployment(client, DEPLOYMENT) as deployment:
        assert client.calls == ["start"] and deployment is DEPLOYMENT
    assert client.calls == ["start", "complete"]


@pytest.mark.parametrize("raised", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3), GeneratorExit()])
def test_any_exception_sends_cancel_and_is_reraised_unchanged(raised):
    client = RecordingClient()
    with pytest.raises(type(raised)) as caught:
        with tracked_deployment(client, DEPLOYMENT):
            raise raised
    assert caught.value is raised and client.calls == ["start", "cancel"]


def test_failing_cancel_never_hides_the_original_error():
    client, warnings = RecordingClient(failing={"cancel"}), []
    with pytest.raises(RuntimeError, match="boom") as caught:
        with tracked_deployment(client, DEPLOYMENT, warn=warnings.append):
            raise RuntimeError("boom")
    assert client.calls == ["start", "cancel"]
    assert warnings == ["Retrace cancel also failed: cancel could not reach Retrace"]
    assert caught.value.__notes__ == warnings


def test_strict_start_failure_stops_before_the_work():
    client, ran = RecordingClient(failing={"start"}), []
    with pytest.raises(ApiUnreachable):
        with tracked_deployment(client, DEPLOYMENT):
            ran.append(True)
    assert ran == [] and client.calls == ["start"]


def test_lenient_start_failure_runs_the_work_untracked():
    client, ran, warnings = RecordingClient(failing={"start"}), [], []
    with tracked_deployment(client, DEPLOYMENT, strict=False, warn=warnings.append):
        ran.append(True)
    assert ran == [True] and client.calls == ["start"]
    assert warnings == ["Deployment tracking skipped: start could not reach Retrace"]


def test_lenient_untracked_work_that_fails_sends_no_cancel():
    client = RecordingClient(failing={"start"})
    with pytest.raises(ValueError):
        with tracked_deployment(client, DEPLOYMENT, strict=False):
            raise ValueError("x")
    assert client.calls == ["start"]


def test_complete_failure_is_raised_when_strict_and_warned_when_lenient():
    with pytest.raises(ApiUnreachable):
        with tracked_deployment(RecordingClient(failing={"complete"}), DEPLOYMENT):
            pass
    warnings = []
    with tracked_deployment(RecordingClient(failing={"complete"}), DEPLOYMENT, strict=False, warn=warnings.append):
        pass
    assert warnings == ["Deployment tracking skipped: complete could not reach Retrace"]


def test_works_as_a_decorator_once_per_call():
    client = RecordingClient()

    @tracked_deployment(client, DEPLOYMENT)
    def deploy(fail):
        if fail:
            raise AuthenticationRejected("nope")
        return "done"

    assert deploy(False) == "done"
    with pytest.raises(AuthenticationRejected):
        deploy(True)
    assert client.calls == ["start", "complete", "start", "cancel"]
