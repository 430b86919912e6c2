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


def tracked_run(*script, budget=10.0, timeout=10.0):
    transport = ScriptedTransport(*script)
    client, deployment = create_client({"api_key": KEY, "api_url": "https://retrace.example.com", "app_name": "Shop",
                                        "environment_name": "Production", "version": "1.2.3", "timeout": timeout},
                                       transport, entry_point="unit")
    client.retry = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.01)
    display = RecordingDisplay()
    return callback._TrackedRun(client, deployment, callback._Budget(budget), display), transport, display


def stats(failures=None, dark=None):
    return types.SimpleNamespace(failures=failures or {}, dark=dark or {})


# --- one call, one line -----------------------------------------------------------------------------

def test_accepted_call_prints_one_line_and_the_payload_only_verbosely():
    run, transport, display = tracked_run(answer(202))
    assert run.send("start", 5.0) is True
    assert display.lines == ["Retrace: deployment 1.2.3 of Shop to Production started"]
    assert display.verbose and '"Version": "1.2.3"' in display.verbose[0]
    assert not display.warnings
    assert all(KEY not in text for text in display.lines + display.verbose)
    assert transport.calls[0]["url"].endswith("/api/v1/deployments/start")


def test_cancel_line_carries_the_reason():
    run, _transport, display = tracked_run(answer(202))
    run.send("cancel", 5.0, "failed on web1")
    assert display.lines == ["Retrace: deployment 1.2.3 of Shop to Production cancelled: failed on web1"]


def test_refused_call_is_one_warning_without_the_key():
    run, _transport, display = tracked_run(answer(401, b'{"Message": "bad key ' + KEY.encode() + b'"}'))
    assert run.send("start", 5.0) is False
    assert display.lines == []
    assert len(display.warnings) == 1 and "rejected the API key" in display.warnings[0]
    assert KEY not in display.warnings[0]


def test_each_attempt_timeout_fits_in_the_seconds_given():
    run, transport, _display = tracked_run(TimedOut("slow"), answer(202), timeout=10.0)
    assert run.send("start", 1.5) is True
    assert [call["timeout"] for call in transport.calls][0] <= 1.5


def test_spent_budget_sends_nothing_and_says_so():
    run, transport, display = tracked_run()
    assert run.send("complete", 0.01) is False
    assert transport.calls == []
    assert display.warnings == ["Retrace: complete of deployment 1.2.3 of Shop to Production not sent: the time budget is spent"]


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
    monkeypatch.setattr(module, "_finish", lambda action, reason: ended.append((action, reason)))
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


def test_fallback_version_is_the_playbook_name_and_utc_time():
    version = callback._fallback_version(["deploy/site.yml"])
    assert version.startswith("site-20") and version.endswith("Z") and len(version) == len("site-20260101T000000Z")


# --- signals ---------------------------------------------------------------------------------------------

def test_signal_hook_runs_before_the_previous_handler():
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append("previous"))
    try:
        callback._chain_signal_handler(signal.SIGUSR1, lambda: calls.append("hook"))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert calls == ["hook", "previous"]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_ignored_signal_stays_ignored_after_the_hook():
    calls = []
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        callback._chain_signal_handler(signal.SIGUSR2, lambda: calls.append("hook"))
        os.kill(os.getpid(), signal.SIGUSR2)
        assert calls == ["hook"]
    finally:
        signal.signal(signal.SIGUSR2, previous)
