"""The journal: its fields, its HTTP and file forms, the timeline, and that no API key ever shows."""

import http.client
import json
from urllib.parse import unquote

import pytest

from key_forms import FORMS_ACCOUNTS, FORMS_KEY, KEY_FORMS, b64, exposes, flat
from retrace_emulator import DEMO_API_KEY, RetraceEmulator, format_timeline, key_fingerprint

SECRET = "journal-secret-key-7f3a"
ACCOUNTS = {SECRET: {"apps": ["Shop"], "environments": ["Prod"]}}
BODY = {"Version": "3.1", "AppName": "Shop", "EnvironmentName": "Prod"}


def test_entry_fields(api, retrace_emulator):
    api.post("start", headers={"User-Agent": "journal-test/1.0"}, Branch="main")
    [entry] = retrace_emulator.journal()
    assert entry["seq"] == 1
    assert entry["time"].endswith("+00:00")
    assert isinstance(entry["monotonic"], float)
    assert (entry["method"], entry["path"], entry["action"], entry["status"]) == ("POST", "/api/v1/deployments/start", "start", 202)
    assert (entry["outcome"], entry["processed"], entry["processed_status"], entry["fault"]) == ("answered", True, 202, None)
    assert entry["key_fingerprint"] == key_fingerprint(DEMO_API_KEY) and len(entry["key_fingerprint"]) == 8
    assert entry["headers"] == {"Content-Type": "application/json", "User-Agent": "journal-test/1.0"}
    assert json.loads(entry["body_raw"]) == entry["body"] == {"Version": "1.0.0", "AppName": "DemoApp", "EnvironmentName": "Production", "Branch": "main"}
    assert entry["response"]["Message"] == "Accepted"
    assert entry["warnings"] == []


def test_rejected_and_faulted_requests_are_recorded(api, retrace_emulator):
    retrace_emulator.inject("start", [{"drop": True}])
    with pytest.raises(http.client.RemoteDisconnected):
        api.post("start")
    api.post("start", key=None)
    api.post("start", body=b"{oops")
    api.send("GET", "/nowhere")
    entries = retrace_emulator.journal()
    assert [entry["seq"] for entry in entries] == [1, 2, 3, 4]
    assert [entry["status"] for entry in entries] == [None, 401, 400, 404]
    assert entries[0]["fault"] == {"drop": True}
    assert entries[1]["key_fingerprint"] is None
    assert entries[2]["body"] is None and entries[2]["body_raw"] == "{oops"
    assert retrace_emulator.requests() == entries[:3]


def test_journal_is_a_copy(retrace_emulator, api):
    api.post("start")
    retrace_emulator.journal()[0]["status"] = 999
    assert retrace_emulator.journal()[0]["status"] == 202


def test_requests_filter(api, retrace_emulator):
    api.post("start")
    api.post("complete")
    api.post("cancel")
    assert [entry["action"] for entry in retrace_emulator.requests("complete")] == ["complete"]
    assert len(retrace_emulator.requests()) == 3


def test_journal_and_deployments_over_http(api):
    api.post("start", Commit="abc")
    api.post("complete")
    journal = api.control("GET", "journal")
    assert journal.status == 200
    assert [entry["action"] for entry in journal.json] == ["start", "complete"]
    assert [entry["action"] for entry in api.send("GET", "/_emulator/journal?action=complete").json] == ["complete"]
    [deployment] = api.control("GET", "deployments").json
    assert (deployment["AppName"], deployment["Version"], deployment["state"], deployment["Commit"]) == ("DemoApp", "1.0.0", "completed", "abc")
    assert deployment["key_fingerprint"] == key_fingerprint(DEMO_API_KEY)
    assert api.control("GET", "health").json["status"] == "ok"
    assert api.control("GET", "nothing").status == 404
    assert api.control("DELETE", "journal").status == 405
    assert len(api.control("GET", "journal").json) == 2, "control requests are not journaled"


def test_journal_file_gets_json_lines(tmp_path):
    path = tmp_path / "journal.jsonl"
    with RetraceEmulator(journal_path=str(path)) as emulator:
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        connection.request("POST", "/api/v1/deployments/start", json.dumps({"Version": "1", "AppName": "DemoApp", "EnvironmentName": "Staging"}),
                           {"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"})
        connection.getresponse().read()
        assert len(path.read_text().splitlines()) == 1, "written as soon as recorded"
        expected = emulator.journal()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == expected


def test_api_key_never_appears_anywhere(tmp_path, capsys):
    """Keys sent in the header, leaked by a careless client in the body or path, or unknown: none is written."""
    path = tmp_path / "journal.jsonl"
    with RetraceEmulator(ACCOUNTS, journal_path=str(path)) as emulator:
        emulator.inject("cancel", [{"process": True, "drop": True}])
        calls = [
            ("start", json.dumps(BODY), f"ApiKey {SECRET}"),
            ("start", json.dumps(BODY), f"ApiKey {SECRET}"),  # 409
            ("complete", json.dumps({**BODY, "Name": f"leaked {SECRET}"}), f"ApiKey {SECRET}"),
            ("start", json.dumps(BODY), "ApiKey unknown-secret-key-99"),
            ("start", "{not json " + SECRET, f"ApiKey {SECRET}"),
            ("start", json.dumps({**BODY, "Version": "3.2"}), f"ApiKey {SECRET}"),
            ("cancel", json.dumps({**BODY, "Version": "3.2"}), f"ApiKey {SECRET}"),
        ]
        for action, body, authorization in calls:
            _post_quietly(emulator.port, f"/api/v1/deployments/{action}", body, authorization)
        _post_quietly(emulator.port, f"/api/v1/deployments/start?key={SECRET}", json.dumps(BODY), f"ApiKey {SECRET}")
        over_http = _get(emulator.port, "/_emulator/journal") + _get(emulator.port, "/_emulator/deployments")
        journal = json.dumps(emulator.journal())
        timeline = format_timeline(emulator.journal())
    captured = capsys.readouterr()
    for text in (journal, path.read_text(encoding="utf-8"), over_http, timeline, captured.out, captured.err):
        assert SECRET not in text
        assert "unknown-secret-key-99" not in text
    assert f"<redacted key {key_fingerprint(SECRET)}>" in journal
    assert "an API key appeared in the request body" in journal


def test_format_timeline():
    entries = [
        {"seq": 1, "monotonic": 10.0, "method": "POST", "path": "/api/v1/deployments/start", "action": "start", "status": 503,
         "outcome": "answered", "processed_status": None, "fault": {"status": 503, "retry_after": "2"}, "body": BODY, "response": {}, "warnings": [],
         "headers": {"User-Agent": "stackify-retrace/0.1.0 (fabric; python 3.11.7)"}},
        {"seq": 2, "monotonic": 12.25, "method": "POST", "path": "/api/v1/deployments/start", "action": "start", "status": None,
         "outcome": "dropped", "processed_status": 202, "fault": {"process": True, "drop": True}, "body": BODY, "response": None, "warnings": [],
         "headers": {"User-Agent": "curl/8.5.0"}},
        {"seq": 3, "monotonic": 12.5, "method": "POST", "path": "/api/v1/deployments/start", "action": "start", "status": 409,
         "outcome": "answered", "processed_status": 409, "fault": None, "body": BODY, "response": {"Message": "already in progress"}, "warnings": []},
        {"seq": 4, "monotonic": 13.0, "method": "GET", "path": "/x", "action": None, "status": 404,
         "outcome": "answered", "processed_status": None, "fault": None, "body": None, "response": {"Message": "No such endpoint"}, "warnings": []},
    ]
    assert format_timeline(entries).splitlines() == [
        "TIME     CLIENT      ACTION  APP / ENVIRONMENT / VERSION  STATUS         NOTE",
        "+0.000s  fabric      start   Shop / Prod / 3.1            503            fault: status 503 Retry-After: 2",
        "+2.250s  curl/8.5.0  start   Shop / Prod / 3.1            (202) dropped  fault: process+drop",
        "+2.500s  -           start   Shop / Prod / 3.1            409            already in progress",
        "+3.000s  -           GET /x  -                            404            No such endpoint",
    ]
    assert format_timeline([]) == "(no requests)"


def test_timeline_of_a_live_run(api, retrace_emulator):
    api.post("start", Name="x" * 3)
    api.post("cancel", Name="n")
    lines = format_timeline(retrace_emulator.journal()).splitlines()
    assert len(lines) == 3
    assert "DemoApp / Production / 1.0.0" in lines[1]
    assert "warning: cancel carried Name" in lines[2]


def _post_quietly(port: int, path: str, body: str, authorization: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", path, body, {"Authorization": authorization, "Content-Type": "application/json"})
        connection.getresponse().read()
    except http.client.RemoteDisconnected:
        pass  # the injected process+drop
    finally:
        connection.close()


def _get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path)
    text = connection.getresponse().read().decode("utf-8")
    connection.close()
    return text


def _readings(value):
    """Every string of a JSON value (member names too), as written and as a reader could decode it."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _readings(name)
            yield from _readings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _readings(item)
    elif isinstance(value, str):
        for text in (value, unquote(unquote(unquote(value)))):
            yield text
            try:
                yield text.encode("latin-1", "backslashreplace").decode("unicode_escape")
            except UnicodeDecodeError:
                pass  # not an escaped text


ESCAPED_SECRET = SECRET.replace("-", "\\u002d")  # what json.dumps(..., ensure_ascii=True) of a lookalike would write
PERCENT_SECRET = SECRET.replace("-", "%2D")


@pytest.mark.parametrize("where", ["a JSON-escaped field", "a member name", "an escaped member name", "a percent-encoded query",
                                   "a query encoded twice", "a percent-encoded escape", "an escaped User-Agent",
                                   "a refused call's message"])
def test_an_encoded_key_is_redacted_from_every_output(tmp_path, where):
    """A key written so that the raw text does not hold it (JSON escapes, percent-encoding) is found decoded, in values
    and in member names, and redacted from the entry, the journal file, the page's data and the deployment list."""
    body, path, agent = json.dumps(BODY), "/api/v1/deployments/start", "careful-client/1.0"
    if where == "a JSON-escaped field":
        body = '{"Version": "%s", "AppName": "Shop", "EnvironmentName": "Prod"}' % ESCAPED_SECRET
    elif where == "a member name":
        body = json.dumps({SECRET: "x", **BODY})
    elif where == "an escaped member name":
        body = '{"%s": "x", "Version": "3.1", "AppName": "Shop", "EnvironmentName": "Prod"}' % ESCAPED_SECRET
    elif where == "a percent-encoded query":
        path += f"?api_key={PERCENT_SECRET}"
    elif where == "a query encoded twice":
        path += f"?api_key={PERCENT_SECRET.replace('%', '%25')}"
    elif where == "a percent-encoded escape":
        path += f"?api_key={ESCAPED_SECRET.replace(chr(92), '%5C')}"
    elif where == "an escaped User-Agent":
        agent = f"careless-client key={ESCAPED_SECRET}"
    else:  # the contract quotes the unknown app back
        body = '{"Version": "3.1", "AppName": "%s", "EnvironmentName": "Prod"}' % ESCAPED_SECRET
    journal_file = tmp_path / "journal.jsonl"
    with RetraceEmulator(ACCOUNTS, journal_path=str(journal_file)) as emulator:
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        for key in ("unknown-but-sent-key-1", SECRET):
            connection.request("POST", path, body, {"Authorization": f"ApiKey {key}", "Content-Type": "application/json", "User-Agent": agent})
            connection.getresponse().read()
        connection.close()
        outputs = {"journal": emulator.journal(), "deployments": emulator.deployments(),
                   "over HTTP": [json.loads(_get(emulator.port, f"/_emulator/{name}")) for name in ("journal", "deployments", "updates")],
                   "file": [json.loads(line) for line in journal_file.read_text(encoding="utf-8").splitlines()]}
    for name, output in outputs.items():
        leaks = [text for text in _readings(output) if SECRET in text]
        assert not leaks, f"the key shows in {name}: {leaks[:3]}"
    [_unknown_key, entry] = outputs["journal"]
    assert any(warning.startswith("an API key appeared in the request") for warning in entry["warnings"]), entry["warnings"]
    assert f"<redacted key {key_fingerprint(SECRET)}>" in json.dumps(entry)


# -- the forms a key is echoed in: case, split, base64 ----------------------------------------------------

def exposed_in(value) -> list[str]:
    """The strings of a JSON value (member names too, as written and decoded) from which the key can be read back."""
    return [text for text in _readings(value) if exposes(text, FORMS_KEY)]


def test_the_leak_check_sees_every_form():
    for name, form in KEY_FORMS.items():
        assert exposes(form, FORMS_KEY) and exposed_in([{"Name": f"x {form} y"}]), name
    assert not exposed_in({"Name": "retrace-key?>~~~-004", "Version": b64(FORMS_KEY[:-2])})


@pytest.mark.parametrize("where", ["a body field", "the User-Agent"])
@pytest.mark.parametrize("form", list(KEY_FORMS), ids=list(KEY_FORMS))
def test_a_key_echoed_in_another_form_is_redacted_from_every_output(tmp_path, form, where):
    """The key upper-cased, split or base64-encoded (alone or inside ``ApiKey <key>``) is found and redacted from the
    journal, the --journal file, /_emulator/journal, /_emulator/deployments and /_emulator/updates (the page's data)."""
    written = KEY_FORMS[form]
    body, agent = {**BODY, "Name": "release"}, "careless-client/1.0"
    if where == "a body field":
        body["Name"] = f"leaked {written} here"
    else:
        agent = f"careless-client/1.0 ({flat(written)})"
    journal_file = tmp_path / "journal.jsonl"
    with RetraceEmulator(FORMS_ACCOUNTS, journal_path=str(journal_file)) as emulator:
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        connection.request("POST", "/api/v1/deployments/start", json.dumps(body),
                           {"Authorization": f"ApiKey {FORMS_KEY}", "Content-Type": "application/json", "User-Agent": agent})
        assert connection.getresponse().status == 202
        connection.close()
        outputs = {"journal": emulator.journal(), "deployments": emulator.deployments(),
                   "the journal file": [json.loads(line) for line in journal_file.read_text(encoding="utf-8").splitlines()],
                   **{f"/_emulator/{name}": json.loads(_get(emulator.port, f"/_emulator/{name}")) for name in ("journal", "deployments", "updates")}}
        [entry] = emulator.journal()
    for name, output in outputs.items():
        assert not exposed_in(output), f"the key shows in {name}: {exposed_in(output)[:3]}"
    assert f"<redacted key {key_fingerprint(FORMS_KEY)}>" in json.dumps(entry)
    place = "body" if where == "a body field" else "headers"
    assert f"an API key appeared in the request {place}; it was redacted from this entry" in entry["warnings"]


def test_short_keys_are_redacted_only_as_written():
    """A key of fewer than 8 characters in another case or split would match ordinary words: only its exact form."""
    with RetraceEmulator({"k3y": {"apps": ["Shop"], "environments": ["Prod"]}}) as emulator:
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        connection.request("POST", "/api/v1/deployments/start", json.dumps({**BODY, "Name": "K3Y k 3 y a-k3y"}),
                           {"Authorization": "ApiKey k3y", "Content-Type": "application/json"})
        assert connection.getresponse().status == 202
        connection.close()
        [entry] = emulator.journal()
    assert entry["body"]["Name"] == f"K3Y k 3 y a-<redacted key {key_fingerprint('k3y')}>"
