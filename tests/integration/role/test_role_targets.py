"""stackify.retrace.tracked_deployment with several deployments in one play: one per app and environment of its hosts."""

import json
import os
import signal
import subprocess
import time

import pytest

from ansible_run import BIN, DEMO_KEY, run_playbook, write_playbook

APPS = {DEMO_KEY: {"apps": ["Shop.Web", "Shop.Api"], "environments": ["Production", "Staging"]}}
INVENTORY = "[web]\nweb1\nweb2\n\n[api]\napi1\napi2\n\n[all:vars]\nansible_connection=local\n"
STEPS = [
    {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying {{ inventory_hostname }}"}},
    {"name": "Failing step", "ansible.builtin.fail": {"msg": "broken on {{ inventory_hostname }}"},
     "when": "inventory_hostname in failing_hosts | default([])"},
]


def _project(tmp_path, group_vars: dict, role_vars: dict | None = None) -> str:
    """A playbook running the role on every host, with group_vars/<group>.yml for each entry of ``group_vars``."""
    (tmp_path / "steps.yml").write_text(json.dumps(STEPS))
    (tmp_path / "group_vars").mkdir()
    for group, variables in group_vars.items():
        (tmp_path / "group_vars" / f"{group}.yml").write_text(json.dumps(variables))
    variables = {"tracked_deployment_tasks": "steps.yml", "retrace_version": "1.0", **(role_vars or {})}
    play = {"name": "Tracked deployment", "hosts": "all", "gather_facts": False,
            "tasks": [{"name": "Deploy", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"},
                       "vars": variables}]}
    return write_playbook(tmp_path, [play])


GUARD_LANDS_WITHIN = 15.0


def _sent(retrace_emulator) -> list[tuple]:
    return [(entry["action"], entry["body"]["AppName"], entry["body"]["EnvironmentName"], entry["body"]["Version"])
            for entry in retrace_emulator.requests()]


def _warnings(run) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("[WARNING]: Retrace: ")]


@pytest.mark.retrace_emulator(accounts=APPS)
def test_two_apps_each_host_s_failure_cancels_only_its_own_app(tmp_path, role_env, retrace_emulator):
    playbook = _project(tmp_path, {"web": {"retrace_app_name": "Shop.Web"}, "api": {"retrace_app_name": "Shop.Api"}},
                        {"retrace_environment_name": "Production", "failing_hosts": ["api2"]})
    run = run_playbook(playbook, env=role_env, inventory=INVENTORY)
    assert run.returncode == 2, run.stdout
    assert _sent(retrace_emulator) == [("start", "Shop.Web", "Production", "1.0"), ("start", "Shop.Api", "Production", "1.0"),
                                       ("complete", "Shop.Web", "Production", "1.0"), ("cancel", "Shop.Api", "Production", "1.0")]
    assert run.stdout.count("deploying") == 4
    assert "Deployment failed on api2: Failing step: broken on api2" in run.stdout
    assert "(item=deployment 1.0 of Shop.Web to Production)" in run.stdout
    assert "(item=deployment 1.0 of Shop.Api to Production: cancelled)" in run.stdout
    assert _warnings(run) == []


@pytest.mark.retrace_emulator(accounts=APPS)
def test_targets_differing_only_by_environment_are_two_deployments(tmp_path, role_env, retrace_emulator):
    playbook = _project(tmp_path, {"web": {"retrace_environment_name": "Staging"}, "api": {"retrace_environment_name": "Production"}},
                        {"retrace_app_name": "Shop.Web"})
    run = run_playbook(playbook, env=role_env, inventory=INVENTORY)
    assert run.returncode == 0, run.stdout
    assert _sent(retrace_emulator) == [("start", "Shop.Web", "Staging", "1.0"), ("start", "Shop.Web", "Production", "1.0"),
                                       ("complete", "Shop.Web", "Staging", "1.0"), ("complete", "Shop.Web", "Production", "1.0")]


@pytest.mark.retrace_emulator(accounts=APPS)
def test_a_host_without_an_app_name_is_one_warning_naming_it_and_the_others_are_tracked(tmp_path, role_env, retrace_emulator):
    playbook = _project(tmp_path, {"web": {"retrace_app_name": "Shop.Web"}, "shop_api": {"retrace_app_name": "Shop.Api"}},
                        {"retrace_environment_name": "Production"})
    run = run_playbook(playbook, env=role_env, inventory=INVENTORY + "\n[shop_api]\napi1\n")
    assert run.returncode == 0, run.stdout
    assert _sent(retrace_emulator) == [("start", "Shop.Web", "Production", "1.0"), ("start", "Shop.Api", "Production", "1.0"),
                                       ("complete", "Shop.Web", "Production", "1.0"), ("complete", "Shop.Api", "Production", "1.0")]
    [warning] = _warnings(run)
    assert "NOT recorded for api2: app_name: is not set" in warning and "(strict is off: the deployment goes on)" in warning
    assert run.stdout.count("deploying") == 4


@pytest.mark.retrace_emulator(accounts=APPS)
def test_with_strict_a_host_without_an_app_name_stops_the_play_before_any_start(tmp_path, role_env, retrace_emulator):
    playbook = _project(tmp_path, {"web": {"retrace_app_name": "Shop.Web"}}, {"retrace_environment_name": "Production",
                                                                              "retrace_strict": True})
    run = run_playbook(playbook, env=role_env, inventory=INVENTORY)
    assert run.returncode == 2, run.stdout
    assert '"msg": "Retrace: deployment 1.0 to Production NOT recorded for api1, api2: app_name: is not set' in run.stdout
    assert "(strict: the run stops)" in run.stdout
    assert "deploying" not in run.stdout
    assert retrace_emulator.journal() == []


@pytest.mark.retrace_emulator(accounts=APPS)
def test_a_killed_run_cancels_every_deployment_it_started(tmp_path, role_env, retrace_emulator):
    marker = tmp_path / "deploying"
    playbook = _project(tmp_path, {"web": {"retrace_app_name": "Shop.Web"}, "api": {"retrace_app_name": "Shop.Api"}},
                        {"retrace_environment_name": "Production"})
    (tmp_path / "steps.yml").write_text(json.dumps([{"name": "Long step", "ansible.builtin.shell": f"touch {marker} && sleep 60"}]))
    (tmp_path / "inventory.ini").write_text(INVENTORY)
    with (tmp_path / "output.txt").open("wb") as output:  # a worker may outlive a killed ansible-playbook: no pipe
        process = subprocess.Popen([str(BIN / "ansible-playbook"), str(playbook), "-i", str(tmp_path / "inventory.ini")],
                                   env=role_env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "output.txt").read_text()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    expected = [("start", "Shop.Web"), ("start", "Shop.Api"), ("cancel", "Shop.Api"), ("cancel", "Shop.Web")]
    deadline = time.monotonic() + GUARD_LANDS_WITHIN
    while sorted(_actions(retrace_emulator)) != sorted(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = _actions(retrace_emulator)
    assert sorted(sent) == sorted(expected) and sent[:2] == expected[:2]


def _actions(retrace_emulator) -> list[tuple]:
    return [(action, app) for action, app, _environment, _version in _sent(retrace_emulator)]
