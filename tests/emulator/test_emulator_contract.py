"""Every row of the status-code table in docs/retrace-api.md, over real HTTP."""

import json
import socket
import time

import pytest

from retrace_emulator import DEMO_API_KEY
from retrace_emulator.server import RetraceEmulator


# -- 202 --------------------------------------------------------------------------------------------

def test_start_complete_cancel_are_accepted_with_202(api):
    started = api.post("start", Name="Release 1", Uri="https://ci.example/1", Branch="main", Commit="abc123")
    assert started.status == 202
    assert started.json == {"Message": "Accepted", "Action": "start", "Version": "1.0.0", "AppName": "DemoApp",
                            "EnvironmentName": "Production", "Name": "Release 1", "Uri": "https://ci.example/1",
                            "Branch": "main", "Commit": "abc123"}
    assert api.post("complete").status == 202
    assert api.post("start", Version="1.0.1").status == 202
    cancelled = api.post("cancel", Version="1.0.1")
    assert cancelled.status == 202
    assert cancelled.json["Action"] == "cancel"


def test_name_defaults_to_version(api, retrace_emulator):
    assert api.post("start").json["Name"] == "1.0.0"
    assert retrace_emulator.deployments()[0]["Name"] == "1.0.0"


def test_unicode_arrives_intact(api, retrace_emulator):
    name = "D\u00e9ploiement \u65e5\u672c\u8a9e \U0001f680"
    reply = api.post("start", body=json.dumps({"Version": "v\u00e9", "AppName": "DemoApp", "EnvironmentName": "Staging", "Name": name},
                                              ensure_ascii=False).encode("utf-8"))
    assert reply.status == 202
    assert reply.json["Name"] == name
    entry = retrace_emulator.requests("start")[0]
    assert entry["body"]["Name"] == name
    assert name in entry["body_raw"]
    assert retrace_emulator.deployments()[0]["Version"] == "v\u00e9"


def test_other_demo_environment_and_chunked_body_are_accepted(api):
    connection = api.connect()
    body = json.dumps({"Version": "2", "AppName": "DemoApp", "EnvironmentName": "Staging"}).encode()
    connection.request("POST", "/api/v1/deployments/start", body=iter([body[:10], body[10:]]),
                       headers={"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"}, encode_chunked=True)
    assert connection.getresponse().status == 202
    connection.close()


def test_keep_alive_connection_serves_several_requests(api):
    connection = api.connect()
    headers = {"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"}
    for action in ("start", "complete"):
        connection.request("POST", f"/api/v1/deployments/{action}", body=json.dumps({"Version": "k", "AppName": "DemoApp", "EnvironmentName": "Staging"}),
                           headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 202
    connection.close()


# -- 401 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "", "Bearer emulator-demo-key", "ApiKey", "ApiKey a b", "emulator-demo-key"],
                         ids=["missing", "empty", "wrong-scheme", "no-key", "two-tokens", "no-scheme"])
def test_missing_or_malformed_authorization_is_401(api, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = api.post("start", key=None, headers=headers)
    assert reply.status == 401
    assert "Authorization" in reply.message
    assert DEMO_API_KEY not in reply.raw.decode()


def test_unknown_key_is_401_without_echoing_it(api, retrace_emulator):
    reply = api.post("start", key="secret-unknown-key-123")
    assert reply.status == 401
    assert "secret-unknown-key-123" not in reply.raw.decode()
    assert "secret-unknown-key-123" not in json.dumps(retrace_emulator.journal())


def test_scheme_is_case_insensitive_and_spaces_tolerated(api):
    assert api.post("start", key=None, headers={"Authorization": f"apikey  {DEMO_API_KEY}"}).status == 202


def test_auth_is_checked_before_the_body(api):
    assert api.post("start", body=b"not json", key="nobody").status == 401


# -- 400 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, fragment", [
    (b"not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b'"text"', "JSON object"),
    (b'{"Version": "1", "AppName": "DemoApp", "EnvironmentName": "Caf\xe9"}', "UTF-8"),
], ids=["not-json", "empty", "array", "string", "bad-utf8"])
def test_body_that_is_not_a_json_object_is_400(api, body, fragment):
    reply = api.post("start", body=body)
    assert reply.status == 400
    assert fragment in reply.message


@pytest.mark.parametrize("field", ["Version", "AppName", "EnvironmentName"])
@pytest.mark.parametrize("action", ["start", "complete", "cancel"])
def test_missing_required_field_is_400_naming_it(api, action, field):
    reply = api.post(action, **{field: None})
    assert reply.status == 400
    assert field in reply.message


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_empty_required_field_is_400(api, value):
    reply = api.post("start", AppName=value)
    assert reply.status == 400
    assert "AppName" in reply.message


def test_non_string_field_is_400_naming_it(api):
    reply = api.post("start", Version=1.0, Branch=["main"])
    assert reply.status == 400
    assert "Version" in reply.message and "Branch" in reply.message


@pytest.mark.parametrize("field, limit", [("Name", 255), ("Branch", 255), ("Commit", 255), ("Version", 255), ("Uri", 2048)])
def test_field_length_limits(api, field, limit):
    long_value = "x" * limit
    too_long = api.post("start", **{field: long_value + "y"})
    assert too_long.status == 400
    assert field in too_long.message
    assert api.post("start", **{field: long_value}).status == 202


def test_unknown_app_or_environment_is_400_naming_them(api):
    reply = api.post("start", AppName="NoSuchApp")
    assert reply.status == 400
    assert "'NoSuchApp'" in reply.message and "'Production'" in reply.message
    assert "create the app and environment" in reply.message
    assert api.post("start", EnvironmentName="QA").status == 400


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_allow_any_app_accepts_any_names(api):
    assert api.post("start", AppName="Anything", EnvironmentName="Anywhere").status == 202
    assert api.post("start", key="not-a-key").status == 401


@pytest.mark.retrace_emulator(accounts={"team-key": {"apps": ["Shop", "Api"], "environments": ["Prod"]}, "wild-key": {"apps": ["*"], "environments": ["*"]}})
def test_configured_accounts_replace_the_demo_account(api):
    assert api.post("start", key="team-key", AppName="Api", EnvironmentName="Prod").status == 202
    assert api.post("start", key="team-key", AppName="DemoApp").status == 400
    assert api.post("start", key=DEMO_API_KEY).status == 401
    assert api.post("start", key="wild-key", AppName="X", EnvironmentName="Y").status == 202


def test_content_type_other_than_json_is_accepted_with_a_warning(api, retrace_emulator):
    assert api.post("start", headers={"Content-Type": "text/plain"}).status == 202
    assert "Content-Type" in retrace_emulator.requests()[0]["warnings"][0]


def test_cancel_with_extra_fields_is_accepted_with_a_warning(api, retrace_emulator):
    api.post("start")
    assert api.post("cancel", Name="n", Uri="u", Branch="b", Commit="c").status == 202
    warnings = retrace_emulator.requests("cancel")[0]["warnings"]
    assert warnings == ["cancel carried Name, Uri, Branch, Commit; the contract says cancel carries only Version, AppName, EnvironmentName"]


def test_unknown_fields_are_accepted_with_a_warning(api, retrace_emulator):
    assert api.post("start", Extra="1").status == 202
    assert "Extra" in retrace_emulator.requests()[0]["warnings"][0]
    reply = api.post("start", body={"version": "1", "AppName": "DemoApp", "EnvironmentName": "Production"})
    assert reply.status == 400
    assert "did you mean Version?" in retrace_emulator.requests()[-1]["warnings"][0]


def test_well_formed_requests_carry_no_warnings(api, retrace_emulator):
    api.post("start", Name="n", Uri="u", Branch="b", Commit="c")
    api.post("complete")
    assert all(entry["warnings"] == [] for entry in retrace_emulator.journal())


def test_oversized_body_is_413_before_it_is_read(api):
    connection = api.connect()
    # Announce the body but do not send it: the emulator must refuse on Content-Length alone.
    connection.putrequest("POST", "/api/v1/deployments/start")
    connection.putheader("Authorization", f"ApiKey {DEMO_API_KEY}")
    connection.putheader("Content-Length", str(1024 * 1024 + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()


@pytest.mark.parametrize("framing", [
    {"Content-Length": "-1"},
    {"Content-Length": "-60000000"},
    {"Transfer-Encoding": "chunked"},  # followed by a chunk of size -1
])
def test_a_negative_length_is_400_and_no_body_is_read(api, retrace_emulator, framing):
    # The client keeps its connection open and keeps its body: a server that read "to the end" would wait for ever.
    with socket.create_connection(("127.0.0.1", retrace_emulator.port), timeout=5) as connection:
        head = "".join(f"{name}: {value}\r\n" for name, value in framing.items())
        connection.sendall(f"POST /api/v1/deployments/start HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey {DEMO_API_KEY}\r\n"
                           f"{head}\r\n".encode() + (b"-1\r\n" if "Transfer-Encoding" in framing else b"") + b"a" * 65536)
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    entry = retrace_emulator.journal()[-1]
    assert entry["status"] == 400 and entry["body_raw"] is None
    assert entry["response"]["Message"] in ("Content-Length is negative", "Malformed chunked body")


@pytest.mark.parametrize(("framing", "message"), [
    ("Content-Length: 2\r\nContent-Length: 5\r\n", "Content-Length is given more than once, with different values"),
    ("Content-Length: 5\r\nContent-Length: 2\r\n", "Content-Length is given more than once, with different values"),
    ("Content-Length: 2, 5\r\n", "Content-Length is given more than once, with different values"),
    ("Content-Length: +5\r\n", "Content-Length is not a number"),
    ("Content-Length: 5_0\r\n", "Content-Length is not a number"),
    ("Content-Length: 0x5\r\n", "Content-Length is not a number"),
    ("Transfer-Encoding: chunked\r\n\r\n+5", "Malformed chunked body"),
    ("Transfer-Encoding: chunked\r\n\r\n0x5", "Malformed chunked body"),
    ("Transfer-Encoding: chunked\r\n\r\n5_0", "Malformed chunked body"),
], ids=["2 then 5", "5 then 2", "a list of 2 and 5", "+5", "5_0", "0x5", "chunk +5", "chunk 0x5", "chunk 5_0"])
def test_conflicting_or_non_digit_lengths_are_400_before_the_body_is_read(retrace_emulator, framing, message):
    """RFC 9112 6.3: two different lengths, or a length that is not digits only, leave the body's end unknown; the
    request is refused at once, without reading on (the client here sends no body and waits)."""
    head, _blank, chunk = framing.partition("\r\n\r\n")
    request = (f"POST /api/v1/deployments/start HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey {DEMO_API_KEY}\r\n{head.rstrip()}\r\n\r\n"
               + (f"{chunk}\r\n" if chunk else ""))
    with socket.create_connection(("127.0.0.1", retrace_emulator.port), timeout=20) as connection:
        connection.sendall(request.encode("utf-8"))
        answer = b""
        while not answer.endswith(b"}"):  # the JSON answer, then the close; a server reading the body never answers
            chunk_read = connection.recv(65536)
            assert chunk_read, answer
            answer += chunk_read
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    entry = retrace_emulator.journal()[-1]
    assert (entry["status"], entry["body_raw"], entry["response"]["Message"]) == (400, None, message)


def test_the_same_length_given_twice_counts_once(retrace_emulator):
    body = json.dumps({"Version": "1", "AppName": "DemoApp", "EnvironmentName": "Production"}).encode()
    with socket.create_connection(("127.0.0.1", retrace_emulator.port), timeout=20) as connection:
        connection.sendall(f"POST /api/v1/deployments/start HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey {DEMO_API_KEY}\r\n"
                           f"Content-Length: {len(body)}\r\nContent-Length: 0{len(body)}, {len(body)}\r\n\r\n".encode() + body)
        assert connection.recv(65536).startswith(b"HTTP/1.1 202 ")


def test_an_idle_connection_is_closed():
    with RetraceEmulator(idle_timeout=0.5) as emulator:
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as idle:
            began = time.monotonic()
            assert idle.recv(1) == b""  # closed by the server, without a request
            closed_after = time.monotonic() - began
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as kept_alive:
            kept_alive.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += kept_alive.recv(65536)
            assert kept_alive.recv(1) == b""  # after the answer, the kept-alive connection idles out too
    assert 0.4 <= closed_after < 5, closed_after


# -- 409 --------------------------------------------------------------------------------------------

def test_cancel_never_started_is_409(api):
    reply = api.post("cancel")
    assert reply.status == 409
    assert "never started" in reply.message


def test_complete_never_started_is_a_one_shot_deployment(api, retrace_emulator):
    # Stackify's Jenkins plugin only ever posts complete (docs/retrace-api.md, [S3]).
    assert api.post("complete").status == 202
    [record] = retrace_emulator.deployments()
    assert record["state"] == "completed" and record["history"][0]["one_shot"] is True


def test_complete_after_cancel_or_complete_is_a_one_shot_redeploy(api, retrace_emulator):
    api.post("start")
    assert api.post("cancel").status == 202
    assert api.post("complete").status == 202
    assert api.post("complete").status == 202
    assert [step.get("one_shot", False) for step in retrace_emulator.deployments()[0]["history"]] == [False, False, True, True]


def test_start_while_in_progress_is_409(api):
    assert api.post("start").status == 202
    reply = api.post("start")
    assert reply.status == 409
    assert "already in progress" in reply.message


@pytest.mark.parametrize("first, second", [("complete", "cancel"), ("cancel", "cancel")])
def test_cancelling_a_finished_deployment_is_409(api, first, second):
    api.post("start")
    assert api.post(first).status == 202
    reply = api.post(second)
    assert reply.status == 409
    assert "already" in reply.message


@pytest.mark.parametrize("finish", ["complete", "cancel"])
def test_start_again_after_finishing_is_a_redeploy(api, retrace_emulator, finish):
    api.post("start")
    api.post(finish)
    assert api.post("start").status == 202
    assert api.post("complete").status == 202
    [deployment] = retrace_emulator.deployments()
    assert [step["action"] for step in deployment["history"]] == ["start", finish, "start", "complete"]
    assert deployment["state"] == "completed"


def test_state_is_per_version_environment_and_account(api):
    assert api.post("start").status == 202
    assert api.post("start", Version="1.0.1").status == 202
    assert api.post("start", EnvironmentName="Staging").status == 202
    assert api.post("complete", Version="1.0.1").status == 202
    assert api.post("complete").status == 202


# -- 404 / 405 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/deployments/finish", "/api/v1/deployments", "/api", "/api/v2/deployments/start"])
def test_unknown_path_is_404(api, path):
    assert api.send("POST", path, b"{}", {"Content-Type": "application/json"}).status == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(api, retrace_emulator, method):
    reply = api.send(method, "/api/v1/deployments/start", headers={"Authorization": f"ApiKey {DEMO_API_KEY}"})
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    assert retrace_emulator.journal()[0]["status"] == 405


def test_query_string_does_not_change_the_route(api):
    assert api.post("start", headers={}, key=DEMO_API_KEY).status == 202
    reply = api.send("POST", "/api/v1/deployments/complete?x=1", json.dumps({"Version": "1.0.0", "AppName": "DemoApp", "EnvironmentName": "Production"}),
                     {"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"})
    assert reply.status == 202
