"""name_format in Fabric: the same setting, names and placeholders as the Ansible entry points (no controller job)."""

from __future__ import annotations

import pytest

import retrace_fabric  # noqa: F401  # pylint: disable=unused-import  # registers retrace_fabric.core
from retrace_fabric.core.errors import InvalidInput
from retrace_fabric.settings import resolve_options

FLAGS = {"version": "1.4.2", "branch": "main", "commit": "abcdef123456", "uri": "https://ci/1"}


@pytest.mark.parametrize("source", ["config", "RETRACE_NAME_FORMAT", "FABRIC_RETRACE_NAME_FORMAT"])
def test_name_format_from_every_source_builds_the_name(source):
    config = {"retrace": {"name_format": "{version} ({branch}@{commit:.7})"}} if source == "config" else {}
    environ = {} if source == "config" else {source: "{version} ({branch}@{commit:.7})"}
    assert resolve_options(config, FLAGS, environ)["name"] == "1.4.2 (main@abcdef1)"


def test_an_explicit_name_wins_and_unset_keeps_the_version_default():
    assert resolve_options({"retrace": {"name_format": "{version}!"}}, {**FLAGS, "name": "Big"}, {})["name"] == "Big"
    assert resolve_options({}, FLAGS, {})["name"] is None


def test_controller_placeholders_render_as_nothing_outside_a_job():
    assert resolve_options({"retrace": {"name_format": "{version} by {user}"}}, FLAGS, {})["name"] == "1.4.2 by"


def test_an_unknown_placeholder_is_refused_naming_the_setting():
    with pytest.raises(InvalidInput, match="^name_format: has {secret}"):
        resolve_options({"retrace": {"name_format": "{secret}"}}, FLAGS, {})
