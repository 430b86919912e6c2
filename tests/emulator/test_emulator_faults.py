"""Every fault kind, programmed from Python and over HTTP, observed by a real client socket."""

import http.client
import socket
import threading
import time
from email.utils import format_datetime, parsedate_to_datetime
from datetime import datetime, timedelta, timezone

import pytest

from retrace_emulator import Fault, RetraceEmulator


def test_status_fault_with_retry_after_seconds_then_normal_behaviour(api, retrace_emulator):
    retrace_emulator.inject("start", [{"status": 503, "retry_after": "2"}, {"status": 429, "retry_after": 1}])
    first = api.post("start")
    assert (first.status, first.headers["Retry-After"]) == (503, "2")
    assert "Service Unavailable" in first.message
    second = api.post("start")
    assert (second.status, second.headers["Retry-After"]) == (429, "1")
    assert api.post("start").status == 202
    statuses = [(entry["status"], entry["processed"]) for entry in retrace_emulator.requests()]
    assert statuses == [(503, False), (429, False), (202, True)]


def test_status_fault_with_http_date_and_custom_body(api, retrace_emulator):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    retrace_emulator.inject("start", [{"status": 503, "retry_after": when, "body": {"Message": "maintenance"}}])
    reply = api.post("start")
    assert reply.status == 503
    assert parsedate_to_datetime(reply.headers["Retry-After"]) > datetime.now(timezone.utc)
    assert reply.json == {"Message": "maintenance"}


def test_status_fault_with_text_body_like_a_proxy_error_page(api, retrace_emulator):
    retrace_emulator.inject("complete", [{"status": 502, "body": "<html>Bad Gateway</html>"}])
    reply = api.post("complete")
    assert (reply.status, reply.raw) == (502, b"<html>Bad Gateway</html>")
    assert reply.headers["Content-Type"].startswith("text/plain")


def test_status_fault_does_not_process_the_request(api, retrace_emulator):
    retrace_emulator.inject("start", [{"status": 500}])
    assert api.post("start").status == 500
    assert retrace_emulator.deployments() == []


def test_delay_fault_then_processes(api, retrace_emulator):
    retrace_emulator.inject("start", [{"delay": 0.3}])
    began = time.monotonic()
    assert api.post("start").status == 202
    assert time.monotonic() - began >= 0.3
    assert retrace_emulator.requests()[0]["fault"] == {"delay": 0.3}


def test_delay_combines_with_status(api, retrace_emulator):
    retrace_emulator.inject("start", [{"delay": 0.2, "status": 504}])
    began = time.monotonic()
    assert api.post("start").status == 504
    assert time.monotonic() - began >= 0.2


def test_drop_closes_without_answer(api, retrace_emulator):
    retrace_emulator.inject("start", [{"drop": True}])
    with pytest.raises(http.client.RemoteDisconnected):
        api.post("start")
    entry = retrace_emulator.requests()[0]
    assert (entry["status"], entry["outcome"], entry["processed"]) == (None, "dropped", False)
    assert retrace_emulator.deployments() == []
    assert api.post("start").status == 202


def test_reset_sends_tcp_rst(api, retrace_emulator):
    retrace_emulator.inject("start", [{"reset": True}])
    with pytest.raises(ConnectionResetError):
        api.post("start")
    assert retrace_emulator.requests()[0]["outcome"] == "reset"
    assert api.post("start").status == 202


def test_hang_until_stop_and_stop_returns_promptly():
    emulator = RetraceEmulator().start()
    emulator.inject("*", [{"hang": True}])
    outcome = {}

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
        connection.request("POST", "/api/v1/deployments/start", body=b"{}", headers={"Content-Type": "application/json"})
        try:
            connection.getresponse()
        except http.client.RemoteDisconnected as error:
            outcome["error"] = error

    thread = threading.Thread(target=client)
    thread.start()
    _wait_for(emulator.journal)
    time.sleep(0.2)
    assert thread.is_alive(), "the hanging request must not have been answered"
    began = time.monotonic()
    emulator.stop()
    assert time.monotonic() - began < 1.0
    thread.join(5)
    assert isinstance(outcome.get("error"), http.client.RemoteDisconnected)


def test_hang_for_seconds_then_close(api, retrace_emulator):
    retrace_emulator.inject("start", [{"hang": 0.4}])
    began = time.monotonic()
    with pytest.raises(http.client.RemoteDisconnected):
        api.post("start")
    assert time.monotonic() - began >= 0.4
    assert retrace_emulator.requests()[0]["outcome"] == "hung"


def test_hang_makes_client_time_out(api, retrace_emulator):
    retrace_emulator.inject("start", [{"hang": True}])
    with pytest.raises(socket.timeout):
        api.post("start", timeout=0.3)


def test_stop_returns_promptly_with_idle_keep_alive_connection(api):
    emulator = api.emulator
    connection = api.connect()
    connection.request("GET", "/_emulator/health")
    connection.getresponse().read()
    began = time.monotonic()
    emulator.stop()
    assert time.monotonic() - began < 1.0
    connection.close()


def test_process_then_drop_makes_the_retry_get_409(api, retrace_emulator):
    retrace_emulator.inject("start", [{"process": True, "drop": True}])
    with pytest.raises(http.client.RemoteDisconnected):
        api.post("start")
    assert retrace_emulator.deployments()[0]["state"] == "in_progress"
    retry = api.post("start")
    assert retry.status == 409
    first, second = retrace_emulator.requests()
    assert (first["status"], first["processed"], first["processed_status"], first["outcome"]) == (None, True, 202, "dropped")
    assert second["status"] == 409


def test_process_then_reset_on_complete(api, retrace_emulator):
    api.post("start")
    retrace_emulator.inject("complete", [{"process": True, "reset": True}])
    with pytest.raises(ConnectionResetError):
        api.post("complete")
    assert retrace_emulator.deployments()[0]["state"] == "completed"
    # The retry is accepted too: a complete when not in progress is a one-shot deployment.
    assert api.post("complete").status == 202


def test_process_then_reset_on_cancel_makes_the_retry_409(api, retrace_emulator):
    api.post("start")
    retrace_emulator.inject("cancel", [{"process": True, "reset": True}])
    with pytest.raises(ConnectionResetError):
        api.post("cancel")
    assert retrace_emulator.deployments()[0]["state"] == "cancelled"
    assert api.post("cancel").status == 409


def test_faults_apply_only_to_their_action_and_wildcard_after_specific(api, retrace_emulator):
    retrace_emulator.inject("*", [{"status": 503}])
    retrace_emulator.inject("complete", [{"status": 500}])
    assert api.post("start").status == 503
    assert api.post("start").status == 202
    assert api.post("complete").status == 500
    assert api.post("complete").status == 202
    assert retrace_emulator.pending_faults() == {"start": [], "complete": [], "cancel": [], "*": []}


def test_faults_apply_before_authentication(api, retrace_emulator):
    retrace_emulator.inject("start", [{"status": 503}])
    assert api.post("start", key="unknown").status == 503


def test_faults_over_http(api, retrace_emulator):
    queued = api.control("POST", "faults", {"action": "start", "faults": [{"status": 503, "retry_after": "1"}, {"drop": True}]})
    assert queued.status == 200
    assert queued.json["queued"] == 2
    assert api.control("GET", "faults").json["start"] == [{"status": 503, "retry_after": "1"}, {"drop": True}]
    assert api.post("start").status == 503
    with pytest.raises(http.client.RemoteDisconnected):
        api.post("start")
    assert api.post("start").status == 202
    assert len(retrace_emulator.requests()) == 3


@pytest.mark.parametrize("payload, fragment", [
    ({"action": "deploy", "faults": [{"status": 503}]}, "unknown action"),
    ({"action": "start", "faults": [{"status": 99}]}, "status"),
    ({"action": "start", "faults": [{"drop": True, "reset": True}]}, "only one"),
    ({"action": "start", "faults": [{"process": True}]}, "process"),
    ({"action": "start", "faults": [{"explode": True}]}, "unknown fault key"),
    ({"action": "start", "faults": [{}]}, "needs one"),
    ({"action": "start", "faults": [{"retry_after": "1"}]}, "need a 'status'"),
    ({"action": "start", "faults": {"status": 503}}, "list"),
], ids=["action", "status", "two-kinds", "process-alone", "unknown-key", "empty", "retry-without-status", "not-a-list"])
def test_invalid_faults_are_refused_and_none_queued(api, retrace_emulator, payload, fragment):
    reply = api.control("POST", "faults", payload)
    assert reply.status == 400
    assert fragment in reply.message
    with pytest.raises(ValueError):
        retrace_emulator.inject(payload["action"], payload["faults"])
    assert all(not queue for queue in retrace_emulator.pending_faults().values())


def test_reset_endpoint_clears_journal_state_and_faults(api, retrace_emulator):
    api.post("start")
    retrace_emulator.inject("start", [{"status": 503}])
    assert api.control("POST", "reset").status == 200
    assert retrace_emulator.journal() == []
    assert retrace_emulator.deployments() == []
    assert api.post("start").status == 202
    assert retrace_emulator.journal()[0]["seq"] == 1


def test_fault_descriptions():
    assert Fault.from_spec({"status": 503, "retry_after": "2"}).describe() == "status 503 Retry-After: 2"
    assert Fault.from_spec({"process": True, "drop": True}).describe() == "process+drop"
    assert Fault.from_spec({"delay": 0.5, "hang": 3}).describe() == "delay 0.5s, hang 3s"
    assert Fault.from_spec({"hang": True}).to_spec() == {"hang": True}


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
