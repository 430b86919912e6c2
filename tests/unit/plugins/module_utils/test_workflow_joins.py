"""A controller job of a workflow that joined a deployment sends no end for it (the engine's join markers, read by the
module's separate end tasks through resume), unless it started that deployment itself later on."""

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import _ansible_task, _guard, _run
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import MODULE_SETTINGS
from ansible_collections.stackify.retrace.plugins.module_utils._resolve import PROJECT, Source, resolve
from ansible_collections.stackify.retrace.plugins.module_utils.transport import Response

SETTINGS = {"api_key": "unit-test-workflow-joins", "app_name": "Shop", "environment_name": "Production", "version": "9",
            "orphan_guard": False}


class Scripted:
    """Answers each POST with the next status of ``statuses``; records the actions."""

    def __init__(self, *statuses):
        self.statuses = list(statuses)
        self.actions = []

    def __call__(self, *args):
        return self

    def post(self, url, body, headers, timeout):
        self.actions.append(url.rsplit("/", 1)[-1])
        return Response(self.statuses.pop(0), {}, b'{"Message": "scripted"}')


@pytest.fixture(autouse=True)
def private_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(_guard, "RUNTIME_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def task(state, transport, monkeypatch, job_id="212", workflow_job_id="900", hosts_in_task=1):
    """One task of a separate ansible-playbook worker: a run of its own, as each module task is."""
    monkeypatch.setattr(_ansible_task, "AnsibleUrlsTransport", transport)
    resolved = resolve([Source("the task's arguments", SETTINGS, PROJECT)], MODULE_SETTINGS)
    run = _run.DeploymentRun(_run.policy_of(resolved), _ansible_task.TaskLines(), hosts_in_task=hosts_in_task,
                             workflow_job_id=workflow_job_id, job_id=job_id, calls_are_tasks=True)
    return _ansible_task.deployment_task(state, resolved, run, entry_point="unit")


@pytest.mark.parametrize("end", ["completed", "cancelled"])
def test_a_job_that_joined_sends_no_end(monkeypatch, end):
    transport = Scripted(409)
    started = task("started", transport, monkeypatch)
    assert started["joined"] and not started["tracked"] and "warnings" not in started
    result = task(end, transport, monkeypatch)
    assert result["joined"] and not result["tracked"] and "nothing sent" in result["msg"] and "warnings" not in result
    assert transport.actions == ["start"]


def test_another_job_of_the_workflow_still_sends_its_end(monkeypatch):
    """A workflow's end node is another job: it never joined, so its complete goes out."""
    transport = Scripted(409, 202)
    task("started", transport, monkeypatch, job_id="212")
    assert task("completed", transport, monkeypatch, job_id="213")["tracked"]
    assert transport.actions == ["start", "complete"]


def test_a_job_that_joined_then_started_the_deployment_itself_sends_its_end(monkeypatch):
    transport = Scripted(409, 202, 202)
    task("started", transport, monkeypatch)  # joined: a sibling's deployment
    assert task("started", transport, monkeypatch)["tracked"]  # the sibling ended it; this job starts the version again
    assert task("completed", transport, monkeypatch)["tracked"]
    assert transport.actions == ["start", "start", "complete"]


def test_a_start_for_several_hosts_is_not_a_join(monkeypatch):
    """A start task without run_once on two hosts: the second host's 409 is the sibling host's start, not a join."""
    transport = Scripted(409, 202)
    result = task("started", transport, monkeypatch, hosts_in_task=2)
    assert "joined" not in result and not result["tracked"]
    assert "add 'run_once: true' to the task" in result["warnings"][0]
    assert task("completed", transport, monkeypatch)["tracked"]
    assert transport.actions == ["start", "complete"]


def test_a_join_belongs_to_its_workflow_too(monkeypatch):
    transport = Scripted(409, 202)
    task("started", transport, monkeypatch, job_id="212", workflow_job_id="900")
    assert task("completed", transport, monkeypatch, job_id="212", workflow_job_id="901")["tracked"]
