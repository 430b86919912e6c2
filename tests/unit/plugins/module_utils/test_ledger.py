"""The record of what this place started (plugins/module_utils/_ledger.py), on a real private state directory."""

from __future__ import annotations

import json
import os
import stat

from ansible_collections.stackify.retrace.plugins.module_utils import _ledger as ledger


def test_a_recorded_start_is_found_for_the_same_place_only(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    here = ledger.place_key("https://api.stackify.net/", "Shop", "Production", str(tmp_path))
    elsewhere = ledger.place_key("https://api.stackify.net", "Shop", "Staging", str(tmp_path))

    ledger.remember_start(here, "v1.4.2", environ=environ)

    assert ledger.started_version(here, environ=environ) == "v1.4.2"
    assert ledger.started_version(elsewhere, environ=environ) is None
    ledger.forget_start(here, environ=environ)
    assert ledger.started_version(here, environ=environ) is None


def test_the_record_is_private_and_never_holds_a_key(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    ledger.remember_start(ledger.place_key("https://a", "A", "E", "/srv"), "1.0", environ=environ)

    directory = tmp_path / "stackify-retrace"
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory / "started.json").st_mode) == 0o600
    entries = json.loads((directory / "started.json").read_text())
    assert [set(entry) for entry in entries.values()] == [{"version", "started_at"}]


def test_old_or_damaged_entries_are_ignored(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    key = ledger.place_key("https://a", "A", "E", "/srv")
    ledger.remember_start(key, "1.0", environ=environ, now=0.0)
    assert ledger.started_version(key, environ=environ) is None
    (tmp_path / "stackify-retrace" / "started.json").write_text("{not json")
    assert ledger.started_version(key, environ=environ) is None


def test_no_state_directory_means_nothing_recorded(tmp_path):
    assert ledger.started_version("x", environ={"XDG_STATE_HOME": str(tmp_path / "missing")}) is None
