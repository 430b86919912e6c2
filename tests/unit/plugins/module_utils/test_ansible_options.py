"""The one argument spec of stackify.retrace.deployment, and that its docs match it."""

import ast
import pathlib

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.stackify.retrace.plugins.module_utils import _ansible_options as ansible_options, settings
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput

COLLECTION = pathlib.Path(__file__).resolve().parents[4]
REQUIRED = {"state": "started", "app_name": "DemoApp", "environment_name": "Production", "version": "1.0"}


def _documented_options() -> dict:
    """Options of the module as ansible-doc assembles them: its own plus its doc fragments."""
    def docs_in(path, attribute):
        tree = ast.parse(path.read_text())
        return next(yaml.safe_load(node.value.value) for node in ast.walk(tree)
                    if isinstance(node, ast.Assign) and node.targets[0].id == attribute)
    fragments = COLLECTION / "plugins" / "doc_fragments" / "api.py"
    options = dict(docs_in(COLLECTION / "plugins" / "modules" / "deployment.py", "DOCUMENTATION")["options"])
    options.update(docs_in(fragments, "DOCUMENTATION")["options"])
    options.update(docs_in(fragments, "DEPLOYMENT")["options"])
    options.update(docs_in(fragments, "LIFECYCLE")["options"])
    return options


def test_every_option_is_documented_with_its_type_and_default():
    documented = _documented_options()
    assert set(documented) == set(ansible_options.ARGUMENT_SPEC)
    for option, spec in ansible_options.ARGUMENT_SPEC.items():
        assert documented[option]["type"] == spec["type"], option
        assert documented[option].get("default") == spec.get("default"), option


def test_every_shared_environment_variable_is_a_fallback():
    for option, variables in settings.ENVIRONMENT_VARIABLES.items():
        strategy, names = ansible_options.ARGUMENT_SPEC[option]["fallback"]
        assert strategy is ansible_options.first_set_environment_variable
        assert tuple(names) == variables


def test_every_lifecycle_environment_variable_is_a_fallback():
    for option, variable in settings.LIFECYCLE_ENVIRONMENT_VARIABLES.items():
        strategy, names = ansible_options.ARGUMENT_SPEC[option]["fallback"]
        assert strategy is ansible_options.first_set_environment_variable and names == [variable]


def test_api_key_is_no_log():
    assert ansible_options.ARGUMENT_SPEC["api_key"]["no_log"] is True


def test_fallbacks_skip_empty_variables(monkeypatch):
    monkeypatch.setenv("RETRACE_API_KEY", "")
    monkeypatch.setenv("STACKIFY_API_KEY", "from-stackify")
    monkeypatch.setenv("RETRACE_API_URL", "http://127.0.0.1:9")
    result = ArgumentSpecValidator(ansible_options.ARGUMENT_SPEC).validate(dict(REQUIRED))
    assert not result.error_messages
    assert result.validated_parameters["api_key"] == "from-stackify"
    assert result.validated_parameters["api_url"] == "http://127.0.0.1:9"
    assert "from-stackify" in result._no_log_values  # pylint: disable=protected-access


def test_explicit_values_beat_the_environment(monkeypatch):
    monkeypatch.setenv("RETRACE_VERSION", "from-env")
    result = ArgumentSpecValidator(ansible_options.ARGUMENT_SPEC).validate(dict(REQUIRED))
    assert result.validated_parameters["version"] == "1.0"


def test_defaults_come_from_the_core(monkeypatch):
    monkeypatch.delenv("RETRACE_API_URL", raising=False)
    params = ArgumentSpecValidator(ansible_options.ARGUMENT_SPEC).validate(dict(REQUIRED)).validated_parameters
    assert params["api_url"] == settings.DEFAULT_API_URL
    assert (params["timeout"], params["deadline"]) == (settings.DEFAULT_TIMEOUT, settings.DEFAULT_DEADLINE)
    assert params["validate_certs"] is True and params["use_proxy"] is True


@pytest.mark.parametrize("option, value, problem", [
    ("version", 1.1, "got the number 1.1; YAML reads unquoted values such as 1.10"),
    ("version", ["1"], "must be a string, got list"),
    ("app_name", {"a": 1}, "must be a string, got dict"),
    ("branch", False, "must be a string, got bool"),
    ("api_key", ("k",), "must be a string, got list"),
])
def test_values_ansible_would_mangle_are_refused(option, value, problem):
    with pytest.raises(InvalidInput) as caught:
        ansible_options.check_text_types({**REQUIRED, option: value})
    assert caught.value.option == option and problem in str(caught.value)


def test_integers_and_strings_pass_the_type_check():
    ansible_options.check_text_types({**REQUIRED, "version": 42, "timeout": 2.5, "validate_certs": False})


def test_core_options_leave_out_what_the_core_does_not_take():
    params = {**REQUIRED, "api_key": "k", "ca_path": "/x", "use_proxy": False, "timeout": 3.0}
    assert ansible_options.core_options(params) == {
        "app_name": "DemoApp", "environment_name": "Production", "version": "1.0", "api_key": "k", "timeout": 3.0}
