"""Error mapping of the standard-library transport (its HTTP behaviour is covered against the emulator)."""

import base64
import http.client
import socket
import ssl

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import transport
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_transport import AnsibleUrlsTransport


@pytest.mark.parametrize("reason, kind, text", [
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), transport.TlsFailed, "TLS certificate verification failed"),
    (ssl.SSLError(1, "wrong version number"), transport.TlsFailed, "TLS handshake failed"),
    (socket.timeout("timed out"), transport.TimedOut, "no answer before the timeout"),
    (TimeoutError(), transport.TimedOut, "no answer before the timeout"),
    (http.client.RemoteDisconnected("closed"), transport.ConnectionFailed, "closed the connection without answering"),
    (ConnectionRefusedError(111, "Connection refused"), transport.ConnectionFailed, "connection refused"),
    (ConnectionResetError(104, "reset"), transport.ConnectionFailed, "connection reset by the server"),
    (socket.gaierror(-2, "Name or service not known"), transport.ConnectionFailed, "host name could not be resolved (Name or service not known)"),
    (OSError(113, "No route to host"), transport.ConnectionFailed, "No route to host"),
    ("some text", transport.ConnectionFailed, "some text"),
    (http.client.IncompleteRead(b""), transport.ConnectionFailed, "IncompleteRead"),
])
def test_reasons_map_to_transport_errors(reason, kind, text):
    error = transport.transport_error_for(reason)
    assert error.__class__ is kind and text in str(error)


def test_tls_context_is_verified_by_default():
    assert transport.UrllibTransport()._tls_context().verify_mode == ssl.CERT_REQUIRED  # pylint: disable=protected-access
    assert transport.UrllibTransport(validate_certs=False)._tls_context().verify_mode == ssl.CERT_NONE  # pylint: disable=protected-access


# --- one environment, one outcome: the resolution every transport uses ---------

@pytest.mark.parametrize("environ, expected", [
    ({}, (None, None)),
    ({"SSL_CERT_FILE": "/ca/ssl.pem"}, ("/ca/ssl.pem", None)),
    ({"REQUESTS_CA_BUNDLE": "/ca/requests.pem", "SSL_CERT_FILE": "/ca/ssl.pem"}, ("/ca/requests.pem", None)),
    ({"CURL_CA_BUNDLE": "/ca/curl.pem"}, ("/ca/curl.pem", None)),
    ({"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": "/ca/ssl.pem"}, ("/ca/ssl.pem", None)),
])
def test_ca_bundle_variables_are_read_in_one_order(environ, expected):
    assert transport.ca_locations(None, environ) == expected


def test_ca_path_option_wins_and_directories_become_capath(tmp_path):
    assert transport.ca_locations("/ca/option.pem", {"REQUESTS_CA_BUNDLE": "/ca/env.pem"}) == ("/ca/option.pem", None)
    assert transport.ca_locations(None, {"SSL_CERT_DIR": str(tmp_path)}) == (None, str(tmp_path))


def test_an_unreadable_ca_bundle_is_a_tls_failure(tmp_path):
    with pytest.raises(transport.TlsFailed, match="cannot load the CA bundle"):
        transport.tls_context(True, None, {"SSL_CERT_FILE": str(tmp_path / "missing.pem")})


PROXY = {"https_proxy": "http://proxy.example:3128", "http_proxy": "http://proxy.example:3128"}


@pytest.mark.parametrize("no_proxy, url, bypassed", [
    ("127.0.0.0/8", "http://127.0.0.1:8080/api", True),
    ("127.0.0.0/8", "https://10.0.0.1/api", False),
    ("10.0.0.0/8, example.com", "https://api.example.com/x", True),
    (".example.com", "https://api.example.com/x", True),
    ("example.com", "https://notexample.com/x", False),
    ("*", "https://anything.test/", True),
    ("::1/128", "http://[::1]:8080/", True),
    ("api.example.com:8443", "https://api.example.com:8443/", True),
    ("api.example.com:8443", "https://api.example.com/", False),
    ("", "https://api.example.com/", False),
])
def test_no_proxy_matching(no_proxy, url, bypassed):
    environ = {**PROXY, "no_proxy": no_proxy}
    assert (transport.proxy_for(url, environ) is None) is bypassed


def test_proxy_variables_follow_one_rule():
    # The whole table runs through every transport against real servers: tests/integration/network/test_proxy_decisions.py.
    https = "https://api.example.com/"
    assert transport.proxy_for(https, {"HTTPS_PROXY": "http://upper:1"}) == ("http://upper:1", "HTTPS_PROXY")
    assert transport.proxy_for(https, {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"}) == ("http://lower:1", "https_proxy")
    assert transport.proxy_for(https, {"https_proxy": "", "HTTPS_PROXY": "http://upper:1"}) is None
    assert transport.proxy_for(https, {"ALL_PROXY": "http://all:1", "HTTP_PROXY": "http://plain:1"}) is None
    assert transport.proxy_for("http://127.0.0.1/", {"http_proxy": "http://p:1", "https_proxy": "http://p:1"}) is None


@pytest.mark.parametrize("url, shown, authorization", [
    ("http://proxy.example:3128", "http://proxy.example:3128", None),
    ("proxy.example", "http://proxy.example:80", None),
    ("http://us%40r:p%3Ass@proxy.example:3128/", "http://proxy.example:3128", "Basic dXNAcjpwOnNz"),
    ("http://[::1]:3128", "http://[::1]:3128", None),
])
def test_a_proxy_is_shown_without_its_credentials(url, shown, authorization):
    proxy = transport.Proxy(url, "HTTPS_PROXY")
    assert proxy.shown == shown and "p:ss" not in repr(proxy) and "p%3Ass" not in repr(proxy)
    assert proxy.authorization() == authorization


# --- a proxy URL that cannot be used: named without its credentials, never a traceback ----------------

#: (HTTPS_PROXY, how messages name it, what is wrong); the user name "alice" and the password "Pr0xyPw" must never show
BROKEN_PROXIES = [
    ("http://alice:Pr0xyPw#rest@127.0.0.1:3128", "http://127.0.0.1:3128", "a # / ? in its user name or password must be"),
    ("http://alice:Pr0/xyPw@127.0.0.1:3128", "http://127.0.0.1:3128", "a # / ? in its user name or password must be"),
    ("http://alice:Pr0?xyPw@127.0.0.1:3128", "http://127.0.0.1:3128", "a # / ? in its user name or password must be"),
    ("http://alice:Pr0xyPw@127.0.0.1:notaport", "http://127.0.0.1", "its port is not a number from 1 to 65535"),
    ("http://alice:Pr0xyPw@127.0.0.1:99999", "http://127.0.0.1", "its port is not a number from 1 to 65535"),
    ("http://alice:Pr0xyPw@127.0.0.1:0", "http://127.0.0.1", "its port is not a number from 1 to 65535"),
    ("http://alice:Pr0xyPw@127.0.0.1:\u00b2", "http://127.0.0.1", "its port is not a number from 1 to 65535"),
    ("http://alice:Pr0xyPw@[::1", "http://[::1", "its host is not a valid name or address"),
    ("http://alice:Pr0xyPw@", "http://", "it names no host"),
    ("http://alice:Pr0xyPw@proxy..example:3128", "http://proxy..example:3128", "its host is not a valid name or address"),
    ("alice:Pr0xyPw@proxy.example:notaport", "http://proxy.example", "its port is not a number from 1 to 65535"),
]


@pytest.mark.parametrize("url, shown, problem", BROKEN_PROXIES)
def test_a_proxy_url_that_cannot_be_used_is_named_without_its_credentials(url, shown, problem):
    proxy = transport.Proxy(url, "HTTPS_PROXY")
    assert proxy.problem is not None and problem in proxy.problem
    assert proxy.shown == shown
    for text in (proxy.shown, proxy.problem, repr(proxy)):
        assert "Pr0xyPw" not in text and "alice" not in text


@pytest.mark.parametrize("url, shown, problem", BROKEN_PROXIES)
def test_every_transport_refuses_a_proxy_url_that_cannot_be_used_before_connecting(url, shown, problem):
    for chosen in (transport.UrllibTransport(environ={"HTTPS_PROXY": url}),
                   AnsibleUrlsTransport(environ={"HTTPS_PROXY": url})):
        with pytest.raises(transport.ProxyUnusable) as caught:
            chosen.post("https://api.example.test/api/v1/deployments/start", b"{}", {}, 5.0)
        assert str(caught.value).startswith(f"proxy {shown} (from HTTPS_PROXY): ") and problem in str(caught.value)
        assert "Pr0xyPw" not in str(caught.value) and "alice" not in str(caught.value) and caught.value.sent is False


def test_a_password_with_an_unencoded_at_sign_still_works():
    proxy = transport.Proxy("http://alice:Pr0@xyPw@127.0.0.1:3128", "HTTPS_PROXY")
    assert proxy.problem is None and proxy.shown == "http://127.0.0.1:3128"
    assert proxy.authorization() == "Basic " + base64.b64encode(b"alice:Pr0@xyPw").decode()


@pytest.mark.parametrize("no_proxy", ["api.example.com:\u00b2", "[::1]:\u00b2", "api.example.com:99999999999999999999"])
def test_a_no_proxy_port_that_is_no_number_never_matches_and_never_raises(no_proxy):
    assert transport.bypasses_proxy("api.example.com", 443, {"no_proxy": no_proxy}) is False


def test_whether_a_request_may_have_landed_is_said_by_the_error():
    # ConnectionFailed: refused, unresolvable... unless the transport says it came after sending
    assert transport.ConnectionFailed("connection refused").sent is False
    assert transport.ConnectionFailed("the server closed the connection", sent=True).sent is True
    assert transport.TimedOut("no answer within 3.0 s").sent is True
    assert transport.TlsFailed("x").sent is False and transport.ProxyUnusable("x").sent is False
