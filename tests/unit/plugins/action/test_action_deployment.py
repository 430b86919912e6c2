"""The action plugin: validates on the controller, never needs the connection, passes the right context."""

from unittest import mock

import pytest

from ansible_collections.stackify.retrace.plugins.action import deployment as action
from ansible_collections.stackify.retrace.plugins.module_utils import _ansible_task as ansible_task

ARGS = {"state": "started", "api_key": "action-unit-key", "api_url": "https://retrace.test", "app_name": "Shop",
        "environment_name": "Production", "version": "1.0"}


def make_action(args, check_mode=False, run_once=False):
    task = mock.MagicMock(args=args, check_mode=check_mode, run_once=run_once, async_val=0, action="stackify.retrace.deployment")
    connection = mock.MagicMock()
    connection._shell.tmpdir = "/never-used"  # pylint: disable=protected-access
    return action.ActionModule(task, connection, mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)


@pytest.fixture(name="calls")
def fixture_calls(monkeypatch):
    seen = []

    def fake_run(params, **context):
        seen.append((params, context))
        return {"changed": True, "state": params["state"]}
    monkeypatch.setattr(action, "run_deployment_task", fake_run)
    return seen


def test_the_connection_is_never_needed():
    assert action.ActionModule._requires_connection is False  # pylint: disable=protected-access
    assert action.ActionModule.TRANSFERS_FILES is False


def test_validated_parameters_and_task_context_reach_the_task(calls):
    batch = {"ansible_play_batch": ["web1", "web2", "web3"], "inventory_hostname": "web1"}
    result = make_action(dict(ARGS), check_mode=True).run(task_vars=batch)
    assert result == {"changed": True, "state": "started"}
    params, context = calls[0]
    assert params["timeout"] == 10.0 and params["validate_certs"] is True
    assert context["check_mode"] is True and context["hosts_in_task"] == 3
    assert context["entry_point"].startswith("ansible-module; ansible-core ")


def test_run_once_counts_as_one_host(calls):
    make_action(dict(ARGS), run_once=True).run(task_vars={"ansible_play_batch": ["web1", "web2"]})
    assert calls[0][1]["hosts_in_task"] == 1


@pytest.mark.parametrize("args, message", [
    (dict(ARGS, state="done"), "value of state must be one of: started, completed, cancelled, got: done"),
    (dict(ARGS, colour="red"), "unsupported parameters colour. Supported parameters include:"),
    (dict(ARGS, version=1.10), "version: must be a string, got the number 1.1"),
    (dict(ARGS, timeout="soon"), "timeout"),
])
def test_bad_arguments_fail_without_running_the_task(calls, args, message):
    result = make_action(args).run(task_vars={})
    assert result["failed"] is True and result["error"] == "invalid_input" and message in result["msg"]
    assert calls == []


def test_real_task_in_check_mode_returns_the_request(monkeypatch):
    transport = mock.Mock()
    monkeypatch.setattr(ansible_task, "AnsibleUrlsTransport", mock.Mock(return_value=transport))
    result = make_action(dict(ARGS), check_mode=True).run(task_vars={})
    assert result["changed"] is True and result["attempts"] == 0 and "action-unit-key" not in repr(result)
    transport.post.assert_not_called()
