"""A Name rendered from name_format is cut to the limit (it is cosmetic), an explicit name is not; a value holding
an unrendered Jinja expression is refused, in every deployment option, before anything is sent."""

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils.settings import deployment_name

OPTIONS = {"version": "1.4.2", "app_name": "Shop", "environment_name": "Production", "name": None, "name_format": None}
REQUIRED = {"app_name": "Shop", "environment_name": "Production", "version": "1.4.2"}


def test_a_long_rendered_name_is_cut_to_255_characters_ending_with_an_ellipsis():
    name = deployment_name({**OPTIONS, "name_format": "{version} by {user} via {job_template}"},
                           {"user": "alice", "job_template": "T" * 300})
    assert len(name) == 255 and name.endswith("T\u2026") and name.startswith("1.4.2 by alice via TTT")
    assert Deployment.create(**REQUIRED, name=name).name == name  # accepted as it is


def test_a_rendered_name_at_the_limit_is_kept_whole():
    name = deployment_name({**OPTIONS, "name_format": "{job_template}"}, {"job_template": "T" * 255})
    assert name == "T" * 255


def test_an_explicit_name_too_long_is_still_refused():
    name = deployment_name({**OPTIONS, "name": "N" * 256}, None)
    with pytest.raises(InvalidInput, match=r"^name: must be at most 255 characters, got 256$"):
        Deployment.create(**REQUIRED, name=name)


@pytest.mark.parametrize("option", ["app_name", "environment_name", "version", "branch", "commit", "uri"])
@pytest.mark.parametrize("value", ["{{ app_version }}", "v{{x}}", "{% if a %}1{% endif %}"])
def test_an_unrendered_jinja_expression_is_refused_in_every_option(option, value):
    with pytest.raises(InvalidInput) as caught:
        Deployment.create(**{**REQUIRED, option: value})
    message = str(caught.value)
    assert message.startswith(f"{option}: holds a Jinja expression that was not rendered")
    assert "values given at launch (AWX marks them unsafe), in the environment or in a configuration file are not templated" in message


def test_an_explicit_name_with_jinja_is_refused_and_nothing_can_be_sent():
    with pytest.raises(InvalidInput, match=r"^name: holds a Jinja expression that was not rendered \('\{\{ release_name \}\}'\)"):
        deployment_name({**OPTIONS, "name": "{{ release_name }}"}, None)
    with pytest.raises(InvalidInput, match="^version: holds a Jinja expression that was not rendered"):
        create_client({**REQUIRED, "version": "{{ app_version }}", "api_key": "k"}, transport=None, entry_point="unit")


@pytest.mark.parametrize("option, value", [
    ("version", "1.2.3-rc.1+build.5"), ("version", "{1.0}"), ("branch", "feature/{x}"), ("branch", "release/2026-{Q1}"),
    ("uri", "https://ci.example.com/job/42?x=%7B%7B"), ("commit", "3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"),
    ("app_name", "Shop {EU}"), ("environment_name", "Prod %"),
])
def test_legitimate_values_with_braces_or_percent_signs_pass(option, value):
    assert getattr(Deployment.create(**{**REQUIRED, option: value}), option) == value


def test_a_rendered_name_may_quote_a_job_template_name_holding_braces():
    name = deployment_name({**OPTIONS, "name_format": "{version} via {job_template}"}, {"job_template": "Deploy {{ env }}"})
    assert Deployment.create(**REQUIRED, name=name).name == "1.4.2 via Deploy {{ env }}"
