"""name_format in Fabric: the same setting, names and placeholders as the Ansible entry points (no controller job)."""

from __future__ import annotations

import pytest

from retrace_fabric import settings, tracking
from retrace_fabric.core.settings import TrackingPolicy
from retrace_fabric.core.transport import UrllibTransport

FLAGS = {"version": "1.4.2", "branch": "main", "commit": "abcdef123456", "uri": "https://ci/1"}
BASE = {"app_name": "A", "environment_name": "E", "api_key": "k", "detect_source": False}


def _target(config, flags, environ):
    """The engine's target for these settings, as fab builds it; nothing is sent."""
    run = tracking.DeploymentRun(TrackingPolicy(), tracking.Reporter(), owner_pid=None)
    return run.target(settings.resolve({"retrace": {**BASE, **config}}, flags, environ=environ), UrllibTransport(),
                      entry_point=tracking.ENTRY_POINT)


@pytest.mark.parametrize("source", ["config", "RETRACE_NAME_FORMAT", "FABRIC_RETRACE_NAME_FORMAT"])
def test_name_format_from_every_source_builds_the_name(source):
    config = {"name_format": "{version} ({branch}@{commit:.7})"} if source == "config" else {}
    environ = {} if source == "config" else {source: "{version} ({branch}@{commit:.7})"}
    assert _target(config, FLAGS, environ).deployment.name == "1.4.2 (main@abcdef1)"


def test_an_explicit_name_wins_and_unset_keeps_the_version_default():
    assert _target({"name_format": "{version}!"}, {**FLAGS, "name": "Big"}, {}).deployment.name == "Big"
    assert _target({}, FLAGS, {}).deployment.name is None


def test_controller_placeholders_render_as_nothing_outside_a_job():
    assert _target({"name_format": "{version} by {user}"}, FLAGS, {}).deployment.name == "1.4.2 by"


def test_an_unknown_placeholder_is_a_problem_naming_the_setting():
    target = _target({"name_format": "{secret}"}, FLAGS, {})
    assert not target.recordable and str(target.problems[0]).startswith("name_format: has {secret}")
