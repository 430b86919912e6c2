"""Clients that hold the emulator's connections: a request trickled in byte by byte, more connections than it serves.

No test guesses how long anything takes. Each waits for an answer or a close on a socket whose timeout is BOUND, a
bound far from both sides: a request_timeout of half a second closes well within it, while a server that only times
out idle reads never does (the trickle never pauses for long, and the idle timeout is set above BOUND).
"""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time

import pytest

from retrace_emulator import DEMO_API_KEY, RetraceEmulator
from retrace_emulator.server import MAX_CONNECTIONS

#: seconds: what "bounded" means here (request_timeout is 0.5 s; idle_timeout, never reached by a trickle, is 60 s)
BOUND = 20.0
REQUEST_TIMEOUT = 0.5
IDLE_TIMEOUT = 60.0
#: seconds between two bytes of a trickle: never idle for the server
TRICKLE_PACE = 0.05


class Trickle:
    """Sends ``head`` then ``filler`` over and over, one byte at a time, until the server closes or ``stop()``."""

    def __init__(self, connection: socket.socket, head: bytes, filler: bytes):
        self.connection = connection
        self.sent = 0
        self._bytes = itertools.chain(head, itertools.cycle(filler))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for byte in self._bytes:
            try:
                self.connection.send(bytes([byte]))
            except OSError:
                return  # the server closed: the trickle is over
            self.sent += 1
            if self._stopped.wait(TRICKLE_PACE):
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(BOUND)


def _until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; fails when it is still open after BOUND seconds."""
    connection.settimeout(BOUND)
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            pytest.fail(f"the connection is still open after {BOUND:g} s; received so far: {received!r}")
        if not chunk:
            return received
        received += chunk


@pytest.fixture
def strict_emulator():
    with RetraceEmulator(idle_timeout=IDLE_TIMEOUT, request_timeout=REQUEST_TIMEOUT) as emulator:
        yield emulator


def test_a_request_line_and_headers_sent_a_byte_at_a_time_are_cut_off(strict_emulator):
    """A slow header line holds no thread past request_timeout: the connection is closed, with nothing to journal."""
    with socket.create_connection(("127.0.0.1", strict_emulator.port), timeout=BOUND) as connection:
        trickle = Trickle(connection, b"POST /api/v1/deployments/start HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 40 + b"\r\n")
        try:
            received = _until_closed(connection)
        finally:
            trickle.stop()
    assert received == b"", "nothing could be routed: no answer"
    assert trickle.sent > 0
    assert strict_emulator.journal() == []


def test_a_body_sent_a_byte_at_a_time_is_answered_408_and_journalled(strict_emulator):
    head = (f"POST /api/v1/deployments/start HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey {DEMO_API_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", strict_emulator.port), timeout=BOUND) as connection:
        connection.sendall(head)
        trickle = Trickle(connection, b'{"Version": "', b"1")
        try:
            received = _until_closed(connection)
        finally:
            trickle.stop()
    assert received.startswith(b"HTTP/1.1 408 "), received
    [entry] = strict_emulator.journal()
    assert (entry["status"], entry["body_raw"], entry["processed"]) == (408, None, False)
    assert entry["response"]["Message"] == "The request did not arrive whole within 0.5 s (request_timeout)"
    assert strict_emulator.deployments() == []


def test_the_request_time_starts_with_the_request_not_with_the_connection(strict_emulator):
    """A kept-alive connection may wait between requests (idle_timeout): each request has request_timeout of its own."""
    connection = http.client.HTTPConnection("127.0.0.1", strict_emulator.port, timeout=BOUND)
    try:
        for _request in range(2):
            connection.request("GET", "/_emulator/health")
            assert connection.getresponse().read()
            time.sleep(REQUEST_TIMEOUT * 3)  # longer than a request may take: not counted against the next one
        connection.request("POST", "/api/v1/deployments/start", '{"Version": "1", "AppName": "DemoApp", "EnvironmentName": "Production"}',
                           {"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"})
        assert connection.getresponse().status == 202
    finally:
        connection.close()


def test_a_body_that_stops_arriving_is_answered_408_at_the_idle_timeout():
    with RetraceEmulator(idle_timeout=0.5, request_timeout=IDLE_TIMEOUT) as emulator:
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=BOUND) as connection:
            connection.sendall(b"POST /api/v1/deployments/start HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
            received = _until_closed(connection)
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert emulator.journal()[0]["response"]["Message"] == "The request stopped arriving: nothing came for 0.5 s (idle_timeout)"


@pytest.mark.parametrize("options", [{"request_timeout": 0}, {"request_timeout": -1}, {"request_timeout": float("nan")},
                                     {"request_timeout": float("inf")}, {"idle_timeout": 0}, {"max_connections": 0},
                                     {"max_connections": 2.5}, {"max_connections": True}])
def test_limits_that_are_no_limits_are_refused(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        RetraceEmulator(**options)


# -- how many connections at once ----------------------------------------------------------------------

def _get_health(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
    connection.request("GET", "/_emulator/health")
    response = connection.getresponse()
    response.read()
    return response


def test_connections_beyond_max_connections_are_answered_503_and_hold_no_thread():
    with RetraceEmulator(max_connections=4) as emulator:
        threads_before = threading.active_count()
        held = [http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=BOUND) for _held in range(4)]
        try:
            for connection in held:  # each is served, and stays open (kept alive) with its thread
                assert _get_health(connection).status == 200
            for _extra in range(20):
                extra = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=BOUND)
                try:
                    busy = _get_health(extra)
                finally:
                    extra.close()
                assert (busy.status, busy.getheader("Retry-After"), busy.getheader("Connection")) == (503, "1", "close")
            assert threading.active_count() <= threads_before + 4
            for connection in held:
                assert _get_health(connection).status == 200, "the connections held are still served"
            held.pop().close()
            # Its thread notices the close and gives its place back: a new connection is served again (soon; BOUND at most).
            deadline = time.monotonic() + BOUND
            while True:
                again = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=BOUND)
                try:
                    status = _get_health(again).status
                finally:
                    again.close()
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert status == 200
        finally:
            for connection in held:
                connection.close()
        assert emulator.journal() == [], "control calls and refused connections are not journalled"


def test_idle_connections_are_capped_by_default():
    """The breaker's case: 1000 idle connections gave 1003 threads. By default MAX_CONNECTIONS are served; the next
    ones are answered 503 at once, whatever the ones before them do."""
    with RetraceEmulator() as emulator:
        threads_before = threading.active_count()
        idle = []
        try:
            for _connection in range(MAX_CONNECTIONS):  # each served once, then idle (kept alive): its thread waits
                idle.append(http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=BOUND))
                assert _get_health(idle[-1]).status == 200
            for _extra in range(20):
                with socket.create_connection(("127.0.0.1", emulator.port), timeout=BOUND) as extra:
                    answer = _until_closed(extra)
                assert answer.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in answer, answer
            assert threading.active_count() <= threads_before + MAX_CONNECTIONS
        finally:
            for connection in idle:
                connection.close()
    assert MAX_CONNECTIONS == 256
