"""``retrace.targets`` where it cannot apply: one line says so, and the call records the deployment the other settings
describe."""

from __future__ import annotations

import socket

import pytest
from fabric import Connection
from invoke import Context, MockContext, Result
from invoke.exceptions import Exit

from retrace_fabric import deploy, tracked
from retrace_fabric.deploy import deploy_to
from retrace_fabric.settings import TARGETS_NOT_HERE, resolve

TARGETS = [{"app_name": "Shop.Web", "hosts": ["web1"]}]


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "WARNING" in line]


def test_tracked_with_targets_says_they_do_not_apply_and_records_the_run_level_deployment(retrace_config, emulator, capsys):
    retrace_config.retrace.targets = TARGETS
    with tracked(Context(retrace_config)) as deployment:
        pass
    assert deployment.app_name == "DemoApp" and [entry["action"] for entry in emulator.requests()] == ["start", "complete"]
    assert _warnings(capsys.readouterr().err) == [f"retrace: WARNING: {TARGETS_NOT_HERE}"]


def test_tracked_with_the_app_only_in_targets_yields_none_and_says_why(retrace_config, emulator, capsys):
    retrace_config.retrace.targets = TARGETS
    retrace_config.retrace.app_name = None
    with tracked(Context(retrace_config)) as deployment:
        pass
    first, second = _warnings(capsys.readouterr().err)
    assert deployment is None and emulator.journal() == []
    assert first == f"retrace: WARNING: {TARGETS_NOT_HERE}" and "NOT recorded: app_name: is not set" in second


def test_a_local_deploy_with_targets_says_they_do_not_apply_and_offers_no_entry(retrace_config, emulator, capsys):
    retrace_config.retrace.update(targets=TARGETS, app_name=None, steps=["true"])
    context = MockContext(config=retrace_config, run={"true": Result()})
    deploy_to([context], retrace_config)  # what retrace-deploy deploy runs
    first, second = _warnings(capsys.readouterr().err)
    assert first == f"retrace: WARNING: {TARGETS_NOT_HERE}" and "NOT recorded: app_name: is not set" in second
    assert "retrace.targets entry" not in second and emulator.journal() == []


def test_the_local_machine_beside_hosts_in_targets_is_offered_no_entry(retrace_config, emulator, capsys):
    with socket.socket() as probe:  # a port nothing listens on: the host is unreachable at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retrace_config.retrace.update(targets=[{"app_name": "Shop.Web", "hosts": [f"127.0.0.1:{port}"]}], app_name=None,
                                  steps=["true"], parallel=False, fail_fast=False)
    context = MockContext(config=retrace_config, run={"true": Result()})
    with pytest.raises(Exit):
        deploy_to([context, Connection(f"127.0.0.1:{port}", config=retrace_config)], retrace_config,
                  labels=["local", f"127.0.0.1:{port}"])
    (warning,) = [line for line in _warnings(capsys.readouterr().err) if "NOT recorded for local" in line]
    assert "NOT recorded for local: app_name: is not set" in warning and "retrace.targets entry" not in warning


def test_targets_in_the_environment_are_named_as_ignored():
    (unknown,) = resolve({}, {}, environ={"FABRIC_RETRACE_TARGETS": "[{hosts: [web1]}]"}).unknown
    assert unknown.line() == ("retrace.targets is read from fabric.yaml (or a Fabric config file) only: "
                              "FABRIC_RETRACE_TARGETS is ignored")


def test_fab_list_says_one_deployment_per_app_and_environment():
    assert deploy.body.__doc__.splitlines()[0].endswith("one deployment per app and environment (retrace.targets).")
