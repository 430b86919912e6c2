"""Unit tests of the callback's decisions: outcome, budget, messages, signal chaining.

HTTP is scripted here (the core's test transport); tests/integration/callback runs the real thing.
"""

from __future__ import annotations

import os
import signal
import types

import pytest
from ansible import context

from ansible_collections.stackify.retrace.plugins.callback import deployment as callback
from ansible_collections.stackify.retrace.plugins.module_utils.client import RetryPolicy, create_client
from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable, AuthenticationRejected, BadTransition
from ansible_collections.stackify.retrace.plugins.module_utils.settings import Lifecycle
from ansible_collections.stackify.retrace.plugins.module_utils.transport import TimedOut

from ansible_collections.stackify.retrace.tests.unit.plugins.module_utils.fakes import ScriptedTransport, answer

KEY = "unit-test-secret-key"


class RecordingDisplay:
    verbosity = 0

    def __init__(self):
        self.lines, self.verbose, self.warnings = [], [], []

    def display(self, text):
        self.lines.append(text)

    def v(self, text):
        self.verbose.append(text)

    def warning(self, text):
        self.warnings.append(text)


def tracked_run(*script, budget=10.0, timeout=10.0, lifecycle=None):
    transport = ScriptedTransport(*script)
    client, deployment = create_client({"api_key": KEY, "api_url": "https://retrace.example.com", "app_name": "Shop",
                                        "environment_name": "Production", "version": "1.2.3", "timeout": timeout},
                                       transport, entry_point="unit")
    client.retry = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.01)
    display = RecordingDisplay()
    lifecycle = lifecycle or Lifecycle(orphan_guard=False)  # the guard is tested for real in tests/integration
    return callback._TrackedRun(client, deployment, callback._Budget(budget), lifecycle, display), transport, display


def stats(failures=None, dark=None):
    return types.SimpleNamespace(failures=failures or {}, dark=dark or {})


# --- one call, one line -----------------------------------------------------------------------------

def test_accepted_start_prints_one_line_and_the_payload_only_verbosely():
    run, transport, display = tracked_run(answer(202))
    display.verbosity = 1
    run.open()
    assert display.lines == ["Retrace: deployment 1.2.3 of Shop to Production started"]
    assert display.verbose and '"Version": "1.2.3"' in display.verbose[0]
    assert not display.warnings
    assert all(KEY not in text for text in display.lines + display.verbose)
    assert transport.calls[0]["url"].endswith("/api/v1/deployments/start")


def test_payload_is_not_even_built_without_verbosity():
    run, _transport, display = tracked_run(answer(202))
    run.open()
    assert display.verbose == []


def test_cancel_line_carries_the_reason():
    run, _transport, display = tracked_run(answer(202))
    run.close("cancel", "failed on web1")
    assert display.lines == ["Retrace: deployment 1.2.3 of Shop to Production cancelled: failed on web1"]


def test_refused_start_raises_without_the_key_and_prints_nothing():
    run, _transport, display = tracked_run(answer(401, b'{"Message": "bad key ' + KEY.encode() + b'"}'))
    with pytest.raises(AuthenticationRejected) as refused:
        run.open()
    assert display.lines == []
    assert KEY not in str(refused.value)


def test_stale_start_is_recovered_with_one_warning():
    run, transport, display = tracked_run(answer(409, b'{"Message": "already in progress"}'), answer(202), answer(202))
    run.open()
    assert [call["url"].rsplit("/", 1)[1] for call in transport.calls] == ["start", "cancel", "start"]
    assert len(display.warnings) == 1 and "left in progress" in display.warnings[0]
    assert display.lines == ["Retrace: deployment 1.2.3 of Shop to Production started"]


def test_stale_start_fail_keeps_the_409():
    run, transport, _display = tracked_run(answer(409, b'{"Message": "already in progress"}'),
                                           lifecycle=Lifecycle(stale_start="fail", orphan_guard=False))
    with pytest.raises(BadTransition):
        run.open()
    assert len(transport.calls) == 1


def test_each_attempt_timeout_fits_in_the_start_share_of_the_budget():
    run, transport, _display = tracked_run(TimedOut("slow"), answer(202), budget=1.5, timeout=10.0)
    run.open()
    assert transport.calls[0]["timeout"] <= 1.0 + 1e-6


def test_spent_budget_sends_nothing_and_says_so():
    run, transport, _display = tracked_run(budget=0.01)
    with pytest.raises(ApiUnreachable, match="not sent: the time budget is spent"):
        run.close("complete")
    assert transport.calls == []


def test_budget_charges_only_the_time_spent_inside():
    budget = callback._Budget(10.0)
    with budget.charge():
        pass
    assert 9.9 < budget.remaining() <= 10.0
    with pytest.raises(RuntimeError), budget.charge():
        raise RuntimeError("still charged")
    assert budget.spent >= 0


# --- deciding the end -------------------------------------------------------------------------------

@pytest.fixture
def module(monkeypatch):
    monkeypatch.setattr(context, "CLIARGS", {"args": ["site.yml"]})
    plugin = callback.CallbackModule(display=RecordingDisplay())
    return plugin


def test_clean_recap_completes(module):
    module._last_recap = callback._recap(stats(failures={"web1": 0}, dark={"web2": 0}))
    assert module._outcome() == ("complete", None)


def test_failed_and_unreachable_hosts_cancel_and_are_named(module):
    module._last_recap = callback._recap(stats(failures={"web2": 1, "web1": 3}, dark={"db1": 1}))
    assert module._outcome() == ("cancel", "failed on web1, web2; unreachable: db1")


def test_run_that_ended_without_its_recap_cancels(module):
    assert module._outcome(run_finished=False) == ("cancel", "ansible-playbook stopped before the end of the run (an error aborted it)")


def test_signal_wins_over_a_clean_recap(module):
    module._last_recap = ([], [])
    module._stopped_by = "SIGTERM"
    assert module._outcome(run_finished=False) == ("cancel", "the run was stopped by SIGTERM")


def test_long_host_lists_are_cut():
    names = [f"h{n}" for n in range(8)]
    assert callback._hosts(names) == "h0, h1, h2, h3, h4 and 3 more"


def test_stats_of_an_earlier_playbook_file_do_not_end_the_run(module, monkeypatch):
    monkeypatch.setattr(context, "CLIARGS", {"args": ["first.yml", "second.yml"]})
    ended = []
    monkeypatch.setattr(module, "_finish", lambda action, reason, exit_on_failure=True: ended.append((action, reason)))
    module._playbooks_seen = 1
    module.v2_playbook_on_stats(stats())
    assert ended == []
    module._playbooks_seen = 2
    module.v2_playbook_on_stats(stats(failures={"web1": 1}))
    assert ended == [("cancel", "failed on web1")]


def test_an_unexpected_error_becomes_one_warning_without_the_key(module):
    module._api_key = KEY

    def broken():
        raise ValueError(f"surprise\nwith {KEY} inside")
    module._guarded(broken)
    assert module._display.warnings == ["Retrace deployment tracking failed (ValueError): surprise with ******** inside"]


# --- messages and defaults ----------------------------------------------------------------------------

def test_missing_settings_message_names_every_way_to_set_them():
    message = callback._missing_settings(["api_key", "environment_name"])
    assert message.startswith("api_key, environment_name not set")
    for hint in ("RETRACE_API_KEY", "RETRACE_ENVIRONMENT_NAME", "-e retrace_api_key=", "[callback_retrace]"):
        assert hint in message


def test_fallback_version_is_the_playbook_name_and_utc_time(monkeypatch):
    monkeypatch.setattr(context, "CLIARGS", {"args": ("deploy/site.yml",)})
    version = callback._fallback_version()
    assert version.startswith("site-20") and version.endswith("Z") and len(version) == len("site-20260101T000000Z")


def test_fallback_version_of_an_ad_hoc_command_names_the_module_not_the_host_pattern(monkeypatch):
    monkeypatch.setattr(context, "CLIARGS", {"args": "web1", "module_name": "ansible.builtin.ping"})
    version = callback._fallback_version()
    assert version.startswith("ansible-ping-20") and version.endswith("Z")


@pytest.mark.parametrize("origin, expected", [
    ("env: RETRACE_STRICT", "ture"),
    ("var: retrace_strict", "perhaps"),
    ("default", None),
    (None, None),
])
def test_raw_setting_is_what_the_user_wrote(monkeypatch, origin, expected):
    monkeypatch.setenv("RETRACE_STRICT", "ture")
    assert callback._raw_setting("strict", origin, {"retrace_strict": "perhaps"}) == expected


def test_raw_setting_from_an_ini_file(tmp_path):
    config = tmp_path / "ansible.cfg"
    config.write_text("[callback_retrace]\norphan_guard = maybe\n")
    assert callback._raw_setting("orphan_guard", str(config), {}) == "maybe"


@pytest.mark.parametrize("cli_args, ad_hoc", [
    ({"args": ("site.yml",)}, False),
    ({"args": "web1", "module_name": "ping"}, True),
])
def test_ad_hoc_commands_are_recognised(monkeypatch, cli_args, ad_hoc):
    monkeypatch.setattr(context, "CLIARGS", cli_args)
    assert callback._is_ad_hoc() is ad_hoc
    assert callback._playbook_count() == 1


# --- signals ---------------------------------------------------------------------------------------------

def test_signal_hook_runs_before_the_previous_handler():
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append("previous"))
    try:
        callback._chain_signal_handler(signal.SIGUSR1, lambda signum: calls.append(("hook", signum)))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert calls == [("hook", signal.SIGUSR1), "previous"]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_ignored_signal_stays_ignored_after_the_hook():
    calls = []
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        callback._chain_signal_handler(signal.SIGUSR2, lambda signum: calls.append("hook"))
        os.kill(os.getpid(), signal.SIGUSR2)
        assert calls == ["hook"]
    finally:
        signal.signal(signal.SIGUSR2, previous)


# --- where git is asked ----------------------------------------------------------------------------------

def test_git_is_asked_only_inside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("GIT_DIR", raising=False)
    nested = tmp_path / "repo" / "deploy" / "playbooks"
    nested.mkdir(parents=True)
    assert callback._inside_git_checkout(str(nested)) is False
    (tmp_path / "repo" / ".git").mkdir()
    assert callback._inside_git_checkout(str(nested)) is True


def test_git_dir_in_the_environment_counts_as_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    assert callback._inside_git_checkout(str(tmp_path)) is True
