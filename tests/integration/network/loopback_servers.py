"""Servers on loopback for the network tests: an API that misbehaves on purpose, a TLS front, a proxy that records.

Plain sockets and threads: the point is byte-level control (one byte every half second, a body that never
ends, a proxy that never finishes its CONNECT answer) that an HTTP framework would hide.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
import select
import socket
import ssl
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: how the API answers an action (the last part of the path: start, complete, cancel); every answer is a 202,
#: however it is delivered.  "silent" accepts the connection and never reads or sends anything; "slow-status" sends
#: even the status line one byte at a time.  A mode may also be bytes: the answer, sent as is before the server hangs up.
MODES = ("ok", "trickle", "chunked-forever", "gigabyte", "slow-header", "slow-status", "silent")
#: seconds between two bytes of a trickled answer
TRICKLE_INTERVAL = 0.5
GIGABYTE = 1 << 30


@dataclasses.dataclass
class Exchange:
    """One connection to the API, as the server saw it."""

    action: str
    mode: str
    began: float
    request: bytes = b""
    bytes_sent: int = 0
    #: when the client went away while the server still had more to send (None: it never did)
    client_left_at: float | None = None
    #: the server sent everything it meant to (never true for the endless modes)
    finished: bool = False

    @property
    def still_sending_when_left(self) -> bool:
        return self.client_left_at is not None and not self.finished


class _Listener:
    """Accepts on ``host`` (127.0.0.1 unless told; a free port unless told) and serves each connection in a thread of its
    own until closed."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._stop = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=64)
        self.port = self._listener.getsockname()[1]
        #: connections accepted so far, whether or not anything was sent on them
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _address = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve_and_close, args=(connection,), daemon=True).start()

    def _serve_and_close(self, connection: socket.socket) -> None:
        with connection:
            self.serve(connection)

    def serve(self, connection: socket.socket) -> None:
        raise NotImplementedError


class HostileApi(_Listener):
    """An HTTP API on loopback whose answer to each action follows :data:`MODES`.

    ``modes`` maps an action (or "*", the fallback) to a mode.  ``host`` and ``port``: where it listens.
    """

    def __init__(self, modes: dict[str, str | bytes], host: str = "127.0.0.1", port: int = 0):
        self.modes = modes
        self.exchanges: list[Exchange] = []
        super().__init__(host, port)
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def exchanges_for(self, action: str) -> list[Exchange]:
        return [exchange for exchange in self.exchanges if exchange.action == action]

    def wait_until_left(self, action: str, within: float = 30.0) -> Exchange | None:
        """The first exchange for ``action`` once its client has gone or it ended (None after ``within`` seconds)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for exchange in self.exchanges_for(action):
                if exchange.client_left_at is not None or exchange.finished:
                    return exchange
            time.sleep(0.02)
        return None

    def serve(self, connection: socket.socket) -> None:
        if self.modes.get("*") == "silent":
            exchange = Exchange("?", "silent", time.monotonic())
            self.exchanges.append(exchange)
            self._hold(connection, exchange)
            return
        request = _read_request(connection)
        if request is None:
            return
        action = request.split(b" ", 2)[1].rsplit(b"/", 1)[-1].decode("ascii", "replace")
        mode = self.modes.get(action, self.modes.get("*", "ok"))
        exchange = Exchange(action, "raw" if isinstance(mode, bytes) else mode, time.monotonic(), request=request)
        self.exchanges.append(exchange)
        try:
            if isinstance(mode, bytes):
                self._send(connection, exchange, mode)
            else:
                getattr(self, "_mode_" + mode.replace("-", "_"))(connection, exchange)
            exchange.finished = True
        except OSError:
            exchange.client_left_at = time.monotonic()

    def _hold(self, connection: socket.socket, exchange: Exchange) -> None:
        while not self._stop.wait(0.05):
            if _gone(connection):
                exchange.client_left_at = time.monotonic()
                return

    def _send(self, connection: socket.socket, exchange: Exchange, data: bytes) -> None:
        connection.sendall(data)
        exchange.bytes_sent += len(data)

    def _drip(self, connection: socket.socket, exchange: Exchange, data: bytes) -> None:
        """Send ``data`` one byte every :data:`TRICKLE_INTERVAL` seconds; OSError as soon as the client is gone."""
        for byte in data:
            if self._stop.wait(TRICKLE_INTERVAL):
                raise OSError("server stopped")
            if _gone(connection):
                raise BrokenPipeError("the client closed the connection")
            self._send(connection, exchange, bytes((byte,)))

    def _mode_ok(self, connection, exchange) -> None:
        body = b'{"Message": "Accepted"}'
        self._send(connection, exchange, b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                                         b"Connection: close\r\n\r\n%s" % (len(body), body))

    def _mode_trickle(self, connection, exchange) -> None:
        self._send(connection, exchange, b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n"
                                         b"Connection: close\r\n\r\n")
        self._drip(connection, exchange, b'{"Message": "' + b"a" * 999_985 + b'"}')

    def _mode_chunked_forever(self, connection, exchange) -> None:
        self._send(connection, exchange, b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                                         b"Connection: close\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
        while not self._stop.is_set():
            self._send(connection, exchange, chunk)
        raise OSError("server stopped")

    def _mode_gigabyte(self, connection, exchange) -> None:
        self._send(connection, exchange, b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                                         b"Connection: close\r\n\r\n" % GIGABYTE)
        block = b"a" * (1 << 20)
        for _block in range(GIGABYTE // len(block)):
            if self._stop.is_set():
                raise OSError("server stopped")
            self._send(connection, exchange, block)

    def _mode_slow_header(self, connection, exchange) -> None:
        self._send(connection, exchange, b"HTTP/1.1 202 Accepted\r\nX-Slow: ")
        self._drip(connection, exchange, b"a" * 100_000)

    def _mode_slow_status(self, connection, exchange) -> None:
        self._drip(connection, exchange, b"HTTP/1.1 202 Accepted" + b" " * 100_000)


class Blackhole:
    """An address and port that never answers a connection attempt, as a firewalled or dead host does.

    A listener that never accepts, whose accept queue is filled: the kernel then drops every further SYN, so a
    client's connect waits (retransmitting) until its own time runs out.  Real sockets on a loopback address
    (127.0.0.2, ``::1``...), nothing on the machine changed.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _filler in range(16):
            probe = socket.socket(family, socket.SOCK_STREAM)
            probe.setblocking(False)
            probe.connect_ex((host, self.port))
            self._fillers.append(probe)
            if not select.select([], [probe], [], 0.5)[1]:
                return  # this one hangs: the queue is full
        raise RuntimeError(f"could not fill the accept queue of {host}:{self.port}")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        for sock in self._fillers:
            sock.close()
        self._listener.close()


def _read_request(connection: socket.socket) -> bytes | None:
    """The request's head and body (by Content-Length), or None if the client hung up first."""
    connection.settimeout(30)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _blank, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            body += chunk
    except OSError:
        return None
    return head + b"\r\n\r\n" + body


def _gone(connection: socket.socket) -> bool:
    """True once the client closed or reset its end (a sendall of one byte may still succeed after that)."""
    if not select.select([connection], [], [], 0)[0]:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class TlsFront(_Listener):
    """Terminates TLS on loopback (certificate for localhost and 127.0.0.1) and relays the bytes to ``upstream``."""

    def __init__(self, upstream_port: int, context: ssl.SSLContext):
        self.upstream_port = upstream_port
        self.context = context
        super().__init__()
        self.url = f"https://127.0.0.1:{self.port}"

    def serve(self, connection: socket.socket) -> None:
        try:
            connection.settimeout(30)
            secure = self.context.wrap_socket(connection, server_side=True)
            with secure, socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as upstream:
                _pump(secure, upstream)
        except (OSError, ssl.SSLError):
            pass  # a client that refused the certificate, or went away: both are what some tests do


class BrokenTls(_Listener):
    """An https API on loopback that completes the TLS handshake, reads the request, then answers with a TLS record
    that does not decrypt (written under the TLS layer): the connection breaks after the request went through."""

    def __init__(self, context: ssl.SSLContext):
        self.context = context
        self.requests = 0
        super().__init__()
        self.url = f"https://127.0.0.1:{self.port}"

    def serve(self, connection: socket.socket) -> None:
        try:
            connection.settimeout(30)
            secure = self.context.wrap_socket(connection, server_side=True)
            if secure.recv(65536):
                self.requests += 1
            socket.socket.send(secure, b"\x17\x03\x03\x00\x10" + b"x" * 16)  # application data, 16 bytes of noise
            self._stop.wait(1)
        except (OSError, ssl.SSLError):
            pass


class CapturingProxy(_Listener):
    """An HTTP proxy on loopback that records every byte a client sends it and relays CONNECT tunnels and plain requests.

    ``slow_connect``: answer CONNECT one byte every :data:`TRICKLE_INTERVAL` seconds, forever.
    ``wants_credentials``: answer every CONNECT 407 Proxy Authentication Required, whatever credentials came.
    """

    def __init__(self, slow_connect: bool = False, wants_credentials: bool = False):
        self.slow_connect = slow_connect
        self.wants_credentials = wants_credentials
        self.tunnels: list[str] = []
        self.connections = 0
        self._received: list[bytes] = []
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def everything(self) -> bytes:
        """Every byte clients sent to the proxy, tunnelled ones included."""
        with self._lock:
            return b"".join(self._received)

    def _record(self, data: bytes) -> None:
        with self._lock:
            self._received.append(data)

    def serve(self, connection: socket.socket) -> None:
        self.connections += 1
        try:
            connection.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                self._record(chunk)
                head += chunk
            method, target = head.split(b" ", 2)[:2]
            if method == b"CONNECT":
                self.tunnels.append(target.decode())
                if self.wants_credentials:
                    connection.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                       b"Proxy-Authenticate: Basic realm=\"loopback\"\r\nContent-Length: 0\r\n\r\n")
                    return
                if self.slow_connect:
                    for byte in b"HTTP/1.1 200 Connection established\r\nX-Slow: " + b"a" * 100_000:
                        if self._stop.wait(TRICKLE_INTERVAL) or _gone(connection):
                            return
                        connection.sendall(bytes((byte,)))
                host, _colon, port = target.decode().rpartition(":")
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
                connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = head.partition(b"\r\n\r\n")[2]
            else:  # an absolute-form request: POST http://host:port/path HTTP/1.1
                authority = target.split(b"/")[2].decode()
                host, _colon, port = authority.rpartition(":")
                upstream = socket.create_connection((host, int(port or 80)), timeout=30)
                rest = head.replace(target, b"/" + target.split(b"/", 3)[3], 1)
            with upstream:
                if rest:
                    upstream.sendall(rest)
                _pump(connection, upstream, record=self._record)
        except (OSError, ValueError, IndexError):
            pass


def _pump(client: socket.socket, upstream: socket.socket, record=None) -> None:
    """Relay bytes both ways until either side closes (or nothing moves for 30 s)."""
    while True:
        readable = select.select([client, upstream], [], [], 30)[0]
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            if source is client and record is not None:
                record(data)
            (upstream if source is client else client).sendall(data)


def certificate_authority(directory: pathlib.Path) -> tuple[pathlib.Path, ssl.SSLContext]:
    """A throw-away CA's certificate file, and a server context whose certificate (localhost, 127.0.0.1) it signed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Throw-away test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return ca_path, context
