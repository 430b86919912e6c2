"""Fixtures for running playbooks as AWX / Automation Platform jobs (see controller.py)."""

from __future__ import annotations

import pytest

from ansible_collections.stackify.retrace.tests.integration.awx.controller import ACCOUNTS, Controller


@pytest.fixture
def controller(request, tmp_path, monkeypatch):
    from retrace_emulator.server import RetraceEmulator
    with RetraceEmulator(accounts=ACCOUNTS) as emulator:
        yield Controller(emulator, tmp_path, monkeypatch)
