"""AnsibleUrlsTransport against a real loopback HTTP server: every status comes back, nothing is followed."""

import http.server
import sys
import threading
import time

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils._ansible_transport import AnsibleUrlsTransport
from ansible_collections.stackify.retrace.plugins.module_utils.transport import ConnectionFailed, TimedOut


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), body))
        status = int(self.path.rsplit("/", 1)[-1])
        if status == 299:
            time.sleep(1)
            status = 202
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Retry-After", "7")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # The time-out test's client has hung up by the time the slow answer is written: expected, not a traceback.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(name="server")
def fixture_server():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server, status):
    return f"http://127.0.0.1:{server.server_address[1]}/api/{status}"


@pytest.mark.parametrize("status", [202, 400, 401, 409, 503])
def test_every_status_is_returned_with_headers_and_body(server, status):
    response = AnsibleUrlsTransport().post(url(server, status), b'{"a":1}', {"Authorization": "ApiKey k"}, 5)
    assert (response.status, response.headers["retry-after"], response.body) == (status, "7", b"{}")
    path, headers, body = server.received[0]
    assert body == b'{"a":1}' and headers["Authorization"] == "ApiKey k"


def test_redirects_are_not_followed(server):
    response = AnsibleUrlsTransport().post(url(server, 302), b"{}", {}, 5)
    assert response.status == 302 and len(server.received) == 1


def test_netrc_never_replaces_the_authorization_header(server, tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login user password netrc-password\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    AnsibleUrlsTransport().post(url(server, 202), b"{}", {"Authorization": "ApiKey k"}, 5)
    assert server.received[0][1]["Authorization"] == "ApiKey k"


def test_slow_answers_time_out(server):
    with pytest.raises(TimedOut):
        AnsibleUrlsTransport().post(url(server, 299), b"{}", {}, 0.2)


def test_refused_connections_are_reported(server):
    closed = url(server, 202)
    server.shutdown()
    server.server_close()
    with pytest.raises(ConnectionFailed):
        AnsibleUrlsTransport().post(closed, b"{}", {}, 2)
