"""api_key_file: the key read from a file by the core (settings.resolve_api_key), once for every entry point."""

import os
import socket

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import settings
from ansible_collections.stackify.retrace.plugins.module_utils._resolve import environment_source
from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils._redaction import ApiKey

KEY = "s3cr3t-LICENSE-key-from-file"


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "retrace-key"
    path.write_text(KEY)
    path.chmod(0o600)
    return path


def refused(**given) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        settings.ApiSettings.create(**given)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    return caught.value


def test_the_key_is_read_from_the_file_and_wrapped(key_file):
    created = settings.ApiSettings.create(api_key_file=str(key_file))
    assert isinstance(created.api_key, ApiKey) and created.api_key.reveal() == KEY
    assert KEY not in repr(created) and KEY not in str(created)


@pytest.mark.parametrize("content", [f"{KEY}\n", f"  {KEY}\r\n\n", f"\t{KEY} ", f"\n\n{KEY}\n\n"])
def test_surrounding_whitespace_and_newlines_are_stripped(tmp_path, content):
    path = tmp_path / "key"
    path.write_bytes(content.encode("utf-8"))
    assert settings.ApiSettings.create(api_key_file=str(path)).api_key.reveal() == KEY


def test_home_and_variables_in_the_path_are_expanded(key_file, monkeypatch):
    monkeypatch.setenv("HOME", str(key_file.parent))
    monkeypatch.setenv("KEY_DIR", str(key_file.parent))
    assert settings.resolve_api_key(api_key_file="~/retrace-key").reveal() == KEY
    assert settings.resolve_api_key(api_key_file="$KEY_DIR/retrace-key").reveal() == KEY


def test_a_missing_file_names_the_setting_and_the_path(tmp_path):
    path = tmp_path / "absent"
    error = refused(api_key_file=str(path))
    assert error.option == "api_key_file" and str(path) in str(error) and "No such file" in str(error)


def test_an_unreadable_file_names_the_setting_and_the_path(key_file, monkeypatch):
    """os.open failing with EACCES (arranged so: root, which runs these tests in CI, reads any file)."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(settings.os, "open", denied)
    error = refused(api_key_file=str(key_file))
    assert error.option == "api_key_file" and str(key_file) in str(error) and "Permission denied" in str(error)


def test_a_directory_is_not_a_key_file(tmp_path):
    error = refused(api_key_file=str(tmp_path))
    assert error.option == "api_key_file" and str(tmp_path) in str(error)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    error = refused(api_key_file=str(fifo))  # would hang forever if opened blocking
    assert "not a regular file" in str(error) and str(fifo) in str(error)


def test_a_socket_is_not_a_key_file(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        error = refused(api_key_file=str(path))
    assert error.option == "api_key_file" and str(path) in str(error)


@pytest.mark.parametrize("content", [b"", b"\n", b"  \r\n\t"])
def test_an_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "key"
    path.write_bytes(content)
    error = refused(api_key_file=str(path))
    assert error.option == "api_key_file" and "is empty" in str(error) and str(path) in str(error)


def test_a_file_that_is_not_utf8_is_refused_without_its_content(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(KEY.encode() + b"\xff\xfe")
    error = refused(api_key_file=str(path))
    assert error.option == "api_key_file" and "not UTF-8" in str(error)


@pytest.mark.parametrize("content", [f"{KEY}\n{KEY}", f"{KEY} x", f"{KEY}\x00", f"{KEY}é"])
def test_a_malformed_key_in_the_file_is_refused_without_echoing_it(tmp_path, content):
    path = tmp_path / "key"
    path.write_text(content, encoding="utf-8")
    error = refused(api_key_file=str(path))
    assert error.option == "api_key_file" and str(path) in str(error)


def test_a_huge_file_is_refused(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY + "x" * settings.API_KEY_FILE_LIMIT)
    assert "larger than" in str(refused(api_key_file=str(path)))


@pytest.mark.parametrize("api_key", [KEY, ApiKey(KEY)])
def test_both_set_is_an_error_naming_both(key_file, api_key):
    error = refused(api_key=api_key, api_key_file=str(key_file))
    assert "set api_key or api_key_file, not both" in str(error)
    assert "RETRACE_API_KEY_FILE" in str(error) and "STACKIFY_API_KEY" in str(error)


def test_both_set_is_an_error_even_when_the_file_is_missing(tmp_path):
    """Which key was meant is the first question: the answer does not depend on the file."""
    assert "not both" in str(refused(api_key="other-key", api_key_file=str(tmp_path / "absent")))


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_setting_counts_as_unset(key_file, empty):
    assert settings.resolve_api_key(api_key=empty, api_key_file=str(key_file)).reveal() == KEY
    assert settings.resolve_api_key(api_key=KEY, api_key_file=empty).reveal() == KEY


def test_neither_set_names_both_ways():
    error = refused()
    assert error.option == "api_key" and "api_key_file" in str(error) and "RETRACE_API_KEY_FILE" in str(error)


def test_the_environment_gives_both_variables_to_every_entry_point(key_file):
    """Every entry point reads the environment through the core's one source (_resolve.environment_source)."""
    found = environment_source({"RETRACE_API_KEY_FILE": str(key_file), "STACKIFY_API_KEY": KEY}).values
    assert found == {"api_key_file": str(key_file), "api_key": KEY}
    assert "not both" in str(refused(**found))


def test_create_client_takes_api_key_file(key_file):
    client, _deployment = create_client({"api_key_file": str(key_file), "app_name": "A", "environment_name": "E", "version": "1"},
                                        transport=None, entry_point="test")
    assert client.settings.api_key.reveal() == KEY


def test_the_file_is_read_once_the_settings_keep_the_key(key_file):
    """What the orphan guard gets (client.settings) holds the key itself: the job's file may be gone by then."""
    created = settings.ApiSettings.create(api_key_file=str(key_file))
    key_file.unlink()
    assert created.api_key.reveal() == KEY
