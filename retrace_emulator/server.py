"""A real HTTP server that behaves like Retrace's deployment API, for tests and demos.

Why the standard library only (http.server.ThreadingHTTPServer plus a few socket calls):
- nothing to install: the emulator runs wherever Python 3.11 runs, in CI, on a laptop, next to a playbook;
- the faults it injects (dropped connections, TCP resets, hanging answers, lost answers to processed
  requests) need socket-level control that higher-level frameworks hide.

The emulator is meant for loopback testing only: it binds 127.0.0.1 by default and its control
endpoints under /_emulator/ need no API key. At / it serves a read-only web page of what it received (page.py).
A web page of another site cannot use them through a visitor's browser: the page and the control endpoints answer
only a Host that no DNS answer can forge (see `host_allowed`), and their writes only a same-origin JSON request.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import math
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from retrace_emulator import page
from retrace_emulator.accounts import Account, key_fingerprint, normalize_accounts
from retrace_emulator.contract import ACTIONS, RetraceContract, Rejection, decode_json_body, parse_authorization
from retrace_emulator.faults import Fault, FaultQueue, reason_phrase
from retrace_emulator.journal import RECORDED_HEADERS, Journal, redact, redact_entry

LOG = logging.getLogger("retrace_emulator")

API_PREFIX = "/api/v1/deployments/"
API_PATHS = {API_PREFIX + action: action for action in ACTIONS}
CONTROL_PREFIX = "/_emulator/"
MAX_BODY_BYTES = 1024 * 1024
#: seconds a connection may sit idle (no request, or a request that stopped arriving) before it is closed: each one
#: holds a thread
IDLE_TIMEOUT = 30.0
#: seconds a request may take to arrive whole, request line, headers and body, from its first byte: a client that
#: trickles one byte a second never sits idle, and would hold its connection and thread for ever
REQUEST_TIMEOUT = 30.0
#: connections served at once, each by a thread of its own; the next ones are answered 503 with Retry-After and closed
MAX_CONNECTIONS = 256
#: what a connection beyond MAX_CONNECTIONS is answered, before its request is read (no thread is started for it)
BUSY_RETRY_AFTER = "1"
# RFC 9112: Content-Length = 1*DIGIT; a chunk size is 1*HEXDIG. Python's int() also takes "+5", " 5", "5_0", "0x5", "٥".
_DIGITS = re.compile(r"[0-9]+")
_HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]+")
OUTCOME_OF_EFFECT = {"drop": "dropped", "reset": "reset", "hang": "hung"}


class RetraceEmulator:
    """The emulated Retrace deployment API. Use as a context manager or call start() and stop().

    accounts: API key -> Account (or mapping with "apps" and "environments"); None gives the demo
    account (DEMO_API_KEY with DemoApp in Production and Staging).
    allow_any_app: accept any AppName/EnvironmentName for every known key.
    journal_path: also write the journal there as JSON lines.
    idle_timeout: seconds a connection may wait for the next bytes of a request before it is closed.
    request_timeout: seconds a request may take to arrive whole (request line, headers and body), from its first byte.
    max_connections: connections served at once; the next ones are answered 503 with Retry-After and closed.
    """

    def __init__(self, accounts: Mapping[str, Account | Mapping] | None = None, host: str = "127.0.0.1", port: int = 0,
                 journal_path: str | None = None, allow_any_app: bool = False, idle_timeout: float = IDLE_TIMEOUT,
                 request_timeout: float = REQUEST_TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        for name, value in (("idle_timeout", idle_timeout), ("request_timeout", request_timeout)):
            if not 0 < value < math.inf:  # NaN too
                raise ValueError(f"{name} must be a finite number of seconds above 0, not {value!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a whole number of 1 or more, not {max_connections!r}")
        self.accounts = normalize_accounts(accounts)
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.host = host
        self.port = port
        self.contract = RetraceContract(self.accounts, allow_any_app)
        self.faults = FaultQueue()
        self._journal = Journal(journal_path)
        self._generation = _new_generation()
        self.stopping = threading.Event()
        self.decision_lock = threading.Lock()  # the contract's verdict and its journal entry, taken together
        self._server: _EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RetraceEmulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to give clients as the API URL, e.g. http://127.0.0.1:40123."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> RetraceEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self.stopping = threading.Event()
        self._server = _EmulatorHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._journal.open_file()
        # A short poll interval makes stop() prompt: shutdown() waits for the serve loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"retrace-emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and return promptly, even while requests hang."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()  # wakes handlers that hang or delay
        server.shutdown()
        server.close_live_connections()  # wakes handlers waiting for the next request on a kept-alive connection
        server.server_close()  # joins the handler threads
        self._thread.join()
        self._journal.close()

    def journal(self) -> list[dict]:
        """Copies of every journal entry, oldest first."""
        return self._journal.entries()

    def requests(self, action: str | None = None) -> list[dict]:
        """Journal entries of deployment API calls (all actions, or only the one given)."""
        return [entry for entry in self.journal() if entry["action"] and action in (None, entry["action"])]

    def journal_after(self, seq: int, limit: int, view: Callable[[dict], Any] | None = None) -> tuple[list[Any], int]:
        """Copies of the newest ``limit`` journal entries after ``seq`` (or what ``view`` makes of each, without changing
        it), and how many entries follow ``seq`` in all."""
        return self._journal.entries_after(seq, limit, view)

    @property
    def generation(self) -> str:
        """Changes at every reset(): a reader that follows the journal by ``seq`` must then start over."""
        return self._generation

    def deployments(self) -> list[dict]:
        """Current state of every deployment the emulator has seen (a key a client put in a field is redacted)."""
        return redact(self.contract.book.snapshot(), self.accounts)

    def inject(self, action: str, faults: Iterable[Mapping | Fault]) -> int:
        """Queue faults for "start", "complete", "cancel" or "*"; each is used by one request. Return how many."""
        return self.faults.push(action, faults)

    def pending_faults(self) -> dict[str, list[dict]]:
        return self.faults.pending()

    def reset(self) -> None:
        """Forget journal, deployments and queued faults (the journal file keeps its lines)."""
        self._journal.clear()
        self.contract.book.clear()
        self.faults.clear()
        self._generation = _new_generation()  # last: a reader that sees the new generation finds the journal cleared

    def record(self, entry: dict) -> int:
        """Journal an entry (already redacted) and log it; return its sequence number."""
        seq = self._journal.record(entry)
        LOG.info("%s %s -> %s key=%s%s", entry["method"], entry["path"], entry["status"] or entry["outcome"],
                 entry["key_fingerprint"] or "-", f" fault={entry['fault']}" if entry["fault"] else "")
        return seq


class _EmulatorHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its live connections, so stop() can close them, and serves at most
    ``max_connections`` of them at once (each holds a thread): the next ones are answered 503 and closed."""

    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 makes bursts of parallel clients wait for SYN retries

    def __init__(self, address: tuple[str, int], emulator: RetraceEmulator):
        self.emulator = emulator
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(emulator.max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def process_request(self, request, client_address):
        # Runs in the serving thread, for each connection accepted: a slot is taken here and given back when the
        # connection is shut down, by its handler thread (or here, when that thread could not start).
        if not self._slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._live_lock:
            held = request in self._live
            self._live.discard(request)
        if held:
            self._slots.release()
        super().shutdown_request(request)

    def _refuse(self, request: socket.socket, client_address) -> None:
        """Answer 503 with Retry-After and close, without a thread and without waiting. Whatever the client has sent
        already is read (up to a limit) and dropped first, so that the close sends FIN rather than RST: a client that
        gets an RST may fail while still sending its request, never reading the answer."""
        LOG.info("connection from %s refused with 503: max_connections (%d) are open", client_address[0], self.emulator.max_connections)
        try:
            request.setblocking(False)
            request.send(_BUSY_ANSWER)
            request.shutdown(socket.SHUT_WR)
            for _read in range(16):
                if not request.recv(65536):
                    break
        except OSError:
            pass  # nothing (more) to read now, or the client is gone
        finally:
            request.close()

    def close_live_connections(self) -> None:
        with self._live_lock:
            live = list(self._live)
        for connection in live:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler

    def handle_error(self, request, client_address):
        # Clients that vanish mid-answer are normal under fault injection: no traceback on stderr.
        LOG.debug("connection from %s ended with an error", client_address, exc_info=True)


_BUSY_BODY = json.dumps({"Message": "The emulator is serving as many connections as it may (max_connections): retry later"}).encode()
_BUSY_ANSWER = (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {BUSY_RETRY_AFTER}\r\n"
                f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(_BUSY_BODY)}\r\n"
                "Connection: close\r\n\r\n").encode("ascii") + _BUSY_BODY


class _RequestClock(io.RawIOBase):
    """The connection's bytes as the handler reads them, each read bounded twice: by the idle timeout, and once a
    request has begun arriving, by what is left of its own time (`RetraceEmulator.request_timeout`).

    The socket's timeout applies to one read only: a client that sends a byte a second is never idle. So the time
    left is applied again as the timeout before each read, and a read once it is spent fails at once. (A request
    usually arrives in the read that waited for its first byte: then the socket's timeout is never changed.)
    """

    def __init__(self, connection: socket.socket, idle_timeout: float, request_timeout: float):
        super().__init__()
        self._connection = connection
        self._idle_timeout = idle_timeout
        self._request_timeout = request_timeout
        self._deadline: float | None = None
        self._timeout = idle_timeout
        connection.settimeout(idle_timeout)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        timeout = self._idle_timeout
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request's time is up")
            timeout = min(timeout, left)
        self._set_timeout(timeout)
        return self._connection.recv_into(buffer)

    def request_began(self) -> None:
        self._deadline = time.monotonic() + self._request_timeout

    def request_read(self) -> None:
        """The request arrived (or will not be read further): the answer is written under the idle timeout alone."""
        self._deadline = None
        self._set_timeout(self._idle_timeout)

    def why_timed_out(self) -> str:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return f"The request did not arrive whole within {self._request_timeout:g} s (request_timeout)"
        return f"The request stopped arriving: nothing came for {self._idle_timeout:g} s (idle_timeout)"

    def _set_timeout(self, timeout: float) -> None:
        if timeout != self._timeout:  # a system call each time: only when it changes
            self._connection.settimeout(timeout)
            self._timeout = timeout


class _RequestHandler(BaseHTTPRequestHandler):
    """Reads one request, applies any fault, asks the contract, records the journal entry, answers."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real service behind its load balancer
    server_version = "RetraceEmulator/1.0"
    sys_version = ""
    # Headers and body go out in two writes; with Nagle's algorithm the body waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _EmulatorHTTPServer

    def setup(self):
        # An idle connection (keep-alive, or a client that stopped sending) is closed instead of holding its thread for
        # ever, and so is one whose request takes longer than request_timeout to arrive, however it trickles in.
        emulator = self.server.emulator
        super().setup()
        self.rfile.close()  # the socket's own reader, made by StreamRequestHandler: replaced by one that keeps time
        self.clock = _RequestClock(self.connection, emulator.idle_timeout, emulator.request_timeout)
        self.rfile = io.BufferedReader(self.clock)

    def handle_one_request(self):
        """Wait (idle_timeout at most) for a request's first byte; from there it has request_timeout to arrive whole."""
        self.clock.request_read()
        try:
            began = self.rfile.peek(1)
        except TimeoutError:
            began = b""
        if not began:
            self.close_connection = True  # idle, or closed by the client
            return
        self.clock.request_began()
        super().handle_one_request()

    def __getattr__(self, name: str):
        # Every method, TRACE, CONNECT and made-up ones too, takes the same route: it answers 404 or 405 as the path
        # says (with the page's headers on the page's paths), never the standard library's bare 501 page.
        if name.startswith("do_"):
            return self._route
        raise AttributeError(name)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Silenced: RetraceEmulator.record logs every API request without keys; the base class's
        lines quote the raw request line, whose query string could carry a key."""

    @property
    def emulator(self) -> RetraceEmulator:
        return self.server.emulator

    def _route(self) -> None:
        path = urlsplit(self.path).path
        name = page.page_file(path)
        if (name is not None or path.startswith(CONTROL_PREFIX)) and not host_allowed(self.headers.get("Host"), self.emulator.host):
            self.close_connection = True  # its body, if any, is not read
            self._send_json(403, {"Message": "The page and /_emulator/ answer only a Host that is localhost, an IP address "
                                             "or the address the emulator was started with"})
        elif name is not None and (self.command in page.METHODS or path.startswith(CONTROL_PREFIX)):
            self._page_file(name)
        elif path.startswith(CONTROL_PREFIX):
            self._control(path)
        else:
            self._api(API_PATHS.get(path), page_path=name is not None)

    # -- deployment API -------------------------------------------------------------------------------

    def _api(self, action: str | None, page_path: bool = False) -> None:
        """A deployment call, or any other request off the control paths (recorded too: a misdirected client shows)."""
        entry = self._new_entry(action if self.command == "POST" else None)
        try:
            raw = self._read_body()
        except Rejection as rejection:
            self.close_connection = True  # the unread body would be taken for the next request
            self._answer(entry, rejection.status, {"Message": rejection.message})
            return
        entry["body_raw"] = raw.decode("utf-8", errors="replace")
        entry["body"] = decode_json_body(raw)[0]
        if page_path:  # the page is read-only
            self._answer(entry, 405, {"Message": f"{self.command} is not allowed here: the page is read-only"},
                         [("Allow", ", ".join(page.METHODS)), *page.SECURITY_HEADERS])
        elif action is None:
            self._answer(entry, 404, {"Message": f"No such endpoint: {self.command} {urlsplit(self.path).path}"})
        elif self.command != "POST":
            self._answer(entry, 405, {"Message": f"{self.command} is not allowed here: use POST"}, [("Allow", "POST")])
        else:
            self._deployment_call(entry, action, raw)

    def _deployment_call(self, entry: dict, action: str, raw: bytes) -> None:
        fault = self.emulator.faults.pop(action)
        if fault is not None:
            entry["fault"] = fault.to_spec()
            if fault.delay:
                self.emulator.stopping.wait(fault.delay)
            if fault.status is not None:
                self._answer_injected_status(entry, fault)
                return
            if fault.cuts_connection and not fault.process:
                self._cut(entry, fault)
                return
        cut = fault is not None and fault.cuts_connection
        # Decided and recorded under one lock: of two concurrent starts, the one the contract accepted (202)
        # is always journalled before the one it refused (409), so the journal reads in the order of decisions.
        with self.emulator.decision_lock:
            verdict = self.emulator.contract.evaluate(action, self.headers.get("Authorization"),
                                                      self.headers.get("Content-Type"), raw, self.headers.get("User-Agent"))
            entry.update(processed=True, processed_status=verdict.status)
            entry["warnings"].extend(verdict.warnings)
            if cut:
                self._record_cut(entry, fault)
            else:
                self._record_answer(entry, verdict.status, verdict.body)
        if cut:
            self._deliver_cut(fault)
        else:
            self._deliver_answer(verdict.status, verdict.body)

    def _new_entry(self, action: str | None) -> dict:
        return {
            "time": datetime.now(timezone.utc).isoformat(), "monotonic": time.monotonic(),
            "method": self.command, "path": self.path, "action": action,
            "status": None, "outcome": None, "processed": False, "processed_status": None, "fault": None,
            "key_fingerprint": _fingerprint_of(self.headers.get("Authorization")),
            "headers": {name: self.headers.get(name) for name in RECORDED_HEADERS},
            "body_raw": None, "body": None, "response": None, "warnings": [],
        }

    def _read_body(self) -> bytes:
        """The request's body, within the request's time; a length that is not one, or too large, refused unread."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked_body()
            return self.rfile.read(self._content_length())
        except TimeoutError:
            raise Rejection(408, self.clock.why_timed_out()) from None

    def _content_length(self) -> int:
        """The body's length (RFC 9112 6.3): a number of digits only, in one or more fields that all say the same."""
        values = [value.strip(" \t") for field in self.headers.get_all("Content-Length", []) for value in field.split(",")]
        if not values:
            return 0
        for value in values:
            if not _DIGITS.fullmatch(value):
                # int() would take "+5" or " 5"; and rfile.read() of a negative size reads until the client closes
                raise Rejection(400, "Content-Length is negative" if value.startswith("-") else "Content-Length is not a number")
        numbers = {value.lstrip("0") or "0" for value in values}  # compared as written: int() refuses 4300 digits
        if len(numbers) > 1:  # which one the client meant, and where its next request begins, no one can tell
            raise Rejection(400, "Content-Length is given more than once, with different values")
        [number] = numbers
        if len(number) > len(str(MAX_BODY_BYTES)) or int(number) > MAX_BODY_BYTES:
            raise Rejection(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
        return int(number)

    def _read_chunked_body(self) -> bytes:
        chunks, total = [], 0
        while True:
            digits = self.rfile.readline(1024).split(b";")[0].strip(b" \t\r\n")
            if not _HEX_DIGITS.fullmatch(digits):  # int(..., 16) takes "-1", "+5" and "0x5"
                raise Rejection(400, "Malformed chunked body")
            size = int(digits, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise Rejection(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF that ends each chunk
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass  # trailers: none expected, skipped
        return b"".join(chunks)

    # -- answers and faults ---------------------------------------------------------------------------

    def _answer(self, entry: dict, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Record, then send: the entry must be in the journal before the client can read the answer."""
        self._record_answer(entry, status, payload)
        self._deliver_answer(status, payload, headers)

    def _record_answer(self, entry: dict, status: int, payload: Any) -> None:
        entry.update(status=status, response=payload, outcome="answered")
        self._record(entry)

    def _deliver_answer(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        if isinstance(payload, str):
            self._send(status, payload.encode("utf-8"), "text/plain; charset=utf-8", headers)
        else:
            self._send(status, json.dumps(payload).encode("utf-8"), "application/json; charset=utf-8", headers)

    def _answer_injected_status(self, entry: dict, fault: Fault) -> None:
        payload = fault.body if fault.body is not None else {"Message": f"{reason_phrase(fault.status)} (injected by the emulator)"}
        headers = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
        self._answer(entry, fault.status, payload, headers)

    def _cut(self, entry: dict, fault: Fault) -> None:
        """Give no HTTP answer: hang first if asked, then drop (FIN) or reset (RST) the connection."""
        self._record_cut(entry, fault)
        self._deliver_cut(fault)

    def _record_cut(self, entry: dict, fault: Fault) -> None:
        entry["outcome"] = OUTCOME_OF_EFFECT[fault.connection_effect]
        self._record(entry)

    def _deliver_cut(self, fault: Fault) -> None:
        self.close_connection = True
        if fault.hang is not None:
            self.emulator.stopping.wait(None if fault.hang == math.inf else fault.hang)
        if fault.reset:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _send(self, status: int, data: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.clock.request_read()  # what is left of the request's time does not bound the answer
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up; nothing left to tell it

    def _record(self, entry: dict) -> None:
        self.emulator.record(redact_entry(entry, [*_keys_in(self.headers.get("Authorization")), *self.emulator.accounts]))

    # -- control endpoints ----------------------------------------------------------------------------

    def _control(self, path: str) -> None:
        routes = {
            "journal": {"GET": self._get_journal},
            "deployments": {"GET": lambda body: (200, self.emulator.deployments())},
            "faults": {"GET": lambda body: (200, self.emulator.pending_faults()), "POST": self._post_faults},
            "reset": {"POST": self._post_reset},
            "health": {"GET": lambda body: (200, {"status": "ok", "url": self.emulator.url})},
            "updates": {"GET": lambda body: (200, page.updates(self.emulator, urlsplit(self.path).query))},
        }
        methods = routes.get(path[len(CONTROL_PREFIX):].strip("/"))
        if methods is not None and "GET" in methods:
            methods = {**methods, "HEAD": methods["GET"]}  # HEAD answers as GET does, without the body
        try:
            raw = self._read_body()
        except Rejection as rejection:
            self.close_connection = True
            self._send_json(rejection.status, {"Message": rejection.message})
            return
        if methods is None:
            self._send_json(404, {"Message": f"No such control endpoint: {path}"})
        elif self.command not in methods:
            self._send_json(405, {"Message": f"{self.command} is not allowed here"}, [("Allow", ", ".join(methods))])
        elif self.command == "POST" and (refusal := self._cross_site_write()) is not None:
            self._send_json(*refusal)
        else:
            self._send_json(*methods[self.command](raw))

    def _cross_site_write(self) -> tuple[int, dict] | None:
        """Refuse a write another site's page could have made through its visitor's browser: a browser sends a
        cross-site form or a plain ``fetch`` only with a form or text Content-Type, and names its page in ``Origin``."""
        media_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return 415, {"Message": "Send the control endpoints JSON, with Content-Type: application/json"}
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != (self.headers.get("Host") or "").strip().lower():
            return 403, {"Message": "A page of another origin may not change the emulator"}
        return None

    def _get_journal(self, _raw: bytes) -> tuple[int, Any]:
        action = parse_qs(urlsplit(self.path).query).get("action", [None])[0]
        return 200, self.emulator.requests(action) if action else self.emulator.journal()

    def _post_faults(self, raw: bytes) -> tuple[int, Any]:
        body, reason = decode_json_body(raw)
        if reason is not None or not isinstance(body, dict):
            return 400, {"Message": reason or 'expected {"action": "start", "faults": [...]}'}
        try:
            queued = self.emulator.inject(body.get("action", ""), body.get("faults", []))
        except ValueError as error:
            return 400, {"Message": str(error)}
        return 200, {"queued": queued, "pending": self.emulator.pending_faults()}

    def _post_reset(self, _raw: bytes) -> tuple[int, Any]:
        self.emulator.reset()
        return 200, {"Message": "journal, deployments and faults cleared"}

    def _send_json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        """An answer of the control endpoints or of the page's paths: with the page's security headers."""
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json; charset=utf-8", [*headers, *page.SECURITY_HEADERS])

    # -- the web page ---------------------------------------------------------------------------------

    def _page_file(self, name: str) -> None:
        """Serve one of the page's static files (GET or HEAD only), never recorded in the journal."""
        try:
            self._read_body()
        except Rejection as rejection:
            self.close_connection = True
            self._send_json(rejection.status, {"Message": rejection.message})
            return
        if self.command not in page.METHODS:
            self._send_json(405, {"Message": f"{self.command} is not allowed here: the page is read-only"}, [("Allow", ", ".join(page.METHODS))])
            return
        self._send(200, page.read_file(name), page.FILES[name], page.SECURITY_HEADERS)


def _key_of(authorization: str | None) -> str | None:
    try:
        return parse_authorization(authorization)
    except Rejection:
        return None


#: shortest word of a malformed Authorization header taken for a key to redact (shorter ones are common words)
_MIN_KEY_LENGTH = 8


def _keys_in(authorization: str | None) -> list[str]:
    """The request's own key, to redact wherever else the request carries it; from a malformed header, each long word."""
    api_key = _key_of(authorization)
    if api_key:
        return [api_key]
    return [word for word in (authorization or "").split() if len(word) >= _MIN_KEY_LENGTH]


def host_allowed(host: str | None, bound: str) -> bool:
    """Whether the page and the control endpoints answer a request with this Host header.

    Allowed: ``localhost`` and names under ``.localhost`` (they resolve to loopback only), any IP address (a browser
    sends one only when the address was typed, never from a DNS answer), the address or name the emulator was
    started with (``--host``), and no Host at all (no browser omits it). Refused: any other name, such as the
    ``evil.example`` of a DNS-rebinding attack, where a page of that site had its name re-pointed at 127.0.0.1 to
    read the journal through its visitor's browser.
    """
    if host is None:
        return True
    name = _host_name(host)
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost") or name == bound.strip("[]").lower():
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_name(host: str) -> str | None:
    """The name or address of a Host header value, lower case, without port, brackets or a final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".") or None


def _fingerprint_of(authorization: str | None) -> str | None:
    api_key = _key_of(authorization)
    return key_fingerprint(api_key) if api_key else None


def _new_generation() -> str:
    return secrets.token_hex(4)
