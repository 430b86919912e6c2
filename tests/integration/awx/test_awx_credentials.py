"""The custom credential type (extensions/awx/credential_type.yml): valid for AWX, injected as AWX injects it
(the key in a 0600 file of the private data directory, its path in RETRACE_API_KEY_FILE), and the key nowhere
in the job's output or in what ansible-runner leaves behind but that file: not in artifacts/<id>/command (the
job's environment), not in ansible_env facts, not in the environment of the job's processes."""

from __future__ import annotations

import json
import os
import re
import stat

import jsonschema
import pytest
from jinja2 import StrictUndefined, sandbox

from ansible_collections.stackify.retrace.tests.integration.awx.controller import (
    OK_PLAYBOOK, SECRET_KEY, Job, files_containing, inject_credential, load_credential_type)

#: facts of localhost (ansible_env, kept in the fact cache artifact) and a child process's environment, at -vvvv
FACTS_PLAYBOOK = """
- hosts: all
  gather_facts: true
  tasks:
    - name: Deploy
      ansible.builtin.command: env
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
    # CredentialTypeInjectorField.validate: allowed names, templates that use only defined fields (and
    # tower.filename once a file injector exists: a single file is "template", its path tower.filename)
    jinja = sandbox.ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for template in credential_type["injectors"]["file"].values():
        jinja.from_string(template).render({name: "EXAMPLE" for name in fields})
    for variable, template in credential_type["injectors"]["env"].items():
        assert not variable.startswith("ANSIBLE_") and variable not in ENV_BLOCKLIST
        jinja.from_string(template).render({**{name: "EXAMPLE" for name in fields}, "tower": {"filename": "/runner/env/tmpx"}})
    # the key only in a file; the environment holds its path
    assert credential_type["injectors"] == {"file": {"template": "{{ api_key }}"},
                                            "env": {"RETRACE_API_KEY_FILE": "{{ tower.filename }}", "RETRACE_API_URL": "{{ api_url }}"}}


def test_the_schema_refuses_what_awx_refuses():
    """The schema above can fail: a named file label with a bad name, an unknown injector kind."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"file": {"template.1bad": "x"}}, INJECTORS_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"files": {"template": "x"}}, INJECTORS_SCHEMA)


def test_the_injected_file_environment_and_what_the_controller_records_of_it(tmp_path):
    (tmp_path / "env").mkdir(mode=0o700)
    env, safe_env, files = inject_credential(load_credential_type(), {"api_key": SECRET_KEY, "api_url": "https://api.stackify.net"},
                                             tmp_path, job_root=tmp_path / "seen-by-the-job")
    [name] = files
    assert name.startswith("env/tmp")
    written = tmp_path / name
    assert written.read_text() == SECRET_KEY and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert env == safe_env == {"RETRACE_API_KEY_FILE": str(tmp_path / "seen-by-the-job" / name),
                               "RETRACE_API_URL": "https://api.stackify.net"}


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


@pytest.mark.parametrize("playbook", [OK_PLAYBOOK, FAILING_PLAYBOOK, FACTS_PLAYBOOK], ids=["success", "failure", "facts"])
def test_the_key_is_in_no_output_and_no_artifact_but_the_credentials_own_file(controller, playbook):
    # -vvvv: everything the callback logs; a jsonfile fact cache, which ansible-runner points at artifacts/<id>/fact_cache
    # (ANSIBLE_CACHE_PLUGIN_CONNECTION), so that ansible_env of localhost is written where the scan looks
    result = controller.launch(Job(), playbook, template_extra_vars={"app_version": "1.4.2"},
                               extra_env={"ANSIBLE_VERBOSITY": "4", "ANSIBLE_CACHE_PLUGIN": "jsonfile"})
    assert [entry["status"] for entry in controller.emulator.requests()] == [202, 202], result.stdout
    assert SECRET_KEY not in result.stdout
    [credential_file] = controller.credential_files
    assert result.safe_env["RETRACE_API_KEY_FILE"] == str(result.private_data_dir / credential_file)
    # ansible-runner 2.4.3 writes the whole job environment into artifacts/<ident>/command (Runner.run), whatever
    # suppress_env_files says: with the file injector it holds the file's path, not the key.  The only file of the
    # private data directory (which AWX deletes after the job) that holds the key is the one AWX wrote for it.
    assert files_containing(result.private_data_dir, SECRET_KEY) == [credential_file]
    command = json.loads((result.private_data_dir / "artifacts" / "4711" / "command").read_text())
    assert command["env"]["RETRACE_API_KEY_FILE"] == str(result.private_data_dir / credential_file)
    assert "RETRACE_API_KEY" not in command["env"]
    # env/ holds only what AWX wrote there itself (extravars, settings, the credential's file): no envvars file
    assert sorted(f"env/{path.name}" for path in (result.private_data_dir / "env").iterdir()) == sorted(
        ["env/extravars", "env/settings", credential_file])
    assert not re.search(re.escape(SECRET_KEY), (result.private_data_dir / "env" / "extravars").read_text())
    if playbook is FACTS_PLAYBOOK:
        # the scan above read them: ansible_env in the fact cache, and `env` of a task (in the output) name the file only
        # the cache file is "s1_localhost" with ansible-core 2.21 (seen here), "localhost" with older versions
        [facts] = [path.read_text() for path in (result.private_data_dir / "artifacts" / "4711" / "fact_cache").glob("*localhost")]
        # (2.21 wraps the facts in a "__payload__" of its own serialization: look for the variable and the path as text)
        assert "RETRACE_API_KEY_FILE" in facts and str(result.private_data_dir / credential_file) in facts
        assert f"RETRACE_API_KEY_FILE={result.private_data_dir / credential_file}" in result.stdout, result.stdout


def test_a_key_injected_into_the_environment_is_in_the_command_artifact(controller, monkeypatch):
    """Why the file injector: the same job with the key injected as RETRACE_API_KEY (how env-injected credentials,
    the previous version of this type included, behave) leaves it in artifacts/<id>/command -- and the scan sees it."""
    env_injected = load_credential_type()
    env_injected["injectors"] = {"env": {"RETRACE_API_KEY": "{{ api_key }}", "RETRACE_API_URL": "{{ api_url }}"}}
    monkeypatch.setattr("ansible_collections.stackify.retrace.tests.integration.awx.controller.load_credential_type",
                        lambda: env_injected)
    result = controller.launch(Job(), OK_PLAYBOOK)
    assert result.status == "successful", result.stdout
    assert files_containing(result.private_data_dir, SECRET_KEY) == ["artifacts/4711/command"]


def test_the_job_uses_the_key_in_the_credentials_file(controller):
    """The file AWX wrote is what the job uses: its key is the one the emulator knows, and another key there is refused."""
    controller.credential_inputs["api_key"] = "rtk-unknown-to-the-emulator"
    result = controller.launch(Job(), OK_PLAYBOOK)
    assert [entry["status"] for entry in controller.emulator.requests()] == [401], result.stdout
    assert "rtk-unknown-to-the-emulator" not in result.stdout
    assert os.path.exists(result.private_data_dir / controller.credential_files[0])
