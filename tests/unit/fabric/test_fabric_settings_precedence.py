"""Which source wins for each setting (retrace_fabric.settings.resolve_options), without running fab."""

from __future__ import annotations

import pytest

import retrace_fabric  # noqa: F401  # pylint: disable=unused-import  # registers retrace_fabric.core
from retrace_fabric.settings import CONFIG_DEFAULTS, resolve_options

FILE = {"retrace": {"version": "file", "app_name": "FileApp", "detect_source": False}}


def test_flags_beat_fabric_env_beat_shared_env_beat_config_files():
    environ = {"FABRIC_RETRACE_VERSION": "fabric-env", "RETRACE_VERSION": "shared-env"}
    assert resolve_options(FILE, {"version": "flag"}, environ)["version"] == "flag"
    assert resolve_options(FILE, {"version": None}, environ)["version"] == "fabric-env"
    assert resolve_options(FILE, {}, {"RETRACE_VERSION": "shared-env"})["version"] == "shared-env"
    assert resolve_options(FILE, {}, {})["version"] == "file"


def test_each_option_is_resolved_on_its_own():
    options = resolve_options(FILE, {"name": "flag-name"}, {"RETRACE_APP_NAME": "EnvApp"})
    assert (options["version"], options["app_name"], options["name"]) == ("file", "EnvApp", "flag-name")


def test_empty_environment_variables_count_as_unset():
    assert resolve_options(FILE, {}, {"FABRIC_RETRACE_VERSION": "", "RETRACE_VERSION": ""})["version"] == "file"


def test_an_empty_flag_is_kept_so_validation_reports_it():
    assert resolve_options(FILE, {"app_name": ""}, {})["app_name"] == ""


def test_the_key_is_never_taken_from_flags():
    options = resolve_options(FILE, {"api_key": "from-a-flag"}, {"STACKIFY_API_KEY": "from-env"})
    assert options["api_key"] == "from-env"


@pytest.mark.parametrize("variable", ["RETRACE_API_KEY", "STACKIFY_API_KEY", "FABRIC_RETRACE_API_KEY"])
def test_the_key_comes_from_any_of_its_variables(variable):
    assert resolve_options(FILE, {}, {variable: "k"})["api_key"] == "k"


def test_the_shared_deployment_name_variable_feeds_name():
    assert resolve_options(FILE, {}, {"RETRACE_DEPLOYMENT_NAME": "Big release"})["name"] == "Big release"


def test_a_config_without_a_retrace_section_gets_the_defaults():
    options = resolve_options({}, {"version": "1", "branch": "b", "commit": "c", "uri": "https://u"}, {})
    assert options["validate_certs"] is True and options["timeout"] == CONFIG_DEFAULTS["timeout"]
    assert options["api_url"] is None  # the core applies https://api.stackify.net


def test_detection_fills_only_what_is_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path either
    config = {"retrace": {"detect_source": True}}
    environ = {"CIRCLECI": "true", "CIRCLE_BRANCH": "ci-branch", "CIRCLE_SHA1": "abc", "CIRCLE_BUILD_URL": "https://circle/1"}
    options = resolve_options(config, {"branch": "mine"}, environ, directory=str(tmp_path))
    assert (options["branch"], options["commit"], options["uri"]) == ("mine", "abc", "https://circle/1")
    assert options["version"] is None  # no git here: the core will say version is required


def test_detection_can_be_switched_off(tmp_path):
    environ = {"CIRCLECI": "true", "CIRCLE_BRANCH": "ci-branch"}
    assert resolve_options({"retrace": {"detect_source": False}}, {}, environ, directory=str(tmp_path))["branch"] is None
