# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  What a deployment is, detected rather than typed: version, branch,
commit and a build URL.

:func:`detect` is the one chain every entry point uses, for whatever the user left unset: the controller job
(AWX / Automation Platform, see :func:`detect_controller_job`), then the CI system's environment, then git in
the project's directory, then (for the version only) the controller job's id.  No git and no CI simply means
nothing is detected; git refusing the directory (another user's checkout, "dubious ownership") is said, with
the fix.  Controller-only code (it starts ``git``), kept out of ``module_utils``; it imports nothing of the
collection, so that Fabric's copy of the core (``retrace_fabric.core``) can hold it as it is.
"""

from __future__ import annotations

import os
import subprocess
import typing as t

GIT_TIMEOUT = 5.0
#: variables git never gets: those that may hold the API key (settings.OPTIONS ``api_key``, and Fabric's own) and those
#: naming its file.  git runs a repository's hooks and ``core.fsmonitor`` command with its environment, and detection
#: runs before any entry point could take the key out of its own; the path of the key's file is left out too, as git
#: has no use for it and it points at the key.  (Listed here: this module imports nothing of the collection.)
KEY_VARIABLES = ("RETRACE_API_KEY", "STACKIFY_API_KEY", "FABRIC_RETRACE_API_KEY",
                 "RETRACE_API_KEY_FILE", "FABRIC_RETRACE_API_KEY_FILE")
#: what AWX puts in ``TOWER_URL_BASE`` (hence ``AWX_HOST``) until an administrator sets it: no real address
#: (awx/settings/defaults.py: "https://towerhost" up to 24.6.1, "https://platformhost" since)
PLACEHOLDER_CONTROLLER_URLS = ("https://towerhost", "https://platformhost")
#: a job's page, as AWX's own notifications link it (``Job.get_ui_url``, awx/main/models/jobs.py, AWX 24.6.1)
CONTROLLER_JOB_PAGE = "{base}/#/jobs/playbook/{job_id}"


class Source(t.NamedTuple):
    branch: str | None = None
    commit: str | None = None
    uri: str | None = None
    provider: str | None = None  # e.g. "github-actions", "git"
    #: a tag the CI system built (a release), which makes a version
    tag: str | None = None


def _strip_ref(value: str | None) -> str | None:
    if not value:
        return None
    for prefix in ("refs/heads/", "refs/tags/", "origin/"):
        if value.startswith(prefix):
            return value[len(prefix):]
    return value


def _join_url(*parts: str | None) -> str | None:
    if not all(parts):
        return None
    return "/".join(part.strip("/") for part in parts)  # type: ignore[union-attr]


def _github(env):
    uri = _join_url(env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), "actions/runs", env.get("GITHUB_RUN_ID"))
    if env.get("GITHUB_REF_TYPE") == "tag":  # a tag build: GITHUB_REF_NAME is the tag, and no branch is known
        return env.get("GITHUB_HEAD_REF"), env.get("GITHUB_SHA"), uri, env.get("GITHUB_REF_NAME")
    return env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"), env.get("GITHUB_SHA"), uri, None


def _gitlab(env):
    uri = env.get("CI_JOB_URL") or env.get("CI_PIPELINE_URL")
    return env.get("CI_COMMIT_BRANCH") or env.get("CI_COMMIT_REF_NAME"), env.get("CI_COMMIT_SHA"), uri, env.get("CI_COMMIT_TAG")


def _jenkins(env):
    return _strip_ref(env.get("BRANCH_NAME") or env.get("GIT_BRANCH")), env.get("GIT_COMMIT"), env.get("BUILD_URL"), env.get("TAG_NAME")


def _circleci(env):
    return env.get("CIRCLE_BRANCH"), env.get("CIRCLE_SHA1"), env.get("CIRCLE_BUILD_URL"), env.get("CIRCLE_TAG")


def _azure(env):
    collection = env.get("SYSTEM_COLLECTIONURI") or env.get("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI")
    project, build_id = env.get("SYSTEM_TEAMPROJECT"), env.get("BUILD_BUILDID")
    uri = f"{collection.rstrip('/')}/{project}/_build/results?buildId={build_id}" if collection and project and build_id else None
    branch = env.get("SYSTEM_PULLREQUEST_SOURCEBRANCH") or env.get("BUILD_SOURCEBRANCH")
    source_branch = env.get("BUILD_SOURCEBRANCH") or ""
    tag = source_branch[len("refs/tags/"):] if source_branch.startswith("refs/tags/") else None
    return _strip_ref(branch) or env.get("BUILD_SOURCEBRANCHNAME"), env.get("BUILD_SOURCEVERSION"), uri, tag


def _appveyor(env):
    uri = _join_url(env.get("APPVEYOR_URL"), "project", env.get("APPVEYOR_ACCOUNT_NAME"), env.get("APPVEYOR_PROJECT_SLUG"),
                    "builds", env.get("APPVEYOR_BUILD_ID"))
    tag = env.get("APPVEYOR_REPO_TAG_NAME") if (env.get("APPVEYOR_REPO_TAG") or "").lower() == "true" else None
    return env.get("APPVEYOR_REPO_BRANCH"), env.get("APPVEYOR_REPO_COMMIT"), uri, tag


def _teamcity(env):
    # TeamCity exposes the branch and build URL only as configuration parameters; the usual
    # practice is to map them to env.TEAMCITY_BUILD_BRANCH / env.BUILD_URL in the build configuration.
    return _strip_ref(env.get("TEAMCITY_BUILD_BRANCH")), env.get("BUILD_VCS_NUMBER"), env.get("BUILD_URL"), None


def _bamboo(env):
    branch = env.get("bamboo_planRepository_branchName") or env.get("bamboo_planRepository_branch") or env.get("bamboo_repository_git_branch")
    return branch, env.get("bamboo_planRepository_revision"), env.get("bamboo_resultsUrl") or env.get("bamboo_buildResultsUrl"), None


def _codebuild(env):
    # CodePipeline runs its builds in CodeBuild, so both are read from CodeBuild's variables.
    branch = _strip_ref(env.get("CODEBUILD_WEBHOOK_HEAD_REF"))
    trigger = env.get("CODEBUILD_WEBHOOK_TRIGGER") or ""
    tag = trigger[len("tag/"):] if trigger.startswith("tag/") else None
    return branch, env.get("CODEBUILD_RESOLVED_SOURCE_VERSION"), env.get("CODEBUILD_BUILD_URL"), tag


#: (provider, variable whose presence identifies it, reader)
CI_PROVIDERS = (
    ("github-actions", "GITHUB_ACTIONS", _github),
    ("gitlab-ci", "GITLAB_CI", _gitlab),
    ("circleci", "CIRCLECI", _circleci),
    ("azure-devops", "TF_BUILD", _azure),
    ("appveyor", "APPVEYOR", _appveyor),
    ("teamcity", "TEAMCITY_VERSION", _teamcity),
    ("bamboo", "bamboo_buildKey", _bamboo),
    ("aws-codebuild", "CODEBUILD_BUILD_ID", _codebuild),
    ("jenkins", "JENKINS_URL", _jenkins),
)


def detect_ci(environ: t.Mapping[str, str]) -> Source:
    """Branch, commit, build URL and the tag built (if any) from the first CI system recognised in ``environ``."""
    for provider, marker, reader in CI_PROVIDERS:
        if environ.get(marker):
            branch, commit, uri, tag = reader(environ)
            return Source(branch or None, commit or None, uri or None, provider, tag or None)
    return Source()


class ControllerJob(t.NamedTuple):
    """What AWX / Red Hat Ansible Automation Platform (automation controller) tells a job about itself.

    Read from the extra vars it adds to every job (``awx_*``, repeated as ``tower_*``:
    ``UnifiedJob.awx_meta_vars`` in awx/main/models/unified_jobs.py and ``Job.awx_meta_vars`` in
    awx/main/models/jobs.py) and the environment it sets (``JOB_ID``, ``AWX_HOST``, ``PROJECT_REVISION``:
    ``RunJob.build_env`` in awx/main/tasks/jobs.py); AWX 24.6.1 and devel e21dd0a (Oct 2024).  docs/awx.md
    has the full table.  Empty values are None.
    """

    job_id: str
    #: the job's page in the controller, or None when the controller's URL is unknown or a placeholder
    url: str | None = None
    #: the project's SCM revision (a commit for git projects); None when the job runs another branch
    revision: str | None = None
    branch: str | None = None
    job_template: str | None = None
    #: the launching user's username, or ``schedule <name>`` for a scheduled job
    user: str | None = None
    #: the workflow job that spawned this job; a sliced job is a workflow of N jobs, one per slice
    workflow_job_id: str | None = None
    workflow: str | None = None

    @property
    def in_workflow(self) -> bool:
        """True for a job started by a workflow, which may run siblings of it in parallel (job slices)."""
        return self.workflow_job_id is not None

    def name_fields(self) -> dict:
        """The values this job gives ``name_format`` placeholders (see settings.NAME_FORMAT_FIELDS)."""
        return {"user": self.user, "job_template": self.job_template, "job_id": self.job_id, "workflow": self.workflow}


def _text(value) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def detect_controller_job(environ: t.Mapping[str, str], extra_vars: t.Mapping[str, t.Any] | None = None) -> ControllerJob | None:
    """The controller job this run is, or None when it is not one.

    A job is recognised by its ``awx_job_id`` / ``tower_job_id`` extra var, or (when the extra vars
    cannot be seen) by ``JOB_ID`` together with ``AWX_HOST`` in ``environ``, both of which AWX sets for
    every playbook job.  Extra vars win over the environment; ``awx_*`` over ``tower_*``.
    """
    extra_vars = extra_vars or {}

    def meta(name):
        return _text(extra_vars.get(f"awx_{name}")) or _text(extra_vars.get(f"tower_{name}"))

    job_id = meta("job_id") or (_text(environ.get("JOB_ID")) if _text(environ.get("AWX_HOST")) else None)
    if job_id is None:
        return None
    base = (_text(environ.get("AWX_HOST")) or "").rstrip("/")
    url = CONTROLLER_JOB_PAGE.format(base=base, job_id=job_id) if base and base not in PLACEHOLDER_CONTROLLER_URLS else None
    project_branch, job_branch = meta("project_scm_branch"), meta("job_scm_branch")
    # awx_project_revision is the project's revision; a job that overrides the branch runs another one.
    revision = meta("project_revision") or _text(environ.get("PROJECT_REVISION"))
    if job_branch and job_branch != project_branch:
        revision = None
    schedule = meta("schedule_name") or meta("parent_job_schedule_name")
    user = meta("user_name") or (f"schedule {schedule}" if schedule else None)
    return ControllerJob(job_id=job_id, url=url, revision=revision, branch=job_branch or project_branch,
                         job_template=meta("job_template_name"), user=user,
                         workflow_job_id=meta("workflow_job_id"), workflow=meta("workflow_job_name"))


def run_git(directory: str, *args: str) -> str | None:
    """Output of a git command in ``directory``, or None when git or the repository is missing or refused."""
    return _git(directory, *args)[0]


def _git(directory: str, *args: str) -> tuple[str | None, str | None]:
    """``(output, refusal)``: the command's output (None if it failed), and why git refused the repository, if it did.

    git gets this process's environment without :data:`KEY_VARIABLES`, whichever entry point runs it.
    """
    environ = {name: value for name, value in os.environ.items() if name not in KEY_VARIABLES}
    try:
        completed = subprocess.run(("git", "-C", directory) + args, capture_output=True, text=True, env=environ,
                                   timeout=GIT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None, None
    output = completed.stdout.strip()
    if completed.returncode == 0 and output:
        return output, None
    return None, _refusal(directory, completed.stderr or "")


def _refusal(directory: str, stderr: str) -> str | None:
    """What to tell the user when git refused ``directory`` (CVE-2022-24765's ownership check), or None."""
    if "dubious ownership" not in stderr:
        return None
    # git names the directory to allow: "git config --global --add safe.directory <path>"
    command = next((line.strip() for line in stderr.splitlines() if "safe.directory" in line and "git config" in line), None)
    command = command or f"git config --global --add safe.directory {os.path.abspath(directory)}"
    return (f"git refused {os.path.abspath(directory)}: the repository belongs to another user (\"dubious ownership\"); "
            f"if you trust it, allow it with: {command}")


def inside_git_checkout(directory: str, environ: t.Mapping[str, str] | None = None) -> bool:
    """True when git could find a repository for ``directory``: GIT_DIR is set, or a ``.git`` is found upwards.

    Asking git outside a checkout costs a process start for nothing (a fork of a large process, in Ansible).
    """
    environ = os.environ if environ is None else environ
    if environ.get("GIT_DIR"):
        return True
    current = os.path.abspath(directory)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def detect_git(directory: str) -> Source:
    """Branch and commit of the git checkout containing ``directory`` (a detached HEAD has no branch)."""
    # One git process for both (each costs a few milliseconds): prints the commit, then the branch.
    output = run_git(directory, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
    if output is None:
        return Source()
    commit, _newline, branch = output.partition("\n")
    return Source(None if branch in ("HEAD", "") else branch, commit, None, "git")


def git_describe(directory: str) -> str | None:
    """A version-like name of the checkout (``v1.2.0-3-gabc1234``), or None without git."""
    return run_git(directory, "describe", "--tags", "--always", "--dirty")


def detect_source(environ: t.Mapping[str, str] | None = None, directory: str | None = None,
                  branch: str | None = None, commit: str | None = None, uri: str | None = None,
                  job: ControllerJob | None = None) -> Source:
    """Fill branch / commit / uri: explicit values, then the controller ``job``, then CI variables, then git in ``directory``."""
    environ = os.environ if environ is None else environ
    detected = [Source(branch or None, commit or None, uri or None, "explicit")]
    if job is not None:
        detected.append(Source(job.branch, job.revision, job.url, "awx"))
    detected.append(detect_ci(environ))
    if directory is not None and not (branch and commit):
        detected.append(detect_git(directory))
    merged = {field: next((getattr(found, field) for found in detected if getattr(found, field)), None) for field in ("branch", "commit", "uri")}
    providers = [found.provider for found in detected[1:] if found.provider and any(getattr(found, f) for f in ("branch", "commit", "uri"))]
    return Source(merged["branch"], merged["commit"], merged["uri"], "+".join(providers) or None)


class Detected(t.NamedTuple):
    """What :func:`detect` found for the options left unset, and why it could not find the others."""

    #: version, branch, commit, uri: only those found
    values: t.Mapping[str, str]
    #: option -> why it could not be found (git refused the directory)
    notes: t.Mapping[str, str]
    #: where the values came from, e.g. ``"awx+git"``
    provider: str | None


def detect(environ: t.Mapping[str, str], directory: str | None, given: t.Mapping[str, t.Any],
           job: ControllerJob | None = None) -> Detected:
    """Version, branch, commit and uri that ``given`` leaves unset (None), by the one chain of every entry point.

    The version: the controller ``job``'s project revision, the tag a CI system built, ``git describe`` of
    ``directory``, then the job's id (``awx-job-<id>``, or ``awx-workflow-<id>`` in a workflow, so that job slices
    agree).  Branch, commit and uri: the job, the CI system, then git.  ``directory`` None: no git.
    """
    wanted = [option for option in ("version", "branch", "commit", "uri") if given.get(option) is None]
    if not wanted:
        return Detected({}, {}, None)
    ci = detect_ci(environ)
    found: dict[str, str] = {}
    providers: list[str] = []
    notes: dict[str, str] = {}
    ci_values = {"version": ci.tag, "branch": ci.branch, "commit": ci.commit, "uri": ci.uri}
    for provider, values in (("awx", _job_values(job)), (ci.provider, ci_values)):
        _take(found, providers, provider, values, wanted)
    needs_git = [option for option in ("version", "branch", "commit") if option in wanted and option not in found]
    if needs_git and directory is not None and inside_git_checkout(directory, environ):
        git_values, refusal = _git_values(directory, needs_git)
        _take(found, providers, "git", git_values, wanted)
        if refusal is not None:
            notes.update({option: refusal for option in needs_git})
    if "version" in wanted and "version" not in found and job is not None:
        found["version"] = f"awx-workflow-{job.workflow_job_id}" if job.in_workflow else f"awx-job-{job.job_id}"
        providers.append("awx job id")
    return Detected(found, {option: note for option, note in notes.items() if option not in found}, "+".join(providers) or None)


def _job_values(job: ControllerJob | None) -> dict:
    if job is None:
        return {}
    return {"version": job.revision, "branch": job.branch, "commit": job.revision, "uri": job.url}


def _take(found: dict, providers: list, provider: str | None, values: t.Mapping[str, str | None], wanted: t.Sequence[str]) -> None:
    took = False
    for option in wanted:
        if option not in found and values.get(option):
            found[option] = values[option]
            took = True
    if took and provider:
        providers.append(provider)


def _git_values(directory: str, needed: t.Sequence[str]) -> tuple[dict, str | None]:
    values: dict[str, str] = {}
    refusal = None
    if "version" in needed:
        values["version"], refusal = _git(directory, "describe", "--tags", "--always", "--dirty")
    if refusal is None and ("branch" in needed or "commit" in needed):
        output, refusal = _git(directory, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
        if output is not None:
            commit, _newline, branch = output.partition("\n")
            values.update(commit=commit, branch=None if branch in ("HEAD", "") else branch)
    return {option: value for option, value in values.items() if value}, refusal
