"""Error mapping of the standard-library transport (its HTTP behaviour is covered against the emulator)."""

import http.client
import socket
import ssl

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import transport


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


# --- one environment, one outcome (issue #10 case 17): the resolution every transport uses ---------

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
