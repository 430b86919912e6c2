"""The action plugin is glue: it hands the task's arguments, the retrace_* variables and the environment to the core's
resolver with their sources, runs the engine, and turns its Step into the task's result."""

import json
import subprocess
from unittest import mock

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.stackify.retrace.plugins.action import deployment as action
from ansible_collections.stackify.retrace.plugins.module_utils import _ansible_task, _guard
from ansible_collections.stackify.retrace.plugins.module_utils.transport import ConnectionFailed, Response

KEY = "action-unit-key"
URL = "https://retrace.test"
ARGS = {"api_key": KEY, "api_url": URL, "app_name": "Shop", "environment_name": "Production", "version": "1.0"}
ARGS_WITHOUT_KEY = {name: value for name, value in ARGS.items() if name not in ("api_key", "api_url")}


class Transport:
    """Stands in for AnsibleUrlsTransport: answers with ``statuses`` in turn (202 when they run out), or raises
    ``failure`` every time; records posts."""

    def __init__(self, *statuses, failure=None):
        self.statuses = list(statuses)
        self.failure = failure
        self.posts = []
        self.made_with = None

    def __call__(self, *args):
        self.made_with = args
        return self

    def post(self, url, body, headers, timeout):
        self.posts.append((url.rsplit("/", 1)[1], json.loads(body), headers["Authorization"]))
        if self.failure is not None:
            raise self.failure
        return Response(self.statuses.pop(0) if self.statuses else 202, {}, b'{"Message": "scripted"}')

    @property
    def actions(self):
        return [post[0] for post in self.posts]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No RETRACE_* or CI variables from the developer's shell; a private ledger and guard directory; no watcher forked
    unless a test asks for one; no extra vars."""
    for name in list(__import__("os").environ):
        if name.startswith(("RETRACE_", "STACKIFY_")) or name in ("GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "CIRCLECI", "TF_BUILD"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("RETRACE_ORPHAN_GUARD", "false")
    monkeypatch.setattr(_guard, "RUNTIME_DIRECTORY", str(tmp_path))
    monkeypatch.setattr(action, "load_extra_vars", lambda loader: {})


@pytest.fixture(name="transport")
def fixture_transport(monkeypatch):
    made = Transport()
    monkeypatch.setattr(_ansible_task, "AnsibleUrlsTransport", made)
    return made


def run_task(args, task_vars=None, *, extra_vars=None, written=None, check_mode=False, run_once=True, monkeypatch=None,
             module_defaults=None, inventory=None):
    """One task: ``args`` as Ansible hands them over (templated, module_defaults merged in), ``written`` as the
    playbook writes them (default: the same, literally), ``task_vars`` with the variables, ``extra_vars`` those given
    with -e, ``module_defaults`` as the play writes them (the collection's group is ``group/stackify.retrace.retrace``),
    ``inventory`` the variables the variable manager gives each other host, by name."""
    # As Ansible hands them over: the extra vars are among the task's variables, and what the playbook writes is
    # marked as a template Ansible may render (data tagging).
    task_vars = {"playbook_dir": "/nonexistent", **(task_vars or {}), **(extra_vars or {})}
    task = mock.MagicMock(args=dict(args), check_mode=check_mode, run_once=run_once, async_val=0, collections=[], no_log=False,
                          action="stackify.retrace.deployment", resolved_action="stackify.retrace.deployment",
                          module_defaults=module_defaults)
    task._parent._play._action_groups = {"stackify.retrace.deployment": ["stackify.retrace.retrace"]}  # pylint: disable=protected-access
    manager = task.get_variable_manager.return_value
    manager._inventory.get_host.side_effect = lambda name: name if name in (inventory or {}) else None  # pylint: disable=protected-access
    manager.get_vars.side_effect = lambda play, host, task: {**task_vars, **inventory[host]}
    as_written = {name: trust_as_template(value) if isinstance(value, str) else value
                  for name, value in (written if written is not None else args).items()}
    task.get_ds.return_value = {"stackify.retrace.deployment": as_written}
    connection = mock.MagicMock()
    connection._shell.tmpdir = "/never-used"  # pylint: disable=protected-access
    loader = DataLoader()
    plugin = action.ActionModule(task, connection, mock.MagicMock(), loader=loader, templar=Templar(loader=loader, variables=task_vars),
                                 shared_loader_obj=None)
    if extra_vars is not None:
        monkeypatch.setattr(action, "load_extra_vars", lambda loader: extra_vars)
    return plugin.run(task_vars=task_vars)


def test_the_connection_is_never_needed():
    assert action.ActionModule._requires_connection is False  # pylint: disable=protected-access
    assert action.ActionModule.TRANSFERS_FILES is False


def test_an_accepted_start_is_changed_and_tracked(transport):
    result = run_task({"state": "started", **ARGS})
    assert transport.actions == ["start"] and transport.posts[0][2] == f"ApiKey {KEY}"
    assert {key: result[key] for key in ("changed", "tracked", "status", "attempts", "api_url", "state")} == {
        "changed": True, "tracked": True, "status": 202, "attempts": 1, "api_url": URL, "state": "started"}
    assert result["deployment"] == {"Name": "1.0", "Version": "1.0", "AppName": "Shop", "EnvironmentName": "Production"}
    assert result["msg"] == "Retrace: deployment 1.0 of Shop to Production started" and "warnings" not in result
    assert KEY not in repr(result)


def test_no_key_anywhere_leaves_the_task_ok_with_one_warning_and_sends_nothing(transport):
    result = run_task({"state": "started", **{name: value for name, value in ARGS.items() if name != "api_key"}})
    assert "failed" not in result and result["tracked"] is False and result["changed"] is False
    assert transport.posts == []
    [warning] = result["warnings"]
    assert warning.startswith("Retrace: deployment 1.0 of Shop to Production NOT recorded: api_key")
    assert "RETRACE_API_KEY" in warning and "retrace_api_key in group_vars" in warning and "(strict is off: the deployment goes on)" in warning


def test_strict_fails_the_task_with_the_same_line(transport, monkeypatch):
    monkeypatch.setenv("RETRACE_STRICT", "yes")
    result = run_task({"state": "started", **{name: value for name, value in ARGS.items() if name != "api_key"}})
    assert result["failed"] is True and result["error"] == "invalid_input" and transport.posts == []
    assert result["msg"].startswith("Retrace: deployment 1.0 of Shop to Production NOT recorded: api_key")
    assert result["msg"].endswith("(strict: the run stops)")


def test_a_misspelt_strict_counts_as_strict_and_is_named(transport):
    """Raw arguments go to the core: Ansible's lenient conversions never see them."""
    result = run_task({"state": "started", **ARGS, "strict": "ture"})
    assert result["failed"] is True and transport.posts == []
    assert "strict: must be true or false, got 'ture' (from the task's arguments)" in result["msg"]


@pytest.mark.parametrize("args, message", [
    ({"state": "done"}, "value of state must be one of: started, completed, cancelled, got: done"),
    ({}, "missing required arguments: state"),
])
def test_a_bad_state_is_a_playbook_bug_and_fails_the_task(transport, args, message):
    result = run_task({**ARGS, **args})
    assert result["failed"] is True and result["error"] == "invalid_input" and message in result["msg"]
    assert transport.posts == []


def test_for_host_reads_that_host_s_retrace_variables(transport):
    inventory = {"api1": {"inventory_hostname": "api1", "retrace_app_name": "Shop.Api"}}
    result = run_task({"state": "started", "for_host": "api1", **{name: value for name, value in ARGS.items() if name != "app_name"}},
                      {"inventory_hostname": "web1", "retrace_app_name": "Shop.Web"}, inventory=inventory)
    assert result["tracked"] is True and transport.posts[0][1]["AppName"] == "Shop.Api"


def test_for_host_naming_the_task_s_own_host_reads_the_task_s_variables(transport):
    result = run_task({"state": "started", "for_host": "web1", **{name: value for name, value in ARGS.items() if name != "app_name"}},
                      {"inventory_hostname": "web1", "retrace_app_name": "Shop.Web"}, inventory={})
    assert result["tracked"] is True and transport.posts[0][1]["AppName"] == "Shop.Web"


def test_for_host_naming_no_inventory_host_is_a_playbook_bug_and_fails_the_task(transport):
    result = run_task({"state": "started", "for_host": "nowhere", **ARGS}, {"inventory_hostname": "web1"}, inventory={})
    assert result["failed"] is True and result["error"] == "invalid_input"
    assert result["msg"] == "for_host: no host 'nowhere' in the inventory" and transport.posts == []


def test_an_invalid_setting_without_strict_is_one_warning(transport):
    result = run_task({"state": "started", **ARGS, "version": 1.10, "timeout": "soon"})
    assert "failed" not in result and transport.posts == []
    [warning] = result["warnings"]
    assert "version: must be a string, got the number 1.1; YAML reads unquoted values such as 1.10" in warning
    assert "timeout: must be a number of seconds, got 'soon'" in warning


def test_an_unknown_argument_is_a_warning_with_a_suggestion_and_the_call_is_sent(transport):
    result = run_task({"state": "started", **ARGS, "stirct": True, "colour": "red"})
    assert result["tracked"] is True and transport.actions == ["start"]
    assert result["warnings"] == [
        "Retrace: unknown setting 'stirct' in the task's arguments (did you mean strict?): it is ignored",
        "Retrace: unknown setting 'colour' in the task's arguments: it is ignored"]


def test_retrace_variables_are_read_below_the_task_s_arguments_and_above_the_environment(transport, monkeypatch):
    monkeypatch.setenv("RETRACE_APP_NAME", "FromEnvironment")
    monkeypatch.setenv("RETRACE_ENVIRONMENT_NAME", "FromEnvironment")
    monkeypatch.setenv("RETRACE_API_KEY", KEY)
    monkeypatch.setenv("RETRACE_API_URL", URL)  # beside the key (a URL from variables never gets a key from elsewhere)
    task_vars = {"retrace_app_name": "FromVariables", "retrace_environment_name": trust_as_template("{{ stage }}"), "stage": "Staging",
                 "retrace_version": "FromVariables", "retrace_time_budget": 5}
    result = run_task({"state": "started", "version": "FromTask"}, task_vars)
    assert transport.posts[0][1] == {"Name": "FromTask", "Version": "FromTask", "AppName": "FromVariables", "EnvironmentName": "Staging"}
    assert "warnings" not in result  # retrace_time_budget is the callback's: known, not read


# --- module_defaults: defaults, below every retrace_* variable ------------------------------------------------

GROUP = "group/stackify.retrace.retrace"
FROM_DEFAULTS = {"app_name": "FromDefaults", "environment_name": "FromDefaults", "version": "FromDefaults"}


@pytest.fixture(name="settings_in_the_environment")
def fixture_settings_in_the_environment(monkeypatch):
    for name in ("RETRACE_APP_NAME", "RETRACE_ENVIRONMENT_NAME", "RETRACE_VERSION"):
        monkeypatch.setenv(name, "FromEnvironment")
    monkeypatch.setenv("RETRACE_API_KEY", KEY)
    monkeypatch.setenv("RETRACE_API_URL", URL)


@pytest.mark.parametrize("role", [None, action.ROLE], ids=["module task", "the role's task"])
def test_module_defaults_rank_below_retrace_variables_and_above_the_environment(transport, monkeypatch, settings_in_the_environment,
                                                                                role):
    """Ansible merges module_defaults into the arguments; the role's own tasks inherit them too."""
    task_vars = {"retrace_environment_name": "FromVariables", **({"ansible_role_name": role} if role else {})}
    result = run_task({"state": "started", **FROM_DEFAULTS}, task_vars, written={"state": "started"},
                      extra_vars={"retrace_version": "FromExtraVars"}, monkeypatch=monkeypatch,
                      module_defaults=[{GROUP: dict(FROM_DEFAULTS)}])
    assert result["tracked"] is True
    assert transport.posts[0][1] == {"Name": "FromExtraVars", "Version": "FromExtraVars", "AppName": "FromDefaults",
                                     "EnvironmentName": "FromVariables"}


def test_a_task_s_own_argument_outranks_retrace_variables_and_module_defaults(transport, monkeypatch, settings_in_the_environment):
    result = run_task({"state": "started", **FROM_DEFAULTS, "environment_name": "FromTask"},
                      {"retrace_environment_name": "FromVariables"}, written={"state": "started", "environment_name": "FromTask"},
                      extra_vars={"retrace_environment_name": "FromVariables"}, monkeypatch=monkeypatch,
                      module_defaults=[{GROUP: dict(FROM_DEFAULTS)}])
    assert result["tracked"] is True and transport.posts[0][1]["EnvironmentName"] == "FromTask"


def test_the_sources_in_order_put_module_defaults_between_the_variables_and_the_environment(transport, monkeypatch):
    seen = []
    resolve = action._resolve.resolve  # pylint: disable=protected-access

    def spy(sources, *args, **kwargs):
        seen.extend(source.name for source in sources)
        return resolve(sources, *args, **kwargs)
    monkeypatch.setattr(action._resolve, "resolve", spy)  # pylint: disable=protected-access
    run_task({"state": "started", **ARGS})
    assert seen == ["the task's arguments", "a task argument given by variables", "extra vars", "the play's variables",
                    "module_defaults", "module_defaults given by variables", "the environment"]


def test_a_templated_module_default_ranks_below_retrace_variables(transport, monkeypatch, settings_in_the_environment):
    result = run_task({"state": "started", **FROM_DEFAULTS, "environment_name": "FromTemplate"}, {"retrace_environment_name": "FromVariables"},
                      written={"state": "started"}, module_defaults=[{GROUP: {**FROM_DEFAULTS, "environment_name": "{{ stage }}"}}])
    assert result["tracked"] is True and transport.posts[0][1]["EnvironmentName"] == "FromVariables"


def test_an_unknown_retrace_variable_is_a_warning(transport):
    result = run_task({"state": "started", **ARGS}, {"retrace_enviroment_name": "Staging"})
    assert result["tracked"] is True
    assert result["warnings"] == ["Retrace: unknown setting 'retrace_enviroment_name' in the play's variables and extra vars "
                                  "(did you mean retrace_environment_name?): it is ignored"]


# --- where the key may go --------------------------------------------------------------------------------

@pytest.fixture(name="key_from_environment")
def fixture_key_from_environment(monkeypatch):
    monkeypatch.setenv("RETRACE_API_KEY", KEY)
    return {name: value for name, value in ARGS.items() if name not in ("api_key", "api_url")}


def test_an_api_url_written_in_the_task_takes_the_environment_s_key(transport, key_from_environment):
    result = run_task({"state": "started", **key_from_environment, "api_url": "https://retrace.example.org"})
    assert result["tracked"] is True and transport.posts[0][2] == f"ApiKey {KEY}"


def test_an_api_url_from_extra_vars_never_gets_the_environment_s_key(transport, key_from_environment, monkeypatch):
    result = run_task({"state": "started", **key_from_environment}, {"retrace_api_url": "https://evil.example"},
                      extra_vars={"retrace_api_url": "https://evil.example"}, monkeypatch=monkeypatch)
    assert transport.posts == [] and result["tracked"] is False and "failed" not in result
    [warning] = result["warnings"]
    assert "NOT recorded: api_url: https://evil.example (from extra vars) is refused" in warning and "RETRACE_API_URL" in warning


@pytest.mark.parametrize("written, rendered, extra_vars", [
    ("{{ retrace_api_url }}", "https://evil.example", {"retrace_api_url": "https://evil.example"}),
    ("https://{{ target }}", "https://evil.example", {"target": "evil.example"}),
    ("{{ urls.retrace }}", "https://evil.example", {"urls": {"retrace": "https://evil.example"}}),
    ("{{ vars['x'] }}", "https://evil.example", {"x": "https://evil.example"}),
    ("{{ endpoint }}", "https://evil.example", {}),  # a fact set from an extra var earlier: nothing left to tell
])
def test_a_templated_api_url_argument_never_gets_a_key_from_elsewhere(transport, key_from_environment, monkeypatch, written,
                                                                      rendered, extra_vars):
    """Whoever launches the run reaches every variable; a merged value does not say where it came from."""
    result = run_task({"state": "started", **key_from_environment, "api_url": rendered},
                      written={"state": "started", **key_from_environment, "api_url": written}, extra_vars=extra_vars,
                      monkeypatch=monkeypatch)
    assert transport.posts == [] and "(from a task argument given by variables) is refused" in result["warnings"][0]


@pytest.mark.parametrize("module_defaults", [
    [{GROUP: {"api_url": "https://retrace.example.org"}}],
    [{GROUP: {"api_url": "{{ elsewhere }}"}}, {"stackify.retrace.deployment": {"api_url": "https://retrace.example.org"}}],
], ids=["group", "the action's entry outranks a templated group"])
def test_a_literal_api_url_in_module_defaults_takes_the_environment_s_key(transport, key_from_environment, module_defaults):
    result = run_task({"state": "started", **key_from_environment, "api_url": "https://retrace.example.org"},
                      written={"state": "started", **key_from_environment}, module_defaults=module_defaults)
    assert result["tracked"] is True and transport.posts[0][2] == f"ApiKey {KEY}"


@pytest.mark.parametrize("module_defaults", [
    [{GROUP: {"api_url": "{{ target }}"}}],
    [{GROUP: "{{ deploy_defaults }}"}],  # the whole entry a template: its keys are a variable's
    [{GROUP: {"api_url": "https://retrace.example.org"}}, {"stackify.retrace.deployment": "{{ deploy_defaults }}"}],
], ids=["templated value", "templated group", "templated entry after a literal group"])
def test_an_api_url_module_defaults_template_never_gets_the_environment_s_key(transport, key_from_environment, module_defaults):
    result = run_task({"state": "started", **key_from_environment, "api_url": "https://evil.example"},
                      written={"state": "started", **key_from_environment}, module_defaults=module_defaults)
    assert transport.posts == [] and "(from module_defaults given by variables) is refused" in result["warnings"][0]


def test_a_task_s_templated_api_url_outranks_a_literal_module_default(transport, key_from_environment):
    result = run_task({"state": "started", **key_from_environment, "api_url": "https://evil.example"},
                      written={"state": "started", **key_from_environment, "api_url": "{{ target }}"},
                      module_defaults=[{GROUP: {"api_url": "https://evil.example"}}])
    assert transport.posts == [] and "(from a task argument given by variables) is refused" in result["warnings"][0]


def test_a_literal_api_url_stays_the_project_s_even_when_an_extra_var_says_the_same(transport, key_from_environment, monkeypatch):
    url = "https://retrace.example.org"
    result = run_task({"state": "started", **key_from_environment, "api_url": url}, extra_vars={"mirror": url},
                      monkeypatch=monkeypatch)
    assert result["tracked"] is True


@pytest.mark.parametrize("variables", [{"retrace_api_url": "https://evil.example"},
                                       {"retrace_api_url": trust_as_template("{{ target_url }}"), "target_url": "https://evil.example"}],
                         ids=["literal in group_vars", "templated in group_vars"])
def test_an_api_url_variable_never_gets_a_key_from_elsewhere(transport, key_from_environment, monkeypatch, variables):
    result = run_task({"state": "started", **key_from_environment}, variables, extra_vars={}, monkeypatch=monkeypatch)
    assert transport.posts == [] and "(from the play's variables) is refused" in result["warnings"][0]


def test_the_launcher_s_own_key_goes_with_the_launcher_s_url(transport, monkeypatch):
    given = {"retrace_api_url": URL, "retrace_api_key": KEY}
    assert run_task({"state": "started", **ARGS_WITHOUT_KEY}, given, extra_vars=given, monkeypatch=monkeypatch)["tracked"] is True


# --- the run ------------------------------------------------------------------------------------------------

def test_check_mode_returns_the_request_and_sends_nothing(transport):
    result = run_task({"state": "cancelled", **ARGS}, check_mode=True)
    assert transport.posts == [] and result["changed"] is True and result["tracked"] is False and result["attempts"] == 0
    assert result["deployment"] == {"Version": "1.0", "AppName": "Shop", "EnvironmentName": "Production"}
    assert "(check mode: nothing sent)" in result["msg"]


def test_the_transport_is_made_from_the_resolved_settings(transport, monkeypatch):
    monkeypatch.setenv("RETRACE_API_KEY", KEY)
    run_task({"state": "started", **ARGS, "validate_certs": "no", "use_proxy": False}, {"retrace_ca_path": "/etc/ca.pem"})
    assert transport.made_with == (False, "/etc/ca.pem", False)


def test_an_end_task_reuses_the_version_this_run_started(transport):
    identity = {name: value for name, value in ARGS.items() if name != "version"}
    run_task({"state": "started", **ARGS, "version": "2.4.1"})
    result = run_task({"state": "completed", **identity})
    assert transport.posts[1][:2] == ("complete", {"Name": "2.4.1", "Version": "2.4.1", "AppName": "Shop", "EnvironmentName": "Production"})
    assert result["msg"] == ("Retrace: deployment 2.4.1 of Shop to Production: version 2.4.1, the version this run started; "
                             "deployment 2.4.1 of Shop to Production completed")


def test_the_version_is_found_by_git_in_the_playbook_s_directory(transport, tmp_path):
    repository = tmp_path / "project"
    repository.mkdir()
    for command in (["init", "-q"], ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
                    ["tag", "v3.1.0"]):
        subprocess.run(["git", "-C", str(repository), *command], check=True)
    run_task({"state": "started", **{name: value for name, value in ARGS.items() if name != "version"}},
             {"playbook_dir": str(repository)})
    sent = transport.posts[0][1]
    assert sent["Version"] == "v3.1.0" and sent["Branch"] and len(sent["Commit"]) == 40


def test_a_refusal_without_strict_is_ok_with_the_error_and_one_warning(monkeypatch):
    transport = Transport(401)
    monkeypatch.setattr(_ansible_task, "AnsibleUrlsTransport", transport)
    result = run_task({"state": "started", **ARGS})
    assert "failed" not in result and result["tracked"] is False and result["status"] == 401 and result["attempts"] == 1
    assert result["error"] == "authentication_rejected"
    assert result["warnings"][0].startswith("Retrace: deployment 1.0 of Shop to Production NOT recorded: start failed: Retrace rejected")


def test_a_failed_end_with_strict_fails_the_task(monkeypatch):
    transport = Transport(failure=ConnectionFailed("connection refused"))
    monkeypatch.setattr(_ansible_task, "AnsibleUrlsTransport", transport)
    result = run_task({"state": "cancelled", **ARGS, "strict": True, "deadline": 0.2})
    assert result["failed"] is True and result["error"] == "api_unreachable" and "the cancel was NOT recorded" in result["msg"]


def test_several_hosts_without_run_once_get_the_run_once_hint(monkeypatch):
    transport = Transport(409)
    monkeypatch.setattr(_ansible_task, "AnsibleUrlsTransport", transport)
    result = run_task({"state": "started", **ARGS}, {"ansible_play_batch": ["web1", "web2", "web3"]}, run_once=False)
    assert transport.actions == ["start"]  # a sibling host's start: never recovered
    assert "This task ran for 3 hosts, and each sent its own start: add 'run_once: true'" in result["warnings"][0]


def test_a_guard_that_cannot_be_armed_is_a_warning_of_the_task(transport, monkeypatch):
    monkeypatch.setenv("RETRACE_ORPHAN_GUARD", "true")
    monkeypatch.setattr(_guard, "arm_orphan_guard", lambda *args, **kwargs: _guard.OrphanGuard(None))
    result = run_task({"state": "started", **ARGS})
    assert result["tracked"] is True
    assert result["warnings"] == ["Retrace: orphan guard not armed for deployment 1.0 of Shop to Production: if this run is "
                                  "killed, the deployment stays in progress in Retrace until the next run of this version "
                                  "recovers it (see docs/lifecycle.md, \"The orphan guard\")"]


def test_name_format_uses_the_controller_job_s_fields(transport):
    job = {"awx_job_id": 4711, "awx_user_name": "alice", "awx_job_template_name": "Deploy shop"}
    run_task({"state": "started", **ARGS, "name_format": "{version} by {user} via {job_template}"}, job)
    assert transport.posts[0][1]["Name"] == "1.0 by alice via Deploy shop"
