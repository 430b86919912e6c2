"""An answer that arrives damaged: once its status line came whole, the status is the answer; before that, there was
no answer, and the request may have landed.  Nothing but the client's own errors leaves the client.

A real server on loopback sends each answer byte for byte (``HostileApi`` with the answer as its mode) and hangs up.
Both transports, then the client on top of them.
"""

from __future__ import annotations

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import transport
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_transport import AnsibleUrlsTransport
from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable, RequestRejected
from loopback_servers import BrokenTls, HostileApi, certificate_authority

KEY = "zq7-partial-key-0123456789"
TRANSPORTS = {"urllib": transport.UrllibTransport, "ansible": AnsibleUrlsTransport}
START_PATH = "/api/v1/deployments/start"

#: answers whose status line came whole: the status stands, whatever follows it
ANSWERED = {
    "202, chunked body cut off": b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    "202, body shorter than its Content-Length": b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{\"Mess",
    "202, 101 headers": b"HTTP/1.1 202 Accepted\r\n" + b"X-Header: value\r\n" * 101 + b"\r\n",
    "202, a header line over 64 KiB": b"HTTP/1.1 202 Accepted\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    "202, a malformed chunk size": b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
}
#: answers that never had a whole status line: no answer, and the request was sent
NO_ANSWER = {
    "closed after the request": b"",
    "a status line cut off": b"HTTP/1.1 20",
    "not HTTP": b"SSH-2.0-OpenSSH_9.2\r\n",
    "a status line over 64 KiB": b"HTTP/1.1 202 " + b"a" * 70_000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("transport_name", TRANSPORTS)
@pytest.mark.parametrize("case", ANSWERED)
def test_a_whole_status_line_is_the_answer_whatever_follows(transport_name, case):
    with HostileApi({"*": ANSWERED[case]}) as api:
        response = TRANSPORTS[transport_name]().post(api.url + START_PATH, b"{}", {"Authorization": f"ApiKey {KEY}"}, 5.0)

    assert response.status == 202 and response.cut, response
    assert "\n" not in response.cut


@pytest.mark.parametrize("transport_name", TRANSPORTS)
@pytest.mark.parametrize("case", NO_ANSWER)
def test_no_whole_status_line_is_no_answer_and_may_have_landed(transport_name, case):
    with HostileApi({"*": NO_ANSWER[case]}) as api:
        with pytest.raises(transport.TransportError) as caught:
            TRANSPORTS[transport_name]().post(api.url + START_PATH, b"{}", {"Authorization": f"ApiKey {KEY}"}, 5.0)

    assert caught.value.sent is True, caught.value
    assert len(api.exchanges) == 1  # the request did reach the server


def _client(url: str, logs: list | None = None, deadline: float = 5.0):
    log = logs.append if logs is not None else None
    return create_client({"api_key": KEY, "api_url": url, "app_name": "Shop", "environment_name": "Production",
                          "version": "1.0", "timeout": 2, "deadline": deadline}, transport.UrllibTransport(),
                         entry_point="test", log=log)


@pytest.mark.parametrize("case", ANSWERED)
def test_the_client_takes_a_damaged_202_as_accepted_at_the_first_attempt(case):
    with HostileApi({"*": ANSWERED[case]}) as api:
        logs: list = []
        client, deployment = _client(api.url, logs)
        result = client.start(deployment)

    assert result.status == 202 and result.attempts == 1 and len(api.exchanges) == 1, logs
    assert any("the status is the answer" in line for line in logs), logs


@pytest.mark.parametrize("case", NO_ANSWER)
def test_the_client_says_an_answerless_start_may_have_landed(case):
    with HostileApi({"*": NO_ANSWER[case]}) as api:
        client, deployment = _client(api.url, deadline=1.0)
        with pytest.raises(ApiUnreachable) as caught:
            client.start(deployment)

    assert caught.value.may_have_landed is True, caught.value


@pytest.mark.parametrize("retry_after", [b"\xb2", b"\xd9\xa3", b"1e3", b"-1"])
def test_a_retry_after_that_is_not_ascii_digits_falls_back_to_backoff(retry_after):
    # b"\xb2" reads as "²" (http.client decodes headers as latin-1): str.isdigit() is true for it, float() is not.
    answer = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + retry_after + b"\r\nContent-Length: 0\r\n\r\n"
    with HostileApi({"*": answer}) as api:
        client, deployment = _client(api.url, deadline=1.5)
        with pytest.raises(ApiUnreachable) as caught:
            client.start(deployment)

    assert "HTTP 503" in str(caught.value) and len(api.exchanges) >= 2, caught.value


def test_a_key_the_body_limit_cuts_in_two_is_not_shown_in_part():
    body = b"bad key " + b" " * 8172 + KEY.encode()  # the 8 KiB limit falls inside the key
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with HostileApi({"*": answer}) as api:
        client, deployment = _client(api.url)
        with pytest.raises(RequestRejected) as caught:
            client.start(deployment)

    message = str(caught.value)
    assert "Retrace said: bad key" in message, message
    assert not [KEY[:length] for length in range(3, len(KEY) + 1) if KEY[:length] in message], message


def test_a_tls_connection_that_breaks_after_the_request_is_no_answer_not_a_certificate_problem(tmp_path):
    # The certificate was checked in the handshake; a TLS error after the request went out is a broken connection:
    # no answer, which may have landed and is retried -- not "failed the TLS check", which is never retried.
    ca_path, server_context = certificate_authority(tmp_path)
    with BrokenTls(server_context) as api:
        chosen = transport.UrllibTransport(environ={"SSL_CERT_FILE": str(ca_path)})
        with pytest.raises(transport.TransportError) as caught:
            chosen.post(api.url + START_PATH, b"{}", {"Authorization": f"ApiKey {KEY}"}, 5.0)

    assert isinstance(caught.value, transport.ConnectionFailed), caught.value
    assert caught.value.sent is True and api.requests == 1, caught.value
