"""A deployment task in a controller job: name_format with the job's fields, and a 409 in a workflow (job slices)."""

from ansible_collections.stackify.retrace.plugins.module_utils._ansible_task import run_deployment_task

from ansible_collections.stackify.retrace.tests.unit.plugins.module_utils.test_ansible_task import PARAMS, Answers

JOB_FIELDS = {"user": "alice", "job_template": "Deploy shop", "job_id": "4711", "workflow": None}


def run(transport, **options):
    params = {**PARAMS, "strict": False, "orphan_guard": False, **options.pop("params", {})}
    return run_deployment_task(params, check_mode=False, entry_point="unit", transport=transport, **options)


def test_name_format_uses_the_job_fields():
    transport = Answers((202, "Accepted"))
    result = run(transport, params={"name_format": "{version} by {user} via {job_template}"}, name_fields=JOB_FIELDS)
    assert result["deployment"]["Name"] == "2.4.1 by alice via Deploy shop"


def test_a_bad_name_format_fails_before_sending():
    transport = Answers()
    result = run(transport, params={"name_format": "{version} by {password}"}, name_fields=JOB_FIELDS)
    assert transport.posts == [] and result["failed"] is True and result["msg"].startswith("name_format: has {password}")


def test_a_409_in_a_workflow_joins_the_siblings_deployment_and_never_cancels_it():
    transport = Answers((409, "Deployment is already in progress"))
    result = run(transport, params={"stale_start": "recover"}, workflow_job_id="4710")
    assert [post[0].rsplit("/", 1)[1] for post in transport.posts] == ["start"]  # no cancel, no second start
    assert result["joined"] is True and result["tracked"] is False and not result.get("failed")
    assert "warnings" not in result and result["msg"].endswith(
        "is already in progress: started by another job, e.g. a sibling slice of workflow 4710; this job joins it and sends no end.")


def test_outside_a_workflow_the_same_409_is_still_recovered():
    transport = Answers((409, "Deployment is already in progress"), (202, "Accepted"), (202, "Accepted"))
    result = run(transport, params={"stale_start": "recover"})
    assert [post[0].rsplit("/", 1)[1] for post in transport.posts] == ["start", "cancel", "start"]
    assert result["tracked"] is True and "joined" not in result
