# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How bytes reach Retrace.  The client depends only on the small :class:`Transport` interface.

A transport sends one POST and returns a :class:`Response` for *any* HTTP status; it raises
:class:`TimedOut`, :class:`ConnectionFailed`, :class:`TlsFailed`, :class:`ProxyUnusable` or :class:`NotLoopback`
(all :class:`TransportError`) when no HTTP answer came back, and nothing else.  Every entry point uses
:class:`UrllibTransport` (the action plugin through its subclass in ``_ansible_transport.py``), so that nothing
about the connection differs between them.

**What an answer is.**  Once a status line has come whole, the status is the answer, whatever happens next: headers
or a body that are cut off, malformed, too many or too slow make a :class:`Response` marked ``cut``, never an error.
Anything that fails before a whole status line, once the request may have been sent, is no answer, and says so:
:attr:`TransportError.sent`.  The client decides on that attribute, never on an error's words.

**One environment, one outcome.**  Which CA certificates are trusted, and whether and through which proxy
the API is reached, is decided here, once, by :func:`tls_context` and :func:`proxy_for`.  The libraries
disagree otherwise (measured with requests 2.32 and Python 3.11): requests reads ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` and ignores ``SSL_CERT_FILE``, Python's ``ssl`` does the reverse; requests matches CIDR
entries (``127.0.0.0/8``) in ``no_proxy`` where urllib does not; curl and urllib read an empty
``https_proxy`` differently.  The resolution is written out with the standard library rather than borrowed
from a package because ``plugins/module_utils`` may import nothing else (ansible-test's ``import`` sanity test).

**Every attempt ends in time.**  A socket timeout bounds each read, not the answer: a server, proxy or load
balancer that sends one byte every half second never lets it fire.  Each attempt therefore has one total
time (:class:`_Attempt`) covering name resolution, the connection (to every address the name has), the proxy's
tunnel, the TLS handshake, the headers and the body; when it is up, the attempt's socket is shut down, whatever it
was waiting for.  No more than :data:`ANSWER_BODY_LIMIT` bytes of an answer's body are read: Retrace's answers are
a short message.

**Plain http stays on this machine.**  A plain ``http://`` API (settings.py allows ``localhost`` and loopback
addresses only) is connected to at loopback addresses only, and the address connected to is checked before a
byte is sent (:class:`NotLoopback` otherwise): the ``Authorization`` header travels in clear.
"""

from __future__ import annotations

import base64
import errno
import http.client
import ipaddress
import os
import re
import selectors
import socket
import ssl
import threading
import time
import typing as t
from urllib.parse import unquote, urlsplit

from .settings import host_problem

#: CA bundle variables, in the order they are honoured: the first one set wins.  A file replaces the
#: system's trust store (as it does for requests, curl and OpenSSL); a directory is read as ``capath``.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
#: bytes of an answer's body read at most.  Retrace answers with a short JSON message (the client shows 300
#: characters of it); anything longer is cut there and the connection closed, unread.
ANSWER_BODY_LIMIT = 8192
#: seconds the TLS handshake gets at least (a handshake with no time at all fails as "non-blocking", not as late)
_MIN_HANDSHAKE_TIME = 0.05
#: seconds before the next address of a name is tried while the ones before it are still connecting (RFC 8305's
#: "Connection Attempt Delay"): a dead first address costs this, not the attempt's whole time
CONNECTION_ATTEMPT_DELAY = 0.25


class Response(t.NamedTuple):
    status: int
    headers: t.Mapping[str, str]  # names in lower case; empty when the headers were cut
    body: bytes
    #: why the answer is incomplete ("" when it is whole): its headers or body were still arriving when the attempt's
    #: time was up, were broken off, or its body was longer than the limit.  The status came whole: it is the answer.
    cut: str = ""


class TransportError(Exception):
    """No HTTP answer was received (internal: the client turns it into a RetraceError).

    ``sent``: the request may have reached the server -- the failure came once the connection was up (the request
    was being sent, or was waiting for its answer).  False: it cannot have been (refused, unresolvable, no
    connection in time, a proxy that failed before its tunnel was up, a setting that stopped it first).
    """

    sent = False

    def __init__(self, message: str, sent: bool | None = None):
        super().__init__(message)
        if sent is not None:
            self.sent = sent


class ConnectionFailed(TransportError):
    """Connection refused, reset, DNS failure, an answer that is no HTTP...: worth retrying."""


class TimedOut(TransportError):
    """The attempt's time was up before a whole status line came back: worth retrying.  Sent unless told otherwise."""

    sent = True


class TlsFailed(TransportError):
    """The server's certificate could not be verified: retrying will not help."""


class ProxyUnusable(TransportError):
    """The proxy the environment names cannot be used (not an http:// URL, or not a valid one): retrying will not help."""


class NotLoopback(TransportError):
    """A plain-http API's host led to an address off this machine: nothing sent, retrying will not help."""


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
        return self.url.partition("://")[0].lower() if "://" in self.url else "http"

    @property
    def host(self) -> str:
        return self.parts.hostname or ""

    @property
    def port(self) -> int:
        return self.parts.port or 80

    @property
    def problem(self) -> str | None:
        """Why this proxy cannot be used, in words that hold nothing of its URL; None when it can.

        A usable proxy is ``http://[user[:password]@]host[:port][/]``: a path, query or fragment can only be the
        rest of a user name or password holding an unencoded ``#``, ``/`` or ``?`` (``urlsplit`` would take the
        password for a port, and say so, password included).
        """
        if self.scheme != "http":
            return "only http:// proxies are supported"
        try:
            parts = self.parts
        except ValueError:  # an unclosed [
            return "its host is not a valid name or address"
        if parts.path not in ("", "/") or parts.query or parts.fragment or "#" in self.url or "?" in self.url:
            return ("it is not of the form http://[user:password@]host[:port]: a # / ? in its user name or password "
                    "must be percent-encoded (%23 %2F %3F)")
        host_port = parts.netloc.rpartition("@")[2]
        if not parts.hostname or host_port.startswith(":"):
            return "it names no host"
        if host_problem(parts.hostname) is not None:
            return "its host is not a valid name or address"
        port = _split_host_port(host_port)[1]
        if port is not None and _port_number(port) is None:
            return "its port is not a number from 1 to 65535"
        return None

    @property
    def shown(self) -> str:
        """``scheme://host:port``: how messages name it (never with its user name or password)."""
        if self.problem is not None:
            return _shown_without_credentials(self.url)
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


def _shown_without_credentials(url: str) -> str:
    """``scheme://host[:port]`` of a proxy URL that could not be parsed: only what follows its last ``@`` (whatever
    stands before it may be a user name or password), and its port only when it is one (a "port" that is no number
    may be a password written where the host should be)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "http", url
    host_port = re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    host, port = _split_host_port(host_port)
    number = _port_number(port) if port is not None else None
    return f"{scheme.lower()}://{host}" + (f":{number}" if number is not None else "")


def _split_host_port(text: str) -> tuple[str, str | None]:
    """``("host", "port")`` of ``host[:port]`` or ``[v6][:port]``, as written (port None when there is none)."""
    if text.startswith("["):
        host, bracket, rest = text.partition("]")
        return host + bracket, rest[1:] if rest.startswith(":") else None
    host, colon, port = text.partition(":")
    return host, port if colon else None


def _port_number(text: str) -> int | None:
    """The port ``text`` writes in ASCII digits, from 1 to 65535, or None (``"²".isdigit()`` is true, ``int()`` fails)."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    number = int(text)
    return number if 0 < number <= 65535 else None


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
    """``(pattern, port)`` of a ``no_proxy`` entry: port None for any port, -1 (no port matches) when it is no number."""
    if entry.startswith("["):  # [::1]:8080
        address, _bracket, rest = entry[1:].partition("]")
        return address, (_port_number(rest[1:]) or -1) if rest.startswith(":") else None
    if entry.count(":") == 1:
        name, _colon, port = entry.partition(":")
        return name, _port_number(port) or -1
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
_PROXY_WANTS_CREDENTIALS = "Tunnel connection failed: 407"


class _Attempt:
    """One attempt's total time: when it is up, the attempt's socket is shut down, whatever it was doing.

    A watchdog thread rather than a socket timeout re-applied before each read: one mechanism covers every
    phase (the proxy's CONNECT answer, the TLS handshake, the status line, headers, body) however http.client
    and ssl split their reads into system calls.  Resolving the name and connecting (:func:`_connect_within`)
    watch the same clock themselves.  ``phase`` says how far the answer got: what a failure means, and its words.
    """

    def __init__(self, seconds: float, proxy: Proxy | None):
        self.seconds = seconds
        self.proxy = proxy
        self.phase = CONNECTING
        #: the answer's status, once its status line came whole (then it is the answer, whatever follows)
        self.status: int | None = None
        #: the phase the watchdog found the attempt in (None: it never fired)
        self.expired_in: int | None = None
        self._ends_at = time.monotonic() + seconds
        self._socket: socket.socket | None = None
        self._finished = False
        self._lock = threading.Lock()
        self._watchdog = threading.Timer(seconds, self._expire)
        self._watchdog.daemon = True
        self._watched = False

    def __enter__(self) -> "_Attempt":
        self._watched = _started(self._watchdog)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._watched:
            self._watchdog.cancel()
            self._watchdog.join()

    @property
    def expired(self) -> bool:
        return self.expired_in is not None

    def time_left(self) -> float:
        """Seconds until the attempt's time is up (0 or less: it is)."""
        return self._ends_at - time.monotonic()

    def remaining(self) -> float:
        return max(_MIN_HANDSHAKE_TIME, self.time_left())

    def use(self, sock: socket.socket) -> None:
        """``sock`` is what the attempt now reads from (a TCP socket, then the TLS socket over it)."""
        with self._lock:
            self._socket = sock
            expired = self.expired
        if expired:
            _shut_down(sock)  # the time ran out while connecting

    def advance(self, phase: int) -> None:
        self.phase = max(self.phase, phase)

    def answered(self, status: int) -> None:
        """The status line came whole: from here on, ``status`` is the answer."""
        self.status = status
        self.advance(HEADERS)

    def finish(self) -> None:
        """The answer is read (whole, or cut): the watchdog has nothing more to stop."""
        with self._lock:
            self._finished = True

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired_in = self.phase
            sock = self._socket
        if sock is not None:
            _shut_down(sock)

    def failure(self, reason: BaseException) -> TransportError:
        """The TransportError for ``reason``, which stopped this attempt before a whole status line came."""
        if isinstance(reason, TransportError):
            return reason
        if self.expired or isinstance(reason, TimeoutError):
            return self.timed_out()
        error = transport_error_for(reason)
        if self.phase >= WAITING:
            # Once connected, the request is on its way: whatever breaks now may break after the server took it.  A
            # TLS error now is a broken connection (the certificate was checked in the handshake), worth a retry.
            if isinstance(error, TlsFailed):
                error = ConnectionFailed(f"the TLS connection broke ({reason})")
            error.sent = True
        if self.proxy is not None and self.phase == CONNECTING and isinstance(error, ConnectionFailed):
            if str(reason).startswith(_PROXY_WANTS_CREDENTIALS):  # http.client's words for the CONNECT answer
                return ProxyUnusable(f"{self._proxy_words()} answered 407 Proxy Authentication Required: give its user"
                                     " and password in that variable (http://user:password@host:port)")
            return ConnectionFailed(f"{self._proxy_words()}: {error}")
        return error

    def timed_out(self) -> TimedOut:
        """The one line that says how far the attempt got when its time was up (before a whole status line)."""
        took = f"{self.seconds:.1f} s"
        phase = self.phase if self.expired_in is None else self.expired_in
        if phase == CONNECTING:
            where = f" to {self._proxy_words()}" if self.proxy is not None else ""
            return TimedOut(f"no connection{where} within {took}", sent=False)
        if phase == HANDSHAKING:
            return TimedOut(f"TLS handshake not done within {took}", sent=False)
        return TimedOut(f"no answer within {took}")

    def cut(self, part: str, reason: BaseException | None = None) -> str:
        """Why ``part`` ("headers", "body") of an answer whose status came whole is incomplete, in a few words."""
        if self.expired:
            return f"its {part} still arriving after {self.seconds:.1f} s"
        return f"its {part} broken off ({_damage(reason)})"

    def _proxy_words(self) -> str:
        return f"proxy {self.proxy.shown} (from {self.proxy.variable})"


def _started(thread: threading.Thread) -> bool:
    """Start ``thread``; False where the interpreter refuses a new thread.

    Python 3.12.0 and 3.12.1 refuse one once the interpreter is shutting down, in ``atexit`` handlers too
    (CPython gh-113964, relaxed in 3.12.2), and the callback ends a run that an error or Ctrl-C stopped from its
    ``atexit`` handler.  There an attempt has its socket timeouts alone: each read is bounded by the attempt's
    time, the attempt as a whole is not (a server that drips its answer can stretch it).
    """
    try:
        thread.start()
    except RuntimeError:
        return False
    return True


def _shut_down(sock: socket.socket) -> None:
    # The base class's shutdown: ssl.SSLSocket.shutdown() would drop its SSL object under a thread reading through it.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or a TCP socket the TLS socket has taken over (which is then registered too)


def _damage(reason: BaseException | None) -> str:
    """What broke an answer after its status line, in words (never the server's bytes)."""
    if reason is None or isinstance(reason, (http.client.IncompleteRead, http.client.RemoteDisconnected)):
        return "the connection closed before its end"
    if isinstance(reason, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(reason, http.client.LineTooLong):
        return "a line longer than 64 KiB"
    if isinstance(reason, http.client.HTTPException) and str(reason).startswith("got more than"):
        return str(reason)  # "got more than 100 headers"
    return f"{type(reason).__name__}"


# --- connecting, within the attempt's time --------------------------------------------------------------

def _connect_within(host: str, port: int, attempt: _Attempt, loopback_only: bool = False) -> socket.socket:
    """A socket connected to ``host``, within what is left of ``attempt``'s time, resolution included.

    ``socket.create_connection`` gives each address of a name the whole timeout, one after another: five addresses
    that never answer took five times the attempt's time, and a dead first one (an IPv6 address, say) kept a
    working second one from ever being tried.  Here every address starts connecting
    :data:`CONNECTION_ATTEMPT_DELAY` after the one before it (or as soon as it failed), the families interleaved,
    without stopping those still connecting (RFC 8305, "Happy Eyeballs"); the first to connect is used, and all
    end when the attempt's time is up.  ``loopback_only`` (plain http): addresses off loopback are never tried,
    and the one connected to is checked (:func:`_require_loopback_peer`).
    """
    addresses = _addresses_within(host, port, attempt)
    if loopback_only:
        elsewhere = sorted({address[4][0] for address in addresses if not _is_loopback(address[4][0])})
        addresses = [address for address in addresses if _is_loopback(address[4][0])]
        if not addresses:
            raise NotLoopback(f"{host} resolves to {' / '.join(elsewhere)}, not a loopback address: {_PLAIN_HTTP_WORDS}")
    sock = _first_to_connect(_interleaved(addresses), attempt)
    if loopback_only:
        try:
            _require_loopback_peer(sock, host)
        except NotLoopback:
            sock.close()
            raise
    return sock


_PLAIN_HTTP_WORDS = "plain http:// goes to this machine only (the key would cross the network in clear)"


def _addresses_within(host: str, port: int, attempt: _Attempt) -> list:
    """``getaddrinfo`` for ``host``, given what is left of the attempt: the system resolver has no timeout of ours."""
    if _ip_address(host) is not None:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    found: dict = {}
    done = threading.Event()

    def resolve() -> None:
        try:
            found["addresses"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except Exception as error:  # pylint: disable=broad-exception-caught  # handed to the attempt's thread below
            found["error"] = error
        finally:
            done.set()

    # A thread that outlives a late attempt ends with the resolver's own timeout; it holds nothing of the attempt's.
    if not _started(threading.Thread(target=resolve, name="retrace-resolver", daemon=True)):
        resolve()  # no thread to be had: the resolver's own timeout bounds it
    if not done.wait(max(0.0, attempt.time_left())):
        raise attempt.timed_out()
    if "error" in found:
        raise found["error"]
    return found["addresses"]


def _interleaved(addresses: list) -> list:
    """The resolver's order, families alternating from the first one's (RFC 8305 section 4)."""
    by_family: dict = {}
    for address in addresses:
        by_family.setdefault(address[0], []).append(address)
    queues = list(by_family.values())
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def _first_to_connect(addresses: list, attempt: _Attempt) -> socket.socket:
    """The first of ``addresses`` to accept a connection, each started :data:`CONNECTION_ATTEMPT_DELAY` after the last."""
    selector = selectors.DefaultSelector()
    waiting = list(addresses)
    connecting: list[socket.socket] = []
    errors: list[OSError] = []
    winner = None
    next_start = time.monotonic()
    try:
        while winner is None:
            now = time.monotonic()
            if waiting and (now >= next_start or not connecting):
                started = _start_connecting(waiting.pop(0), errors)
                if started is not None:
                    connecting.append(started)
                    selector.register(started, selectors.EVENT_WRITE)
                next_start = now + CONNECTION_ATTEMPT_DELAY
                continue
            if not connecting:
                raise errors[0] if errors else ConnectionFailed("the host name has no address")
            left = attempt.time_left()
            if left <= 0:
                raise attempt.timed_out()
            for key, _events in selector.select(min(left, next_start - now) if waiting else left):
                sock = key.fileobj
                selector.unregister(sock)
                connecting.remove(sock)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error == 0 and winner is None:
                    winner = sock
                else:
                    errors.append(OSError(error, os.strerror(error)) if error else OSError("connected twice"))
                    sock.close()
    finally:
        selector.close()
        for sock in connecting:
            sock.close()
    winner.setblocking(True)
    winner.settimeout(attempt.seconds)
    return winner


def _start_connecting(address, errors: list) -> socket.socket | None:
    family, kind, protocol, _name, sockaddr = address
    sock = None
    try:
        sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        error = sock.connect_ex(sockaddr)
        if error in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            return sock  # 0: connected at once (the selector reports it writable straight away)
        errors.append(OSError(error, os.strerror(error)))
    except OSError as error:
        errors.append(error)
    if sock is not None:
        sock.close()
    return None


def _is_loopback(address: str) -> bool:
    parsed = _ip_address(address.partition("%")[0])
    if parsed is None:
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)
    return parsed.is_loopback or (mapped is not None and mapped.is_loopback)


def _require_loopback_peer(sock: socket.socket, host: str) -> None:
    """Raise :class:`NotLoopback` unless ``sock`` is connected to a loopback address: plain http's last check, made on
    the address the kernel connected to, before a byte of the request is sent."""
    try:
        peer = sock.getpeername()[0]
    except OSError as error:
        raise ConnectionFailed(f"connection lost before the request was sent ({error.strerror or error})") from None
    if not _is_loopback(peer):
        raise NotLoopback(f"{host} connected to {peer}, not a loopback address: {_PLAIN_HTTP_WORDS}")


class _WatchedResponse(http.client.HTTPResponse):
    """Tells the attempt when the status line has come: from then on the status is the answer."""

    def __init__(self, sock, *args, attempt: _Attempt, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self._attempt = attempt

    def _read_status(self):
        version, status, reason = super()._read_status()
        # not the proxy's answer to CONNECT (phase CONNECTING), nor an interim "100 Continue"
        if self._attempt.phase == WAITING and status != http.client.CONTINUE:
            self._attempt.answered(status)
        return version, status, reason

    def begin(self):
        super().begin()
        self._attempt.advance(BODY)  # status and headers complete


class _WatchedConnection(http.client.HTTPConnection):
    """Plain HTTP (loopback only) whose socket the attempt can shut down."""

    def __init__(self, host: str, port: int, attempt: _Attempt, loopback_only: bool = True, **kwargs):
        super().__init__(host, port, timeout=attempt.seconds, **kwargs)
        self._attempt = attempt
        self._loopback_only = loopback_only
        self._create_connection = self._watched_connection
        self.response_class = lambda sock, *args, **options: _WatchedResponse(sock, *args, attempt=attempt, **options)

    def _watched_connection(self, address, *_timeout_and_source) -> socket.socket:
        sock = _connect_within(*address, self._attempt, loopback_only=self._loopback_only)
        self._attempt.use(sock)  # from here the watchdog reaches it, the proxy's CONNECT answer included
        return sock

    def connect(self) -> None:
        super().connect()
        self._attempt.advance(WAITING)


class _WatchedTlsConnection(_WatchedConnection):
    """HTTPS, directly or through a proxy's CONNECT tunnel."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, attempt: _Attempt, context: ssl.SSLContext, **kwargs):
        super().__init__(host, port, attempt, loopback_only=False, **kwargs)
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
        if proxy is not None and proxy.problem is not None:
            raise ProxyUnusable(f"proxy {proxy.shown} (from {proxy.variable}): {proxy.problem}")
        with _Attempt(timeout, proxy) as attempt:
            connection = None
            try:
                connection = self._connection(parts, proxy, attempt)
                return _exchange(connection, attempt, parts.path + (f"?{parts.query}" if parts.query else ""), body,
                                 {**headers, "Connection": "close"})
            # Whatever http.client, ssl, socket or a codec raised (OSError, HTTPException, ValueError on a socket the
            # watchdog shut, UnicodeError...): one of this module's errors, saying whether the request may have landed.
            except Exception as error:  # pylint: disable=broad-exception-caught
                raise attempt.failure(error) from None
            finally:
                if connection is not None:
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
    """Send the request and read the answer, whatever its status, within the attempt's time.

    Before a whole status line, a failure is raised (:meth:`_Attempt.failure`); after it, the status is the answer and
    what broke or came late (headers, body) only makes the :class:`Response` ``cut``.
    """
    try:
        connection.request("POST", path, body, dict(headers))
        answer = connection.getresponse()
    except Exception as error:  # pylint: disable=broad-exception-caught  # see UrllibTransport.post
        if attempt.status is None:
            raise
        attempt.finish()
        return Response(attempt.status, {}, b"", cut=attempt.cut("headers", error))
    if attempt.expired_in is not None and attempt.expired_in < BODY:
        # The watchdog shut the socket while the headers came: http.client took the silence for their end.  A header
        # cut in the middle ("Retry-After: 1" of "120") is not to be believed: none is kept.
        attempt.finish()
        return Response(answer.status, {}, b"", cut=attempt.cut("headers"))
    body, cut = _read_body(answer, attempt)
    attempt.finish()
    return Response(answer.status, lowercase_headers(answer.headers), body, cut)


def _read_body(answer: http.client.HTTPResponse, attempt: _Attempt) -> tuple[bytes, str]:
    """At most :data:`ANSWER_BODY_LIMIT` bytes of the body, and why it is cut ("" when it is whole)."""
    body = bytearray()
    try:
        while len(body) < ANSWER_BODY_LIMIT:
            piece = answer.read1(ANSWER_BODY_LIMIT - len(body))
            if not piece:
                # read1 ends quietly when the connection does, even short of Content-Length
                if attempt.expired or answer.length:
                    return bytes(body), attempt.cut("body")
                return bytes(body), ""
            body += piece
    except Exception as error:  # pylint: disable=broad-exception-caught  # a broken or late body is a cut body
        return bytes(body), attempt.cut("body", error)
    if answer.isclosed():
        return bytes(body), ""  # exactly the limit, and all of it
    return bytes(body), f"its body longer than {ANSWER_BODY_LIMIT} bytes"


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
    if isinstance(reason, UnicodeError):
        return ConnectionFailed("host name could not be resolved (not a valid host name)")
    if isinstance(reason, ssl.SSLError):
        return TlsFailed(f"TLS handshake failed: {reason}")
    if isinstance(reason, http.client.BadStatusLine):
        return ConnectionFailed("the answer is not HTTP (no valid status line)")
    if isinstance(reason, http.client.LineTooLong):
        return ConnectionFailed("the answer is not HTTP (a status line longer than 64 KiB)")
    if isinstance(reason, BaseException) and not isinstance(reason, OSError):
        return ConnectionFailed(f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__)
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return ConnectionFailed(text)
