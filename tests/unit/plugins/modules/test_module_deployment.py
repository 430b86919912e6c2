"""The module's own main(), used when it runs without its action plugin: the same resolver, engine and results."""

import json

import pytest
from ansible.module_utils.common.parameters import PASS_VARS
from ansible.module_utils.testing import patch_module_args

from ansible_collections.stackify.retrace.plugins.module_utils import _ansible_task
from ansible_collections.stackify.retrace.plugins.module_utils.transport import Response
from ansible_collections.stackify.retrace.plugins.modules import deployment

ARGS = {"state": "started", "api_key": "module-unit-key", "api_url": "https://retrace.test", "app_name": "Shop",
        "environment_name": "Production", "version": "1.0"}


class RecordingTransport:
    def __init__(self, *args, status=202, **kwargs):
        self.init = (args, kwargs)
        self.status = status
        self.posts = []

    def post(self, url, body, headers, timeout):
        self.posts.append(json.loads(body))
        return Response(self.status, {}, b'{"Message": "answer"}')


class Transports(list):
    """Stands in for the AnsibleUrlsTransport class; remembers each transport made."""

    status = 202

    def __call__(self, *args, **kwargs):
        self.append(RecordingTransport(*args, status=self.status, **kwargs))
        return self[-1]


@pytest.fixture(name="transports")
def fixture_transports(monkeypatch, tmp_path):
    for name in ("RETRACE_API_KEY", "RETRACE_API_URL", "RETRACE_APP_NAME", "RETRACE_STRICT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    made = Transports()
    monkeypatch.setattr(_ansible_task, "AnsibleUrlsTransport", made)
    return made


def run_main(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        deployment.main()
    output = capsys.readouterr().out
    assert ARGS["api_key"] not in output
    return exited.value.code, json.loads(output)


def test_main_sends_and_exits_with_the_result(capsys, transports):
    code, result = run_main(capsys, dict(ARGS, validate_certs=False, use_proxy=False, ca_path="/etc/ca.pem"))
    assert code == 0 and result["changed"] is True and result["tracked"] is True and result["status"] == 202
    assert transports[0].init == ((False, "/etc/ca.pem", False), {})
    assert transports[0].posts == [{"Name": "1.0", "Version": "1.0", "AppName": "Shop", "EnvironmentName": "Production"}]


def test_the_invocation_ansible_reports_masks_the_key(capsys, transports):
    # ansible-core 2.19 and 2.20 always report `invocation`; 2.21 only with INJECT_INVOCATION, which the
    # controller passes as _ansible_inject_invocation (a module argument that 2.19 and 2.20 reject as unsupported).
    arguments = dict(ARGS)
    if "inject_invocation" in PASS_VARS:
        arguments["_ansible_inject_invocation"] = True
    code, result = run_main(capsys, arguments)
    assert code == 0
    assert result["invocation"]["module_args"]["api_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_main_in_check_mode_sends_nothing(capsys, transports):
    code, result = run_main(capsys, dict(ARGS, _ansible_check_mode=True))
    assert code == 0 and result["attempts"] == 0 and transports[0].posts == []


def test_main_with_strict_fails_with_one_message(capsys, transports):
    transports.status = 401
    code, result = run_main(capsys, {**ARGS, "strict": True})
    assert code == 1 and result["failed"] is True and result["error"] == "authentication_rejected"
    assert result["msg"].startswith("Retrace: deployment 1.0 of Shop to Production NOT recorded: start failed: Retrace rejected "
                                    "the API key (HTTP 401)")


def test_main_without_strict_warns_and_exits_ok(capsys, transports, monkeypatch):
    warned = []
    # Where module warnings go depends on the process (in a controller, straight to the display): the call is what counts.
    monkeypatch.setattr(deployment.AnsibleModule, "warn", lambda module, warning: warned.append(warning))
    code, result = run_main(capsys, {name: value for name, value in ARGS.items() if name != "api_key"})
    assert code == 0 and result["tracked"] is False and transports[0].posts == []
    assert len(warned) == 1 and warned[0].startswith("Retrace: deployment 1.0 of Shop to Production NOT recorded: api_key")


def test_the_environment_is_read_below_the_arguments_and_not_their_defaults(capsys, transports, monkeypatch):
    monkeypatch.setenv("RETRACE_APP_NAME", "FromEnv")
    monkeypatch.setenv("RETRACE_API_URL", "https://retrace.test")
    arguments = {name: value for name, value in ARGS.items() if name not in ("app_name", "api_url")}
    code, result = run_main(capsys, arguments)
    assert code == 0 and result["deployment"]["AppName"] == "FromEnv" and result["api_url"] == "https://retrace.test"
