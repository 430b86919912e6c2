"""A controller job of a workflow that joined a deployment sends no end for it (ansible_task + guard.remember_join),
unless it started that deployment itself later on."""

import tempfile

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import _guard as guard
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_task import run_deployment_task
from ansible_collections.stackify.retrace.plugins.module_utils.transport import Response

KEY = "unit-test-workflow-joins"
PARAMS = {"api_key": KEY, "app_name": "Shop", "environment_name": "Production", "version": "9", "strict": False,
          "orphan_guard": False}


class Scripted:
    """Answers each POST with the next status of ``statuses``; records the actions."""

    def __init__(self, *statuses):
        self.statuses = list(statuses)
        self.actions = []

    def post(self, url, body, headers, timeout):
        self.actions.append(url.rsplit("/", 1)[-1])
        return Response(self.statuses.pop(0), {}, b'{"Message": "scripted"}')


@pytest.fixture(autouse=True)
def private_directory(monkeypatch):
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="wj-") as directory:
        monkeypatch.setattr(guard, "RUNTIME_DIRECTORY", directory)
        monkeypatch.delenv("RETRACE_API_KEY", raising=False)
        yield directory


def task(state, transport, job_id="212", workflow_job_id="900", hosts_in_task=1):
    return run_deployment_task(dict(PARAMS, state=state), check_mode=False, entry_point="unit", transport=transport,
                               workflow_job_id=workflow_job_id, job_id=job_id, hosts_in_task=hosts_in_task,
                               given={"state", "api_key", "app_name", "environment_name", "version"})


@pytest.mark.parametrize("end", ["completed", "cancelled"])
def test_a_job_that_joined_sends_no_end(end):
    transport = Scripted(409)
    assert task("started", transport)["joined"]
    result = task(end, transport)
    assert result["joined"] and not result["tracked"] and "nothing sent" in result["msg"]
    assert transport.actions == ["start"]


def test_another_job_of_the_workflow_still_sends_its_end():
    """A workflow's end node is another job: it never joined, so its complete goes out."""
    transport = Scripted(409, 202)
    task("started", transport, job_id="212")
    assert task("completed", transport, job_id="213")["tracked"]
    assert transport.actions == ["start", "complete"]


def test_a_job_that_joined_then_started_the_deployment_itself_sends_its_end():
    """Found by a breaker: the marker of an earlier join suppressed the job's own complete, and its guard then
    cancelled a deployment that had succeeded."""
    transport = Scripted(409, 202, 202)
    task("started", transport)  # joined: a sibling's deployment
    assert task("started", transport)["tracked"]  # the sibling ended it; this job starts the version again
    assert task("completed", transport)["tracked"]
    assert transport.actions == ["start", "start", "complete"]


def test_a_start_for_several_hosts_is_not_a_join():
    """Found by a breaker: a start task without run_once on two hosts; the second host's 409 was taken for a join,
    the job's complete was skipped and its guard cancelled a successful deployment.  It is the sibling host's start:
    a warning with the run_once hint, as outside workflows, and no join."""
    transport = Scripted(409, 202)
    result = task("started", transport, hosts_in_task=2)
    assert "joined" not in result and not result["tracked"]
    assert "add 'run_once: true' to the task" in result["msg"] and result["warnings"]
    assert task("completed", transport)["tracked"]
    assert transport.actions == ["start", "complete"]


def test_a_join_belongs_to_its_workflow_too():
    """Job ids alone could meet again (another controller, a restored database): the workflow is part of the key."""
    transport = Scripted(409, 202)
    task("started", transport, job_id="212", workflow_job_id="900")
    assert task("completed", transport, job_id="212", workflow_job_id="901")["tracked"]
