"""Where Fabric takes api_key_file from (retrace_fabric.settings.resolve_options), without running fab."""

from __future__ import annotations

import retrace_fabric  # noqa: F401  # pylint: disable=unused-import  # registers retrace_fabric.core
from retrace_fabric.settings import FLAG_OPTIONS, resolve_options

FILE = {"retrace": {"api_key_file": "/from/fabric.yaml", "detect_source": False}}


def test_fabric_env_beats_shared_env_beats_config_files():
    environ = {"FABRIC_RETRACE_API_KEY_FILE": "/from/fabric-env", "RETRACE_API_KEY_FILE": "/from/shared-env"}
    assert resolve_options(FILE, {}, environ)["api_key_file"] == "/from/fabric-env"
    assert resolve_options(FILE, {}, {"RETRACE_API_KEY_FILE": "/from/shared-env"})["api_key_file"] == "/from/shared-env"
    assert resolve_options(FILE, {}, {"RETRACE_API_KEY_FILE": ""})["api_key_file"] == "/from/fabric.yaml"


def test_the_key_file_is_never_taken_from_flags():
    assert "api_key_file" not in FLAG_OPTIONS
    assert resolve_options(FILE, {"api_key_file": "/from/a/flag"}, {})["api_key_file"] == "/from/fabric.yaml"


def test_a_key_and_a_key_file_both_reach_the_core_which_refuses_them():
    """Each is resolved on its own, as on the Ansible entry points; the core sees both (settings.resolve_api_key)."""
    options = resolve_options(FILE, {}, {"RETRACE_API_KEY": "k"})
    assert (options["api_key"], options["api_key_file"]) == ("k", "/from/fabric.yaml")
