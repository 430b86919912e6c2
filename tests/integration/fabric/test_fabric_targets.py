"""``fab deploy`` with ``retrace.targets``: one deployment per app or environment, each ended by its own hosts.

The real ``fab`` over the loopback sshd's three "hosts" and the emulator; what Retrace recorded is read from the
emulator's deployments.
"""

from __future__ import annotations

import secrets
import signal
import time

import pytest

from retrace_emulator.accounts import DEMO_API_KEY
from retrace_emulator.server import RetraceEmulator
from test_fabric_interrupts import GUARD_WINDOW, PROMPT, Running, _kill_all, _until_gone

# The remote side learns which "host" (port) it is through sshd's SSH_CONNECTION variable.
SERVER_PORT = '"${SSH_CONNECTION##* }"'


@pytest.fixture
def emulator():
    """An account holding the apps and environments these tests deploy to (Shop.Admin is not one of them)."""
    account = {"apps": ["DemoApp", "Shop.Web", "Shop.Api"], "environments": ["Production", "Production-EU", "Staging"]}
    with RetraceEmulator({DEMO_API_KEY: account}) as running:
        yield running


def _recorded(project) -> list[tuple[str, str, str, str]]:
    """(AppName, EnvironmentName, Version, state) of each deployment the emulator holds, sorted."""
    return sorted((deployment["AppName"], deployment["EnvironmentName"], deployment["Version"], deployment["state"])
                  for deployment in project.emulator.deployments())


def _summary(output: str) -> str:
    return output[output.index("Deployment summary:"):]


def test_one_failing_api_host_cancels_the_api_deployment_only(ssh_project, sshd):
    web1, web2, api = sshd.host_strings
    ssh_project.fabric_yaml({"app_name": None, "version": "7.0.1", "targets": [
        {"app_name": "Shop.Web", "hosts": [web1, web2]},
        {"app_name": "Shop.Api", "environment_name": "Production-EU", "hosts": [api]}],
        "steps": ["echo app=$RETRACE_APP_NAME env=$RETRACE_ENVIRONMENT_NAME", f"test {SERVER_PORT} != {sshd.ports[2]}"]})

    result = ssh_project.run("deploy")  # no -H: the targets' hosts

    assert result.returncode == 1, result.stdout + result.stderr
    assert _recorded(ssh_project) == [("Shop.Api", "Production-EU", "7.0.1", "cancelled"),
                                      ("Shop.Web", "Production", "7.0.1", "completed")]
    assert sorted(ssh_project.actions()) == [("cancel", 202), ("complete", 202), ("start", 202), ("start", 202)]
    assert f"[{web2}] app=Shop.Web env=Production" in result.stdout
    assert f"[{api}] app=Shop.Api env=Production-EU" in result.stdout
    summary = _summary(result.stdout).splitlines()
    web_heading, api_heading = summary.index("  Shop.Web 7.0.1 to Production: completed"), \
        summary.index("  Shop.Api 7.0.1 to Production-EU: cancelled")
    assert [line.split()[:2] for line in summary[web_heading + 1:web_heading + 3]] == [[web1, "ok"], [web2, "ok"]]
    assert summary[api_heading + 1].split()[:2] == [api, "failed"] and "step 2" in summary[api_heading + 1]
    assert f"deployment 7.0.1 of Shop.Api to Production-EU cancelled: failed on {api}" in result.stdout


def test_targets_differing_only_by_environment_and_hosts_matched_as_typed(ssh_project, sshd):
    first, second, _third = sshd.host_strings
    ssh_project.fabric_yaml({"targets": [{"environment_name": "Staging", "hosts": [first]},
                                         {"environment_name": "Production", "hosts": [second]}],
                             "steps": ["echo env=$RETRACE_ENVIRONMENT_NAME"]})

    result = ssh_project.run("-H", f"{second},{first}", "deploy", "--version", "7.0.2")

    assert result.returncode == 0, result.stdout + result.stderr
    assert _recorded(ssh_project) == [("DemoApp", "Production", "7.0.2", "completed"),
                                      ("DemoApp", "Staging", "7.0.2", "completed")]
    assert f"[{first}] env=Staging" in result.stdout and f"[{second}] env=Production" in result.stdout
    assert "  DemoApp 7.0.2 to Production: completed" in result.stdout


def test_one_target_sends_exactly_what_no_targets_sends(ssh_project, sshd):
    hosts = sshd.host_strings[:2]
    ssh_project.fabric_yaml({})
    plain = ssh_project.run("-H", ",".join(hosts), "deploy", "--version", "7.0.3")
    ssh_project.fabric_yaml({"targets": [{"hosts": hosts}]})
    targeted = ssh_project.run("-H", ",".join(hosts), "deploy", "--version", "7.0.3")

    assert plain.returncode == targeted.returncode == 0, targeted.stdout + targeted.stderr
    bodies = [(entry["action"], entry["body"]) for entry in ssh_project.emulator.requests()]
    assert [action for action, _body in bodies] == ["start", "complete", "start", "complete"]
    assert bodies[:2] == bodies[2:]
    # the local fab's own lines (a remote step's shell may add noise of the host's own, prefixed with its name)
    assert local_lines(plain.stderr) == local_lines(targeted.stderr) == []


def test_a_host_without_an_app_name_is_named_once_and_the_others_are_tracked(ssh_project, sshd):
    tracked_host, lost_host, _third = sshd.host_strings
    marker = ssh_project.directory / "ran"
    marker.mkdir()
    ssh_project.fabric_yaml({"app_name": None, "targets": [{"app_name": "Shop.Web", "hosts": [tracked_host]}],
                             "steps": [f"touch {marker}/{SERVER_PORT}"]})

    result = ssh_project.run("-H", f"{tracked_host},{lost_host}", "deploy", "--version", "7.0.4")

    assert result.returncode == 0, result.stdout + result.stderr
    assert _recorded(ssh_project) == [("Shop.Web", "Production", "7.0.4", "completed")]
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"NOT recorded for {lost_host}: app_name: is not set" in warnings[0], result.stderr
    assert "app_name in a retrace.targets entry listing the host" in warnings[0] and tracked_host not in warnings[0]
    assert sorted(path.name for path in marker.iterdir()) == sorted(str(port) for port in sshd.ports[:2])


def test_strict_with_a_malformed_entry_exits_2_before_any_step(ssh_project, sshd):
    marker = ssh_project.directory / "ran"
    ssh_project.fabric_yaml({"strict": True, "targets": [{"app": "Shop.Web", "hosts": [sshd.host_strings[0]]}],
                             "steps": [f"touch {marker}"]})

    result = ssh_project.run("deploy", "--version", "7.0.5")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "targets: entry 1: unknown key 'app'" in result.stderr and "(strict: the run stops)" in result.stderr
    assert ssh_project.actions() == [] and not marker.exists()


def test_strict_and_a_host_in_no_entry_given_last_sends_nothing_and_says_what_was_not_started(ssh_project, sshd):
    marker = ssh_project.directory / "ran"
    web, lost, _third = sshd.host_strings
    ssh_project.fabric_yaml({"strict": True, "app_name": None, "steps": [f"touch {marker}"],
                             "targets": [{"app_name": "Shop.Web", "hosts": [web]}]})

    result = ssh_project.run("-H", f"{web},{lost}", "deploy", "--version", "7.0.7")

    assert result.returncode == 2, result.stdout + result.stderr
    assert ssh_project.actions() == [] and not marker.exists()
    assert f"NOT recorded for {lost}: app_name: is not set" in result.stderr
    assert "  Shop.Web 7.0.7 to Production: not started (the run stopped before its start)" in _summary(result.stdout)


def test_strict_and_a_refused_later_start_cancels_the_started_one_before_any_step(ssh_project, sshd):
    marker = ssh_project.directory / "ran"
    web, admin, _third = sshd.host_strings
    ssh_project.fabric_yaml({"strict": True, "app_name": None, "steps": [f"touch {marker}"], "targets": [
        {"app_name": "Shop.Web", "hosts": [web]}, {"app_name": "Shop.Admin", "hosts": [admin]}]})

    result = ssh_project.run("deploy", "--version", "7.0.6")

    assert result.returncode == 1, result.stdout + result.stderr
    assert [action for action, _status in ssh_project.actions()] == ["start", "start", "cancel"]
    assert _recorded(ssh_project) == [("Shop.Web", "Production", "7.0.6", "cancelled")]
    assert "deployment 7.0.6 of Shop.Admin to Production NOT recorded: start failed" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signal_to_the_group_cancels_both_deployments_once(ssh_project, sshd, signum):
    web, api, _third = sshd.host_strings
    running = ssh_project.directory / "running"
    running.mkdir()
    sleep_marker = f"36.{secrets.randbelow(10 ** 9):09d}"  # names the remote steps' processes in /proc
    ssh_project.fabric_yaml({"app_name": None, "targets": [{"app_name": "Shop.Web", "hosts": [web]},
                                                           {"app_name": "Shop.Api", "hosts": [api]}],
                             "steps": [f"touch {running}/{SERVER_PORT}; sleep {sleep_marker}"]})
    fab = Running(ssh_project, "deploy", "--version", "7.1.0")
    try:
        fab.wait_for(lambda: len(list(running.iterdir())) == 2, "both hosts' step running")
        sent_at = fab.signal(signum, group=True)
        if signum == signal.SIGKILL:
            fab.process.wait(timeout=PROMPT)
            ends_at = time.monotonic() + GUARD_WINDOW  # the orphan guard's cancels
            while len(ssh_project.emulator.requests("cancel")) < 2 and time.monotonic() < ends_at:
                time.sleep(0.1)
        else:
            assert fab.ended_within(sent_at, PROMPT) == 128 + signum, fab.output()
            assert fab.output().count("stopped by the interruption") == 2, fab.output()
        assert _recorded(ssh_project) == [("Shop.Api", "Production", "7.1.0", "cancelled"),
                                          ("Shop.Web", "Production", "7.1.0", "cancelled")], ssh_project.actions()
        assert sorted(ssh_project.actions()) == [("cancel", 202)] * 2 + [("start", 202)] * 2
    finally:
        _kill_all(sleep_marker)
    assert _until_gone(sleep_marker) == []


def test_targets_in_the_environment_or_for_a_single_call_are_one_line_each(project):
    targets = '[{"app_name": "Shop.Web", "hosts": ["web1"]}]'
    deployed = project.run("deploy", "--version", "7.2.0", env={"FABRIC_RETRACE_TARGETS": targets})
    project.fabric_yaml({"targets": [{"app_name": "Shop.Web", "hosts": ["web1"]}]})
    started = project.run("retrace.start", "--version", "7.2.1")

    assert deployed.returncode == started.returncode == 0, deployed.stderr + started.stderr
    assert deployed.stderr.splitlines() == ["retrace: WARNING: retrace.targets is read from fabric.yaml (or a Fabric config "
                                            "file) only: FABRIC_RETRACE_TARGETS is ignored"]
    assert started.stderr.splitlines() == ["retrace: WARNING: retrace.targets applies to fab deploy; this call records the "
                                           "deployment the other settings describe"]
    assert _recorded(project) == [("DemoApp", "Production", "7.2.0", "completed"), ("DemoApp", "Production", "7.2.1", "in_progress")]


def test_a_machine_in_two_entries_stays_in_the_first_and_deploys_once(ssh_project, sshd):
    web = sshd.host_strings[0]
    same_machine = web.split("@", 1)[1]  # without the user
    ssh_project.fabric_yaml({"app_name": None, "steps": ["echo ran as $RETRACE_APP_NAME"], "targets": [
        {"app_name": "Shop.Web", "hosts": [web]}, {"app_name": "Shop.Api", "hosts": [same_machine]}]})

    result = ssh_project.run("deploy", "--version", "7.3.0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert _recorded(ssh_project) == [("Shop.Web", "Production", "7.3.0", "completed")]
    assert result.stdout.count("] ran as") == 1 and f"[{web}] ran as Shop.Web" in result.stdout
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"retrace: WARNING: a deployment of retrace.targets NOT recorded: targets: entry 2: {same_machine} "
                              f"is in entry 1 already, as {web} (")
    assert warning.endswith("a host is in one entry): entry 2 is left out (strict is off: the deployment goes on)"), warning


def local_lines(stderr: str) -> list[str]:
    """What ``fab`` itself wrote on stderr: every line but those a host's command wrote (``[host] ...``)."""
    return [line for line in stderr.splitlines() if not line.startswith("[")]
