"""What every entry point does when a setting, a proxy variable or an answer is broken: one line, never a traceback,
never a password or the key, and the run goes on (``strict`` is off).  Also: what ``git`` gets, and which time limits
the entry points really run with.

Each entry point runs for real (``ansible-playbook`` with the callback, ``ansible-playbook`` with a module task,
``fab retrace.start``: :mod:`entry_points`) against servers on loopback.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from entry_points import ENTRY_POINTS, environment
from loopback_servers import HostileApi
from retrace_emulator.accounts import DEMO_API_KEY


def _run(entry_point: str, tmp_path: pathlib.Path, url: str, variables: dict, version: str, **limits):
    home = tmp_path / "home"
    home.mkdir()
    return ENTRY_POINTS[entry_point](tmp_path, environment(home, url, variables), version, **limits)


def _one_line(output: str) -> str:
    return " ".join(output.split())


def _assert_went_on_without_a_traceback(run) -> None:
    assert run.returncode == 0, run.output
    assert "Traceback" not in run.output and "NOT recorded" in run.output, run.output
    assert DEMO_API_KEY not in run.output


# --- a proxy variable that is not a usable URL: named without its credentials ----------------------------------

#: HTTPS_PROXY values, each with the password "Pr0xyPw" somewhere an unencoded character breaks its parsing
BROKEN_PROXIES = {
    "# in the password": "http://alice:Pr0xyPw#rest@127.0.0.1:3128",
    "port not a number": "http://alice:Pr0xyPw@127.0.0.1:notaport",
    "unclosed [": "http://alice:Pr0xyPw@[::1",
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("case", BROKEN_PROXIES)
def test_a_broken_proxy_url_is_one_line_without_its_password(tmp_path, entry_point, case):
    run = _run(entry_point, tmp_path, "https://127.0.0.1:9", {"HTTPS_PROXY": BROKEN_PROXIES[case]}, f"{entry_point}-proxy")

    _assert_went_on_without_a_traceback(run)
    output = _one_line(run.output)
    assert "(from HTTPS_PROXY)" in output and "Pr0xyPw" not in output and "alice" not in output, run.output


# --- an api_url whose host no resolver takes: refused as a setting ---------------------------------------------

BAD_HOSTS = {
    "empty label": "https://api..example.com",
    "64-character label": "https://" + "a" * 64 + ".example.com",
    "loopback name with empty labels": "http://LOCALHOST..:8080",
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("case", BAD_HOSTS)
def test_an_api_url_host_no_resolver_takes_is_refused_as_a_setting(tmp_path, entry_point, case):
    run = _run(entry_point, tmp_path, BAD_HOSTS[case], {}, f"{entry_point}-host")

    _assert_went_on_without_a_traceback(run)
    assert "api_url" in run.output, run.output


# --- damaged answers -------------------------------------------------------------------------------------------

DAMAGED = {
    # the status line came whole: Retrace accepted the start, whatever happened to the body
    "202 with its chunked body cut off": b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    "202 with 101 headers": b"HTTP/1.1 202 Accepted\r\n" + b"X-Header: value\r\n" * 101 + b"\r\n",
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_202_records_the_start_once(tmp_path, entry_point, case):
    with HostileApi({"*": DAMAGED[case]}) as api:
        run = _run(entry_point, tmp_path, api.url, {}, f"{entry_point}-damaged")

    assert run.returncode == 0 and "NOT recorded" not in run.output and "Traceback" not in run.output, run.output
    # One start, taken as accepted: not retried, so no 409 taken for a stale start, no cancel of it and start again.
    # (A module task that only starts leaves the end to the orphan guard: its cancel may come after the run.)
    actions = [exchange.action for exchange in api.exchanges]
    assert actions[0] == "start" and actions.count("start") == 1, (actions, run.output)


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_retry_after_that_is_no_number_is_retried_with_backoff(tmp_path, entry_point):
    answer = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n"  # "²": isdigit(), no float
    with HostileApi({"*": answer}) as api:
        run = _run(entry_point, tmp_path, api.url, {}, f"{entry_point}-retry-after")

    _assert_went_on_without_a_traceback(run)
    assert "HTTP 503" in _one_line(run.output) and len(api.exchanges) >= 2, run.output


# --- git never gets the key ------------------------------------------------------------------------------------

GIT_WRAPPER = """#!/bin/sh
env > "{dumps}/git-$$.env"
exec "{git}" "$@"
"""


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_git_started_to_detect_branch_and_commit_gets_no_key(tmp_path, entry_point):
    real_git = shutil.which("git")
    dumps, wrapper_directory, project = tmp_path / "dumps", tmp_path / "bin", tmp_path / "project"
    for directory in (dumps, wrapper_directory, project):
        directory.mkdir()
    wrapper = wrapper_directory / "git"
    wrapper.write_text(GIT_WRAPPER.format(dumps=dumps, git=real_git))
    wrapper.chmod(0o755)
    for command in (("init", "-q"), ("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "one")):
        subprocess.run([real_git, "-C", str(project), *command], check=True, capture_output=True)
    home = project / "home"
    home.mkdir()
    variables = {"PATH": f"{wrapper_directory}{os.pathsep}{os.environ['PATH']}", "STACKIFY_API_KEY": DEMO_API_KEY,
                 "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    with HostileApi({"*": "ok"}) as api:
        run = ENTRY_POINTS[entry_point](project, environment(home, api.url, variables), f"{entry_point}-git")

    assert run.returncode == 0 and "NOT recorded" not in run.output, run.output
    environments = [path.read_text() for path in dumps.iterdir()]
    assert environments, f"git was never started: {run.output}"
    for seen in environments:
        names = {line.partition("=")[0] for line in seen.splitlines()}
        assert not names & {"RETRACE_API_KEY", "STACKIFY_API_KEY", "FABRIC_RETRACE_API_KEY", "RETRACE_API_KEY_FILE"}, names
        assert DEMO_API_KEY not in seen
    assert b"ApiKey " + DEMO_API_KEY.encode() in api.exchanges[0].request  # the run itself had the key


# --- the time limits a run is given are the ones it runs with ------------------------------------------------

@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_each_entry_point_runs_with_the_timeout_it_was_given(tmp_path, entry_point):
    # An API that never answers: each attempt lasts the timeout, then comes a backoff of 0.25-0.5 s.  Run with the
    # defaults instead (timeout 10), the first attempt would use all of the start's time: one attempt only.
    with HostileApi({"*": "silent"}) as api:
        run = _run(entry_point, tmp_path, api.url, {}, f"{entry_point}-limits", timeout=1, deadline=6)

    _assert_went_on_without_a_traceback(run)
    began = [exchange.began for exchange in api.exchanges]
    assert len(began) >= 2, run.output
    assert 1.0 <= began[1] - began[0] <= 1.0 + 0.5 + 1.5, began  # the timeout, the backoff, a loaded machine
