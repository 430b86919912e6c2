"""The module's argument spec: made from the core's option table, and documented as it is."""

import ast
import pathlib

import yaml

from ansible_collections.stackify.retrace.plugins.module_utils import _ansible_options as ansible_options, settings

COLLECTION = pathlib.Path(__file__).resolve().parents[4]


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


def test_every_option_is_documented_with_its_type_default_and_choices():
    documented = _documented_options()
    assert set(documented) == set(ansible_options.ARGUMENT_SPEC)
    for option, spec in ansible_options.ARGUMENT_SPEC.items():
        assert documented[option]["type"] == spec["type"], option
        assert documented[option].get("default") == spec.get("default"), option
        assert documented[option].get("choices") == spec.get("choices"), option


def test_the_options_are_the_core_s_shared_settings_and_the_module_s_own():
    assert set(ansible_options.ARGUMENT_SPEC) == {"state", "for_host"} | set(settings.OPTIONS) | set(settings.MODULE_OPTIONS)
    assert ansible_options.ARGUMENT_SPEC["api_url"]["default"] == settings.DEFAULT_API_URL
    assert ansible_options.ARGUMENT_SPEC["stale_start"]["choices"] == list(settings.STALE_START_CHOICES)


def test_only_state_is_required_and_the_key_is_no_log():
    assert [name for name, spec in ansible_options.ARGUMENT_SPEC.items() if spec.get("required")] == ["state"]
    assert [name for name, spec in ansible_options.ARGUMENT_SPEC.items() if spec.get("no_log")] == ["api_key"]


def test_no_environment_fallback_in_the_spec():
    """The core reads RETRACE_*, below the task's arguments and the retrace_* variables: a fallback would outrank them."""
    assert not any("fallback" in spec for spec in ansible_options.ARGUMENT_SPEC.values())
