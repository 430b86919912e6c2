"""Where Fabric takes api_key_file from (retrace_fabric.settings.resolve), without running fab."""

from __future__ import annotations

from retrace_fabric.settings import FLAG_OPTIONS, resolve

FILE = {"retrace": {"api_key_file": "/from/fabric.yaml", "detect_source": False}}


def test_fabric_env_beats_shared_env_beats_config_files():
    environ = {"FABRIC_RETRACE_API_KEY_FILE": "/from/fabric-env", "RETRACE_API_KEY_FILE": "/from/shared-env"}
    assert resolve(FILE, {}, environ=environ)["api_key_file"] == "/from/fabric-env"
    assert resolve(FILE, {}, environ={"RETRACE_API_KEY_FILE": "/from/shared-env"})["api_key_file"] == "/from/shared-env"
    assert resolve(FILE, {}, environ={"RETRACE_API_KEY_FILE": ""})["api_key_file"] == "/from/fabric.yaml"


def test_the_key_file_is_never_taken_from_flags():
    assert "api_key_file" not in FLAG_OPTIONS
    assert resolve(FILE, {"api_key_file": "/from/a/flag"}, environ={})["api_key_file"] == "/from/fabric.yaml"


def test_a_key_and_a_key_file_both_reach_the_core_which_refuses_them():
    """Each is resolved on its own, as on the Ansible entry points; the core sees both (settings.resolve_api_key)."""
    resolved = resolve(FILE, {}, environ={"RETRACE_API_KEY": "k"})
    assert (resolved["api_key"], resolved["api_key_file"]) == ("k", "/from/fabric.yaml")
