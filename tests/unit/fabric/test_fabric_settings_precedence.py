"""Fabric's settings sources, through the core's resolver (retrace_fabric.settings.resolve), without running fab."""

from __future__ import annotations

import pytest

from retrace_fabric.settings import FLAG_OPTIONS, SECTION_NAME, deploy_settings, deploy_targets, machine, resolve

FILE = {"retrace": {"version": "file", "app_name": "FileApp", "detect_source": False}}


def test_flags_beat_fabric_env_beat_shared_env_beat_config_files():
    environ = {"FABRIC_RETRACE_VERSION": "fabric-env", "RETRACE_VERSION": "shared-env"}
    assert resolve(FILE, {"version": "flag"}, environ=environ)["version"] == "flag"
    assert resolve(FILE, {"version": None}, environ=environ)["version"] == "fabric-env"
    assert resolve(FILE, {}, environ={"RETRACE_VERSION": "shared-env"})["version"] == "shared-env"
    assert resolve(FILE, {}, environ={})["version"] == "file"


def test_each_value_says_where_it_came_from():
    resolved = resolve(FILE, {"name": "flag-name"}, environ={"RETRACE_APP_NAME": "EnvApp", "FABRIC_RETRACE_STRICT": "no"})
    assert (resolved["version"], resolved["app_name"], resolved["name"]) == ("file", "EnvApp", "flag-name")
    assert [resolved.source_of(option).name for option in ("version", "app_name", "name", "strict")] == [
        SECTION_NAME, "the environment", "the task's flags", "FABRIC_RETRACE_* variables"]


def test_empty_environment_variables_count_as_unset():
    assert resolve(FILE, {}, environ={"FABRIC_RETRACE_VERSION": "", "RETRACE_VERSION": ""})["version"] == "file"


def test_the_key_is_never_taken_from_flags_nor_suggested_as_one():
    resolved = resolve(FILE, {"api_key": "from-a-flag", "api_key_file": "/from/a/flag"}, environ={})
    assert resolved["api_key"] is None and resolved["api_key_file"] is None
    assert "api_key" not in FLAG_OPTIONS and "api_key_file" not in FLAG_OPTIONS
    ways = resolved.how_to_set("api_key")
    assert "RETRACE_API_KEY" in ways and "retrace.api_key in fabric.yaml" in ways and "--api" not in ways
    assert resolved.how_to_set("version") == "--version, RETRACE_VERSION or retrace.version in fabric.yaml"


@pytest.mark.parametrize("variable", ["RETRACE_API_KEY", "STACKIFY_API_KEY", "FABRIC_RETRACE_API_KEY"])
def test_the_key_comes_from_any_of_its_variables(variable):
    assert resolve(FILE, {}, environ={variable: "k"})["api_key"] == "k"


def test_the_shared_deployment_name_variable_feeds_name():
    assert resolve(FILE, {}, environ={"RETRACE_DEPLOYMENT_NAME": "Big release"})["name"] == "Big release"


def test_a_config_without_a_retrace_section_gets_the_defaults():
    resolved = resolve({}, {"version": "1"}, environ={}, directory="/nonexistent")
    assert (resolved["validate_certs"], resolved["timeout"], resolved["api_url"]) == (True, 10.0, "https://api.stackify.net")
    assert (resolved.strict, resolved["orphan_guard"], resolved["stale_start"]) == (False, True, "recover")
    assert resolved.problems == [] and resolved.unknown == []


def test_detection_fills_only_what_is_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path either
    environ = {"CIRCLECI": "true", "CIRCLE_BRANCH": "ci-branch", "CIRCLE_SHA1": "abc", "CIRCLE_BUILD_URL": "https://circle/1"}
    resolved = resolve({"retrace": {"detect_source": True}}, {"branch": "mine"}, environ=environ, directory=str(tmp_path))
    assert (resolved["branch"], resolved["commit"], resolved["uri"]) == ("mine", "abc", "https://circle/1")
    assert resolved["version"] is None  # no tag, no git here: the engine says how to set it
    assert resolved.source_of("commit").name == "detection (circleci)"


def test_a_ci_tag_gives_the_version():
    environ = {"GITHUB_ACTIONS": "true", "GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v2.0.0"}
    assert resolve({}, {}, environ=environ, directory="/nonexistent")["version"] == "v2.0.0"


@pytest.mark.parametrize("source", ["fabric.yaml", "FABRIC_RETRACE_DETECT_SOURCE"])
def test_detection_can_be_switched_off(tmp_path, source):
    config = {"retrace": {"detect_source": False}} if source == "fabric.yaml" else {}
    environ = {"CIRCLECI": "true", "CIRCLE_BRANCH": "ci-branch", **({source: "no"} if source != "fabric.yaml" else {})}
    assert resolve(config, {}, environ=environ, directory=str(tmp_path))["branch"] is None


@pytest.mark.parametrize("word, expected", [("false", False), ("no", False), ("0", False), ("off", False),
                                            ("true", True), ("yes", True), ("1", True)])
def test_every_boolean_setting_reads_words_from_any_source(word, expected):
    for name in ("strict", "orphan_guard", "detect_source", "validate_certs"):
        assert resolve({}, {}, environ={f"FABRIC_RETRACE_{name.upper()}": word})[name] is expected
        assert resolve({"retrace": {name: word}}, {}, environ={})[name] is expected
    for name in ("parallel", "fail_fast"):
        assert deploy_settings({}, {f"FABRIC_RETRACE_{name.upper()}": word})[name] is expected
        assert deploy_settings({"retrace": {name: word}}, {})[name] is expected


def test_fabric_variables_beat_shared_variables_beat_the_section():
    section = {"retrace": {"strict": True, "stale_start": "recover"}}
    assert resolve(section, {}, environ={"RETRACE_STRICT": "no"}).strict is False
    assert resolve(section, {}, environ={"RETRACE_STRICT": "no", "FABRIC_RETRACE_STRICT": "yes"}).strict is True
    assert resolve(section, {}, environ={"RETRACE_STALE_START": "fail"})["stale_start"] == "fail"
    assert resolve({}, {}, environ={"FABRIC_RETRACE_TIMEOUT": "2.5"})["timeout"] == 2.5


@pytest.mark.parametrize("key, suggestion", [("stirct", "strict"), ("app-name", "app_name"), ("stpes", "steps")])
def test_a_misspelt_key_is_named_with_a_suggestion_and_is_not_a_problem(key, suggestion):
    resolved = resolve({"retrace": {key: True, "version": "1"}}, {}, environ={})
    assert [unknown.line() for unknown in resolved.unknown] == [
        f"unknown setting {key!r} in {SECTION_NAME} (did you mean {suggestion}?): it is ignored"]
    assert resolved.problems == [] and resolved.strict is False


def test_a_section_that_is_not_a_mapping_is_the_first_problem():
    resolved = resolve({"retrace": "FooApp"}, {}, environ={"RETRACE_STRICT": "yes"})
    assert str(resolved.problems[0]).startswith("retrace: must be a mapping of settings")
    assert resolved.strict is True
    assert str(deploy_settings({"retrace": "FooApp"}, {}).problems[0]).startswith("retrace: must be a mapping")


@pytest.mark.parametrize("config, environ, option, text", [
    ({}, {"FABRIC_RETRACE_STRICT": "maybe"}, "strict", "true or false"),
    ({}, {"FABRIC_RETRACE_TIMEOUT": "soon"}, "timeout", "number of seconds"),
    ({}, {"RETRACE_STALE_START": "ignore"}, "stale_start", "recover, fail"),
    ({"retrace": {"version": 1.5}}, {}, "version", "quote it"),
])
def test_bad_settings_are_problems_naming_the_setting_and_its_source(config, environ, option, text):
    (problem,) = resolve(config, {}, environ=environ).problems
    assert problem.option == option and text in str(problem) and "(from " in str(problem)


def test_an_invalid_strict_value_counts_as_strict():
    assert resolve({}, {}, environ={"FABRIC_RETRACE_STRICT": "maybe"}).strict is True


@pytest.mark.parametrize("steps, text", [("make", "must be a list"), (None, None), (["make", {"run": "x", "sudo": True}], None)])
def test_deploy_settings_are_checked_apart_from_tracking(steps, text):
    config = {"retrace": {"steps": steps}}
    problems = [str(problem) for problem in deploy_settings(config, {}).problems]
    assert problems == ([] if text is None else [f"steps: {text}, got str (from {SECTION_NAME})"])
    assert resolve(config, {}, environ={}).problems == [], "a deploy setting is not a tracking problem"


# --- retrace.targets ------------------------------------------------------------------------------

TARGETS = {"retrace": {**FILE["retrace"], "environment_name": "Production", "targets": [
    {"app_name": "Shop.Web", "hosts": ["deploy@web1", "web2"]},
    {"app_name": "Shop.Api", "environment_name": "Production-EU", "version": "api-1", "hosts": ["api1:2222"]}]}}


def test_without_targets_there_is_one_deployment():
    assert deploy_targets(FILE) is None
    assert deploy_targets({"retrace": {**FILE["retrace"], "targets": None}}) is None  # CONFIG_DEFAULTS declares it unset


def test_a_target_entry_ranks_below_the_flags_and_above_the_environment_and_the_section():
    (web, api), problems = deploy_targets(TARGETS)
    assert problems == [] and web.hosts == ["deploy@web1", "web2"] and api.where == "entry 2"
    environ = {"RETRACE_ENVIRONMENT_NAME": "from-env", "FABRIC_RETRACE_VERSION": "fabric-env"}
    resolved = resolve(TARGETS, {"app_name": "FlagApp"}, environ=environ, entry=api)
    assert (resolved["app_name"], resolved["environment_name"], resolved["version"]) == ("FlagApp", "Production-EU", "api-1")
    resolved = resolve(TARGETS, {}, environ=environ, entry=web)
    assert (resolved["app_name"], resolved["environment_name"], resolved["version"]) == ("Shop.Web", "from-env", "fabric-env")
    assert resolved.source_of("app_name").name == f"entry 1 of {SECTION_NAME}"
    assert resolved.unknown == [], "targets is a known key"


@pytest.mark.parametrize("targets, said", [
    ([], "targets: must be a non-empty list"),
    ({"app_name": "Shop"}, "targets: must be a non-empty list"),
    (["web1"], "targets: entry 1 must be a mapping"),
    ([{"app_name": "Shop"}], "targets: entry 1: hosts must be a non-empty list of hosts"),
    ([{"app_name": "Shop", "hosts": "web1"}], "targets: entry 1: hosts must be a non-empty list of hosts"),
    ([{"app_name": "Shop", "hosts": ["web1", 7]}], "targets: entry 1: hosts must be a non-empty list of hosts"),
    ([{"app": "Shop", "hosts": ["web1"]}], "targets: entry 1: unknown key 'app'"),
    ([{"app_name": "Shop", "host": ["web1"]}], "targets: entry 1: hosts must be a non-empty list of hosts ([web1, "
                                               "deploy@web2:2222]), got None; unknown key 'host'"),
    ([{"hosts": ["web1"]}, {"app_name": "Api", "hosts": ["web1"]}], "targets: entry 2: web1 is in entry 1 already"),
])
def test_a_malformed_targets_setting_is_a_problem(targets, said):
    entries, problems = deploy_targets({"retrace": {"targets": targets}})
    assert len(problems) == 1 and str(problems[0]).startswith(said), problems
    assert all(entry.fields is None for entry in entries if str(problems[0]).startswith(f"targets: {entry.where}"))


def test_an_entry_with_wrong_keys_keeps_its_hosts_in_no_entry():
    (entry,), _problems = deploy_targets({"retrace": {"targets": [{"app": "Shop", "hosts": ["web1"]}]}})
    assert entry.fields is None and entry.hosts == ["web1"]
    resolved = resolve({"retrace": {"app_name": "Run"}}, {}, environ={}, entry=entry, directory="/nonexistent")
    assert resolved["app_name"] == "Run"


def test_a_value_of_the_wrong_type_in_an_entry_is_named_with_its_entry():
    config = {"retrace": {"detect_source": False, "targets": [{"version": 1.10, "hosts": ["web1"]}]}}
    (entry,), _problems = deploy_targets(config)
    problem = str(resolve(config, {}, environ={}, entry=entry).problems[0])
    assert problem.startswith("version:") and "entry 1" in problem, problem


def test_a_machine_listed_again_stays_in_its_first_entry_and_the_later_entry_is_left_out():
    entries, (problem,) = deploy_targets({"retrace": {"targets": [
        {"app_name": "Web", "hosts": ["web1"]}, {"app_name": "Api", "hosts": ["deploy@WEB1:22", "api2"]}]}})
    assert [(entry.fields, entry.hosts) for entry in entries] == [({"app_name": "Web"}, ["web1"]), (None, ["api2"])]
    assert str(problem).startswith("targets: entry 2: deploy@WEB1:22 is in entry 1 already, as web1 (")
    assert str(problem).endswith("a host is in one entry): entry 2 is left out, api2 in no entry")


@pytest.mark.parametrize("host, named", [("web1", ("web1", "22")), ("deploy@web1:2222", ("web1", "2222")),
                                         ("::1", ("::1", "22")), ("u@[::1]:2222", ("::1", "2222"))])
def test_a_host_string_names_a_machine_by_host_name_and_port(host, named):
    assert machine(host) == named
