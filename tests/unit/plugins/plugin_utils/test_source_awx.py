"""The "awx" provider: what an AWX / Automation Platform job says about itself (docs/awx.md has the sources)."""

import pytest

from ansible_collections.stackify.retrace.plugins.plugin_utils import _source as source

REVISION = "3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
# As awx/main/models/unified_jobs.py + jobs.py awx_meta_vars write them (ids are integers there).
EXTRA_VARS = {
    "awx_job_id": 4711, "awx_job_launch_type": "manual", "awx_user_name": "alice", "awx_user_id": 3,
    "awx_job_template_id": 12, "awx_job_template_name": "Deploy shop", "awx_project_revision": REVISION,
    "awx_project_scm_branch": "main", "awx_inventory_id": 2, "awx_inventory_name": "prod",
}
ENV = {"JOB_ID": "4711", "AWX_HOST": "https://awx.example.com", "PROJECT_REVISION": REVISION, "INVENTORY_ID": "2"}


def test_a_job_gives_its_page_revision_branch_user_and_template():
    job = source.detect_controller_job(ENV, EXTRA_VARS)
    assert job == source.ControllerJob(job_id="4711", url="https://awx.example.com/#/jobs/playbook/4711", revision=REVISION,
                                       branch="main", job_template="Deploy shop", user="alice")
    assert not job.in_workflow
    assert job.name_fields() == {"user": "alice", "job_template": "Deploy shop", "job_id": "4711", "workflow": None}


def test_tower_prefixed_variables_are_read_too():
    tower = {key.replace("awx_", "tower_", 1): value for key, value in EXTRA_VARS.items()}
    assert source.detect_controller_job(ENV, tower) == source.detect_controller_job(ENV, EXTRA_VARS)


def test_the_environment_alone_is_enough_for_page_and_revision():
    job = source.detect_controller_job(ENV, {})
    assert (job.job_id, job.url, job.revision, job.user) == ("4711", "https://awx.example.com/#/jobs/playbook/4711", REVISION, None)


@pytest.mark.parametrize("environ", [{"JOB_ID": "5"}, {"AWX_HOST": "https://awx.example.com"}, {}], ids=["job-id-only", "host-only", "none"])
def test_not_a_controller_job(environ):
    assert source.detect_controller_job(environ, {"retrace_version": "1"}) is None


@pytest.mark.parametrize("host", ["https://towerhost", "https://platformhost", ""])
def test_no_page_when_the_controller_url_is_a_placeholder_or_unset(host):
    job = source.detect_controller_job({"AWX_HOST": host}, EXTRA_VARS)
    assert job.job_id == "4711" and job.url is None


def test_a_trailing_slash_of_the_controller_url_is_dropped():
    assert source.detect_controller_job({"AWX_HOST": "https://awx.example.com/"}, EXTRA_VARS).url == "https://awx.example.com/#/jobs/playbook/4711"


def test_a_job_running_another_branch_than_its_project_has_no_project_revision():
    job = source.detect_controller_job(ENV, {**EXTRA_VARS, "awx_job_scm_branch": "hotfix"})
    assert (job.branch, job.revision) == ("hotfix", None)
    same = source.detect_controller_job(ENV, {**EXTRA_VARS, "awx_job_scm_branch": "main"})
    assert (same.branch, same.revision) == ("main", REVISION)


def test_a_scheduled_job_names_its_schedule_as_the_user():
    scheduled = {key: value for key, value in EXTRA_VARS.items() if not key.startswith("awx_user")}
    job = source.detect_controller_job(ENV, {**scheduled, "awx_schedule_name": "nightly"})
    assert job.user == "schedule nightly"


def test_a_slice_of_a_sliced_job_is_in_a_workflow():
    # A sliced job is a workflow job (JobTemplate.create_unified_job) named after the template.
    job = source.detect_controller_job(ENV, {**EXTRA_VARS, "awx_job_launch_type": "workflow", "awx_workflow_job_id": 4710,
                                             "awx_workflow_job_name": "Deploy shop"})
    assert job.in_workflow and job.workflow_job_id == "4710" and job.workflow == "Deploy shop"


def test_detect_source_puts_the_job_before_ci_and_git(tmp_path):
    job = source.detect_controller_job(ENV, EXTRA_VARS)
    found = source.detect_source({"GITHUB_ACTIONS": "true", "GITHUB_SHA": "ci-sha", "GITHUB_REF_NAME": "ci-branch"}, None, job=job)
    # Every provider that found something is named, the first one's values win.
    assert found == source.Source("main", REVISION, "https://awx.example.com/#/jobs/playbook/4711", "awx+github-actions")


def test_explicit_values_still_win_over_the_job():
    job = source.detect_controller_job(ENV, EXTRA_VARS)
    found = source.detect_source({}, None, branch="b", commit="c", uri="https://example.com/r", job=job)
    assert found[:3] == ("b", "c", "https://example.com/r")
