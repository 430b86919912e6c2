"""Which source wins for each setting (retrace_fabric.settings.resolve_options), without running fab."""

from __future__ import annotations

import pytest

import retrace_fabric  # noqa: F401  # pylint: disable=unused-import  # registers retrace_fabric.core
from retrace_fabric.core.errors import InvalidInput
from retrace_fabric.settings import FABRIC_SETTINGS, read_settings, resolve_options

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
    assert options["validate_certs"] is True and options["timeout"] == FABRIC_SETTINGS["timeout"][1]
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


@pytest.mark.parametrize("word, expected", [("false", False), ("no", False), ("0", False), ("off", False),
                                            ("true", True), ("yes", True), ("1", True)])
def test_every_boolean_setting_reads_words_from_any_source(word, expected):
    for name in ("strict", "parallel", "fail_fast", "orphan_guard", "detect_source", "validate_certs"):
        assert getattr(read_settings({}, {f"FABRIC_RETRACE_{name.upper()}": word}), name) is expected
        assert getattr(read_settings({"retrace": {name: word}}, {}), name) is expected


def test_fabric_variables_beat_shared_variables_beat_the_section():
    section = {"retrace": {"strict": True, "stale_start": "recover"}}
    assert read_settings(section, {"RETRACE_STRICT": "no"}).strict is False
    assert read_settings(section, {"RETRACE_STRICT": "no", "FABRIC_RETRACE_STRICT": "yes"}).strict is True
    assert read_settings(section, {"RETRACE_STALE_START": "fail"}).stale_start == "fail"
    assert read_settings({}, {"FABRIC_RETRACE_TIMEOUT": "2.5"}).timeout == 2.5


def test_defaults_strict_off_guard_on_recover():
    settings = read_settings({}, {})
    assert (settings.strict, settings.orphan_guard, settings.stale_start, settings.fail_fast) == (False, True, "recover", True)


@pytest.mark.parametrize("config, environ, option, text", [
    ({"retrace": "FooApp"}, {}, "retrace", "must be a mapping"),
    ({"retrace": {"app-name": "x"}}, {}, "retrace", "did you mean app_name"),
    ({"retrace": {"stpes": []}}, {}, "retrace", "did you mean steps"),
    ({}, {"FABRIC_RETRACE_STRICT": "maybe"}, "strict", "true or false"),
    ({}, {"FABRIC_RETRACE_TIMEOUT": "soon"}, "timeout", "number of seconds"),
    ({}, {"RETRACE_STALE_START": "ignore"}, "stale_start", "recover, fail"),
])
def test_bad_settings_name_the_setting(config, environ, option, text):
    with pytest.raises(InvalidInput) as raised:
        read_settings(config, environ)
    assert raised.value.option == option and text in str(raised.value)
