"""Fixtures for the tracked_deployment role: molecule scenarios and playbooks against the Retrace emulator."""

import pathlib
import sys

import pytest

# Imported rather than named in pytest_plugins: that only works in the top-level conftest.py.
from retrace_emulator.pytest_plugin import pytest_configure, retrace_emulator  # noqa: F401 pylint: disable=unused-import

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "module"))
from ansible_run import DEMO_KEY, child_environment  # noqa: E402 pylint: disable=wrong-import-position


@pytest.fixture
def role_env(tmp_path, retrace_emulator):
    """Environment for molecule / ansible-playbook: the emulator's URL and key, as a user would export them."""
    return child_environment(tmp_path, RETRACE_API_URL=retrace_emulator.url, RETRACE_API_KEY=DEMO_KEY,
                             MOLECULE_NO_LOG="false", COLUMNS="200")
