import os
import shutil
import subprocess

import pytest

from ansible_collections.stackify.retrace.plugins.plugin_utils import _source as source

CI_ENVIRONMENTS = {
    "github-actions": ({"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "main", "GITHUB_SHA": "abc", "GITHUB_SERVER_URL": "https://github.com",
                        "GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "77"},
                       ("main", "abc", "https://github.com/acme/shop/actions/runs/77")),
    "gitlab-ci": ({"GITLAB_CI": "true", "CI_COMMIT_REF_NAME": "release", "CI_COMMIT_SHA": "def", "CI_JOB_URL": "https://gitlab.com/acme/shop/-/jobs/5"},
                  ("release", "def", "https://gitlab.com/acme/shop/-/jobs/5")),
    "jenkins": ({"JENKINS_URL": "https://ci/", "GIT_BRANCH": "origin/main", "GIT_COMMIT": "123", "BUILD_URL": "https://ci/job/shop/9/"},
                ("main", "123", "https://ci/job/shop/9/")),
    "circleci": ({"CIRCLECI": "true", "CIRCLE_BRANCH": "dev", "CIRCLE_SHA1": "456", "CIRCLE_BUILD_URL": "https://circleci.com/gh/acme/shop/3"},
                 ("dev", "456", "https://circleci.com/gh/acme/shop/3")),
    "azure-devops": ({"TF_BUILD": "True", "BUILD_SOURCEBRANCH": "refs/heads/feature/x", "BUILD_SOURCEVERSION": "789",
                      "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/", "SYSTEM_TEAMPROJECT": "shop", "BUILD_BUILDID": "12"},
                     ("feature/x", "789", "https://dev.azure.com/acme/shop/_build/results?buildId=12")),
    "appveyor": ({"APPVEYOR": "True", "APPVEYOR_REPO_BRANCH": "main", "APPVEYOR_REPO_COMMIT": "aaa", "APPVEYOR_URL": "https://ci.appveyor.com",
                  "APPVEYOR_ACCOUNT_NAME": "acme", "APPVEYOR_PROJECT_SLUG": "shop", "APPVEYOR_BUILD_ID": "4"},
                 ("main", "aaa", "https://ci.appveyor.com/project/acme/shop/builds/4")),
    "teamcity": ({"TEAMCITY_VERSION": "2025.1", "TEAMCITY_BUILD_BRANCH": "refs/heads/main", "BUILD_VCS_NUMBER": "bbb",
                  "BUILD_URL": "https://tc/viewLog.html?buildId=1"},
                 ("main", "bbb", "https://tc/viewLog.html?buildId=1")),
    "bamboo": ({"bamboo_buildKey": "SHOP-1", "bamboo_planRepository_branchName": "main", "bamboo_planRepository_revision": "ccc",
                "bamboo_resultsUrl": "https://bamboo/browse/SHOP-1"}, ("main", "ccc", "https://bamboo/browse/SHOP-1")),
    "aws-codebuild": ({"CODEBUILD_BUILD_ID": "shop:1", "CODEBUILD_WEBHOOK_HEAD_REF": "refs/heads/main", "CODEBUILD_RESOLVED_SOURCE_VERSION": "ddd",
                       "CODEBUILD_BUILD_URL": "https://console.aws.amazon.com/codesuite/codebuild/1"},
                      ("main", "ddd", "https://console.aws.amazon.com/codesuite/codebuild/1")),
}


@pytest.mark.parametrize("provider", sorted(CI_ENVIRONMENTS))
def test_each_ci_provider_is_read(provider):
    environ, expected = CI_ENVIRONMENTS[provider]
    assert source.detect_ci(environ) == source.Source(*expected, provider)


def test_github_pull_request_uses_the_head_branch():
    environ = dict(CI_ENVIRONMENTS["github-actions"][0], GITHUB_HEAD_REF="feature/y", GITHUB_REF_NAME="12/merge")
    assert source.detect_ci(environ).branch == "feature/y"


def test_partial_ci_variables_give_partial_results():
    assert source.detect_ci({"GITHUB_ACTIONS": "true", "GITHUB_SHA": "abc"}) == source.Source(None, "abc", None, "github-actions")
    assert source.detect_ci({"TF_BUILD": "True", "BUILD_SOURCEBRANCHNAME": "main"}) == source.Source("main", None, None, "azure-devops")
    assert source.detect_ci({"JENKINS_URL": "x", "GIT_BRANCH": "refs/tags/v1"}).branch == "v1"


def test_no_ci_detects_nothing():
    assert source.detect_ci({"HOME": "/root"}) == source.Source()


@pytest.fixture(name="repo")
def fixture_repo(tmp_path):
    def git(*args):
        subprocess.run(("git", "-C", str(tmp_path)) + args, check=True, capture_output=True)
    git("init", "-q", "-b", "trunk")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "one")
    git("tag", "v1.0.0")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "two")
    head = subprocess.run(("git", "-C", str(tmp_path), "rev-parse", "HEAD"), check=True, capture_output=True, text=True).stdout.strip()
    return tmp_path, head, git


def test_git_checkout_gives_branch_commit_and_describe(repo):
    path, head = repo[:2]
    assert source.detect_git(str(path)) == source.Source("trunk", head, None, "git")
    assert source.git_describe(str(path)).startswith("v1.0.0-1-g")


def test_detached_head_has_no_branch(repo):
    path, head, git = repo
    git("checkout", "-q", "--detach")
    assert source.detect_git(str(path)) == source.Source(None, head, None, "git")


def test_outside_git_or_without_git_nothing_is_detected(tmp_path, monkeypatch):
    assert source.detect_git(str(tmp_path)) == source.Source()
    assert source.git_describe(str(tmp_path)) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert source.run_git(str(tmp_path), "status") is None


def test_precedence_explicit_then_ci_then_git(repo):
    path, head = repo[:2]
    ci = {"CIRCLECI": "true", "CIRCLE_BRANCH": "ci-branch", "CIRCLE_BUILD_URL": "https://circleci.com/1"}
    found = source.detect_source(ci, str(path), branch="explicit")
    assert found == source.Source("explicit", head, "https://circleci.com/1", "circleci+git")
    assert source.detect_source({}, str(path)) == source.Source("trunk", head, None, "git")
    assert source.detect_source({}, None) == source.Source()
    assert source.detect_source({}, str(path), branch="b", commit="c", uri="https://x.io") == source.Source("b", "c", "https://x.io", None)


def test_default_environment_is_the_process_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_COMMIT_SHA", "zzz")
    assert source.detect_source(directory=str(tmp_path)).commit == "zzz"


def test_jenkins_multibranch_branch_name_is_used_as_is():
    assert source.detect_ci({"JENKINS_URL": "x", "BRANCH_NAME": "PR-12", "GIT_BRANCH": "origin/feature"}).branch == "PR-12"


# --- git never gets the key ----------------------------------------------------------------------------------

def _git_dumping_its_environment(tmp_path, monkeypatch):
    """A ``git`` first on PATH that writes its environment to a file, then runs the real git (a repository's
    ``core.fsmonitor`` or hook runs with the same environment)."""
    real_git = shutil.which("git")
    wrapper_directory, dump = tmp_path / "bin", tmp_path / "git.env"
    wrapper_directory.mkdir()
    wrapper = wrapper_directory / "git"
    wrapper.write_text(f'#!/bin/sh\nenv > "{dump}"\nexec "{real_git}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper_directory}{os.pathsep}{os.environ['PATH']}")
    return dump


@pytest.mark.parametrize("variable", ["RETRACE_API_KEY", "STACKIFY_API_KEY", "FABRIC_RETRACE_API_KEY",
                                      "RETRACE_API_KEY_FILE", "FABRIC_RETRACE_API_KEY_FILE"])
def test_git_gets_no_variable_that_holds_the_key_or_names_its_file(repo, tmp_path_factory, monkeypatch, variable):
    path = repo[0]
    dump = _git_dumping_its_environment(tmp_path_factory.mktemp("wrapper"), monkeypatch)
    monkeypatch.setenv(variable, "k3y-in-the-environment")
    monkeypatch.setenv("UNRELATED_VARIABLE", "kept")

    assert source.detect_git(str(path)).branch == "trunk"
    seen = dump.read_text()
    assert f"{variable}=" not in seen and "k3y-in-the-environment" not in seen
    assert "UNRELATED_VARIABLE=kept" in seen  # everything else git may need (HOME, GIT_*, proxies...) is kept
    assert os.environ[variable] == "k3y-in-the-environment"  # the run's own environment is left as it is


def test_the_variables_kept_from_git_are_every_variable_of_the_key():
    from ansible_collections.stackify.retrace.plugins.module_utils.settings import OPTIONS
    key_variables = {*OPTIONS["api_key"].environment, *OPTIONS["api_key_file"].environment,
                     "FABRIC_RETRACE_API_KEY", "FABRIC_RETRACE_API_KEY_FILE"}
    assert set(source.KEY_VARIABLES) == key_variables
