import pytest

from ansible_collections.stackify.retrace.plugins.module_utils.deployment import CANCEL, COMPLETE, START, Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput

FULL = dict(app_name="Shop", environment_name="Production", version="1.4.2", name="Release 1.4.2",
            branch="main", commit="0a1b2c3", uri="https://ci.example.com/build/42")


def _with(**changes):
    """FULL with some fields changed (pylint sees dict(FULL, key=...) as a repeated keyword)."""
    return {**FULL, **changes}


def test_start_and_complete_carry_all_seven_fields_in_documented_order():
    deployment = Deployment.create(**FULL)
    for action in (START, COMPLETE):
        payload = deployment.payload(action)
        assert list(payload) == ["Name", "Uri", "Branch", "Commit", "Version", "AppName", "EnvironmentName"]
        assert payload["AppName"] == "Shop" and payload["Name"] == "Release 1.4.2"


def test_cancel_carries_only_the_identity():
    assert Deployment.create(**FULL).payload(CANCEL) == {"Version": "1.4.2", "AppName": "Shop", "EnvironmentName": "Production"}


def test_name_defaults_to_version_and_unset_fields_are_left_out():
    deployment = Deployment.create(app_name="Shop", environment_name="Production", version="2.0")
    assert deployment.payload(START) == {"Name": "2.0", "Version": "2.0", "AppName": "Shop", "EnvironmentName": "Production"}
    assert deployment.display_name == "2.0"
    assert deployment.as_options() == {"app_name": "Shop", "environment_name": "Production", "version": "2.0"}


def test_values_are_trimmed_and_blank_optionals_become_unset():
    deployment = Deployment.create(app_name="  Shop ", environment_name="Production\u00a0", version=" 1 ", branch="  ", commit="")
    assert (deployment.app_name, deployment.environment_name, deployment.version) == ("Shop", "Production", "1")
    assert deployment.branch is None and deployment.commit is None


def test_unicode_is_kept_intact():
    deployment = Deployment.create(app_name="Boutique ☕", environment_name="Prod-東京", version="1.0-ß")
    assert deployment.payload(START)["AppName"] == "Boutique ☕"


def test_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError):
        Deployment.create(**FULL).payload("restart")


@pytest.mark.parametrize("option", ["app_name", "environment_name", "version"])
@pytest.mark.parametrize("value, problem", [(None, "is required but was not set"), ("", "is required but is empty"), ("   ", "is required but is empty")])
def test_required_fields_are_named_when_missing(option, value, problem):
    with pytest.raises(InvalidInput) as caught:
        Deployment.create(**_with(**{option: value}))
    assert caught.value.option == option
    assert str(caught.value) == f"{option}: {problem}"


@pytest.mark.parametrize("option", ["app_name", "version", "name", "branch", "commit", "uri"])
@pytest.mark.parametrize("value, type_name", [(1.5, "float"), (3, "int"), (True, "bool"), (["x"], "list"), ({"a": 1}, "dict")])
def test_non_strings_are_rejected(option, value, type_name):
    with pytest.raises(InvalidInput, match=f"^{option}: must be a string, got {type_name}$"):
        Deployment.create(**_with(**{option: value}))


@pytest.mark.parametrize("option", ["app_name", "environment_name", "version", "name", "branch", "commit"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "a\x00b", "a\x1bb", "a\x7fb", "a\x85b"])
def test_control_characters_are_rejected(option, bad):
    with pytest.raises(InvalidInput, match=f"^{option}: must not contain control characters"):
        Deployment.create(**_with(**{option: bad}))


def test_lone_surrogates_are_rejected():
    with pytest.raises(InvalidInput, match="control characters"):
        Deployment.create(**_with(name="a\ud800b"))


@pytest.mark.parametrize("option, limit", [("app_name", 255), ("version", 255), ("commit", 255), ("uri", 2048)])
def test_overlong_values_are_rejected_at_the_limit(option, limit):
    at_limit = "https://x.io/" + "a" * (limit - 13) if option == "uri" else "a" * limit
    assert len(at_limit) == limit
    Deployment.create(**_with(**{option: at_limit}))
    with pytest.raises(InvalidInput, match=f"^{option}: must be at most {limit} characters, got {limit + 1}$"):
        Deployment.create(**_with(**{option: at_limit + "a"}))


@pytest.mark.parametrize("uri", ["ftp://x.io/1", "ci.example.com/build/1", "/build/1", "https://", "https:///path", "javascript:alert(1)"])
def test_uri_must_be_an_absolute_http_url(uri):
    with pytest.raises(InvalidInput, match="^uri: must be an absolute http:// or https:// URL"):
        Deployment.create(**_with(uri=uri))


def test_uri_with_inner_space_is_rejected():
    with pytest.raises(InvalidInput, match="^uri: must not contain spaces"):
        Deployment.create(**_with(uri="https://ci.example.com/my build/1"))


def test_plain_http_uri_is_fine_it_carries_no_secret():
    assert Deployment.create(**_with(uri="http://jenkins.local:8080/job/1/")).uri == "http://jenkins.local:8080/job/1/"
