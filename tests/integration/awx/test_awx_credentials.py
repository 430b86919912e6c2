"""The custom credential type (extensions/awx/credential_type.yml): valid for AWX, injected as AWX injects it,
and the key nowhere in the job's output or in what ansible-runner leaves behind, but its own copy of the
job's environment."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from jinja2 import StrictUndefined, sandbox

from ansible_collections.stackify.retrace.tests.integration.awx.controller import (
    SECRET_KEY, Job, files_containing, inject_credential, load_credential_type)

OK_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Deploy
      ansible.builtin.debug:
        msg: deploying
"""
FAILING_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Deploy
      ansible.builtin.fail:
        msg: broken on purpose
"""

# --- what AWX validates (awx/main/fields.py, devel e21dd0a; unchanged since 24.6.1) --------------------
# CredentialTypeInputField.schema and CredentialTypeInjectorField.schema, copied as they are.
INPUTS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "required": {"type": "array", "items": {"type": "string"}},
        "fields": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "type": {"enum": ["string", "boolean"]},
                "format": {"enum": ["ssh_private_key", "url"]},
                "choices": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
                "id": {"type": "string", "pattern": "^[a-zA-Z_]+[a-zA-Z0-9_]*$"},
                "label": {"type": "string"}, "help_text": {"type": "string"}, "multiline": {"type": "boolean"},
                "secret": {"type": "boolean"}, "ask_at_runtime": {"type": "boolean"}, "default": {},
            },
            "additionalProperties": False, "required": ["id", "label"],
        }},
    },
}
INJECTORS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "file": {"type": "object", "patternProperties": {r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$": {"type": "string"}},
                 "additionalProperties": False},
        "env": {"type": "object", "patternProperties": {"^[a-zA-Z_]+[a-zA-Z0-9_]*$": {"type": "string", "pattern": "^[\x00-\x7F]*$"}},
                "additionalProperties": False},
        "extra_vars": {"type": "object"},
    },
}
# awx/main/constants.py ENV_BLOCKLIST (with ANSIBLE_* refused by CredentialTypeInjectorField.validate_env_var_allowed)
ENV_BLOCKLIST = {"VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
                 "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
                 "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"}


def test_the_credential_type_is_what_awx_accepts_for_a_custom_type():
    credential_type = load_credential_type()
    assert set(credential_type) == {"name", "description", "kind", "inputs", "injectors"}
    assert credential_type["kind"] in ("cloud", "net")  # awx/api/serializers.py: custom types must be cloud or net
    jsonschema.validate(credential_type["inputs"], INPUTS_SCHEMA)
    jsonschema.validate(credential_type["injectors"], INJECTORS_SCHEMA)
    fields = {field["id"]: field for field in credential_type["inputs"]["fields"]}
    assert len(fields) == len(credential_type["inputs"]["fields"]) and "tower" not in fields
    assert set(credential_type["inputs"]["required"]) <= set(fields)
    assert fields["api_key"]["secret"] is True and fields["api_key"]["type"] == "string"
    # CredentialTypeInjectorField.validate: allowed names, templates that use only defined fields
    for variable, template in credential_type["injectors"]["env"].items():
        assert not variable.startswith("ANSIBLE_") and variable not in ENV_BLOCKLIST
        sandbox.ImmutableSandboxedEnvironment(undefined=StrictUndefined).from_string(template).render(
            {name: "EXAMPLE" for name in fields})
    assert credential_type["injectors"]["env"] == {"RETRACE_API_KEY": "{{ api_key }}", "RETRACE_API_URL": "{{ api_url }}"}


def test_the_injected_environment_and_what_the_controller_records_of_it():
    env, safe_env = inject_credential(load_credential_type(), {"api_key": SECRET_KEY, "api_url": "https://api.stackify.net"})
    assert env == {"RETRACE_API_KEY": SECRET_KEY, "RETRACE_API_URL": "https://api.stackify.net"}
    assert safe_env == {"RETRACE_API_KEY": "**********", "RETRACE_API_URL": "https://api.stackify.net"}


def test_a_job_with_the_credential_is_tracked_with_its_key(controller):
    result = controller.launch(Job(), OK_PLAYBOOK)
    assert result.status == "successful", result.stdout
    # The emulator's account knows only this key: both calls were made with it.
    assert [(entry["action"], entry["status"]) for entry in controller.emulator.requests()] == [("start", 202), ("complete", 202)]


def test_a_credential_without_api_url_means_the_default_url(controller):
    """The injector renders an empty input as RETRACE_API_URL="", which counts as unset (here: ansible.cfg's URL)."""
    controller.credential_inputs["api_url"] = ""
    controller.callback_settings["api_url"] = controller.emulator.url
    result = controller.launch(Job(), OK_PLAYBOOK)
    assert "Retrace: deployment" in result.stdout and "WARNING" not in result.stdout, result.stdout
    assert [entry["action"] for entry in controller.emulator.requests()] == ["start", "complete"]


@pytest.mark.parametrize("playbook", [OK_PLAYBOOK, FAILING_PLAYBOOK], ids=["success", "failure"])
def test_the_key_is_in_no_output_and_no_artifact_but_ansible_runners_copy_of_the_environment(controller, playbook):
    result = controller.launch(Job(), playbook, template_extra_vars={"app_version": "1.4.2"},
                               extra_env={"ANSIBLE_VERBOSITY": "4"})  # -vvvv: everything the callback logs
    assert len(controller.emulator.requests()) == 2, result.stdout
    assert SECRET_KEY not in result.stdout
    assert result.safe_env["RETRACE_API_KEY"] == "**********"
    # ansible-runner 2.4.3 writes the whole job environment into artifacts/<ident>/command (Runner.run), whatever
    # suppress_env_files says: every credential a controller injects as an environment variable is there, in the
    # job's private data directory, which AWX deletes after the job.  Nothing else may hold the key.
    assert files_containing(result.private_data_dir, SECRET_KEY) == ["artifacts/4711/command"]
    command = json.loads((result.private_data_dir / "artifacts" / "4711" / "command").read_text())
    assert SECRET_KEY not in json.dumps(command["command"]) and SECRET_KEY not in command["cwd"]
    assert [name for name, value in command["env"].items() if SECRET_KEY in value] == ["RETRACE_API_KEY"]
    # env/ holds only what AWX wrote there itself (extravars, settings): no envvars file, no key
    assert sorted(path.name for path in (result.private_data_dir / "env").iterdir()) == ["extravars", "settings"]
    assert not re.search(re.escape(SECRET_KEY), (result.private_data_dir / "env" / "extravars").read_text())
