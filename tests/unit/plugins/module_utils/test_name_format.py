"""name_format: the deployment's Name built from its fields and the controller job's (settings.py)."""

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils.settings import deployment_name, render_name_format

OPTIONS = {"version": "1.4.2", "app_name": "Shop", "environment_name": "Production", "branch": "main", "commit": "abcdef123456",
           "name": None, "name_format": None}
JOB = {"user": "alice", "job_template": "Deploy shop", "job_id": "4711", "workflow": None}


def test_unset_means_no_name_so_retrace_shows_the_version():
    assert deployment_name(OPTIONS, JOB) is None


def test_an_explicit_name_wins():
    assert deployment_name({**OPTIONS, "name": "Big release", "name_format": "{version} by {user}"}, JOB) == "Big release"


def test_the_format_uses_deployment_and_job_fields():
    options = {**OPTIONS, "name_format": "{version} by {user} ({job_template}, job {job_id}) {commit:.7}"}
    assert deployment_name(options, JOB) == "1.4.2 by alice (Deploy shop, job 4711) abcdef1"


def test_unknown_values_render_as_nothing_and_spaces_collapse():
    assert deployment_name({**OPTIONS, "name_format": "{version} by {user} {workflow}"}, None) == "1.4.2 by"


def test_a_format_that_renders_empty_sends_no_name():
    assert deployment_name({**OPTIONS, "name_format": "{workflow}"}, JOB) is None


def test_literal_braces():
    assert render_name_format("{{{version}}}", {"version": "1"}) == "{1}"


@pytest.mark.parametrize("bad", ["{secret}", "{}", "{0}", "{version.__class__}", "{version[0]}", "{version!r}", "{version",
                                 "{version:{user}}", "{version:zz}"])
def test_anything_else_is_refused_naming_the_setting(bad):
    with pytest.raises(InvalidInput) as raised:
        render_name_format(bad, {"version": "1"})
    assert str(raised.value).startswith("name_format")


@pytest.mark.parametrize("bad, field", [("{user:{job_id}}", "{user}"), ("{version:.{job_id}}", "{version}"),
                                        ("{version!s:{job_id}}", "{version}")])
def test_a_placeholder_inside_a_spec_is_named_as_the_problem(bad, field):
    """Not "has {user}: use only ... {user} ...", which names an allowed placeholder as the fault."""
    with pytest.raises(InvalidInput) as raised:
        render_name_format(bad, {"version": "1"})
    assert str(raised.value) == (f"name_format: has a placeholder inside the format spec of {field} ({bad}): "
                                 "a spec is plain text, such as {commit:.7}")


def test_a_conversion_is_named_as_the_problem():
    with pytest.raises(InvalidInput) as raised:
        render_name_format("{version!r}", {"version": "1"})
    assert str(raised.value) == ("name_format: has {version!r}: conversions (!r, !s, !a) are not allowed; "
                                 "write the placeholder alone, such as {version}")


def test_a_non_string_is_refused():
    with pytest.raises(InvalidInput, match="name_format: must be a string"):
        render_name_format(["x"], {})
