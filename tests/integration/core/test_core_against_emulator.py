"""The core's client and wrapper against the real emulator over loopback: every contract row, every fault.

No patched HTTP here: the standard-library transport talks to a real server.
"""

import email.utils
import json
import socket
import time

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils.client import DeploymentClient, RetryPolicy, create_client
from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import (
    ApiUnreachable, AuthenticationRejected, BadTransition, RequestRejected, UnknownAppOrEnvironment)
from ansible_collections.stackify.retrace.plugins.module_utils.settings import VERSION, ApiSettings
from ansible_collections.stackify.retrace.plugins.module_utils.tracking import tracked_deployment
from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport
from retrace_emulator import DEMO_API_KEY, DEMO_APP

FAST_RETRY = RetryPolicy(max_attempts=6, backoff_base=0.05, backoff_cap=0.2)


def deployment(version="1.0.0", **extra):
    return Deployment.create(app_name=DEMO_APP, environment_name="Production", version=version, **extra)


def client_for(emulator, key=DEMO_API_KEY, timeout=2.0, deadline=10.0, retry=FAST_RETRY, url=None):
    settings = ApiSettings.create(api_key=key, api_url=url or emulator.url, timeout=timeout, deadline=deadline)
    return DeploymentClient(settings, UrllibTransport(), entry_point="integration", retry=retry)


def statuses(emulator, action=None):
    return [entry["status"] for entry in emulator.requests(action)]


# --- accepted -------------------------------------------------------------------------------

def test_start_complete_cycle_with_all_fields_and_unicode(retrace_emulator):
    client = client_for(retrace_emulator)
    full = deployment("2.0-ß", name="Réléase ☕", branch="main", commit="0a1b2c", uri="https://ci.example.com/b/1")
    assert client.start(full).status == 202
    assert client.complete(full).status == 202
    start, complete = retrace_emulator.requests()
    assert start["body"] == full.payload("start") and start["body"]["Name"] == "Réléase ☕"
    assert complete["body"]["Version"] == "2.0-ß"
    assert start["headers"]["User-Agent"].startswith(f"stackify-retrace/{VERSION} (integration;")
    assert start["headers"]["Content-Type"] == "application/json"
    assert not start["warnings"] and not complete["warnings"]


def test_cancel_sends_only_identity_and_the_emulator_has_no_warning(retrace_emulator):
    client = client_for(retrace_emulator)
    client.start(deployment(branch="main"))
    client.cancel(deployment(branch="main"))
    cancel = retrace_emulator.requests("cancel")[0]
    assert cancel["body"] == {"Version": "1.0.0", "AppName": DEMO_APP, "EnvironmentName": "Production"}
    assert cancel["status"] == 202 and not cancel["warnings"]


def test_redeploy_after_an_end_is_allowed(retrace_emulator):
    client = client_for(retrace_emulator)
    for end in (client.complete, client.cancel):
        client.start(deployment())
        end(deployment())
    assert statuses(retrace_emulator) == [202, 202, 202, 202]


def test_the_key_never_reaches_the_journal(retrace_emulator):
    client = client_for(retrace_emulator)
    client.start(deployment())
    assert DEMO_API_KEY not in json.dumps(retrace_emulator.journal())


# --- rejections: fail at once -----------------------------------------------------------------

def test_unknown_key_is_401_once(retrace_emulator):
    with pytest.raises(AuthenticationRejected) as caught:
        client_for(retrace_emulator, key="not-a-real-key").start(deployment())
    assert caught.value.attempts == 1 and statuses(retrace_emulator) == [401]
    assert "not-a-real-key" not in str(caught.value)


def test_unknown_app_or_environment_is_400_with_guidance(retrace_emulator):
    client = client_for(retrace_emulator)
    with pytest.raises(UnknownAppOrEnvironment) as caught:
        client.start(Deployment.create(app_name="NoSuchApp", environment_name="Production", version="1"))
    assert "create them in Retrace" in str(caught.value) and "NoSuchApp" in str(caught.value)
    assert statuses(retrace_emulator) == [400]


@pytest.mark.parametrize("action, first", [("cancel", None), ("start", "start"), ("cancel", "complete")])
def test_bad_transitions_are_409_once(retrace_emulator, action, first):
    client = client_for(retrace_emulator)
    client.start(deployment())
    if first == "complete":
        client.complete(deployment())
    if first is None:
        client.cancel(deployment())
    with pytest.raises(BadTransition) as caught:
        client.send(action, deployment())
    assert caught.value.status == 409 and caught.value.attempts == 1
    assert statuses(retrace_emulator)[-1] == 409


@pytest.mark.parametrize("first", [None, "cancel", "complete"])
def test_a_complete_when_not_in_progress_is_a_one_shot_deployment(retrace_emulator, first):
    client = client_for(retrace_emulator)
    if first:
        client.start(deployment())
        client.send(first, deployment())
    assert client.complete(deployment("1.0.0", branch="main")).status == 202
    assert retrace_emulator.deployments()[0]["state"] == "completed"


def test_injected_4xx_is_not_retried(retrace_emulator):
    retrace_emulator.inject("start", [{"status": 403}])
    with pytest.raises(RequestRejected, match="HTTP 403"):
        client_for(retrace_emulator).start(deployment())
    assert statuses(retrace_emulator) == [403]


# --- faults: retried within the deadline ----------------------------------------------------

@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 500}, {"status": 502}, {"status": 504}, {"status": 429}, {"status": 408},
                                   {"drop": True}, {"reset": True}])
def test_transient_failures_twice_then_accepted(retrace_emulator, fault):
    retrace_emulator.inject("start", [fault, fault])
    result = client_for(retrace_emulator).start(deployment())
    assert result.attempts == 3 and result.status == 202
    assert len(retrace_emulator.requests("start")) == 3


def test_retry_after_seconds_is_waited_for(retrace_emulator):
    retrace_emulator.inject("start", [{"status": 503, "retry_after": "1"}])
    began = time.monotonic()
    assert client_for(retrace_emulator).start(deployment()).attempts == 2
    assert time.monotonic() - began >= 1.0


def test_retry_after_http_date_is_waited_for(retrace_emulator):
    retrace_emulator.inject("start", [{"status": 429, "retry_after": email.utils.formatdate(time.time() + 2, usegmt=True)}])
    began = time.monotonic()
    assert client_for(retrace_emulator).start(deployment()).attempts == 2
    assert time.monotonic() - began >= 0.9  # HTTP dates have one-second resolution


def test_hanging_server_is_bounded_by_the_deadline(retrace_emulator):
    retrace_emulator.inject("*", [{"hang": True}] * 10)
    began = time.monotonic()
    with pytest.raises(ApiUnreachable) as caught:
        client_for(retrace_emulator, timeout=0.5, deadline=1.5).start(deployment())
    elapsed = time.monotonic() - began
    assert elapsed < 2.5 and "no answer within" in str(caught.value)
    assert caught.value.attempts >= 2


def test_refused_connection_ends_in_a_clear_unreachable_error():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    settings = ApiSettings.create(api_key=DEMO_API_KEY, api_url=f"http://127.0.0.1:{port}", deadline=2)
    client = DeploymentClient(settings, UrllibTransport(), retry=RetryPolicy(max_attempts=3, backoff_base=0.05))
    with pytest.raises(ApiUnreachable) as caught:
        client.start(deployment())
    assert str(caught.value).startswith(f"Retrace API at http://127.0.0.1:{port} unreachable: start failed after 3 attempt(s)")
    assert "connection refused" in str(caught.value)


def test_409_on_a_retried_start_counts_as_success(retrace_emulator):
    # The first attempt lands but its answer is lost; the retry then meets "already in progress".
    retrace_emulator.inject("start", [{"process": True, "drop": True}])
    result = client_for(retrace_emulator).start(deployment())
    assert result.recovered_from_conflict and result.attempts == 2
    assert statuses(retrace_emulator, "start")[-1] == 409


def test_slow_but_within_timeout_is_one_attempt(retrace_emulator):
    retrace_emulator.inject("start", [{"delay": 0.3}])
    assert client_for(retrace_emulator, timeout=2).start(deployment()).attempts == 1


def test_tls_against_a_plain_http_server_is_not_retried(retrace_emulator):
    # https to a plain-HTTP port: the handshake fails; retrying cannot help.
    url = retrace_emulator.url.replace("http://", "https://")
    with pytest.raises(ApiUnreachable, match="failed the TLS check"):
        client_for(retrace_emulator, url=url).start(deployment())


# --- the wrapper ----------------------------------------------------------------------------

def test_wrapper_completes_on_success_and_cancels_on_failure(retrace_emulator):
    client = client_for(retrace_emulator)
    with tracked_deployment(client, deployment("ok")):
        pass
    with pytest.raises(KeyboardInterrupt):
        with tracked_deployment(client, deployment("interrupted")):
            raise KeyboardInterrupt
    assert [(e["action"], e["body"]["Version"], e["status"]) for e in retrace_emulator.requests()] == [
        ("start", "ok", 202), ("complete", "ok", 202), ("start", "interrupted", 202), ("cancel", "interrupted", 202)]


def test_wrapper_keeps_the_original_error_when_cancel_fails(retrace_emulator):
    retrace_emulator.inject("cancel", [{"status": 401}])
    with pytest.raises(ZeroDivisionError) as caught:
        with tracked_deployment(client_for(retrace_emulator), deployment()):
            raise ZeroDivisionError("deploy step failed")
    assert "Retrace cancel also failed" in caught.value.__notes__[0]


def test_create_client_from_options_reaches_the_emulator(retrace_emulator):
    client, built = create_client({"api_key": DEMO_API_KEY, "api_url": retrace_emulator.url + "/", "app_name": DEMO_APP,
                                   "environment_name": "Staging", "version": "9"}, UrllibTransport(), entry_point="integration")
    assert client.start(built).status == 202
