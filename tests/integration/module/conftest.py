"""Fixtures for ansible-playbook runs of stackify.retrace.deployment against the Retrace emulator."""

import socket

import pytest

# Imported rather than named in pytest_plugins: that only works in the top-level conftest.py.
from retrace_emulator.pytest_plugin import pytest_configure, retrace_emulator  # noqa: F401 pylint: disable=unused-import

from ansible_run import DEMO_KEY, child_environment


@pytest.fixture
def ansible_env(tmp_path, retrace_emulator):
    """Environment for ansible-playbook: the emulator's URL and the demo key, as a user would export them."""
    return child_environment(tmp_path, RETRACE_API_URL=retrace_emulator.url, RETRACE_API_KEY=DEMO_KEY)


@pytest.fixture
def unused_port():
    """A loopback port nothing listens on: bound but not listening, so connections are refused, and held for the
    whole test, so that no emulator on another pytest worker can be given it meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]
