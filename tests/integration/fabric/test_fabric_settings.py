"""Settings precedence as ``fab`` really applies it: flags > FABRIC_RETRACE_* > RETRACE_* > fabric.yaml > ~/.fabric.yaml."""

from __future__ import annotations

import subprocess

import yaml


def _sent_version(project, *flags, env=None) -> str:
    result = project.run("retrace.start", *flags, env=env)
    assert result.returncode == 0, result.stderr
    return project.emulator.requests("start")[-1]["body"]["Version"]


def test_each_source_overrides_the_ones_below_it(project):
    (project.home / ".fabric.yaml").write_text(yaml.safe_dump({"retrace": {"version": "from-user-file", "environment_name": "Staging"}}))
    assert _sent_version(project) == "from-user-file"
    assert project.emulator.requests("start")[-1]["body"]["EnvironmentName"] == "Production", "project file beats ~/.fabric.yaml"

    project.fabric_yaml({"version": "from-fabric-yaml"})
    assert _sent_version(project) == "from-fabric-yaml"

    shared = {"RETRACE_VERSION": "from-retrace-env"}
    assert _sent_version(project, env=shared) == "from-retrace-env"

    both = {**shared, "FABRIC_RETRACE_VERSION": "from-fabric-env"}
    assert _sent_version(project, env=both) == "from-fabric-env"

    assert _sent_version(project, "--version", "from-flag", env=both) == "from-flag"


def test_the_key_from_fabric_env_and_stackify_env_is_used(project):
    for env in ({"RETRACE_API_KEY": None, "STACKIFY_API_KEY": "emulator-demo-key"},
                {"RETRACE_API_KEY": None, "FABRIC_RETRACE_API_KEY": "emulator-demo-key"}):
        result = project.run("retrace.start", "--version", f"key-{len(project.emulator.requests())}", env=env)
        assert result.returncode == 0, result.stderr


def test_version_branch_and_commit_fall_back_to_git(project):
    def git(*args):
        subprocess.run(["git", "-C", str(project.directory), *args], check=True, capture_output=True,
                       env={"HOME": str(project.home), "PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"})
    git("init", "-q", "-b", "release")
    git("add", "fabric.yaml")
    git("commit", "-q", "-m", "first")
    git("tag", "v4.5.6")

    result = project.run("retrace.start")

    assert result.returncode == 0, result.stderr
    body = project.emulator.requests("start")[0]["body"]
    assert body["Version"] == "v4.5.6" and body["Branch"] == "release" and len(body["Commit"]) == 40


def test_branch_commit_and_uri_come_from_the_ci_system(project):
    ci = {"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "main", "GITHUB_SHA": "f" * 40, "GITHUB_SERVER_URL": "https://github.com",
          "GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "42"}

    result = project.run("retrace.start", "--version", "5.0", "--branch", "hotfix", env=ci)

    assert result.returncode == 0, result.stderr
    body = project.emulator.requests("start")[0]["body"]
    assert body["Branch"] == "hotfix" and body["Commit"] == "f" * 40
    assert body["Uri"] == "https://github.com/acme/shop/actions/runs/42"
