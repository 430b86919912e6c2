"""The fixtures users get from retrace_emulator.pytest_plugin."""

import pytest

from retrace_emulator import DEMO_API_KEY, DEMO_APP, DEMO_ENVIRONMENTS, RetraceEmulator


def test_function_fixture_is_running_with_the_demo_account(retrace_emulator):
    assert isinstance(retrace_emulator, RetraceEmulator)
    assert retrace_emulator.running
    assert retrace_emulator.url == f"http://127.0.0.1:{retrace_emulator.port}"
    assert retrace_emulator.accounts[DEMO_API_KEY].knows(DEMO_APP, DEMO_ENVIRONMENTS[0])
    assert retrace_emulator.journal() == []


@pytest.mark.retrace_emulator(allow_any_app=True, accounts={"only-key": {}})
def test_marker_configures_the_fixture(api):
    assert api.post("start", key="only-key", AppName="Any").status == 202


def test_session_fixture_is_shared(retrace_emulator_session, request):
    assert retrace_emulator_session.running
    assert request.getfixturevalue("retrace_emulator_session") is retrace_emulator_session


def test_restart_after_stop():
    emulator = RetraceEmulator()
    with emulator:
        first_port = emulator.port
    assert not emulator.running
    emulator.port = 0
    with emulator:
        assert emulator.running
    assert first_port > 0
    with pytest.raises(RuntimeError):
        with RetraceEmulator() as running:
            running.start()
