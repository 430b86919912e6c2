"""The record of what this place started (plugins/module_utils/_ledger.py), on a real private state directory."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import _ledger as ledger
from ansible_collections.stackify.retrace.plugins.module_utils import _run


def test_a_recorded_start_is_found_for_the_same_place_only(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    here = ledger.place_key("https://api.stackify.net/", "Shop", "Production", str(tmp_path))
    elsewhere = ledger.place_key("https://api.stackify.net", "Shop", "Staging", str(tmp_path))

    ledger.remember_start(here, "v1.4.2", environ=environ)

    assert ledger.started_version(here, environ=environ) == "v1.4.2"
    assert ledger.started_version(elsewhere, environ=environ) is None
    ledger.forget_start(here, environ=environ)
    assert ledger.started_version(here, environ=environ) is None


def test_one_end_per_start_whoever_sends_it(tmp_path):
    """Two hosts of a module task without run_once each send the end: the first claims it, the second finds it ending."""
    key, directory = "k", str(tmp_path)
    ledger.remember_start(key, "1.0", directory=directory)
    assert ledger.claim_end(key, "1.0", directory=directory) == ledger.STARTED
    assert ledger.claim_end(key, "1.0", directory=directory) == ledger.ENDING
    ledger.end_sent(key, "1.0", answered=True, directory=directory)
    assert ledger.recall(key, directory=directory) == ledger.Entry("1.0", ledger.ENDED)
    assert ledger.claim_end(key, "2.0", directory=directory) is None  # another version: an end sent on its own
    ledger.remember_start(key, "3.0", directory=directory)
    ledger.claim_end(key, "3.0", directory=directory)
    ledger.end_sent(key, "3.0", answered=False, directory=directory)  # unreachable: the start stays open
    assert ledger.recall(key, directory=directory) == ledger.Entry("3.0", ledger.STARTED)


def test_the_record_is_private_and_never_holds_a_key(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    ledger.remember_start(ledger.place_key("https://a", "A", "E", "/srv"), "1.0", environ=environ)

    directory = tmp_path / "stackify-retrace"
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory / "started.json").st_mode) == 0o600
    entries = json.loads((directory / "started.json").read_text())
    assert [set(entry) for entry in entries.values()] == [{"version", "state", "versions", "started_at"}]


def test_old_or_damaged_entries_are_ignored(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    key = ledger.place_key("https://a", "A", "E", "/srv")
    ledger.remember_start(key, "1.0", environ=environ, now=0.0)
    assert ledger.started_version(key, environ=environ) is None
    (tmp_path / "stackify-retrace" / "started.json").write_text("{not json")
    assert ledger.started_version(key, environ=environ) is None


def test_no_state_directory_means_nothing_recorded(tmp_path):
    assert ledger.started_version("x", environ={"XDG_STATE_HOME": str(tmp_path / "missing")}) is None


# --- only this user's own record is used ------------------------------------------------------------------


def _planted(tmp_path, version="attacker-chosen"):
    """A state directory someone else could write, holding a record that names ``version``."""
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    key = ledger.place_key("https://a", "A", "E", "/srv")
    ledger.remember_start(key, "1.0", environ=environ)
    record = tmp_path / "stackify-retrace" / "started.json"
    record.write_text(json.dumps({key: {"version": version, "started_at": 4102444800.0}}))
    return environ, key, record


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_directory_others_can_write_is_refused_and_never_read(tmp_path, mode):
    environ, key, _record = _planted(tmp_path)
    os.chmod(tmp_path / "stackify-retrace", mode)

    with pytest.raises(ledger.UnsafeStateDirectory, match=f"can be written by other users \\(mode {mode:04o}\\): not used"):
        ledger.started_version(key, environ=environ)
    with pytest.raises(ledger.UnsafeStateDirectory):
        ledger.remember_start(key, "2.0", environ=environ)
    ledger.forget_start(key, environ=environ)  # silently leaves it alone
    assert "attacker-chosen" in (tmp_path / "stackify-retrace" / "started.json").read_text()


def test_a_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    environ, key, _record = _planted(tmp_path)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)  # as if it belonged to someone else

    with pytest.raises(ledger.UnsafeStateDirectory, match=f"belongs to another user \\(uid {me}\\): not used"):
        ledger.started_version(key, environ=environ)


def test_a_directory_that_is_a_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "stackify-retrace").symlink_to(target)
    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}

    with pytest.raises(ledger.UnsafeStateDirectory, match="is a symbolic link: not used"):
        ledger.remember_start("k", "1.0", environ=environ)
    with pytest.raises(ledger.UnsafeStateDirectory, match="is a symbolic link: not used"):
        ledger.started_version("k", environ=environ)
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("swap", ["link", "others can write", "not a file"])
def test_a_record_that_is_not_this_user_s_own_file_is_refused(tmp_path, swap):
    environ, key, record = _planted(tmp_path)
    if swap == "link":
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_text(record.read_text())
        record.unlink()
        record.symlink_to(elsewhere)
        expected = "is a symbolic link"
    elif swap == "others can write":
        os.chmod(record, 0o666)
        expected = "can be written by other users"
    else:
        record.unlink()
        record.mkdir()
        expected = "is not a regular file"

    with pytest.raises(ledger.UnsafeStateDirectory, match=expected):
        ledger.started_version(key, environ=environ)
    with pytest.raises(ledger.UnsafeStateDirectory, match=expected):
        ledger.remember_start(key, "2.0", environ=environ)


def test_the_engine_s_fallback_never_raises_for_a_refused_record_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    ledger.remember_start(ledger.place_key("https://a", "A", "E", "/srv"), "1.0")
    os.chmod(tmp_path / "stackify-retrace", 0o777)

    fallback = _run.started_from("/srv", "the one retrace.start sent from this directory")
    source = fallback({"api_url": "https://a", "app_name": "A", "environment_name": "E"})

    assert source.values == {} and "can be written by other users (mode 0777)" in source.notes["version"]
