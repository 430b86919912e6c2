"""Unit-test helpers for the Fabric adapter: an in-process emulator and Fabric's own MockRemote fixture."""

from __future__ import annotations

import pytest
# `remote` is a pytest fixture (Fabric's MockRemote), used by name.
from fabric.testing.fixtures import remote  # noqa: F401  # pylint: disable=unused-import
from invoke import Config

from retrace_emulator.server import RetraceEmulator


@pytest.fixture
def emulator():
    with RetraceEmulator() as running:
        yield running


@pytest.fixture
def clean_environment(monkeypatch):
    """No RETRACE_*, STACKIFY_*, FABRIC_* or CI variables from the machine running the tests, nor a key an earlier
    test's run moved out of the environment (retrace_fabric.settings keeps it for the rest of the process)."""
    import os

    from retrace_fabric import settings

    monkeypatch.setattr(settings, "_CAPTURED", {})
    for name in list(os.environ):
        if name.startswith(("RETRACE_", "STACKIFY_", "FABRIC_", "GITHUB_", "GITLAB_", "CI_", "CIRCLE", "JENKINS", "BUILD_",
                            "TF_BUILD", "APPVEYOR", "TEAMCITY", "bamboo_", "CODEBUILD_")):
            monkeypatch.delenv(name)


@pytest.fixture
def retrace_config(emulator, clean_environment, monkeypatch):
    """An invoke Config whose retrace: section points at the emulator, with the demo key in the environment."""
    monkeypatch.setenv("RETRACE_API_KEY", "emulator-demo-key")
    return Config(overrides={"run": {"in_stream": False}, "retrace": {
        "api_url": emulator.url, "app_name": "DemoApp", "environment_name": "Production", "version": "1.0.0",
        "detect_source": False, "timeout": 2.0, "deadline": 3.0}})
