"""The module's EXAMPLES, as ansible-doc shows them, work when pointed at the emulator."""

import ast
import pathlib
import time

import pytest
import yaml

from ansible_run import REPO_ROOT, play, run_playbook, write_playbook

MODULE = REPO_ROOT / "plugins" / "modules" / "deployment.py"
TARGETS_MODULE = REPO_ROOT / "plugins" / "modules" / "deployment_targets.py"
MODULE_DOCS = REPO_ROOT / "docs" / "module.md"


def examples(module: pathlib.Path = MODULE) -> list[dict]:
    tree = ast.parse(pathlib.Path(module).read_text())
    text = next(node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "EXAMPLES")
    return yaml.safe_load(text)


def docs_several_apps_example() -> list[dict]:
    """The YAML of docs/module.md's section on several apps or environments."""
    section = MODULE_DOCS.read_text().split("\n## Several apps or environments", 1)[1]
    return yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])


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
    # The check-mode example registers its result: the tasks after it read that variable, were it a retrace_* setting.
    tasks = [example(name) for name in ("Show the request without sending it", "Tell Retrace the deployment starts",
                                        "Tell Retrace the deployment is complete", "Start with settings from the environment",
                                        "Cancel the deployment in Retrace")]
    variables = {"vault_retrace_api_key": "emulator-demo-key", "app_version": "2.4.1", "app_commit": "3f2c1ab",
                 "build_id": "77"}
    env = dict(ansible_env, RETRACE_APP_NAME="Shop", RETRACE_ENVIRONMENT_NAME="Production", RETRACE_VERSION="2.4.1")
    run = run_playbook(write_playbook(tmp_path, [play(*tasks, vars=variables)]), env=env)
    assert run.returncode == 0, run.stdout
    assert [(entry["action"], entry["status"]) for entry in retrace_emulator.requests()] == [
        ("start", 202), ("complete", 202), ("start", 202), ("cancel", 202)]
    assert "unknown setting" not in run.stdout


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_the_several_apps_example_starts_one_deployment_per_app(tmp_path, ansible_env, retrace_emulator):
    several_apps = examples(TARGETS_MODULE)
    assert docs_several_apps_example() == several_apps  # the module's EXAMPLES and docs/module.md show the same tasks
    assert [task for task in examples() if task["name"] in ("List the deployments of the play's hosts", "Start each deployment")] == several_apps
    # The end tasks loop the same way (docs/module.md); this one runs after both registers, so it reads their variables.
    end = {"name": "Complete each deployment", "stackify.retrace.deployment": {"state": "completed", "for_host": "{{ item.host }}"},
           "run_once": True, "loop": "{{ deployment_targets.targets }}", "loop_control": {"label": "{{ item.label }}"},
           "when": "deployment_starts.results | length == 2"}
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("retrace_app_name: Shop.Web\n")
    (tmp_path / "group_vars" / "api.yml").write_text("retrace_app_name: Shop.Api\n")
    env = dict(ansible_env, RETRACE_ENVIRONMENT_NAME="Production", RETRACE_VERSION="2.4.1")
    run = run_playbook(write_playbook(tmp_path, [play(*several_apps, end, hosts="all")]), env=env,
                       inventory="[web]\nweb1\n\n[api]\napi1\n\n[all:vars]\nansible_connection=local\n")
    assert run.returncode == 0, run.stdout
    assert [(entry["action"], entry["body"]["AppName"]) for entry in retrace_emulator.requests()] == [
        ("start", "Shop.Web"), ("start", "Shop.Api"), ("complete", "Shop.Web"), ("complete", "Shop.Api")]
    assert "(item=deployment 2.4.1 of Shop.Api to Production)" in run.stdout
    assert "unknown setting" not in run.stdout and "[WARNING]" not in run.stdout, run.stdout
