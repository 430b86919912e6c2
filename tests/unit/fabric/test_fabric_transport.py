"""The transport Fabric uses (the core's UrllibTransport, as the callback does), against real loopback servers."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from retrace_fabric.core.transport import ConnectionFailed, TimedOut, TlsFailed
from retrace_fabric.core.transport import UrllibTransport as RequestsTransport  # the name these tests grew up with
from retrace_fabric.tracking import new_run

HEADERS = {"Authorization": "ApiKey emulator-demo-key", "Content-Type": "application/json"}
BODY = b'{"Version":"1","AppName":"DemoApp","EnvironmentName":"Production"}'


def test_an_answer_of_any_status_is_returned(emulator):
    transport = RequestsTransport()
    accepted = transport.post(f"{emulator.url}/api/v1/deployments/start", BODY, HEADERS, 2)
    refused = transport.post(f"{emulator.url}/api/v1/deployments/start", BODY, {**HEADERS, "Authorization": "ApiKey nope"}, 2)

    assert accepted.status == 202 and b"Accepted" in accepted.body
    assert accepted.headers["content-type"].startswith("application/json")
    assert refused.status == 401


def test_a_closed_port_is_a_connection_failure(emulator):
    url = f"{emulator.url}/api/v1/deployments/start"
    emulator.stop()
    with pytest.raises(ConnectionFailed, match="connection refused"):
        RequestsTransport().post(url, BODY, HEADERS, 2)


def test_a_silent_server_times_out(emulator):
    emulator.inject("start", [{"hang": 3}])
    with pytest.raises(TimedOut):
        RequestsTransport().post(f"{emulator.url}/api/v1/deployments/start", BODY, HEADERS, 0.3)


def test_a_dropped_connection_is_a_connection_failure(emulator):
    emulator.inject("start", [{"drop": True}])
    with pytest.raises(ConnectionFailed):
        RequestsTransport().post(f"{emulator.url}/api/v1/deployments/start", BODY, HEADERS, 2)


class _Redirect(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # pylint: disable=invalid-name
        self.send_response(307)
        self.send_header("Location", "http://127.0.0.2:9/steal")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture
def serve():
    servers = []

    def start(handler, tls_context=None):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls_context:
            server.socket = tls_context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_redirects_are_returned_not_followed(serve):
    port = serve(_Redirect)
    answer = RequestsTransport().post(f"http://127.0.0.1:{port}/api/v1/deployments/start", BODY, HEADERS, 2)
    assert answer.status == 307 and answer.headers["location"].endswith("/steal")


def _self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


def test_an_untrusted_certificate_fails_tls_and_a_given_ca_bundle_is_trusted(serve, tmp_path):
    context, cert_path = _self_signed(tmp_path)
    url = f"https://localhost:{serve(_Redirect, context)}/api/v1/deployments/start"

    with pytest.raises(TlsFailed, match="TLS certificate verification failed"):
        RequestsTransport().post(url, BODY, HEADERS, 2)
    assert RequestsTransport(ca_path=str(cert_path)).post(url, BODY, HEADERS, 2).status == 307
    assert RequestsTransport(validate_certs=False).post(url, BODY, HEADERS, 2).status == 307


def test_fabric_builds_the_cores_urllib_transport_with_its_tls_settings(clean_environment):
    config = {"retrace": {"app_name": "A", "environment_name": "E", "version": "1", "api_key": "k", "validate_certs": "no",
                          "ca_path": "/ca.pem", "detect_source": False}}
    _run, target, _resolved = new_run(config, owner_pid=None)
    client = target.client
    assert isinstance(client.transport, RequestsTransport)
    assert (client.transport.validate_certs, client.transport.ca_path) == (False, "/ca.pem")
