# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How bytes reach Retrace.  The client depends only on the small :class:`Transport` interface.

A transport sends one POST and returns a :class:`Response` for *any* HTTP status; it raises
:class:`TimedOut`, :class:`ConnectionFailed`, :class:`TlsFailed` or :class:`ProxyUnusable` when no HTTP
answer came back.  Every entry point uses :class:`UrllibTransport` (the action plugin through its subclass
in ``_ansible_transport.py``), so that nothing about the connection differs between them.

**One environment, one outcome.**  Which CA certificates are trusted, and whether and through which proxy
the API is reached, is decided here, once, by :func:`tls_context` and :func:`proxy_for`.  The libraries
disagree otherwise (measured with requests 2.32 and Python 3.11): requests reads ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` and ignores ``SSL_CERT_FILE``, Python's ``ssl`` does the reverse; requests matches CIDR
entries (``127.0.0.0/8``) in ``no_proxy`` where urllib does not; curl and urllib read an empty
``https_proxy`` differently.  The resolution is written out with the standard library rather than borrowed
from a package because ``plugins/module_utils`` may import nothing else (ansible-test's ``import`` sanity test).

**Every attempt ends in time.**  A socket timeout bounds each read, not the answer: a server, proxy or load
balancer that sends one byte every half second never lets it fire.  Each attempt therefore has one total
time (:class:`_Attempt`) covering the connection, the proxy's tunnel, the TLS handshake, the headers and the
body; when it is up, the attempt's socket is shut down, whatever it was waiting for.  No more than
:data:`ANSWER_BODY_LIMIT` bytes of an answer's body are read: Retrace's answers are a short message.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
import typing as t
from urllib.parse import unquote, urlsplit

#: CA bundle variables, in the order they are honoured: the first one set wins.  A file replaces the
#: system's trust store (as it does for requests, curl and OpenSSL); a directory is read as ``capath``.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
#: bytes of an answer's body read at most.  Retrace answers with a short JSON message (the client shows 300
#: characters of it); anything longer is cut there and the connection closed, unread.
ANSWER_BODY_LIMIT = 8192
#: seconds the TLS handshake gets at least (a handshake with no time at all fails as "non-blocking", not as late)
_MIN_HANDSHAKE_TIME = 0.05


class Response(t.NamedTuple):
    status: int
    headers: t.Mapping[str, str]  # names in lower case
    body: bytes
    #: the body was still arriving when the attempt's time was up, and is cut there (the status is complete)
    cut: bool = False


class TransportError(Exception):
    """No HTTP answer was received (internal: the client turns it into a RetraceError)."""


class ConnectionFailed(TransportError):
    """Connection refused, reset, DNS failure...: worth retrying."""


class TimedOut(TransportError):
    """The attempt's time was up before a whole status line and headers came back: worth retrying.

    ``sent``: the request may have reached the server (False when the time ran out while connecting).
    """

    def __init__(self, message: str, sent: bool = True):
        super().__init__(message)
        self.sent = sent


class TlsFailed(TransportError):
    """The server's certificate could not be verified: retrying will not help."""


class ProxyUnusable(TransportError):
    """The proxy the environment names cannot be used (a scheme other than http): retrying will not help."""


class Transport(t.Protocol):
    def post(self, url: str, body: bytes, headers: t.Mapping[str, str], timeout: float) -> Response:
        """POST ``body``; the whole attempt (connection, TLS, headers, body) ends within ``timeout`` seconds."""


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


# --- proxies: one rule for every entry point -------------------------------------------------------

class Proxy(t.NamedTuple):
    """The proxy an https API is reached through, and the environment variable that named it."""

    url: str  #: as the variable gives it, credentials included: only the connection uses it
    variable: str

    @property
    def parts(self):
        return urlsplit(self.url if "://" in self.url else "http://" + self.url)

    @property
    def scheme(self) -> str:
        return self.parts.scheme.lower()

    @property
    def host(self) -> str:
        return self.parts.hostname or ""

    @property
    def port(self) -> int:
        return self.parts.port or 80

    @property
    def shown(self) -> str:
        """``scheme://host:port``: how messages name it (never with its user name or password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` header its URL's credentials give (Basic), or None."""
        parts = self.parts
        if parts.username is None:
            return None
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
        return "Basic " + base64.b64encode(credentials).decode("ascii")

    def __repr__(self) -> str:
        return f"Proxy({self.shown!r}, from {self.variable})"


def proxy_for(url: str, environ: t.Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy to reach ``url`` through, or None to connect directly.  Every transport follows it.

    * A plain ``http://`` API (allowed for loopback hosts only) is never proxied: the proxy, which need
      not be on this machine, would read the ``Authorization`` header in clear.
    * An ``https://`` API goes through ``https_proxy``, or ``HTTPS_PROXY`` when the lower-case variable is
      not set at all.  A variable set to an empty value means "no proxy": ``https_proxy=`` turns off an
      ``HTTPS_PROXY`` (urllib's rule, so Ansible's ``uri`` and ``get_url`` decide the same way).
    * ``ALL_PROXY`` is not honoured (urllib, and so Ansible, ignores it; curl and requests read it);
      ``HTTP_PROXY`` is never used (only plain http would use it).  ``REQUEST_METHOD`` (CGI, where the
      ``HTTP_PROXY`` variable can come from a request header: "httpoxy") therefore changes nothing.
    * ``no_proxy`` (same case rule) bypasses the proxy for: ``*``; a host name or domain suffix
      (``example.com`` and ``.example.com`` both match ``api.example.com``); an IP address; a CIDR
      network (``127.0.0.0/8``, ``::1/128``); each optionally with ``:port``; separated by commas or spaces.
    """
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        return None
    variable, value = _environment_variable(environ, "https_proxy")
    if not value or bypasses_proxy(parts.hostname or "", parts.port or 443, environ):
        return None
    return Proxy(value, variable)


def bypasses_proxy(host: str, port: int | None = None, environ: t.Mapping[str, str] | None = None) -> bool:
    """True when ``no_proxy`` (or ``NO_PROXY``) lists ``host`` (see :func:`proxy_for` for the forms)."""
    environ = os.environ if environ is None else environ
    entries = (_environment_variable(environ, "no_proxy")[1] or "").replace(" ", ",").split(",")
    host = host.lower().rstrip(".").strip("[]")
    address = _ip_address(host)
    for entry in filter(None, (entry.strip() for entry in entries)):
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
    return False


def _environment_variable(environ: t.Mapping[str, str], name: str) -> tuple[str, str]:
    """(the variable used, its stripped value): the lower-case form when it is set at all, even empty, else the upper-case one."""
    for candidate in (name.lower(), name.upper()):
        if candidate in environ:
            return candidate, (environ[candidate] or "").strip()
    return name.upper(), ""


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


# --- one attempt, within its time ------------------------------------------------------------------

CONNECTING, HANDSHAKING, WAITING, HEADERS, BODY = range(5)


class _Attempt:
    """One attempt's total time: when it is up, the attempt's socket is shut down, whatever it was doing.

    A watchdog thread rather than a socket timeout re-applied before each read: one mechanism covers every
    phase (the proxy's CONNECT answer, the TLS handshake, the status line, headers, body) however http.client
    and ssl split their reads into system calls.  ``phase`` says how far the answer got, for the message.
    """

    def __init__(self, seconds: float, proxy: Proxy | None):
        self.seconds = seconds
        self.proxy = proxy
        self.phase = CONNECTING
        #: the phase the watchdog found the attempt in (None: it never fired)
        self.expired_in: int | None = None
        self._ends_at = time.monotonic() + seconds
        self._socket: socket.socket | None = None
        self._finished = False
        self._lock = threading.Lock()
        self._watchdog = threading.Timer(seconds, self._expire)
        self._watchdog.daemon = True

    def __enter__(self) -> "_Attempt":
        self._watchdog.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._watchdog.cancel()
        self._watchdog.join()

    @property
    def expired(self) -> bool:
        return self.expired_in is not None

    def remaining(self) -> float:
        return max(_MIN_HANDSHAKE_TIME, self._ends_at - time.monotonic())

    def use(self, sock: socket.socket) -> None:
        """``sock`` is what the attempt now reads from (a TCP socket, then the TLS socket over it)."""
        with self._lock:
            self._socket = sock
            expired = self.expired
        if expired:
            _shut_down(sock)  # the time ran out while connecting

    def advance(self, phase: int) -> None:
        self.phase = max(self.phase, phase)

    def finish(self) -> bool:
        """The answer is complete (or cut by the body limit): False if the watchdog got there first."""
        with self._lock:
            self._finished = True
            return not self.expired

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired_in = self.phase
            sock = self._socket
        if sock is not None:
            _shut_down(sock)

    def failure(self, reason: BaseException) -> TransportError:
        """The TransportError for ``reason``, which stopped this attempt in its current phase."""
        if self.expired or isinstance(reason, TimeoutError):
            return self.timed_out()
        error = transport_error_for(reason)
        if self.proxy is not None and self.phase == CONNECTING and isinstance(error, ConnectionFailed):
            return ConnectionFailed(f"{self._proxy_words()}: {error}")
        return error

    def timed_out(self) -> TimedOut:
        """The one line that says how far the answer got when the time was up."""
        took = f"{self.seconds:.1f} s"
        phase = self.phase if self.expired_in is None else self.expired_in
        if phase == CONNECTING:
            where = f" to {self._proxy_words()}" if self.proxy is not None else ""
            return TimedOut(f"no connection{where} within {took}", sent=False)
        if phase == HANDSHAKING:
            return TimedOut(f"TLS handshake not done within {took}", sent=False)
        if phase == WAITING:
            return TimedOut(f"no answer within {took}")
        if phase == HEADERS:
            return TimedOut(f"answer too slow: its headers were still arriving after {took}")
        return TimedOut(f"answer too slow: its body was still arriving after {took}")

    def _proxy_words(self) -> str:
        return f"proxy {self.proxy.shown} (from {self.proxy.variable})"


def _shut_down(sock: socket.socket) -> None:
    # The base class's shutdown: ssl.SSLSocket.shutdown() would drop its SSL object under a thread reading through it.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or a TCP socket the TLS socket has taken over (which is then registered too)


class _WatchedResponse(http.client.HTTPResponse):
    """Tells the attempt when the status line has come: from then on a slow answer is a slow answer, not none."""

    def __init__(self, sock, *args, attempt: _Attempt, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self._attempt = attempt

    def _read_status(self):
        status = super()._read_status()
        if self._attempt.phase == WAITING:  # not the proxy's answer to CONNECT
            self._attempt.advance(HEADERS)
        return status

    def begin(self):
        super().begin()
        self._attempt.advance(BODY)  # status and headers complete: the status is the answer


class _WatchedConnection(http.client.HTTPConnection):
    """Plain HTTP (loopback only) whose socket the attempt can shut down."""

    def __init__(self, host: str, port: int, attempt: _Attempt, **kwargs):
        super().__init__(host, port, timeout=attempt.seconds, **kwargs)
        self._attempt = attempt
        self._create_connection = self._watched_connection
        self.response_class = lambda sock, *args, **options: _WatchedResponse(sock, *args, attempt=attempt, **options)

    def _watched_connection(self, *args, **kwargs) -> socket.socket:
        sock = socket.create_connection(*args, **kwargs)
        self._attempt.use(sock)  # from here the watchdog reaches it, the proxy's CONNECT answer included
        return sock

    def connect(self) -> None:
        super().connect()
        self._attempt.advance(WAITING)


class _WatchedTlsConnection(_WatchedConnection):
    """HTTPS, directly or through a proxy's CONNECT tunnel."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, attempt: _Attempt, context: ssl.SSLContext, **kwargs):
        super().__init__(host, port, attempt, **kwargs)
        self._context = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP, and the tunnel through a proxy
        self._attempt.advance(HANDSHAKING)
        # The handshake runs on a socket the watchdog may not reach yet: it gets what is left of the attempt.
        self.sock.settimeout(self._attempt.remaining())
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._tunnel_host or self.host)
        self._attempt.use(self.sock)
        self._attempt.advance(WAITING)


class UrllibTransport:
    """The standard-library transport: TLS, proxy and time limits from this module, for every entry point.

    ``environ`` (default: ``os.environ`` at each call) is where the CA and proxy variables are read.
    ``use_proxy=False`` ignores every proxy variable.  Redirects are never followed (they could carry the
    ``Authorization`` header elsewhere) and no ``~/.netrc`` is read: every status comes back as it is.
    """

    def __init__(self, validate_certs: bool = True, ca_path: str | None = None, use_proxy: bool = True,
                 environ: t.Mapping[str, str] | None = None):
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy
        self.environ = environ
        self._context: ssl.SSLContext | None = None

    def post(self, url: str, body: bytes, headers: t.Mapping[str, str], timeout: float) -> Response:
        parts = urlsplit(url)
        proxy = proxy_for(url, self.environ) if self.use_proxy else None
        if proxy is not None and proxy.scheme != "http":
            raise ProxyUnusable(f"proxy {proxy.shown} (from {proxy.variable}): only http:// proxies are supported")
        with _Attempt(timeout, proxy) as attempt:
            connection = self._connection(parts, proxy, attempt)
            try:
                return _exchange(connection, attempt, parts.path + (f"?{parts.query}" if parts.query else ""), body,
                                 {**headers, "Connection": "close"})
            finally:
                connection.close()

    def _connection(self, parts, proxy: Proxy | None, attempt: _Attempt) -> http.client.HTTPConnection:
        if parts.scheme.lower() != "https":
            return _WatchedConnection(parts.hostname, parts.port or http.client.HTTP_PORT, attempt)
        context = self._tls_context()
        if proxy is None:
            return _WatchedTlsConnection(parts.hostname, parts.port or http.client.HTTPS_PORT, attempt, context)
        connection = _WatchedTlsConnection(proxy.host, proxy.port, attempt, context)
        authorization = proxy.authorization()
        connection.set_tunnel(parts.hostname, parts.port or http.client.HTTPS_PORT,
                              headers={"Proxy-Authorization": authorization} if authorization else None)
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        # Building an SSL context costs ~25 ms: only https needs one, and it is made once.
        if self._context is None:
            self._context = tls_context(self.validate_certs, self.ca_path, self.environ)
        return self._context

    def for_new_process(self) -> "UrllibTransport":
        """A transport with nothing shared, for the orphan guard's forked watcher (see :mod:`._guard`)."""
        return type(self)(self.validate_certs, self.ca_path, self.use_proxy, self.environ)


def _exchange(connection: http.client.HTTPConnection, attempt: _Attempt, path: str, body: bytes,
              headers: t.Mapping[str, str]) -> Response:
    """Send the request and read the answer, whatever its status, within the attempt's time."""
    try:
        connection.request("POST", path, body, dict(headers))
        answer = connection.getresponse()
        response = Response(answer.status, lowercase_headers(answer.headers), _read_body(answer, attempt))
    except (OSError, http.client.HTTPException) as error:
        raise attempt.failure(error) from None
    except ValueError as error:  # a read on the socket the watchdog shut down, in some Python versions
        if not attempt.expired:
            raise
        raise attempt.failure(error) from None
    if not attempt.finish() and attempt.expired_in < BODY:
        raise attempt.timed_out()  # e.g. a header line cut in the middle: never taken for a whole answer
    return response._replace(cut=attempt.expired)


def _read_body(answer: http.client.HTTPResponse, attempt: _Attempt) -> bytes:
    """At most :data:`ANSWER_BODY_LIMIT` bytes of the body: what came before the attempt's time was up."""
    body = bytearray()
    try:
        while len(body) < ANSWER_BODY_LIMIT:
            piece = answer.read1(ANSWER_BODY_LIMIT - len(body))
            if not piece:
                break
            body += piece
    except (OSError, ValueError, http.client.HTTPException):
        if not attempt.expired:
            raise
    return bytes(body)


def lowercase_headers(headers) -> dict:
    """Header names in lower case, the form :class:`Response` carries."""
    return {name.lower(): value for name, value in (headers or {}).items()}


def transport_error_for(reason) -> TransportError:
    """The TransportError a transport raises for ``reason`` (an exception, or a library's reason text)."""
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
