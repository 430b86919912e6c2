"""The module's EXAMPLES, as ansible-doc shows them, work when pointed at the emulator."""

import ast
import pathlib
import time

import pytest
import yaml

from ansible_run import REPO_ROOT, play, run_playbook, write_playbook

MODULE = REPO_ROOT / "plugins" / "modules" / "deployment.py"


def examples() -> list[dict]:
    tree = ast.parse(pathlib.Path(MODULE).read_text())
    text = next(node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "EXAMPLES")
    return yaml.safe_load(text)


def example(name: str) -> dict:
    return next(task for task in examples() if task["name"] == name)


def test_the_emulator_example_lands_in_the_journal(tmp_path, ansible_env, retrace_emulator):
    task = example("Start a deployment at the emulator")
    assert task["stackify.retrace.deployment"]["api_url"] == "http://127.0.0.1:8765"
    task["stackify.retrace.deployment"]["api_url"] = retrace_emulator.url  # the only change a user makes
    env = {name: value for name, value in ansible_env.items() if not name.startswith("RETRACE_")}
    run = run_playbook(write_playbook(tmp_path, [play(task)]), env=env)
    assert run.returncode == 0, run.stdout
    # The run ended with the deployment still open, so its orphan guard cancels it within a second or so; reading
    # the journal at once raced that cancel (seen once in four runs).
    expected = [("start", 202, "1.0.0"), ("cancel", 202, "1.0.0")]
    deadline = time.monotonic() + 15
    while journal(retrace_emulator) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert journal(retrace_emulator) == expected


def journal(emulator):
    return [(entry["action"], entry["status"], entry["body"]["Version"]) for entry in emulator.requests()]


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_the_start_complete_and_cancel_examples_run(tmp_path, ansible_env, retrace_emulator):
    tasks = [example(name) for name in ("Tell Retrace the deployment starts", "Tell Retrace the deployment is complete",
                                        "Start with settings from the environment", "Cancel the deployment in Retrace",
                                        "Show the request without sending it")]
    variables = {"vault_retrace_api_key": "emulator-demo-key", "app_version": "2.4.1", "app_commit": "3f2c1ab",
                 "build_id": "77"}
    env = dict(ansible_env, RETRACE_APP_NAME="Shop", RETRACE_ENVIRONMENT_NAME="Production", RETRACE_VERSION="2.4.1")
    run = run_playbook(write_playbook(tmp_path, [play(*tasks, vars=variables)]), env=env)
    assert run.returncode == 0, run.stdout
    assert [(entry["action"], entry["status"]) for entry in retrace_emulator.requests()] == [
        ("start", 202), ("complete", 202), ("start", 202), ("cancel", 202)]
