"""One run, several deployments: real ansible-playbook (and ansible-runner) runs over an inventory whose groups are
different Retrace apps or environments, the emulator's journal checked: one deployment per target, each ended by its
own hosts, every one of them ended exactly once however the run ends.
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import textwrap

import ansible_runner
import pytest

from ansible_collections.stackify.retrace.tests.integration.callback.conftest import kill_session, runner_private_data, wait_for_actions
from ansible_collections.stackify.retrace.tests.integration.callback.test_callback_lifecycle import start_in_background, wait_for
from ansible_collections.stackify.retrace.tests.reliability.reliability_helpers import retrace_warnings

pytestmark = pytest.mark.retrace_emulator(allow_any_app=True)

INVENTORY = """
[web]
web1
web2
[api]
api1
api2
[all:vars]
ansible_connection=local
"""
WEB, API = "deployment 1.0.0 of Shop.Web to Production", "deployment 1.0.0 of Shop.Api to Production"


def two_apps(runner, directory: pathlib.Path | None = None, **group_vars: str) -> list[str]:
    """The inventory (web -> Shop.Web, api -> Shop.Api, unless ``group_vars`` say otherwise by group) written in
    ``directory`` (default: the test's), and the arguments that name it."""
    directory = directory or runner.workdir
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    (directory / "inventory.ini").write_text(textwrap.dedent(INVENTORY))
    files = {"web": "retrace_app_name: Shop.Web\n", "api": "retrace_app_name: Shop.Api\n", **group_vars}
    for group, text in files.items():
        (directory / "group_vars" / f"{group}.yml").write_text(text)
    return ["-i", str(directory / "inventory.ini")]


def deploy(runner, fail_on: str = "", hosts: str = "web:api", extra: str = "", before: str = ""):
    command = "false" if fail_on else "true"
    return runner.write("site.yml", before + f"""
        - name: Deploy
          hosts: {hosts}
          gather_facts: false
          {extra}
          tasks:
            - name: Deploy the release
              ansible.builtin.command: "{{{{ '{command}' if inventory_hostname == '{fail_on}' else 'true' }}}}"
        """)


def deployments(runner) -> list[tuple[str, str, str, int]]:
    return [(entry["action"], entry["body"]["AppName"], entry["body"]["EnvironmentName"], entry["status"])
            for entry in runner.emulator.requests()]


def test_a_failure_on_an_api_host_cancels_only_shop_api(runner):
    result = runner.run(*two_apps(runner), str(deploy(runner, fail_on="api2")))
    assert result.returncode == 2, result.output
    assert sorted(deployments(runner)) == [("cancel", "Shop.Api", "Production", 202), ("complete", "Shop.Web", "Production", 202),
                                           ("start", "Shop.Api", "Production", 202), ("start", "Shop.Web", "Production", 202)]
    lines = result.retrace_lines()
    assert f"Retrace: {WEB} completed" in lines and f"Retrace: {API} cancelled: failed on api2" in lines, result.output
    assert not retrace_warnings(result.output), result.output


def test_a_build_on_localhost_then_one_app_is_one_deployment_as_before(runner):
    """Hosts of a play where no host names an app of its own (the build on localhost), with no app set for the whole
    run, belong to the run's deployment."""
    build = """
        - name: Build
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Build the release
              ansible.builtin.debug:
                msg: built
        """
    result = runner.run(*two_apps(runner), str(deploy(runner, hosts="web", before=build)), merged=True, unset=("RETRACE_APP_NAME",))
    assert result.returncode == 0, result.output
    assert deployments(runner) == [("start", "Shop.Web", "Production", 202), ("complete", "Shop.Web", "Production", 202)]
    assert result.retrace_lines() == [f"Retrace: {WEB} started", f"Retrace: {WEB} completed"], result.output


def test_hosts_without_an_app_of_their_own_take_the_run_s_app_as_with_the_role(runner):
    """RETRACE_APP_NAME=DemoApp for the run, Shop.Web for the web group: the api hosts deploy DemoApp (the usual
    fallbacks), and their failure cancels DemoApp only."""
    args = two_apps(runner)
    (runner.workdir / "group_vars" / "api.yml").unlink()
    result = runner.run(*args, str(deploy(runner, fail_on="api1")))
    assert result.returncode == 2, result.output
    assert sorted(deployments(runner)) == [("cancel", "DemoApp", "Production", 202), ("complete", "Shop.Web", "Production", 202),
                                           ("start", "DemoApp", "Production", 202), ("start", "Shop.Web", "Production", 202)]
    assert "Retrace: deployment 1.0.0 of DemoApp to Production cancelled: failed on api1" in result.retrace_lines()


def test_targets_differing_only_by_environment(runner):
    args = two_apps(runner, web="retrace_environment_name: Production-EU\n", api="retrace_environment_name: Production-US\n")
    result = runner.run(*args, "-e", "retrace_app_name=Shop", str(deploy(runner, fail_on="web1")))
    assert result.returncode == 2, result.output
    assert sorted(deployments(runner)) == [("cancel", "Shop", "Production-EU", 202), ("complete", "Shop", "Production-US", 202),
                                           ("start", "Shop", "Production-EU", 202), ("start", "Shop", "Production-US", 202)]


def test_a_host_without_an_app_name_is_named_once_and_the_others_are_tracked(runner):
    args = two_apps(runner, api="retrace_environment_name: Staging\n")  # the api group names no app
    result = runner.run(*args, str(deploy(runner)), unset=("RETRACE_APP_NAME",))
    assert result.returncode == 0, result.output
    assert deployments(runner) == [("start", "Shop.Web", "Production", 202), ("complete", "Shop.Web", "Production", 202)]
    warnings = retrace_warnings(result.output)
    assert len(warnings) == 1 and "NOT recorded for api1, api2: app_name: is not set" in warnings[0], result.output


def test_with_strict_a_host_without_an_app_name_stops_the_run_before_any_task(runner):
    args = two_apps(runner, api="retrace_environment_name: Staging\n")
    result = runner.run(*args, "-e", "retrace_strict=true", str(deploy(runner)), unset=("RETRACE_APP_NAME",))
    assert result.returncode == 2, result.output
    assert deployments(runner) == [] and "changed:" not in result.output and "ok:" not in result.output, result.output


def test_any_errors_fatal_cancels_the_deployments_whose_hosts_it_stopped(runner):
    """api1 fails: any_errors_fatal fails the play on every host (ansible-playbook exits 2), without counting web1 and
    web2 failed in the recap."""
    playbook = runner.write("site.yml", """
        - name: Deploy
          hosts: web:api
          gather_facts: false
          any_errors_fatal: true
          tasks:
            - name: Copy the release
              ansible.builtin.command: "{{ 'false' if inventory_hostname == 'api1' else 'true' }}"
            - name: Switch to the release
              ansible.builtin.command: "true"
        """)
    result = runner.run(*two_apps(runner), str(playbook))
    assert result.returncode == 2, result.output
    assert sorted(deployments(runner)) == [("cancel", "Shop.Api", "Production", 202), ("cancel", "Shop.Web", "Production", 202),
                                           ("start", "Shop.Api", "Production", 202), ("start", "Shop.Web", "Production", 202)]
    assert f"Retrace: {WEB} cancelled: stopped on web1, web2 (another host's failure ended the run there)" in result.retrace_lines()
    assert f"Retrace: {API} cancelled: failed on api1" in result.retrace_lines()


def test_ansible_runner_ends_each_deployment_by_its_own_hosts(runner, monkeypatch):
    private, envvars = runner_private_data(runner, deploy(runner, fail_on="web2"))
    two_apps(runner, private / "inventory")  # ansible-runner's inventory directory, with its group_vars
    monkeypatch.setenv("PATH", runner.env["PATH"])  # ansible-runner looks ansible-playbook up in its own PATH
    result = ansible_runner.run(private_data_dir=str(private), playbook="site.yml", quiet=True,
                                envvars={**envvars, "ANSIBLE_PYTHON_INTERPRETER": sys.executable})
    assert result.status == "failed", result.stdout.read()
    assert sorted(deployments(runner)) == [("cancel", "Shop.Web", "Production", 202), ("complete", "Shop.Api", "Production", 202),
                                           ("start", "Shop.Api", "Production", 202), ("start", "Shop.Web", "Production", 202)]


@pytest.mark.parametrize("signum, whole_group", [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGKILL, True)],
                         ids=["SIGINT-group", "SIGTERM", "SIGKILL-group"])
def test_every_way_the_run_is_stopped_cancels_both_deployments_once(runner, signum, whole_group):
    marker = runner.workdir / "both-running"
    playbook = runner.write("site.yml", f"""
        - name: Deploy
          hosts: web1:api1
          gather_facts: false
          tasks:
            - name: Deploy the release
              ansible.builtin.shell: "touch {marker}.{{{{ inventory_hostname }}}} && sleep 60"
        """)
    process, output = start_in_background(runner, *two_apps(runner), str(playbook))
    try:
        wait_for(runner.workdir / "both-running.api1", process, output)
        wait_for(runner.workdir / "both-running.web1", process, output)
        (os.killpg if whole_group else os.kill)(process.pid, signum)
        process.wait(timeout=60)
        actions = wait_for_actions(runner.emulator, 4)
    finally:
        kill_session(process.pid)
    assert sorted(deployments(runner)) == [("cancel", "Shop.Api", "Production", 202), ("cancel", "Shop.Web", "Production", 202),
                                           ("start", "Shop.Api", "Production", 202), ("start", "Shop.Web", "Production", 202)], (
        actions, output.read_text())


def test_a_host_s_own_variables_and_templates_reading_them_give_it_its_own_deployment(runner):
    """Settings are resolved once per set of groups, except where a host has its own: an inventory host var, a
    host_vars file, a group template reading a variable some host sets for itself, or one that looks a variable up by
    name."""
    args = two_apps(runner, web="retrace_app_name: \"Shop.{{ tier }}\"\n",
                    api="retrace_app_name: Shop.Api\nretrace_environment_name: \"{{ lookup('ansible.builtin.vars', 'stage') }}\"\n")
    (runner.workdir / "host_vars").mkdir()
    for host, text in {"web1": "tier: Web\n", "web2": "retrace_app_name: Shop.Admin\n", "web4": "tier: Blog\n"}.items():
        (runner.workdir / "host_vars" / f"{host}.yml").write_text(text)
    inventory = runner.workdir / "inventory.ini"
    hosts = "web1\nweb2\nweb3 retrace_app_name=Shop.Jobs\nweb4\n[api]\napi1 stage=Canary\napi2 stage=Production\n"
    inventory.write_text(inventory.read_text().replace("web1\nweb2\n[api]\napi1\napi2\n", hosts))
    result = runner.run(*args, str(deploy(runner, fail_on="api1")))
    assert result.returncode == 2, result.output
    assert sorted(deployments(runner)) == sorted([
        ("start", "Shop.Web", "Production", 202), ("complete", "Shop.Web", "Production", 202),
        ("start", "Shop.Blog", "Production", 202), ("complete", "Shop.Blog", "Production", 202),
        ("start", "Shop.Jobs", "Production", 202), ("complete", "Shop.Jobs", "Production", 202),
        ("start", "Shop.Admin", "Production", 202), ("complete", "Shop.Admin", "Production", 202),
        ("start", "Shop.Api", "Canary", 202), ("cancel", "Shop.Api", "Canary", 202),
        ("start", "Shop.Api", "Production", 202), ("complete", "Shop.Api", "Production", 202)]), result.output


@pytest.mark.retrace_emulator(allow_any_app=False)
def test_with_strict_a_refused_later_start_stops_the_run_and_cancels_the_one_started(runner):
    """The demo account knows DemoApp, not Shop.Api: web's deployment starts, api's start is refused at api1's first
    task, the run stops there (exit 2) and web's deployment is cancelled on the way out."""
    args = two_apps(runner, web="retrace_app_name: DemoApp\n")
    result = runner.run(*args, "-e", "retrace_strict=true", "--forks", "1", str(deploy(runner, hosts="web1:api1")))
    assert result.returncode == 2, result.output
    assert [(action, app) for action, app, _environment, _status in deployments(runner)] == [
        ("start", "DemoApp"), ("start", "Shop.Api"), ("cancel", "DemoApp")], result.output
    assert "changed: [api1]" not in result.output, result.output


def test_a_host_in_two_plays_fails_only_the_deployment_of_the_play_it_failed_in(runner):
    playbook = runner.write("site.yml", """
        - name: Deploy the web app
          hosts: web1
          gather_facts: false
          vars:
            retrace_app_name: Shop.Web
          tasks:
            - name: Deploy it
              ansible.builtin.command: "true"
        - name: Deploy the jobs
          hosts: web1
          gather_facts: false
          vars:
            retrace_app_name: Shop.Jobs
          tasks:
            - name: Deploy them
              ansible.builtin.command: "false"
        """)
    result = runner.run(*two_apps(runner), str(playbook))
    assert result.returncode == 2, result.output
    assert sorted(deployments(runner)) == [("cancel", "Shop.Jobs", "Production", 202), ("complete", "Shop.Web", "Production", 202),
                                           ("start", "Shop.Jobs", "Production", 202), ("start", "Shop.Web", "Production", 202)]


def test_a_deployment_whose_last_play_never_ran_is_cancelled(runner):
    """The api play ran, the web play failed on every web host and ended the run: the api hosts' switch-over never
    ran, so Shop.Api is not complete either."""
    def play(name, hosts, command):
        return f"""
        - name: {name}
          hosts: {hosts}
          gather_facts: false
          tasks:
            - name: {name}
              ansible.builtin.command: "{command}"
        """
    playbook = runner.write("site.yml", play("Install api", "api", "true") + play("Install web", "web", "false")
                            + play("Switch api traffic", "api", "true"))
    result = runner.run(*two_apps(runner), str(playbook))
    assert result.returncode == 2, result.output
    assert sorted(deployments(runner))[:2] == [("cancel", "Shop.Api", "Production", 202), ("cancel", "Shop.Web", "Production", 202)]
    assert (f"Retrace: {API} cancelled: stopped on api1, api2 (another host's failure ended the run there)"
            in result.retrace_lines()), result.output


def test_with_strict_a_later_play_s_host_without_an_app_stops_the_run_before_any_task(runner):
    args = two_apps(runner, api="retrace_environment_name: Staging\n")
    playbook = runner.write("site.yml", """
        - name: Deploy web
          hosts: web
          gather_facts: false
          tasks:
            - name: Deploy it
              ansible.builtin.command: "true"
        - name: Deploy api
          hosts: api
          gather_facts: false
          tasks:
            - name: Deploy it
              ansible.builtin.command: "true"
        """)
    result = runner.run(*args, "-e", "retrace_strict=true", str(playbook), unset=("RETRACE_APP_NAME",))
    assert result.returncode == 2, result.output
    assert deployments(runner) == [] and "changed:" not in result.output, result.output
    assert "NOT recorded for api1, api2: app_name: is not set" in result.output


def test_a_serial_batch_that_never_ran_cancels_its_deployment(runner):
    """The web batch fails on every host and ends the run: the api batch of the same play never ran."""
    playbook = runner.write("site.yml", """
        - name: Install the release
          hosts: web:api
          gather_facts: false
          serial: 2
          tasks:
            - name: Install it
              ansible.builtin.command: "{{ 'false' if inventory_hostname in groups['web'] else 'true' }}"
        """)
    result = runner.run(*two_apps(runner), str(playbook))
    assert result.returncode == 2, result.output
    assert [(action, app) for action, app, _environment, _status in deployments(runner)] == [
        ("start", "Shop.Web"), ("cancel", "Shop.Web")], result.output


def test_plays_on_groups_the_run_makes_are_read_when_they_start_without_a_warning(runner):
    playbook = runner.write("site.yml", """
        - name: Make a group
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Add api1 to a new group
              ansible.builtin.add_host:
                name: api1
                groups: fresh
        - name: Deploy to it
          hosts: fresh
          gather_facts: false
          tasks:
            - name: Deploy
              ansible.builtin.command: "true"
        """)
    result = runner.run(*two_apps(runner), str(playbook))
    assert result.returncode == 0, result.output
    assert "Could not match supplied host pattern" not in result.output
    assert ("start", "Shop.Api", "Production", 202) in deployments(runner), result.output


def test_after_a_failed_playbook_file_each_deployment_is_cancelled_for_its_own_reason(runner):
    def playbook(name, hosts, command):
        return str(runner.write(name, f"""
            - name: {name}
              hosts: {hosts}
              gather_facts: false
              tasks:
                - name: Run it
                  ansible.builtin.command: "{command}"
            """))
    args = two_apps(runner)
    result = runner.run(*args, playbook("api.yml", "api", "true"), playbook("web.yml", "web", "false"),
                        playbook("switch.yml", "api", "true"))
    assert result.returncode == 2, result.output
    assert f"Retrace: {WEB} cancelled: failed on web1, web2" in result.retrace_lines(), result.output
    assert (f"Retrace: {API} cancelled: ansible-playbook stopped after web.yml, where a host failed: the playbook files "
            "after it did not run") in result.retrace_lines(), result.output
