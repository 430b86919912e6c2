"""The emulator's web page over plain HTTP: its files, its read-only data endpoint, and no key anywhere in them.

What a browser makes of it is tested in test_emulator_page_browser.py.
"""

import http.client
import json

import pytest

from retrace_emulator import DEMO_API_KEY, RetraceEmulator, format_timeline, key_fingerprint
from retrace_emulator.journal import Journal, describe_agent
from retrace_emulator.page import HISTORY_TAIL, SHOWN_CHARS, updates
from retrace_emulator.server import host_allowed

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


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "BREW"])
@pytest.mark.parametrize("path", ["/", "/favicon.ico", "/_emulator/page/page.js", "/_emulator/updates"])
def test_the_page_and_its_data_are_read_only(api, retrace_emulator, method, path):
    """Any method but GET and HEAD, the standard ones and made-up ones alike: 405, with Allow and the page's headers."""
    reply = api.send(method, path, json.dumps(BODY), {"Content-Type": "application/json", "Authorization": f"ApiKey {DEMO_API_KEY}"})
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD"
    assert "default-src 'none'" in reply.headers["Content-Security-Policy"] and reply.headers["X-Content-Type-Options"] == "nosniff"
    assert retrace_emulator.deployments() == []
    # Off the control paths, a misdirected client is recorded like any other request.
    assert [entry["status"] for entry in retrace_emulator.journal()] == ([] if path.startswith("/_emulator/") else [405])


@pytest.mark.parametrize("path", ["/", "/_emulator/updates", "/_emulator/journal", "/_emulator/page/page.css"])
def test_the_page_and_its_data_answer_head_as_get_without_a_body(api, path):
    reply = api.send("HEAD", path)
    assert (reply.status, reply.raw) == (200, b"")
    assert int(reply.headers["Content-Length"]) > 0 and "default-src 'none'" in reply.headers["Content-Security-Policy"]


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


def _cursors(answer):
    return f"generation={answer['generation']}&calls={answer['calls_cursor']}&deployments={answer['deployments_cursor']}"


def test_a_call_with_a_redacted_field_shows_on_its_deployment():
    """The call's deployment id and the deployment's are computed alike, from the redacted values: they still match."""
    escaped = SECRET.replace("-", "\\u002d")
    with RetraceEmulator(ACCOUNTS) as emulator:
        body = '{"Version": "%s", "AppName": "Shop", "EnvironmentName": "Prod"}' % escaped
        assert _post(emulator.port, "/api/v1/deployments/start", body, {"Authorization": f"ApiKey {SECRET}"}) == 202
        answer = updates(emulator, "")
    [call], [deployment] = answer["calls"], answer["deployments"]
    assert call["fields"]["Version"] == deployment["fields"]["Version"] == f"<redacted key {key_fingerprint(SECRET)}>"
    assert deployment["id"] is not None and call["deployment"] == deployment["id"]


def test_a_page_that_fell_behind_gets_the_picture_that_replaces_its_own(api, retrace_emulator):
    """More deployments changed than an answer carries: the answer replaces what the page holds (the newest changed and
    every one in progress), so no deployment the page held stays "in progress" after it ended."""
    for version in ("1.0", "1.1"):
        assert api.post("start", Version=version).status == 202
    first = updates(retrace_emulator, "", limit=3)
    assert (first["deployments_replace"], first["skipped_deployments"]) == (False, 0)
    assert api.post("complete", Version="1.0").status == 202  # the page holds 1.0 in progress
    for version in ("1.2", "1.3", "1.4"):
        assert api.post("start", Version=version).status == 202
        assert api.post("complete", Version=version).status == 202
    behind = updates(retrace_emulator, _cursors(first), limit=3)
    assert behind["deployments_replace"] is True
    assert {deployment["fields"]["Version"]: deployment["state"] for deployment in behind["deployments"]} == {
        "1.1": "in_progress", "1.2": "completed", "1.3": "completed", "1.4": "completed"}
    assert behind["skipped_deployments"] == 1, "1.0 ended before the three newest changes: the page drops it and counts it"
    assert api.post("complete", Version="1.1").status == 202
    caught_up = updates(retrace_emulator, _cursors(behind), limit=3)
    assert caught_up["deployments_replace"] is False
    assert [(deployment["fields"]["Version"], deployment["state"]) for deployment in caught_up["deployments"]] == [("1.1", "completed")]


def test_a_long_history_reaches_the_page_as_its_latest_steps_and_a_count(api, retrace_emulator):
    for _redeploy in range(HISTORY_TAIL):
        assert api.post("start").status == 202
        assert api.post("complete").status == 202
    assert api.post("start").status == 202
    [deployment] = _updates(api)["deployments"]
    assert len(deployment["history"]) == HISTORY_TAIL and deployment["earlier_steps"] == HISTORY_TAIL + 1
    assert [step["action"] for step in deployment["history"][-2:]] == ["complete", "start"]
    assert deployment["state"] == "in_progress"


def test_the_page_data_carries_a_bounded_part_of_each_value(api):
    """A refused call keeps whole values of up to 1 MiB in the journal; the page's data carries SHOWN_CHARS of each."""
    version, agent = "v" * 300_000, "u" * 20_000
    assert api.post("start", Version=version, Name="n" * 5000, headers={"User-Agent": agent}).status == 400
    assert api.send("GET", "/" + "p" * 10_000).status == 404
    [refused, misdirected] = _updates(api)["calls"]
    assert refused["fields"]["Version"] == "v" * SHOWN_CHARS + f"…({len(version) - SHOWN_CHARS} more)"
    assert refused["fields"]["Name"] == "n" * SHOWN_CHARS + f"…({5000 - SHOWN_CHARS} more)"
    assert refused["agent"] == refused["entry_point"] == "u" * SHOWN_CHARS + f"…({len(agent) - SHOWN_CHARS} more)"
    assert len(misdirected["path"]) < SHOWN_CHARS + 20 and len(misdirected["message"]) < SHOWN_CHARS + 20


def test_a_reader_of_the_journal_copies_outside_its_lock():
    """The page's view of each entry is made after the lock is released: every API call needs that lock to be recorded."""
    journal = Journal()
    journal.record({"method": "POST"})
    assert journal.entries_after(0, 10, view=lambda entry: journal._lock.locked()) == ([False], 1)  # pylint: disable=protected-access


def test_invisible_characters_and_piled_up_marks_are_shown_as_such(api):
    assert api.post("start", Version="1.0\u202e2.0\u200b", Name="line\nbreak", Branch="e" + "\u0301" * 10, Commit="\U000e0041").status == 202
    [call] = _updates(api)["calls"]
    assert call["fields"] == {"Version": "1.0\\u202e2.0\\u200b", "AppName": "DemoApp", "EnvironmentName": "Production",
                              "Name": "line\\u000abreak", "Branch": "e" + "\u0301" * 3 + "[+7 marks]", "Commit": "\\U000e0041"}


# -- other sites --------------------------------------------------------------------------------------

def _request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("host, allowed", [
    (None, True), ("localhost", True), ("localhost:8080", True), ("LOCALHOST.:8080", True), ("retrace.localhost:1", True),
    ("127.0.0.1:8080", True), ("10.1.2.3:8080", True), ("[::1]:8080", True), ("::1", True),
    ("evil.example", False), ("evil.example:8080", False), ("localhost.evil.example", False), ("127.0.0.1.nip.io", False), ("", False),
    ("[::1", False),
])
def test_the_host_rule(host, allowed):
    assert host_allowed(host, "127.0.0.1") is allowed


def test_the_name_the_emulator_was_started_with_is_allowed():
    assert host_allowed("deploy-box:8765", "deploy-box") and not host_allowed("deploy-box:8765", "0.0.0.0")


@pytest.mark.parametrize("path", ["/", "/_emulator/journal", "/_emulator/updates", "/_emulator/page/page.js"])
def test_a_page_of_another_name_cannot_read_the_emulator(retrace_emulator, api, path):
    """DNS rebinding: a site re-points its own name at 127.0.0.1; its page's requests then carry its name as Host."""
    assert api.post("start").status == 202
    status, body = _request(retrace_emulator.port, "GET", path, headers={"Host": f"evil.example:{retrace_emulator.port}"})
    assert status == 403 and b"emulator-demo" not in body and b"DemoApp" not in body
    assert _request(retrace_emulator.port, "GET", path, headers={"Host": f"localhost:{retrace_emulator.port}"})[0] == 200


def test_the_api_answers_whatever_the_host(retrace_emulator):
    """A client may reach the emulator by any name (a container's, a proxy's): its key guards the API."""
    assert _post(retrace_emulator.port, "/api/v1/deployments/start", json.dumps({**BODY, "AppName": "DemoApp", "EnvironmentName": "Production"}),
                 {"Authorization": f"ApiKey {DEMO_API_KEY}", "Host": "retrace-emulator:8765"}) == 202


@pytest.mark.parametrize("name, payload", [("reset", None), ("faults", {"action": "start", "faults": [{"status": 503}]})])
def test_another_site_cannot_change_the_emulator(retrace_emulator, api, name, payload):
    """What a page of another site can make its visitor's browser send: a form or text body, or any body with its Origin."""
    assert api.post("start").status == 202
    port, data = retrace_emulator.port, json.dumps(payload) if payload else ""
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": content_type} if content_type else {}
        assert _request(port, "POST", f"/_emulator/{name}", data, headers)[0] == 415, content_type
    for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}"):
        headers = {"Content-Type": "application/json", "Origin": origin, "Host": f"localhost:{port}"}
        assert _request(port, "POST", f"/_emulator/{name}", data, headers)[0] == 403, origin
    assert len(retrace_emulator.journal()) == 1 and retrace_emulator.pending_faults()["start"] == []
    same_origin = {"Content-Type": "application/json", "Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"}
    assert _request(port, "POST", f"/_emulator/{name}", data, same_origin)[0] == 200
