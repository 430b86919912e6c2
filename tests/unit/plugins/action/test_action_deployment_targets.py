"""deployment_targets reads each host's settings as the deployment action does, and the core groups the hosts: one
target per deployment; hosts that cannot be recorded beside others that can are named in one warning."""

import os
from unittest import mock

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.stackify.retrace.plugins.action import deployment, deployment_targets
from ansible_collections.stackify.retrace.plugins.module_utils import _guard

KEY = "targets-unit-key"
SHARED = {"retrace_api_key": KEY, "retrace_environment_name": "Production", "retrace_version": "1.0"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No RETRACE_* or CI variables from the developer's shell; a private ledger and guard directory; no extra vars."""
    for name in list(os.environ):
        if name.startswith(("RETRACE_", "STACKIFY_")) or name in ("GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "CIRCLECI", "TF_BUILD"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(_guard, "RUNTIME_DIRECTORY", str(tmp_path))
    monkeypatch.setattr(deployment, "load_extra_vars", lambda loader: {})


def list_targets(inventory, *, module_defaults=None, hosts=None):
    """The task run on the first host of ``inventory`` (host -> its variables) for ``hosts`` (default: all of them)."""
    names = list(inventory)
    task_vars = {"playbook_dir": "/nonexistent", "inventory_hostname": names[0], **inventory[names[0]]}
    task = mock.MagicMock(args={"hosts": hosts or names}, check_mode=False, run_once=True, async_val=0, collections=[], no_log=False,
                          action="stackify.retrace.deployment_targets", resolved_action="stackify.retrace.deployment_targets",
                          module_defaults=module_defaults)
    task._parent._play._action_groups = {"stackify.retrace.deployment": ["stackify.retrace.retrace"]}  # pylint: disable=protected-access
    manager = task.get_variable_manager.return_value
    manager._inventory.get_host.side_effect = lambda name: name if name in inventory else None  # pylint: disable=protected-access
    manager.get_vars.side_effect = lambda play, host, task: {"playbook_dir": "/nonexistent", "inventory_hostname": host, **inventory[host]}
    loader = DataLoader()
    plugin = deployment_targets.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=loader,
                                             templar=Templar(loader=loader, variables=task_vars), shared_loader_obj=None)
    return plugin.run(task_vars=task_vars), manager


def test_hosts_of_two_apps_are_two_targets_and_the_key_is_never_returned():
    web, api = dict(SHARED, retrace_app_name="Shop.Web"), dict(SHARED, retrace_app_name="Shop.Api")
    result, _manager = list_targets({"web1": web, "api1": api, "web2": web})
    assert result["targets"] == [
        {"app_name": "Shop.Web", "environment_name": "Production", "version": "1.0", "label": "deployment 1.0 of Shop.Web to Production",
         "hosts": ["web1", "web2"], "host": "web1"},
        {"app_name": "Shop.Api", "environment_name": "Production", "version": "1.0", "label": "deployment 1.0 of Shop.Api to Production",
         "hosts": ["api1"], "host": "api1"}]
    assert result["unresolved"] == [] and "warnings" not in result and "failed" not in result
    assert KEY not in repr(result)


def test_one_target_that_cannot_be_recorded_is_left_to_the_start_task_to_report():
    without_key = {name: value for name, value in SHARED.items() if name != "retrace_api_key"}
    result, _manager = list_targets({"web1": dict(without_key, retrace_app_name="Shop"), "web2": dict(without_key, retrace_app_name="Shop")})
    [target] = result["targets"]
    assert target["hosts"] == ["web1", "web2"] and target["app_name"] == "Shop"
    assert result["unresolved"] == [] and "warnings" not in result and "failed" not in result


def test_a_host_without_an_app_name_beside_others_is_one_warning_naming_it():
    result, _manager = list_targets({"web1": dict(SHARED, retrace_app_name="Shop.Web"), "db1": SHARED, "db2": SHARED})
    assert [target["app_name"] for target in result["targets"]] == ["Shop.Web"]
    [warning] = result["warnings"]
    assert warning.startswith("Retrace: deployment 1.0 to Production NOT recorded for db1, db2: app_name: is not set")
    assert warning.endswith("(strict is off: the deployment goes on)") and "failed" not in result
    assert result["unresolved"] == [{"hosts": ["db1", "db2"], "problem": warning[len("Retrace: "):-len(" (strict is off: the deployment goes on)")]}]


def test_with_strict_a_host_that_cannot_be_recorded_fails_the_task():
    strict = dict(SHARED, retrace_strict=True)
    result, _manager = list_targets({"web1": dict(strict, retrace_app_name="Shop.Web"), "db1": strict})
    assert result["failed"] is True
    assert result["msg"].startswith("Retrace: deployment 1.0 to Production NOT recorded for db1: app_name: is not set")
    assert result["msg"].endswith("(strict: the run stops)")


def test_the_deployment_module_s_defaults_apply():
    defaults = [{"stackify.retrace.deployment": {"api_key": KEY}}]
    without_key = {name: value for name, value in SHARED.items() if name != "retrace_api_key"}
    result, _manager = list_targets({"web1": dict(without_key, retrace_app_name="Shop.Web"),
                                     "api1": dict(without_key, retrace_app_name="Shop.Api")}, module_defaults=defaults)
    assert [target["app_name"] for target in result["targets"]] == ["Shop.Web", "Shop.Api"] and "warnings" not in result


def test_each_other_host_s_variables_are_read_once():
    web = dict(SHARED, retrace_app_name="Shop.Web")
    _result, manager = list_targets({"web1": web, "web2": web, "web3": web})
    assert [call.kwargs["host"] for call in manager.get_vars.call_args_list] == ["web2", "web3"]
