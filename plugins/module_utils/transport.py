# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How bytes reach Retrace.  The client depends only on the small :class:`Transport` interface.

A transport sends one POST and returns a :class:`Response` for *any* HTTP status; it raises
:class:`TimedOut`, :class:`ConnectionFailed` or :class:`TlsFailed` when no HTTP answer came back.
Entry points pass the transport that suits them (``ansible.module_utils.urls`` for the module,
:class:`UrllibTransport` for the callback and Fabric).

**One environment, one outcome.**  Which CA certificates are trusted and whether a host bypasses the
proxy is decided here, once, by :func:`tls_context` and :func:`proxy_for`, and every transport uses
them.  The libraries disagree otherwise (measured with requests 2.32 and Python 3.11): requests reads
``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` and ignores ``SSL_CERT_FILE``, Python's ``ssl`` does the
reverse, and requests matches CIDR entries (``127.0.0.0/8``) in ``no_proxy`` where urllib does not.
The resolution is written out with the standard library rather than borrowed from a package because
``plugins/module_utils`` may import nothing else (ansible-test's ``import`` sanity test).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import typing as t
import urllib.error
import urllib.request
from urllib.parse import urlsplit

#: CA bundle variables, in the order they are honoured: the first one set wins.  A file replaces the
#: system's trust store (as it does for requests, curl and OpenSSL); a directory is read as ``capath``.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


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


def ca_locations(ca_path: str | None = None, environ: t.Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(cafile, capath)`` to verify servers with; ``(None, None)`` means the system's default store.

    ``ca_path`` (the ``ca_path`` option) wins; then the first of :data:`CA_BUNDLE_VARIABLES` that is set
    and not empty.  A value naming a directory is used as ``capath`` (hashed certificate directory).
    """
    environ = os.environ if environ is None else environ
    chosen = ca_path or next((environ[name] for name in CA_BUNDLE_VARIABLES if environ.get(name)), None)
    if not chosen:
        return None, None
    return (None, chosen) if os.path.isdir(chosen) else (chosen, None)


def tls_context(validate_certs: bool = True, ca_path: str | None = None,
                environ: t.Mapping[str, str] | None = None) -> ssl.SSLContext:
    """The TLS context every transport uses (costs ~25 ms: build it once, and only for https).

    Raises :class:`TlsFailed` when the chosen CA bundle cannot be read.
    """
    if not validate_certs:
        return ssl._create_unverified_context()  # pylint: disable=protected-access
    cafile, capath = ca_locations(ca_path, environ)
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as error:
        raise TlsFailed(f"cannot load the CA bundle {cafile or capath}: {getattr(error, 'strerror', None) or error}") from None


def proxy_for(url: str, environ: t.Mapping[str, str] | None = None) -> str | None:
    """The proxy URL to reach ``url`` through, or None to connect directly.

    The proxy is ``https_proxy`` / ``http_proxy`` (either case; lower case wins), as urllib reads them;
    ``ALL_PROXY`` is not honoured (urllib, and so Ansible, ignores it).  ``no_proxy`` bypasses it for:
    ``*``; a host name or domain suffix (``example.com`` and ``.example.com`` both match
    ``api.example.com``); an IP address; a CIDR network (``127.0.0.0/8``, ``::1/128``); each optionally
    with ``:port``.
    """
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    proxy = _environment_value(environ, f"{scheme}_proxy")
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    if not proxy or bypasses_proxy(parts.hostname or "", port, environ):
        return None
    return proxy


def bypasses_proxy(host: str, port: int | None = None, environ: t.Mapping[str, str] | None = None) -> bool:
    """True when ``no_proxy`` (or ``NO_PROXY``) lists ``host`` (see :func:`proxy_for` for the forms)."""
    environ = os.environ if environ is None else environ
    entries = [entry.strip() for entry in (_environment_value(environ, "no_proxy") or "").replace(" ", ",").split(",")]
    host = host.lower().rstrip(".").strip("[]")
    address = _ip_address(host)
    for entry in filter(None, entries):
        if entry == "*":
            return True
        pattern, entry_port = _split_port(entry.lower())
        if entry_port is not None and port is not None and entry_port != port:
            continue
        if address is not None:
            network = _ip_network(pattern)
            if network is not None and address.version == network.version and address in network:
                return True
            continue
        domain = pattern.lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    # Everything urllib itself would bypass is bypassed too, so that a transport that can only switch
    # urllib's environment proxies on or off (ansible.module_utils.urls) reaches the same outcome.
    netloc = f"{host}:{port}" if port is not None else host
    return bool(entries) and bool(urllib.request.proxy_bypass_environment(netloc, {"no": ",".join(filter(None, entries))}))


def _environment_value(environ: t.Mapping[str, str], name: str) -> str | None:
    return environ.get(name.lower()) or environ.get(name.upper()) or None


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        address, _bracket, rest = entry[1:].partition("]")
        return address, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        name, _colon, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def _ip_address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_network(text: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could carry the Authorization header to another host: report it instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class UrllibTransport:
    """Standard-library transport: TLS and proxy chosen by :func:`tls_context` / :func:`proxy_for`.

    ``environ`` (default: ``os.environ`` at each call) is where the CA and proxy variables are read.
    """

    def __init__(self, validate_certs: bool = True, ca_path: str | None = None, use_proxy: bool = True,
                 environ: t.Mapping[str, str] | None = None):
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy
        self.environ = environ
        self._openers: dict = {}
        self._context: ssl.SSLContext | None = None

    def post(self, url: str, body: bytes, headers: t.Mapping[str, str], timeout: float) -> Response:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        return exchange(lambda: self._opener(url).open(request, timeout=timeout))

    def _opener(self, url: str):
        scheme = "https" if url.lower().startswith("https:") else "http"
        proxy = proxy_for(url, self.environ) if self.use_proxy else None
        if (scheme, proxy) not in self._openers:
            # The proxy is given explicitly ({} = none), so urllib's own environment rules never apply.
            handlers = [_NoRedirect(), urllib.request.ProxyHandler({scheme: proxy} if proxy else {})]
            # build_opener adds a default HTTPSHandler unless given one, and that one loads the system's CA store
            # (~35 ms of CPU) even for a plain-http (loopback) API; an http opener gets a context never used instead.
            context = self._tls_context() if scheme == "https" else _unused_tls_context()
            handlers.append(urllib.request.HTTPSHandler(context=context))
            self._openers[scheme, proxy] = urllib.request.build_opener(*handlers)
        return self._openers[scheme, proxy]

    def _tls_context(self) -> ssl.SSLContext:
        # Building an SSL context costs ~25 ms: only https needs one, and it is made once.
        if self._context is None:
            self._context = tls_context(self.validate_certs, self.ca_path, self.environ)
        return self._context

    def for_new_process(self) -> "UrllibTransport":
        """A transport with nothing shared, for the orphan guard's forked watcher (see :mod:`._guard`)."""
        return UrllibTransport(self.validate_certs, self.ca_path, self.use_proxy, self.environ)


def _unused_tls_context() -> ssl.SSLContext:
    """A TLS context that loads no certificates (cheap): for openers that only ever speak plain http."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


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
