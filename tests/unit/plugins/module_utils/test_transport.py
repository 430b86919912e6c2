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


def test_tls_context_is_verified_by_default_and_built_only_for_https():
    verified = transport.UrllibTransport()
    assert verified._tls_context().verify_mode == ssl.CERT_REQUIRED  # pylint: disable=protected-access
    assert transport.UrllibTransport(validate_certs=False)._tls_context().verify_mode == ssl.CERT_NONE  # pylint: disable=protected-access
    verified._opener("http://127.0.0.1:1/")  # pylint: disable=protected-access
    assert list(verified._openers) == ["http"]  # pylint: disable=protected-access
