"""Unit tests of the callback's glue: the outcome it reads from the recap, its settings sources, signal chaining.

The run's own rules are the core's (tests/unit/plugins/module_utils/test_run.py); tests/integration/callback runs
the real thing.
"""

from __future__ import annotations

import os
import signal
import types

import pytest
from ansible import context

from ansible_collections.stackify.retrace.plugins.callback import deployment as callback

KEY = "unit-test-secret-key"


class RecordingDisplay:
    verbosity = 0

    def __init__(self):
        self.lines, self.verbose, self.warnings, self.errors = [], [], [], []

    def display(self, text, stderr=False):
        self.lines.append((text, stderr))

    def v(self, text):
        self.verbose.append(text)

    def warning(self, text):
        self.warnings.append(text)

    def error(self, text):
        self.errors.append(text)


def stats(failures=None, dark=None):
    return types.SimpleNamespace(failures=failures or {}, dark=dark or {})


# --- where the core's lines go ----------------------------------------------------------------------

def test_what_happened_goes_to_stderr_what_was_sent_to_verbose_problems_to_warnings():
    display = RecordingDisplay()
    reporter = callback._Reporter(display)
    reporter.info("deployment 1 of A to B started")
    reporter.detail("start: sent {} to https://x -> HTTP 202")
    reporter.warning("deployment 1 of A to B NOT recorded: x")
    reporter.error("deployment 1 of A to B NOT recorded: y (strict: the run stops)")
    assert display.lines == [("Retrace: deployment 1 of A to B started", True)]
    assert display.verbose == ["Retrace start: sent {} to https://x -> HTTP 202"]
    assert display.warnings == ["Retrace: deployment 1 of A to B NOT recorded: x"]
    assert display.errors == ["Retrace: deployment 1 of A to B NOT recorded: y (strict: the run stops)"]


def test_strict_tracking_stops_the_run_as_a_failed_task_would(module):
    with pytest.raises(SystemExit) as stopped:
        module._stop_if(types.SimpleNamespace(fails_run=True))
    assert stopped.value.code == 2
    module._stop_if(types.SimpleNamespace(fails_run=False))


# --- deciding the end -------------------------------------------------------------------------------

@pytest.fixture
def module(monkeypatch):
    monkeypatch.setattr(context, "CLIARGS", {"args": ["site.yml"]})
    plugin = callback.CallbackModule(display=RecordingDisplay())
    return plugin


def test_clean_recap_completes(module):
    module._last_recap = callback._recap(stats(failures={"web1": 0}, dark={"web2": 0}))
    assert module._outcome() == (True, None)


def test_failed_and_unreachable_hosts_cancel_and_are_named(module):
    module._last_recap = callback._recap(stats(failures={"web2": 1, "web1": 3}, dark={"db1": 1}))
    assert module._outcome() == (False, "failed on web1, web2; unreachable: db1")


def test_run_that_ended_without_its_recap_cancels(module):
    assert module._outcome(run_finished=False) == (False, "ansible-playbook stopped before the end of the run (an error aborted it)")


def test_signal_wins_over_a_clean_recap(module):
    module._last_recap = ([], [])
    module._stopped_by = "SIGTERM"
    assert module._outcome(run_finished=False) == (False, "the run was stopped by SIGTERM")


def test_stats_of_an_earlier_playbook_file_do_not_end_the_run(module, monkeypatch):
    monkeypatch.setattr(context, "CLIARGS", {"args": ["first.yml", "second.yml"]})
    ended = []
    monkeypatch.setattr(module, "_close", lambda succeeded, reason, exit_on_failure=True, run_finished=False: ended.append((succeeded, reason)))
    module._run = object()  # a run the first task opened
    module._playbooks_seen = 1
    module.v2_playbook_on_stats(stats())
    assert ended == []
    module._playbooks_seen = 2
    module.v2_playbook_on_stats(stats(failures={"web1": 1}))
    assert ended == [(False, "failed on web1")]


def test_an_unexpected_error_becomes_one_warning_without_the_key(module):
    module._api_keys = [KEY]

    def broken():
        raise ValueError(f"surprise\nwith {KEY} inside")
    module._guarded(broken)
    assert module._display.warnings == ["Retrace deployment tracking failed (ValueError): surprise with ******** inside"]


# --- settings sources ----------------------------------------------------------------------------------

def test_the_ini_section_is_read_as_written_with_unknown_keys(tmp_path):
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\nforks = 5\n[callback_retrace]\norphan_guard = maybe\nstirct = true\n")
    assert callback._ini_section(str(config)) == {"orphan_guard": "maybe", "stirct": "true"}
    assert callback._ini_section(str(tmp_path / "missing.cfg")) == {}
    config.write_text("[callback_retrace\nbroken")
    assert callback._ini_section(str(config)) == {}


def test_variables_are_split_by_trust_and_templated(tmp_path, monkeypatch):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    monkeypatch.setattr(callback.constants.config, "get_config_value", lambda name: str(tmp_path / "none.cfg"))
    for name in [name for name in os.environ if name.startswith("RETRACE_")]:
        monkeypatch.delenv(name)
    variables = {"retrace_api_url": "https://evil.example", "retrace_environment_name": trust_as_template("{{ stage }}"), "stage": "Staging",
                 "retrace_stirct": True}
    templar = Templar(loader=DataLoader(), variables=variables)
    resolved = callback._resolve_settings(variables, {"retrace_api_url": "https://evil.example"}, templar, str(tmp_path), {})
    assert resolved.source_of("api_url").name == "extra vars" and resolved["environment_name"] == "Staging"
    assert resolved.source_of("environment_name").name == "the play's variables"
    assert [unknown.suggestion for unknown in resolved.unknown] == ["retrace_strict"]


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


def test_an_ignored_signal_stays_ignored_and_runs_no_hook():
    """SIGHUP under nohup: the run goes on, so the hook (the cancel) must not run."""
    calls = []
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        callback._chain_signal_handler(signal.SIGUSR2, lambda signum: calls.append("hook"))
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGUSR2)
        assert calls == []
    finally:
        signal.signal(signal.SIGUSR2, previous)
