"""pytest fixtures for the Retrace emulator.

Enable with ``pytest_plugins = ["retrace_emulator.pytest_plugin"]`` in the top-level conftest.py.

- ``retrace_emulator``: a fresh emulator per test (demo account unless a marker says otherwise).
- ``retrace_emulator_session``: one emulator for the whole session; call ``.reset()`` where needed.

Configure the per-test emulator with a marker; its keyword arguments go to RetraceEmulator::

    @pytest.mark.retrace_emulator(accounts={"k": {"apps": ["A"], "environments": ["E"]}}, allow_any_app=False)
    def test_something(retrace_emulator): ...
"""

from __future__ import annotations

import pytest

from retrace_emulator.server import RetraceEmulator

MARKER = "retrace_emulator"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{MARKER}(**kwargs): keyword arguments for the retrace_emulator fixture's RetraceEmulator")


@pytest.fixture
def retrace_emulator(request):
    """A running RetraceEmulator, started before the test and stopped after it."""
    marker = request.node.get_closest_marker(MARKER)
    options = dict(marker.kwargs) if marker else {}
    with RetraceEmulator(**options) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def retrace_emulator_session():
    """One RetraceEmulator (demo account) shared by the session; state carries over between tests."""
    with RetraceEmulator() as emulator:
        yield emulator
