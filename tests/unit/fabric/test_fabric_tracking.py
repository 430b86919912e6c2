"""tracked() / track / deploy_to with invoke's MockContext and Fabric's MockRemote, real HTTP to the in-process emulator."""

from __future__ import annotations

import os
import signal

import pytest
from fabric import Connection
from fabric.testing.base import Command
from invoke import Context, MockContext, Result, Task
from invoke.exceptions import Exit

from retrace_fabric import deploy, track, tracked
from retrace_fabric.core.errors import InvalidInput
from retrace_fabric.deploy import HostRunner, Step, deploy_to, parse_steps, run_recorded_hosts, step_environment
from retrace_fabric.tracking import HANDLED_SIGNALS, Interrupted, Reporter, signals_raise

FIELDS = {"app_name": "A", "environment_name": "E", "version": "v 1", "name": "v 1"}


def _actions(emulator):
    return [(entry["action"], entry["status"]) for entry in emulator.requests()]


def test_tracked_sends_start_then_complete(retrace_config, emulator, capsys):
    with tracked(Context(retrace_config), name="Nightly") as deployment:
        assert _actions(emulator) == [("start", 202)]
    assert deployment.name == "Nightly"
    assert _actions(emulator) == [("start", 202), ("complete", 202)]
    out = capsys.readouterr().out
    assert out.count("-> HTTP 202") == 2 and out.count("retrace.start: sent {") == 1
    assert "retrace: deployment 1.0.0 of DemoApp to Production started" in out
    assert "retrace: deployment 1.0.0 of DemoApp to Production completed" in out


def test_the_engines_lines_go_where_fabric_shows_them(capsys):
    reporter = Reporter()
    reporter.info("deployment 1 of A to E started")
    reporter.detail("start: sent {} -> HTTP 202")
    reporter.warning("deployment 1 of A to E NOT recorded: why")
    reporter.error("deployment 1 of A to E NOT recorded: why (strict: the run stops)")
    reporter.debug("Retrace start: attempt 1 failed (HTTP 503); retrying in 0.5 s")
    out, err = capsys.readouterr()
    assert out.splitlines() == ["retrace: deployment 1 of A to E started", "retrace.start: sent {} -> HTTP 202"]
    assert err.splitlines() == ["retrace: WARNING: deployment 1 of A to E NOT recorded: why",
                                "retrace: ERROR: deployment 1 of A to E NOT recorded: why (strict: the run stops)",
                                "retrace: Retrace start: attempt 1 failed (HTTP 503); retrying in 0.5 s"]


def test_tracked_cancels_on_an_error_and_re_raises_it(retrace_config, emulator):
    with pytest.raises(RuntimeError, match="boom"):
        with tracked(Context(retrace_config)):
            raise RuntimeError("boom")
    assert _actions(emulator) == [("start", 202), ("cancel", 202)]


@pytest.mark.parametrize(("interruption", "code"), [(KeyboardInterrupt(), 130), (Interrupted(signal.SIGINT), 130),
                                                    (Interrupted(signal.SIGTERM), 143), (Interrupted(signal.SIGHUP), 129)])
def test_tracked_turns_an_interruption_into_exit_after_cancel(retrace_config, emulator, interruption, code):
    with pytest.raises(Exit) as raised:
        with tracked(Context(retrace_config)):
            raise interruption
    assert raised.value.code == code and "cancelled in Retrace" in str(raised.value.message)
    assert _actions(emulator) == [("start", 202), ("cancel", 202)]


def test_with_strict_true_a_refused_start_stops_the_work_with_exit_1(retrace_config, emulator, monkeypatch, capsys):
    monkeypatch.setenv("RETRACE_API_KEY", "wrong-key")
    retrace_config.retrace.strict = "yes"
    ran = []
    with pytest.raises(Exit) as raised:
        with tracked(Context(retrace_config)):
            ran.append(True)
    err = capsys.readouterr().err
    assert raised.value.code == 1 and "rejected the API key" in err and err.count("retrace: ERROR:") == 1
    assert not ran and "wrong-key" not in err


def test_by_default_a_refused_start_only_warns(retrace_config, emulator, monkeypatch, capsys):
    monkeypatch.setenv("RETRACE_API_KEY", "wrong-key")
    ran = []
    with tracked(Context(retrace_config)):
        ran.append(True)
    assert ran and "NOT recorded: start failed" in capsys.readouterr().err


def test_a_missing_setting_warns_and_the_block_runs_untracked(retrace_config, emulator, capsys):
    retrace_config.retrace.app_name = None
    with tracked(Context(retrace_config)) as deployment:
        ran = True
    assert ran and deployment is None and emulator.journal() == []
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith("retrace: WARNING: deployment 1.0.0 to Production NOT recorded: app_name: is not set")
    assert "--app-name" in warning and "RETRACE_APP_NAME" in warning and "retrace.app_name in fabric.yaml" in warning


@pytest.mark.parametrize("strict", ["yes", "ture"])
def test_with_strict_a_missing_setting_exits_2_before_the_block(retrace_config, emulator, capsys, strict):
    retrace_config.retrace.app_name = None
    retrace_config.retrace.strict = strict
    ran = []
    with pytest.raises(Exit) as raised:
        with tracked(Context(retrace_config)):
            ran.append(True)
    assert raised.value.code == 2 and not ran and emulator.journal() == []
    assert "app_name: is not set" in capsys.readouterr().err


def test_track_keeps_the_task_signature_for_invoke(retrace_config, emulator):
    @track
    def release(c, flavour="blue"):
        """Release it."""
        return flavour

    task = Task(release)
    assert [argument.name for argument in task.get_arguments()] == ["flavour"]
    assert task(Context(retrace_config), flavour="green") == "green"
    assert _actions(emulator) == [("start", 202), ("complete", 202)]


def test_steps_accept_commands_and_sudo_mappings():
    assert parse_steps(["make", {"run": "systemctl restart shop", "sudo": True}]) == [
        Step("make"), Step("systemctl restart shop", sudo=True)]


@pytest.mark.parametrize("steps", [[], None, "make", [""], [{"run": "x", "sudo": "yes"}], [{"cmd": "x"}], [3]])
def test_bad_steps_name_the_setting(steps):
    with pytest.raises(InvalidInput) as raised:
        parse_steps(steps)
    assert raised.value.option == "steps"


def test_the_step_environment_is_quoted_for_ssh_and_carries_no_key():
    fields = {"app_name": "Shop", "environment_name": "Prod", "version": "1.0", "name": "Big release"}
    assert step_environment(fields, inline=True) == {
        "RETRACE_APP_NAME": "Shop", "RETRACE_ENVIRONMENT_NAME": "Prod", "RETRACE_VERSION": "1.0",
        "RETRACE_DEPLOYMENT_NAME": "'Big release'"}
    assert step_environment(fields, inline=False)["RETRACE_DEPLOYMENT_NAME"] == "Big release"


def test_a_failing_local_step_stops_that_target_and_is_summarised():
    context = MockContext(run={"make": Result(exited=0, stdout="built\n"), "make install": Result(exited=3)})
    runner = HostRunner([context], parse_steps(["make", "make install", "never"]), FIELDS, parallel=True)

    with pytest.raises(Exception, match=r"local \(failed\)"):
        runner.run()
    assert "step 2 (make install) exited with status 3" in runner.summary()


def test_remote_steps_get_the_deployment_variables_inline(remote):
    remote.expect(host="web1", user="deploy", port=22,
                  commands=[Command("export RETRACE_APP_NAME=A RETRACE_DEPLOYMENT_NAME='v 1' RETRACE_ENVIRONMENT_NAME=E "
                                    "RETRACE_VERSION='v 1' && ./release.sh", out=b"released\n")])
    runner = HostRunner([Connection("web1", user="deploy")], [Step("./release.sh")], FIELDS, parallel=True)

    runner.run()

    assert runner.outcomes[0].state == "ok"


def test_each_host_gets_its_own_deployment_fields_and_a_skipped_host_counts_as_stopped():
    web = MockContext(run={"./release.sh": Result(exited=1)})
    api = MockContext(run={})
    runner = HostRunner([web, api], [Step("./release.sh")], {}, parallel=False, labels=["web1", "api1"],
                        fields_by_host=[FIELDS, {**FIELDS, "app_name": "Api"}])

    runner.run_hosts()
    for outcome in runner.outcomes:
        outcome.elapsed = 0.0  # the rows' shape, not the machine's speed

    assert runner.what_happened() == {"web1": "failed", "api1": "stopped"}
    assert runner.fields[1]["app_name"] == "Api"
    assert runner.summary([("A v 1 to E: cancelled", ["web1"]), ("Api v 1 to E: cancelled", ["api1"])]).splitlines() == [
        "Deployment summary:", "  A v 1 to E: cancelled",
        "    web1  failed          0.0 s  step 1 (./release.sh) exited with status 1",
        "  Api v 1 to E: cancelled", "    api1  not run         0.0 s  skipped: web1 failed first (fail_fast)"]


def test_deploy_records_each_host_and_the_post_hook_runs_them_all_at_once(retrace_config, emulator, capsys):
    retrace_config.retrace.steps = ["echo one"]
    context = MockContext(config=retrace_config, run={"echo one": Result("one\n")})

    deploy(context, version="7.0")
    assert emulator.journal() == [], "nothing happens per host call"
    run_recorded_hosts(context)

    assert _actions(emulator) == [("start", 202), ("complete", 202)]
    assert emulator.requests("start")[0]["body"]["Version"] == "7.0"
    assert "[local] $ echo one" in capsys.readouterr().out


def test_deploy_to_exits_1_and_cancels_when_a_target_fails(retrace_config, emulator, capsys):
    retrace_config.retrace.steps = ["false"]
    context = MockContext(config=retrace_config, run={"false": Result(exited=1)})

    with pytest.raises(Exit) as raised:
        deploy_to([context], retrace_config)

    assert raised.value.code == 1 and "cancelled in Retrace" in raised.value.message
    assert _actions(emulator) == [("start", 202), ("cancel", 202)]
    assert "local  failed" in capsys.readouterr().out


@pytest.mark.parametrize("raise_early", [lambda: (_never for _never in ()).throw(Exit()),
                                         lambda: (_never for _never in ()).throw(SystemExit(0))])
def test_a_clean_exit_inside_tracked_cancels_and_exits_1(retrace_config, emulator, raise_early):
    with pytest.raises(Exit) as raised:
        with tracked(Context(retrace_config)):
            raise_early()
    assert raised.value.code == 1 and "cancelled in Retrace" in raised.value.message
    assert _actions(emulator) == [("start", 202), ("cancel", 202)]


def test_track_uses_the_tasks_own_version_argument(retrace_config, emulator):
    @track
    def release(c, version=None):
        """Release it."""
        return version

    assert Task(release)(Context(retrace_config), version="9.9.9") == "9.9.9"
    assert emulator.requests("start")[0]["body"]["Version"] == "9.9.9"


def test_deploy_to_no_hosts_is_invalid_and_sends_nothing(retrace_config, emulator):
    retrace_config.retrace.steps = ["true"]
    with pytest.raises(Exit) as raised:
        deploy_to([], retrace_config)
    assert raised.value.code == 2 and "hosts" in raised.value.message
    assert emulator.journal() == []


@pytest.mark.parametrize("setting, value, message", [("steps", "make", "steps: must be a list"),
                                                     ("steps", [], "steps: must be a non-empty list"),
                                                     ("parallel", "maybe", "parallel: must be true or false")])
def test_deploy_settings_that_leave_nothing_to_deploy_exit_2_without_strict(retrace_config, emulator, setting, value, message):
    retrace_config.retrace.steps = ["false"]
    retrace_config.retrace[setting] = value
    context = MockContext(config=retrace_config, run={"false": Result(exited=1)})
    with pytest.raises(Exit) as raised:
        deploy_to([context], retrace_config)
    assert raised.value.code == 2 and message in raised.value.message and "nothing was sent" in raised.value.message
    assert emulator.journal() == []


def test_deploy_to_without_a_key_runs_the_steps_with_the_deployments_variables(retrace_config, emulator, monkeypatch, capsys):
    monkeypatch.delenv("RETRACE_API_KEY")
    retrace_config.retrace.steps = ["./release.sh"]
    context = MockContext(config=retrace_config, run={"./release.sh": Result("released\n")})

    deploy_to([context], retrace_config)

    out, err = capsys.readouterr()
    assert emulator.journal() == [] and "local  ok" in out and "NOT recorded: api_key" in err
    environment = context.run.call_args.kwargs["env"]
    assert (environment["RETRACE_VERSION"], environment["RETRACE_APP_NAME"]) == ("1.0.0", "DemoApp")


def test_a_dry_run_sends_nothing(retrace_config, emulator, capsys):
    retrace_config.run.dry = True
    with tracked(Context(retrace_config)):
        pass
    assert emulator.journal() == [] and "would send" in capsys.readouterr().out


def test_host_strings_are_kept_as_typed_and_an_empty_list_is_noticed():
    from retrace_fabric.deploy import empty_hosts_given, typed_hosts

    assert typed_hosts(["fab", "-H", "web1,deploy@web2:2222", "deploy"]) == ["web1", "deploy@web2:2222"]
    assert typed_hosts(["fab", "--hosts=a,b", "deploy"]) == ["a", "b"]
    assert typed_hosts(["fab", "deploy"]) is None
    assert empty_hosts_given(["fab", "-H", "", "deploy"]) and empty_hosts_given(["fab", "--hosts=", "deploy"])
    assert empty_hosts_given(["fab", "-H", " , ", "deploy"])
    assert not empty_hosts_given(["fab", "-H", "web1", "deploy"]) and not empty_hosts_given(["fab", "deploy"])


def test_step_output_is_prefixed_line_by_line_as_it_comes():
    import io
    import threading

    from retrace_fabric.deploy import PrefixedLines

    sink = io.StringIO()
    lines = PrefixedLines("web1", sink, threading.Lock(), lambda: False)
    lines.write("one\ntw")
    assert sink.getvalue() == "[web1] one\n"
    lines.write("o\r\nthree")
    lines.finish()
    assert sink.getvalue() == "[web1] one\n[web1] two\n[web1] three\n"


@pytest.fixture(name="handlers_kept")
def fixture_handlers_kept():
    """The signal handlers as they were before the test, put back after it."""
    kept = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    yield kept
    for signum, handler in kept.items():
        signal.signal(signum, handler)


def test_once_a_signal_stopped_the_block_later_signals_are_ignored_on_the_way_out(handlers_kept):
    # The process is exiting with the first signal's status: a SIGTERM after the summary must not kill it instead.
    with pytest.raises(Interrupted):
        with signals_raise():
            os.kill(os.getpid(), signal.SIGINT)
    assert {signum: signal.getsignal(signum) for signum in handlers_kept} == {signum: signal.SIG_IGN for signum in handlers_kept}


def test_a_block_no_signal_stopped_gives_the_handlers_back(handlers_kept):
    with signals_raise():
        pass
    assert {signum: signal.getsignal(signum) for signum in handlers_kept} == handlers_kept
