# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How bytes reach Retrace.  The client depends only on the small :class:`Transport` interface.

A transport sends one POST and returns a :class:`Response` for *any* HTTP status; it raises
:class:`TimedOut`, :class:`ConnectionFailed` or :class:`TlsFailed` when no HTTP answer came back.
Entry points pass the transport that suits them (``ansible.module_utils.urls`` in Ansible,
``requests`` under Fabric); :class:`UrllibTransport` needs nothing but the standard library.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import typing as t
import urllib.error
import urllib.request


class Response(t.NamedTuple):
    status: int
    headers: t.Mapping[str, str]  # names in lower case
    body: bytes


class TransportError(Exception):
    """No HTTP answer was received (internal: the client turns it into a RetraceError)."""


class ConnectionFailed(TransportError):
    """Connection refused, reset, DNS failure...: worth retrying."""


class TimedOut(TransportError):
    """The server did not answer within the attempt's timeout: worth retrying."""


class TlsFailed(TransportError):
    """The server's certificate could not be verified: retrying will not help."""


class Transport(t.Protocol):
    def post(self, url: str, body: bytes, headers: t.Mapping[str, str], timeout: float) -> Response:
        ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could carry the Authorization header to another host: report it instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class UrllibTransport:
    """Standard-library transport: proxies from the environment, TLS verified unless told otherwise."""

    def __init__(self, validate_certs: bool = True, ca_path: str | None = None, use_proxy: bool = True):
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy
        self._openers: dict = {}

    def post(self, url: str, body: bytes, headers: t.Mapping[str, str], timeout: float) -> Response:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        return exchange(lambda: self._opener(url).open(request, timeout=timeout))

    def _opener(self, url: str):
        # Building an SSL context costs ~25 ms: only https needs one, and it is made once.
        scheme = "https" if url.lower().startswith("https:") else "http"
        if scheme not in self._openers:
            handlers = [_NoRedirect(), urllib.request.ProxyHandler(None if self.use_proxy else {})]
            if scheme == "https":
                handlers.append(urllib.request.HTTPSHandler(context=self._tls_context()))
            self._openers[scheme] = urllib.request.build_opener(*handlers)
        return self._openers[scheme]

    def _tls_context(self) -> ssl.SSLContext:
        if not self.validate_certs:
            return ssl._create_unverified_context()  # pylint: disable=protected-access
        return ssl.create_default_context(cafile=self.ca_path)


def exchange(open_request: t.Callable[[], t.Any]) -> Response:
    """Call a urllib-style ``open_request()`` and return its answer, whatever the status.

    Shared by every urllib-based transport (standard library, ``ansible.module_utils.urls``):
    an HTTP error status is an answer, not an exception; no answer at all is a TransportError.
    """
    try:
        with open_request() as answer:
            return Response(answer.status, lowercase_headers(answer.headers), answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, lowercase_headers(error.headers), error.read())
    except urllib.error.URLError as error:
        raise transport_error_for(error.reason) from None
    except (OSError, http.client.HTTPException) as error:
        raise transport_error_for(error) from None


def lowercase_headers(headers) -> dict:
    """Header names in lower case, the form :class:`Response` carries."""
    return {name.lower(): value for name, value in (headers or {}).items()}


def transport_error_for(reason) -> TransportError:
    """The TransportError a transport raises for ``reason`` (an exception, or urllib's reason text)."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        return TlsFailed(f"TLS certificate verification failed: {getattr(reason, 'verify_message', None) or reason}")
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return TimedOut("no answer before the timeout")
    if isinstance(reason, http.client.RemoteDisconnected):
        return ConnectionFailed("the server closed the connection without answering")
    if isinstance(reason, ConnectionRefusedError):
        return ConnectionFailed("connection refused")
    if isinstance(reason, ConnectionResetError):
        return ConnectionFailed("connection reset by the server")
    if isinstance(reason, socket.gaierror):
        return ConnectionFailed(f"host name could not be resolved ({reason.strerror})")
    if isinstance(reason, ssl.SSLError):
        return TlsFailed(f"TLS handshake failed: {reason}")
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return ConnectionFailed(text)
