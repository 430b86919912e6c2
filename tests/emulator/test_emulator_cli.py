"""`python -m retrace_emulator` as a user runs it: a subprocess, the URL on the first line, signals to stop."""

import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "cli-secret-key-41b2"
URL_LINE = re.compile(r"^Retrace API emulator listening on (http://127\.0\.0\.1:(\d+))$")


def _start(*args, env_accounts=None):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RETRACE_EMULATOR_ACCOUNTS", None)
    if env_accounts is not None:
        env["RETRACE_EMULATOR_ACCOUNTS"] = env_accounts
    process = subprocess.Popen([sys.executable, "-m", "retrace_emulator", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, env=env, cwd=REPO_ROOT)
    match = URL_LINE.match(process.stdout.readline().rstrip("\n"))
    assert match, "the first line must give the URL"
    assert process.stdout.readline() == f"What it receives, live: open {match.group(1)}/ in a browser\n"
    return process, int(match.group(2))


def _post(port, action, body, key):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("POST", f"/api/v1/deployments/{action}", json.dumps(body), {"Authorization": f"ApiKey {key}", "Content-Type": "application/json"})
    status = connection.getresponse().status
    connection.close()
    return status


def _stop(process, signum):
    process.send_signal(signum)
    out, err = process.communicate(timeout=10)
    return process.returncode, out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_the_demo_account_and_exits_0_on_signal(signum):
    process, port = _start()
    try:
        assert _post(port, "start", {"Version": "1", "AppName": "DemoApp", "EnvironmentName": "Production"}, "emulator-demo-key") == 202
    finally:
        returncode, _out, err = _stop(process, signum)
    assert returncode == 0
    assert "/api/v1/deployments/start -> 202" in err
    assert "emulator-demo-key" not in err


def test_cli_accounts_journal_and_timeline_never_show_the_key(tmp_path):
    journal = tmp_path / "journal.jsonl"
    process, port = _start("--account", f"{SECRET}=Shop,Api:Prod", "--journal", str(journal), "--timeline",
                           env_accounts="env-secret-key-5c=Blog:Live")
    try:
        assert _post(port, "start", {"Version": "1", "AppName": "Api", "EnvironmentName": "Prod"}, SECRET) == 202
        assert _post(port, "start", {"Version": "1", "AppName": "Blog", "EnvironmentName": "Live"}, "env-secret-key-5c") == 202
        assert _post(port, "start", {"Version": "1", "AppName": "DemoApp", "EnvironmentName": "Production"}, "emulator-demo-key") == 401
        assert _post(port, "start", {"Version": "1", "AppName": "Nope", "EnvironmentName": "Prod"}, SECRET) == 400
    finally:
        returncode, out, err = _stop(process, signal.SIGTERM)
    assert returncode == 0
    assert "Api / Prod / 1" in out, "the timeline is printed on exit"
    assert len(journal.read_text().splitlines()) == 4
    for text in (out, err, journal.read_text()):
        assert SECRET not in text
        assert "env-secret-key-5c" not in text


def test_cli_allow_any_app():
    process, port = _start("--allow-any-app", "--quiet")
    try:
        assert _post(port, "start", {"Version": "1", "AppName": "Whatever", "EnvironmentName": "Wherever"}, "emulator-demo-key") == 202
    finally:
        returncode, _out, err = _stop(process, signal.SIGTERM)
    assert returncode == 0
    assert err == ""


def test_cli_exits_0_when_signalled_right_after_the_url_line():
    process, _port = _start("--quiet")
    returncode, out, err = _stop(process, signal.SIGTERM)
    assert (returncode, out, err) == (0, "", "")


def test_cli_rejects_a_bad_account_spec_without_echoing_it():
    result = subprocess.run([sys.executable, "-m", "retrace_emulator", "--account", f"{SECRET}=OnlyApps"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT, timeout=10, check=False)
    assert result.returncode == 2
    assert "KEY=App1,App2:Env1,Env2" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_cli_connection_limits():
    """--max-connections and --request-timeout are the emulator's; --idle-timeout too (its own test is in the contract's)."""
    process, port = _start("--max-connections", "1", "--request-timeout", "0.5", "--idle-timeout", "60")
    try:
        held = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        held.request("GET", "/_emulator/health")
        assert held.getresponse().read()  # kept alive: the one place is taken
        busy = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        busy.request("GET", "/_emulator/health")
        response = busy.getresponse()
        assert (response.status, response.getheader("Retry-After")) == (503, "1")
        busy.close()
        held.send(b"GET /_emulator/health HTTP/1.1\r\n")  # and no more: cut off at the request timeout
        held.sock.settimeout(20)
        assert held.sock.recv(1) == b"", "closed within 20 s, not at the 60 s idle timeout"
        held.close()
    finally:
        returncode, _out, err = _stop(process, signal.SIGTERM)
    assert returncode == 0
    assert "refused with 503: max_connections (1) are open" in err


@pytest.mark.parametrize("option", [("--max-connections", "0"), ("--max-connections", "1.5"), ("--request-timeout", "0"),
                                    ("--request-timeout", "nan"), ("--idle-timeout", "-1"), ("--idle-timeout", "inf")])
def test_cli_refuses_limits_that_are_no_limits(option):
    result = subprocess.run([sys.executable, "-m", "retrace_emulator", *option], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT, timeout=10, check=False)
    assert result.returncode == 2
    assert f"argument {option[0]}: expected a" in result.stderr
