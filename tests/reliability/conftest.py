"""Fixtures for the reliability rows no entry point's own suite covered: real subprocesses, real HTTP."""

from __future__ import annotations

import pathlib
import socket
import sys

import pytest

INTEGRATION = pathlib.Path(__file__).resolve().parent.parent / "integration"
sys.path[:0] = [str(INTEGRATION / "module"), str(INTEGRATION / "fabric"), str(pathlib.Path(__file__).resolve().parent)]

# pylint: disable=wrong-import-position
from ansible_run import DEMO_KEY, child_environment  # noqa: E402
from fabric_sshd import LoopbackSshd, sshd_available  # noqa: E402
from reliability_helpers import CALLBACK, FabDirectory  # noqa: E402


@pytest.fixture
def ansible_env(tmp_path, retrace_emulator):
    """ansible-playbook's environment: the emulator's URL and the demo key, as a user would export them."""
    return child_environment(tmp_path, RETRACE_API_URL=retrace_emulator.url, RETRACE_API_KEY=DEMO_KEY)


@pytest.fixture
def callback_env(ansible_env):
    """The same, with the callback enabled and every setting it needs in RETRACE_* variables."""
    return dict(ansible_env, ANSIBLE_CALLBACKS_ENABLED=CALLBACK, RETRACE_APP_NAME="DemoApp",
                RETRACE_ENVIRONMENT_NAME="Production", RETRACE_VERSION="1.0.0", ANSIBLE_LOCALHOST_WARNING="false")


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on: bound but not listening, so connections are refused, and held for the
    whole test, so that no emulator on another pytest worker can be given it meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.fixture
def fab(tmp_path, retrace_emulator):
    return FabDirectory(tmp_path, retrace_emulator)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A throw-away sshd on one loopback port (tests/integration/fabric/fabric_sshd.py): a real host for fab."""
    if not sshd_available():
        pytest.fail("sshd is not installed: run scripts/bootstrap (apt-get install openssh-server)")
    with LoopbackSshd(tmp_path_factory.mktemp("sshd"), hosts=1) as server:
        yield server
