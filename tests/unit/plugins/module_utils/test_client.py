import base64
import email.utils
import http.client
import json
import types

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils.client import CallResult, DeploymentClient, RetryPolicy, create_client
from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
from ansible_collections.stackify.retrace.plugins.module_utils.errors import (
    ApiUnreachable, AuthenticationRejected, BadTransition, InvalidInput, RequestRejected, RetraceError, UnknownAppOrEnvironment)
from ansible_collections.stackify.retrace.plugins.module_utils.settings import VERSION, ApiSettings
from ansible_collections.stackify.retrace.plugins.module_utils.transport import ConnectionFailed, ProxyUnusable, TimedOut, TlsFailed

from ansible_collections.stackify.retrace.tests.unit.plugins.module_utils.fakes import FakeClock, ScriptedTransport, answer

KEY = "k3y-0f-the-account"
DEPLOYMENT = Deployment.create(app_name="Shop", environment_name="Production", version="1.4.2", branch="main")


def make_client(*script, timeout=10.0, deadline=30.0, cost=0.0, draw=1.0, retry=RetryPolicy()):
    clock = FakeClock()
    transport = ScriptedTransport(*script, clock=clock, cost=cost)
    logs = []
    settings = ApiSettings.create(api_key=KEY, api_url="https://api.example.test/", timeout=timeout, deadline=deadline)
    client = DeploymentClient(settings, transport, entry_point="unit", retry=retry, log=logs.append,
                              clock=clock, wall_clock=lambda: 1_700_000_000.0, sleep=clock.sleep, draw=lambda: draw)
    return types.SimpleNamespace(client=client, transport=transport, clock=clock, logs=logs)


def test_request_is_built_to_the_wire_format():
    harness = make_client(answer(202))
    client, transport = harness.client, harness.transport
    result = client.start(DEPLOYMENT)
    call = transport.calls[0]
    assert call["url"] == "https://api.example.test/api/v1/deployments/start"
    assert call["headers"]["Authorization"] == f"ApiKey {KEY}"
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["headers"]["User-Agent"].startswith(f"stackify-retrace/{VERSION} (unit; python ")
    assert json.loads(call["body"]) == {"Name": "1.4.2", "Branch": "main", "Version": "1.4.2", "AppName": "Shop", "EnvironmentName": "Production"}
    assert call["timeout"] == 10.0
    assert result == CallResult("start", 202, 1, 0.0, DEPLOYMENT.payload("start"), "Accepted", False)


def test_unicode_body_is_utf8_not_escaped():
    harness = make_client(answer(202))
    client, transport = harness.client, harness.transport
    client.complete(Deployment.create(app_name="Café ☕", environment_name="東京", version="1"))
    assert "Café ☕".encode() in transport.calls[0]["body"] and "東京".encode() in transport.calls[0]["body"]


def test_cancel_goes_to_cancel_with_identity_only():
    harness = make_client(answer(202, b""))
    client, transport = harness.client, harness.transport
    result = client.cancel(DEPLOYMENT)
    assert transport.calls[0]["url"].endswith("/cancel")
    assert json.loads(transport.calls[0]["body"]) == {"Version": "1.4.2", "AppName": "Shop", "EnvironmentName": "Production"}
    assert result.server_message is None


def test_request_preview_has_no_key():
    harness = make_client()
    client = harness.client
    preview = client.request("start", DEPLOYMENT)
    assert preview["url"].endswith("/start") and KEY not in repr(preview)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_success(status):
    harness = make_client(answer(status))
    client = harness.client
    assert client.start(DEPLOYMENT).status == status


def test_401_fails_at_once_without_showing_the_key_even_if_echoed():
    harness = make_client(answer(401, json.dumps({"Message": f"bad key {KEY}"}).encode()))
    client, transport = harness.client, harness.transport
    with pytest.raises(AuthenticationRejected) as caught:
        client.start(DEPLOYMENT)
    assert len(transport.calls) == 1 and KEY not in str(caught.value)
    assert "rejected the API key (HTTP 401)" in str(caught.value) and caught.value.attempts == 1


def test_400_shows_the_server_message_redacted():
    harness = make_client(answer(400, json.dumps({"Message": f"Version is required ({KEY})"}).encode()))
    client, transport = harness.client, harness.transport
    with pytest.raises(RequestRejected) as caught:
        client.start(DEPLOYMENT)
    assert caught.type is RequestRejected and len(transport.calls) == 1
    assert "HTTP 400" in str(caught.value) and "Version is required (********)" in str(caught.value)
    assert caught.value.server_message == "Version is required (********)"


@pytest.mark.parametrize("message", [
    "Unknown AppName 'Shop' or EnvironmentName 'Production' for this account",
    "Application not found", "Environment does not exist", "AppName and EnvironmentName must match an existing App",
])
def test_400_about_unknown_app_or_environment_tells_what_to_do(message):
    harness = make_client(answer(400, json.dumps({"message": message}).encode()))
    client = harness.client
    with pytest.raises(UnknownAppOrEnvironment) as caught:
        client.start(DEPLOYMENT)
    assert "create them in Retrace or correct app_name / environment_name" in str(caught.value)


@pytest.mark.parametrize("action, hint", [("start", "already in progress"), ("complete", "not in progress"), ("cancel", "not in progress")])
def test_409_on_first_attempt_is_a_bad_transition(action, hint):
    harness = make_client(answer(409, b'{"Message": "Deployment state conflict"}'))
    client, transport = harness.client, harness.transport
    with pytest.raises(BadTransition) as caught:
        client.send(action, DEPLOYMENT)
    assert hint in str(caught.value) and "Deployment state conflict" in str(caught.value) and len(transport.calls) == 1


@pytest.mark.parametrize("status", [403, 404, 405, 410, 413, 422, 301, 302, 100])
def test_other_statuses_fail_at_once(status):
    harness = make_client(answer(status, b"<html>nope</html>"))
    client, transport = harness.client, harness.transport
    with pytest.raises(RequestRejected, match=f"HTTP {status}"):
        client.start(DEPLOYMENT)
    assert len(transport.calls) == 1


@pytest.mark.parametrize("failure", [answer(503), answer(500), answer(502), answer(504), answer(408), answer(429),
                                     ConnectionFailed("connection refused"), ConnectionFailed("connection reset by the server", sent=True),
                                     TimedOut("x")])
def test_retryable_failures_are_retried_then_succeed(failure):
    harness = make_client(failure, failure, answer(202))
    client, transport, clock, logs = harness.client, harness.transport, harness.clock, harness.logs
    result = client.start(DEPLOYMENT)
    assert result.attempts == 3 and len(transport.calls) == 3
    assert clock.sleeps == [0.5, 1.0]  # draw=1.0 -> the full backoff ceiling
    assert "attempt 1 failed" in logs[0] and "retrying in 0.5 s" in logs[0]


def test_backoff_is_jittered_exponential_and_capped():
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=8.0)
    assert [policy.backoff(n, 1.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [policy.backoff(n, 0.0) for n in range(1, 4)] == [0.25, 0.5, 1.0]


def test_retry_after_seconds_is_honoured():
    harness = make_client(answer(429, retry_after="3"), answer(202))
    client, clock = harness.client, harness.clock
    client.start(DEPLOYMENT)
    assert clock.sleeps == [3.0]


def test_retry_after_http_date_is_honoured():
    when = email.utils.formatdate(1_700_000_000.0 + 4, usegmt=True)
    harness = make_client(answer(503, retry_after=when), answer(202))
    client, clock = harness.client, harness.clock
    client.start(DEPLOYMENT)
    assert clock.sleeps == [4.0]


def test_retry_after_in_the_past_means_now_and_garbage_falls_back_to_backoff():
    past = email.utils.formatdate(1_600_000_000.0, usegmt=True)
    harness = make_client(answer(503, retry_after=past), answer(503, retry_after="soon"), answer(503, retry_after=" "), answer(202))
    client, clock = harness.client, harness.clock
    client.start(DEPLOYMENT)
    assert clock.sleeps == [0.0, 1.0, 2.0]


def test_retry_after_beyond_the_deadline_gives_up_at_once():
    harness = make_client(answer(503, retry_after="120"), answer(202), deadline=30)
    client, transport, clock = harness.client, harness.transport, harness.clock
    with pytest.raises(ApiUnreachable) as caught:
        client.start(DEPLOYMENT)
    assert len(transport.calls) == 1 and clock.sleeps == []
    assert "asked to wait 120 s, past the deadline" in str(caught.value)


@pytest.mark.parametrize("lost", [TimedOut("x"), answer(502), answer(504), answer(500)], ids=["no-answer", "502", "504", "500"])
def test_409_on_a_retry_after_an_attempt_that_may_have_landed_counts_as_success(lost):
    harness = make_client(lost, answer(409, b'{"Message": "already in progress"}'))
    client, transport, logs = harness.client, harness.transport, harness.logs
    result = client.start(DEPLOYMENT)
    assert result.recovered_from_conflict and result.status == 409 and result.attempts == 2
    assert "an earlier attempt got no answer and landed" in logs[-1]


@pytest.mark.parametrize("answered", [503, 429, 408])
def test_409_on_a_retry_after_answered_unprocessed_attempts_is_someone_else_s_start(answered):
    """Found by a breaker: a slice whose first start got 503 took a sibling's start for its own, and its rescue
    cancelled the sibling's live deployment.  An answered 503/429/408 was not processed: the 409 is not ours."""
    harness = make_client(answer(answered), answer(409, b'{"Message": "already in progress"}'))
    with pytest.raises(BadTransition) as caught:
        harness.client.start(DEPLOYMENT)
    assert caught.value.status == 409 and caught.value.attempts == 2


def test_one_attempt_that_may_have_landed_among_answered_ones_is_enough():
    harness = make_client(answer(503), TimedOut("x"), answer(503), answer(409))
    assert harness.client.start(DEPLOYMENT).recovered_from_conflict


def test_gives_up_after_max_attempts_with_a_clear_message():
    harness = make_client(*[answer(503)] * 3, retry=RetryPolicy(max_attempts=3))
    client, transport = harness.client, harness.transport
    with pytest.raises(ApiUnreachable) as caught:
        client.start(DEPLOYMENT)
    assert len(transport.calls) == 3 and caught.value.attempts == 3
    message = str(caught.value)
    assert message.startswith("Retrace API at https://api.example.test unreachable: start failed after 3 attempt(s) over 1.5 s")
    assert "last problem: HTTP 503: Accepted" in message


def test_overall_deadline_bounds_attempts_and_shrinks_the_last_timeout():
    # every attempt hangs for its whole timeout: 4 s each, within 10 s total
    clock = FakeClock()
    timeouts = []

    class Hanging:
        def post(self, url, body, headers, timeout):
            timeouts.append(timeout)
            clock.advance(timeout)
            raise TimedOut(f"no answer within {timeout:.1f} s")  # the transport's words

    settings = ApiSettings.create(api_key=KEY, api_url="https://api.example.test", timeout=4, deadline=10)
    client = DeploymentClient(settings, Hanging(), clock=clock, sleep=clock.sleep, draw=lambda: 1.0)
    with pytest.raises(ApiUnreachable) as caught:
        client.start(DEPLOYMENT)
    assert timeouts == [4.0, 4.0, pytest.approx(0.5)]
    assert clock.now - 1000.0 <= 10.0 + 1e-9
    assert "no answer within 0.5 s" in str(caught.value) and caught.value.elapsed == pytest.approx(10.0)


def test_tls_failures_are_not_retried():
    harness = make_client(TlsFailed("TLS certificate verification failed: self-signed certificate"))
    client, transport = harness.client, harness.transport
    with pytest.raises(ApiUnreachable, match="failed the TLS check: TLS certificate verification failed: self-signed certificate"):
        client.start(DEPLOYMENT)
    assert len(transport.calls) == 1


def test_connection_error_text_is_redacted():
    harness = make_client(ConnectionFailed(f"proxy said {KEY}"), retry=RetryPolicy(max_attempts=1))
    client = harness.client
    with pytest.raises(ApiUnreachable) as caught:
        client.start(DEPLOYMENT)
    assert KEY not in str(caught.value) and "proxy said ********" in str(caught.value)


def test_non_json_and_long_server_messages_are_trimmed_to_one_line():
    harness = make_client(answer(400, ("line one\nline two " + "x" * 500).encode()))
    client = harness.client
    with pytest.raises(RequestRejected) as caught:
        client.start(DEPLOYMENT)
    assert caught.value.server_message.startswith("line one line two") and len(caught.value.server_message) == 300


def test_json_without_a_message_field_is_shown_as_text():
    harness = make_client(answer(400, b'{"errors": ["Version"]}'))
    client = harness.client
    with pytest.raises(RequestRejected, match='Retrace said: {"errors": \\["Version"\\]}'):
        client.start(DEPLOYMENT)


def test_create_client_validates_everything_before_building():
    client, deployment = create_client({"api_key": KEY, "api_url": "http://127.0.0.1:1", "app_name": "Shop", "environment_name": "Prod",
                                        "version": "1", "timeout": 2, "validate_certs": True, "deadline": None}, ScriptedTransport(), entry_point="x")
    assert client.settings.timeout == 2.0 and client.settings.deadline == 30.0 and deployment.version == "1"
    with pytest.raises(InvalidInput, match="^version: is required"):
        create_client({"api_key": KEY, "app_name": "Shop", "environment_name": "Prod"}, ScriptedTransport(), entry_point="x")
    with pytest.raises(InvalidInput, match="^api_key: is required"):
        create_client({"app_name": "Shop", "environment_name": "Prod", "version": "1"}, ScriptedTransport(), entry_point="x")


@pytest.mark.parametrize("script, landed", [
    ((TimedOut("x"), *[answer(503)] * 2), True),  # sent, no answer, then 503s: found by a breaker (no guard was armed)
    ((TimedOut("no connection within 1.0 s", sent=False), answer(503), answer(503)), False),  # time ran out connecting: never sent
    ((ConnectionFailed("connection reset by the server", sent=True), answer(503), answer(503)), True),
    ((answer(502), answer(503), answer(503)), True),
    ((ConnectionFailed("connection refused"), answer(503), answer(503)), False),  # never sent
    ((answer(503), answer(429), answer(503)), False),  # answered: not processed
])
def test_an_unreachable_api_says_whether_any_attempt_may_have_landed(script, landed):
    harness = make_client(*script, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ApiUnreachable) as caught:
        harness.client.start(DEPLOYMENT)
    assert caught.value.may_have_landed is landed


def test_an_attempt_never_gets_a_timeout_of_zero_or_less():
    """A backoff sleep that overshoots the deadline (a loaded machine) must not hand the transport a negative
    timeout: urllib raises ValueError for it, which is no RetraceError and would crash the entry point."""
    harness = make_client(ConnectionFailed("connection refused"), ConnectionFailed("connection refused"),
                          deadline=1.0, draw=0.0)
    original_sleep = harness.client._sleep

    def overshooting_sleep(seconds):
        original_sleep(seconds + 5.0)  # descheduled far past the deadline

    harness.client._sleep = overshooting_sleep
    with pytest.raises(ApiUnreachable):
        harness.client.start(DEPLOYMENT)
    timeouts = [call["timeout"] for call in harness.transport.calls]
    assert len(timeouts) == 2 and all(timeout > 0 for timeout in timeouts), timeouts


def test_a_slow_answer_is_reported_in_the_transport_s_words():
    harness = make_client(*[TimedOut("no answer within 3.0 s")] * 6)
    with pytest.raises(ApiUnreachable) as caught:
        harness.client.start(DEPLOYMENT)
    assert "last problem: no answer within 3.0 s" in str(caught.value)
    assert caught.value.may_have_landed is True


@pytest.mark.parametrize("failure, landed", [
    # what the transport says decides, never its words (a breaker's 202 with a cut body was taken for "never sent")
    (ConnectionFailed("IncompleteRead(0 bytes read)", sent=True), True),
    (ConnectionFailed("got more than 100 headers", sent=True), True),
    (ConnectionFailed("the server closed the connection without answering"), False),
    (ConnectionFailed("connection reset by the server"), False),
    (TimedOut("no answer within 3.0 s", sent=False), False),
])
def test_whether_an_attempt_may_have_landed_is_the_transport_error_s_sent_attribute(failure, landed):
    harness = make_client(failure, answer(409, b'{"Message": "already in progress"}'))
    if landed:
        assert harness.client.start(DEPLOYMENT).recovered_from_conflict
    else:
        with pytest.raises(BadTransition):
            harness.client.start(DEPLOYMENT)


@pytest.mark.parametrize("unexpected", [
    ValueError("Port could not be cast to integer value as 'x'"), UnicodeError("label too long"),
    http.client.IncompleteRead(b""), http.client.LineTooLong("header line"), LookupError("unknown encoding: idna"),
    KeyError("x"), RuntimeError("can't start new thread"),
])
def test_nothing_but_a_retrace_error_leaves_the_client(unexpected):
    harness = make_client(*[unexpected] * 3, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetraceError) as caught:
        harness.client.start(DEPLOYMENT)
    assert isinstance(caught.value, ApiUnreachable) and caught.value.attempts == 3
    assert type(unexpected).__name__ in str(caught.value) and "\n" not in str(caught.value)
    # Nothing says whether a foreign transport's failure came before or after sending: it may have landed.
    assert caught.value.may_have_landed is True


def test_a_foreign_error_that_says_it_was_never_sent_is_believed():
    unsent = ValueError("bad URL")
    unsent.sent = False
    harness = make_client(unsent, unsent, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(ApiUnreachable) as caught:
        harness.client.start(DEPLOYMENT)
    assert caught.value.may_have_landed is False


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "\uff13", "1e3", "-1", "1.5", "0x10"])
def test_retry_after_in_seconds_is_ascii_digits_only(value):
    # "²" (b"\xb2" decoded as latin-1, as http.client decodes headers): str.isdigit() is true, float() fails.
    harness = make_client(answer(503, retry_after=value), answer(202))
    assert harness.client.start(DEPLOYMENT).attempts == 2
    assert harness.clock.sleeps == [0.5]  # the backoff, as for no Retry-After


def test_an_unusable_proxy_fails_at_once_naming_it():
    harness = make_client(ProxyUnusable("proxy socks5://127.0.0.1:1080 (from HTTPS_PROXY): only http:// proxies are supported"))
    with pytest.raises(ApiUnreachable) as caught:
        harness.client.start(DEPLOYMENT)
    assert len(harness.transport.calls) == 1 and caught.value.may_have_landed is False
    assert str(caught.value) == ("Retrace API at https://api.example.test not tried: proxy socks5://127.0.0.1:1080 (from HTTPS_PROXY): "
                                 "only http:// proxies are supported.")


def test_a_body_cut_by_the_attempt_s_time_still_leaves_the_status_as_the_answer():
    harness = make_client(answer(202, b'{"Mess')._replace(cut="its body still arriving after 10.0 s"))
    result = harness.client.start(DEPLOYMENT)
    assert result.status == 202 and result.attempts == 1
    assert harness.logs == ["Retrace start: HTTP 202, its body still arriving after 10.0 s: cut there (the status is the answer)"]


@pytest.mark.parametrize("tail", [
    KEY[:12], KEY[:3], KEY[:12].upper(), " ".join(KEY[:8]), KEY[:6] + "\\n" + KEY[6:12],
    base64.b64encode(f"ApiKey {KEY}".encode()).decode()[:20], base64.b64encode(KEY.encode()).decode()[:-5],
], ids=["prefix", "3 characters", "upper case", "split by spaces", "split by a JSON escape", "base64 of the header", "base64"])
def test_a_key_cut_in_two_at_the_end_of_a_cut_body_is_not_shown_in_part(tail):
    body = ("bad key " + " " * 8000 + tail).encode()
    harness = make_client(answer(400, body)._replace(cut="its body longer than 8192 bytes"))
    with pytest.raises(RequestRejected) as caught:
        harness.client.start(DEPLOYMENT)
    message = str(caught.value)
    assert message.startswith("Retrace rejected the start request (HTTP 400). Retrace said: bad key"), message
    left = message.partition("bad key")[2]
    assert tail not in message and KEY[:3].lower() not in left.lower(), message
    for start in range(len(left)):  # nor any run that decodes to 3 bytes of the key, at any alignment
        chunk = left[start:start + 8]
        try:
            decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        except ValueError:
            continue
        assert not any(KEY.encode()[i:i + 3] in decoded for i in range(len(KEY) - 2)), (chunk, message)


def test_a_whole_body_keeps_its_end():
    harness = make_client(answer(400, b"Version is required"))
    with pytest.raises(RequestRejected, match="Retrace said: Version is required$"):
        harness.client.start(DEPLOYMENT)
