"""api_key_file for Fabric: RETRACE_API_KEY_FILE, FABRIC_RETRACE_API_KEY_FILE, retrace.api_key_file in fabric.yaml."""

from __future__ import annotations

import pytest

from retrace_emulator.accounts import DEMO_API_KEY

NO_KEY = {"RETRACE_API_KEY": None}  # the project's environment holds the demo key: taken out, the file is the only source


@pytest.fixture
def key_file(project):
    path = project.directory / "retrace.key"
    path.write_text(f"{DEMO_API_KEY}\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("source", ["RETRACE_API_KEY_FILE", "FABRIC_RETRACE_API_KEY_FILE", "fabric.yaml"])
def test_single_calls_take_the_key_from_the_file(project, key_file, source):
    if source == "fabric.yaml":
        project.fabric_yaml({"api_key_file": str(key_file)})
        env = NO_KEY
    else:
        env = {**NO_KEY, source: str(key_file)}
    started = project.run("retrace.start", "--version", "7.0.0", env=env)
    completed = project.run("retrace.complete", "--version", "7.0.0", env=env)
    for result in (started, completed):
        assert result.returncode == 0, result.stderr
        assert DEMO_API_KEY not in result.stdout + result.stderr
    assert project.actions() == [("start", 202), ("complete", 202)]


def test_a_tracked_deploy_takes_the_key_from_the_file(project, key_file):
    result = project.run("deploy", "--version", "7.1.0", env={**NO_KEY, "RETRACE_API_KEY_FILE": str(key_file)})
    assert result.returncode == 0, result.stderr
    assert project.actions() == [("start", 202), ("complete", 202)]
    assert DEMO_API_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("strict, code", [(None, 0), ("true", 2)])
def test_a_key_and_a_key_file_are_refused_before_anything_is_sent(project, key_file, strict, code):
    result = project.run("retrace.start", "--version", "7.2.0", env={"RETRACE_API_KEY_FILE": str(key_file), "RETRACE_STRICT": strict})
    assert result.returncode == code, result.stderr
    assert "NOT recorded" in result.stderr and "set api_key or api_key_file, not both" in result.stderr
    assert project.actions() == []


def test_there_is_no_key_file_flag(project, key_file):
    """Like the key, its file is never a flag (task flags stay free of key-related settings)."""
    result = project.run("retrace.start", "--version", "7.3.0", "--api-key-file", str(key_file), env=NO_KEY)
    assert result.returncode != 0
    assert project.actions() == []
