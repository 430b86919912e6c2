"""The emulator's web page over plain HTTP: its files, its read-only data endpoint, and no key anywhere in them.

What a browser makes of it is tested in test_emulator_page_browser.py.
"""

import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from retrace_emulator import DEMO_API_KEY, RetraceEmulator, format_timeline, key_fingerprint
from retrace_emulator.journal import describe_agent
from retrace_emulator.page import updates

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "page-secret-key-7d1e"
OTHER_SECRET = "other-secret-key-93aa"
ACCOUNTS = {SECRET: {"apps": ["Shop"], "environments": ["Prod"]}, OTHER_SECRET: {"apps": ["Shop"], "environments": ["Prod"]}}
BODY = {"Version": "3.1", "AppName": "Shop", "EnvironmentName": "Prod"}
OUR_AGENT = "stackify-retrace/1.0.0 (ansible-callback; python 3.13.0)"
GUARD_AGENT = "stackify-retrace/1.0.0 (ansible-module; ansible-core 2.21.5; python 3.13.0; orphan-guard)"
PAGE_FILES = {
    "/": "text/html",
    "/_emulator/page/page.js": "text/javascript",
    "/_emulator/page/page.css": "text/css",
    "/_emulator/page/icon.svg": "image/svg+xml",
    "/favicon.ico": "image/svg+xml",
}


def _updates(api, **cursors):
    reply = api.send("GET", "/_emulator/updates?" + "&".join(f"{name}={value}" for name, value in cursors.items()))
    assert reply.status == 200
    return reply.json


@pytest.mark.parametrize("path, media_type", PAGE_FILES.items())
def test_the_page_and_its_files_are_served_and_never_journaled(api, retrace_emulator, path, media_type):
    reply = api.send("GET", path)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith(media_type)
    assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.raw
    assert retrace_emulator.journal() == []


def test_the_page_needs_nothing_from_the_network(api):
    html = api.send("GET", "/").raw.decode()
    assert '<script src="/_emulator/page/page.js"' in html and 'href="/_emulator/page/page.css"' in html
    for text in (html, api.send("GET", "/_emulator/page/page.js").raw.decode(), api.send("GET", "/_emulator/page/page.css").raw.decode()):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/", "/favicon.ico", "/_emulator/page/page.js", "/_emulator/updates"])
def test_the_page_and_its_data_are_read_only(api, retrace_emulator, method, path):
    reply = api.send(method, path, json.dumps(BODY), {"Content-Type": "application/json", "Authorization": f"ApiKey {DEMO_API_KEY}"})
    assert reply.status == 405
    assert reply.headers["Allow"] in ("GET", "GET, HEAD")
    assert retrace_emulator.deployments() == []
    # Off the control paths, a misdirected client is recorded like any other request.
    assert [entry["status"] for entry in retrace_emulator.journal()] == ([] if path.startswith("/_emulator/") else [405])


def test_updates_follow_the_journal_and_the_deployments_from_their_cursors(api, retrace_emulator):
    assert api.post("start", headers={"User-Agent": OUR_AGENT}, Branch="main").status == 202
    assert api.post("start").status == 409
    first = _updates(api)
    assert [(call["seq"], call["action"], call["status"], call["verdict"]) for call in first["calls"]] == [
        (1, "start", 202, "accepted"), (2, "start", 409, "refused")]
    [deployment] = first["deployments"]
    assert (deployment["state"], deployment["fields"]["Branch"], deployment["fields"]["Uri"]) == ("in_progress", "main", None)
    assert first["calls"][0]["deployment"] == first["calls"][1]["deployment"] == deployment["id"]
    assert (first["calls"][0]["entry_point"], first["calls"][0]["orphan_guard"]) == ("ansible-callback", False)
    assert "already in progress" in first["calls"][1]["message"]
    cursors = {"generation": first["generation"], "calls": first["calls_cursor"], "deployments": first["deployments_cursor"]}

    nothing_new = _updates(api, **cursors)
    assert (nothing_new["calls"], nothing_new["deployments"]) == ([], [])
    assert (nothing_new["calls_cursor"], nothing_new["deployments_cursor"]) == (first["calls_cursor"], first["deployments_cursor"])

    assert api.post("cancel", headers={"User-Agent": GUARD_AGENT}).status == 202
    later = _updates(api, **cursors)
    assert [call["seq"] for call in later["calls"]] == [3]
    [cancelled] = later["deployments"]
    assert cancelled["id"] == deployment["id"] and cancelled["state"] == "cancelled"
    assert [(step["action"], step["entry_point"], step["orphan_guard"]) for step in cancelled["history"]] == [
        ("start", "ansible-callback", False), ("cancel", "ansible-module", True)]

    retrace_emulator.reset()
    after_reset = _updates(api, **cursors)
    assert after_reset["generation"] != first["generation"], "a reset tells the page to start over"
    assert (after_reset["calls"], after_reset["deployments"], after_reset["calls_cursor"]) == ([], [], 0)
    assert api.post("complete").status == 202
    fresh = _updates(api, **cursors)  # old cursors, new generation: everything since the reset
    assert [call["seq"] for call in fresh["calls"]] == [1] and len(fresh["deployments"]) == 1


def test_updates_carry_the_newest_calls_and_deployments_up_to_a_limit(api, retrace_emulator):
    for number in range(5):
        assert api.post("start", Version=f"1.{number}").status == 202
    answer = updates(retrace_emulator, "", limit=2)
    assert [call["fields"]["Version"] for call in answer["calls"]] == ["1.3", "1.4"]
    assert [deployment["fields"]["Version"] for deployment in answer["deployments"]] == ["1.3", "1.4"]
    assert (answer["skipped_calls"], answer["skipped_deployments"]) == (3, 3)
    assert answer["calls_cursor"] == 5
    assert api.post("complete", Version="1.0").status == 202
    answer = updates(retrace_emulator, f"generation={answer['generation']}&calls=5&deployments={answer['deployments_cursor']}", limit=2)
    assert [(deployment["fields"]["Version"], deployment["state"]) for deployment in answer["deployments"]] == [("1.0", "completed")]


def test_updates_say_which_calls_were_faults(api, retrace_emulator):
    retrace_emulator.inject("start", [{"status": 503, "retry_after": "1"}, {"process": True, "drop": True}])
    assert api.post("start").status == 503
    with pytest.raises(http.client.RemoteDisconnected):
        api.post("start")
    calls = _updates(api)["calls"]
    assert [(call["verdict"], call["status"], call["processed_status"], call["fault"]) for call in calls] == [
        ("fault", 503, None, "status 503 Retry-After: 1"), ("fault", None, 202, "process+drop")]


@pytest.mark.parametrize("agent, described", [
    (OUR_AGENT, ("ansible-callback", False)),
    (GUARD_AGENT, ("ansible-module", True)),
    ("stackify-retrace/1.0.0 (fabric; python 3.11.7; orphan-guard)", ("fabric", True)),
    ("curl/8.5.0", ("curl/8.5.0", False)),
    ("orphan-guard", ("orphan-guard", False)),
    (None, ("-", False)),
])
def test_the_entry_point_and_the_orphan_guard_come_from_the_user_agent(agent, described):
    assert describe_agent(agent) == described


def test_the_timeline_names_the_orphan_guard():
    entry = {"seq": 1, "monotonic": 1.0, "method": "POST", "path": "/api/v1/deployments/cancel", "action": "cancel", "status": 202,
             "outcome": "answered", "processed_status": 202, "fault": None, "body": BODY, "response": {}, "warnings": [],
             "headers": {"User-Agent": GUARD_AGENT}}
    assert "ansible-module (orphan guard)" in format_timeline([entry])


def _get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path)
    text = connection.getresponse().read().decode()
    connection.close()
    return text


def _post(port, path, body, headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("POST", path, body, {"Content-Type": "application/json", **headers})
    status = connection.getresponse().status
    connection.close()
    return status


def test_no_api_key_reaches_the_page_or_its_data():
    """Keys sent as keys, leaked into a field, the path or the User-Agent, or unknown: the page's data names none of them."""
    with RetraceEmulator(ACCOUNTS) as emulator:
        calls = [
            ("/api/v1/deployments/start", BODY, {}),
            ("/api/v1/deployments/complete", {**BODY, "Name": f"leaked {SECRET}", "Branch": OTHER_SECRET}, {}),
            ("/api/v1/deployments/start", {**BODY, "Version": SECRET}, {}),
            (f"/api/v1/deployments/cancel?key={SECRET}", {**BODY, "Version": SECRET}, {}),
            ("/api/v1/deployments/start", {**BODY, "Version": "4"}, {"User-Agent": f"careless-client key={SECRET}"}),
            ("/api/v1/deployments/start", {**BODY, "Version": "5"}, {"Authorization": "ApiKey unknown-secret-key-99"}),
        ]
        for path, body, headers in calls:
            _post(emulator.port, path, json.dumps(body), {"Authorization": f"ApiKey {SECRET}", **headers})
        page = "".join(_get(emulator.port, path) for path in PAGE_FILES)
        data = _get(emulator.port, "/_emulator/updates") + _get(emulator.port, "/_emulator/deployments") + _get(emulator.port, "/_emulator/journal")
    for text in (page, data):
        for secret in (SECRET, OTHER_SECRET, "unknown-secret-key-99"):
            assert secret not in text
    assert f"<redacted key {key_fingerprint(SECRET)}>" in data and f"<redacted key {key_fingerprint(OTHER_SECRET)}>" in data
    assert "an API key appeared in the request headers" in data


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_the_demo_prints_the_page_and_keeps_serving_it_when_asked(signum):
    """scripts/demo.py --keep-serving, its steps left out (they have tests of their own): the page's address, then serving."""
    code = "import sys; sys.path.insert(0, 'scripts'); import demo; demo.STEPS = (); sys.exit(demo.main(['--keep-serving']))"
    with subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}) as demo:
        try:
            lines = [demo.stdout.readline() for _line in range(2)]
            page_url = re.search(r"open (http://127\.0\.0\.1:\d+/) in a browser", lines[1]).group(1)
            while "keeps serving" not in (line := demo.stdout.readline()):
                assert line, "the demo ended instead of serving on"
            assert page_url in line
            assert "<title>Retrace API emulator</title>" in _get(int(page_url.rsplit(":", 1)[1].strip("/")), "/")
            demo.send_signal(signum)
            out, err = demo.communicate(timeout=30)
        finally:
            demo.kill()
    assert demo.returncode == 0, err
    assert "Stopped." in out
