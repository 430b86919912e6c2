"""One environment, one outcome (issue #10 case 17): the callback, the module and ``fab`` reach Retrace -- or
refuse to -- under the same CA bundle and proxy variables.

Everything is real and on loopback: the emulator behind a TLS front whose certificate comes from a
throw-away CA, a CONNECT proxy that records what it tunnels, ``ansible-playbook`` with the callback,
``ansible-playbook`` with the module, and ``fab retrace.start``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pathlib
import select
import socket
import ssl
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from retrace_emulator.accounts import DEMO_API_KEY
from retrace_emulator.server import RetraceEmulator

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
RUN_TIMEOUT = 120


def _certificate_authority(directory: pathlib.Path) -> tuple[pathlib.Path, ssl.SSLContext]:
    """A CA certificate file, and a server context whose certificate (localhost, 127.0.0.1) it signed."""
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


class _Relay:
    """Accepts on a loopback port and relays each connection to ``upstream``; optionally TLS or an HTTP CONNECT proxy."""

    def __init__(self, upstream: tuple[str, int] | None = None, tls: ssl.SSLContext | None = None):
        self.upstream, self.tls = upstream, tls
        self.tunnels: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            upstream = self.upstream
            if upstream is None:  # a proxy: read "CONNECT host:port HTTP/1.1" and the headers
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = client.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                target = request.split(b" ")[1].decode()
                self.tunnels.append(target)
                host, _colon, port = target.rpartition(":")
                upstream = (host, int(port))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with socket.create_connection(upstream) as server:
                self._pump(client, server)
        except (OSError, ssl.SSLError):
            pass  # a client that refused our certificate hangs up: that is the point of some tests
        finally:
            client.close()

    @staticmethod
    def _pump(one: socket.socket, other: socket.socket) -> None:
        while True:
            readable = select.select([one, other], [], [], 10)[0]
            if not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (other if source is one else one).sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def tls_retrace(tmp_path_factory):
    """(https URL of the emulator behind a TLS front, CA file, emulator, proxy)."""
    directory = tmp_path_factory.mktemp("tls")
    ca_path, server_context = _certificate_authority(directory)
    with RetraceEmulator() as emulator:
        host, port = emulator.url.split("//")[1].split(":")
        front = _Relay(upstream=(host, int(port)), tls=server_context)
        proxy = _Relay()
        yield f"https://127.0.0.1:{front.port}", ca_path, emulator, proxy
        front.close()
        proxy.close()


def _environment(home: pathlib.Path, url: str, extra: dict) -> dict:
    keep = ("PATH", "LANG", "ANSIBLE_COLLECTIONS_PATH")
    environ = {name: os.environ[name] for name in keep if name in os.environ}
    environ.update(HOME=str(home), PYTHONPATH=str(REPO_ROOT), RETRACE_API_KEY=DEMO_API_KEY, RETRACE_API_URL=url,
                   RETRACE_APP_NAME="DemoApp", RETRACE_ENVIRONMENT_NAME="Production",
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
                   ANSIBLE_HOME=str(home / "ansible"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_RETRY_FILES_ENABLED="false",
                   GIT_CEILING_DIRECTORIES=str(home.parent))
    environ.update(extra)
    return environ


def _run(command: list[str], directory: pathlib.Path, environ: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=directory, env=environ, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)


def run_callback(directory: pathlib.Path, environ: dict, version: str):
    playbook = directory / "callback.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                     "tasks": [{"ansible.builtin.command": "true"}]}]))
    environ = {**environ, "ANSIBLE_CALLBACKS_ENABLED": "stackify.retrace.deployment", "RETRACE_VERSION": version,
               "RETRACE_TIMEOUT": "2", "RETRACE_DEADLINE": "3"}
    return _run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)], directory, environ)


def run_module(directory: pathlib.Path, environ: dict, version: str):
    playbook = directory / "module.yml"
    task = {"stackify.retrace.deployment": {"state": "started", "version": version, "timeout": 2, "deadline": 3}}
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
    return _run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)], directory, environ)


def run_fab(directory: pathlib.Path, environ: dict, version: str):
    (directory / "fabfile.py").symlink_to(REPO_ROOT / "fabfile.py")
    (directory / "runtime.yaml").write_text("run: {in_stream: false}\nretrace: {timeout: 2, deadline: 3}\n")
    return _run([str(BIN / "fab"), "-f", "runtime.yaml", "retrace.start", "--version", version], directory, environ)


ENTRY_POINTS = {"callback": run_callback, "module": run_module, "fab": run_fab}


def _reached(emulator, version: str) -> bool:
    return any(entry["body"].get("Version") == version and entry["status"] == 202 for entry in emulator.requests("start"))


#: scenario -> (environment, given the CA file and the proxy URL; expected: reached Retrace, went through the proxy)
SCENARIOS = {
    "no CA given: TLS stays verified": (lambda ca, proxy: {}, False, False),
    "SSL_CERT_FILE": (lambda ca, proxy: {"SSL_CERT_FILE": ca}, True, False),
    "REQUESTS_CA_BUNDLE": (lambda ca, proxy: {"REQUESTS_CA_BUNDLE": ca}, True, False),
    "proxy, no_proxy 127.0.0.0/8": (lambda ca, proxy: {"SSL_CERT_FILE": ca, "https_proxy": proxy, "no_proxy": "127.0.0.0/8"},
                                    True, False),
    "proxy": (lambda ca, proxy: {"REQUESTS_CA_BUNDLE": ca, "HTTPS_PROXY": proxy}, True, True),
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_entry_point_reaches_the_same_outcome(tls_retrace, tmp_path, scenario, entry_point):
    url, ca_path, emulator, proxy = tls_retrace
    variables, reaches, proxied = SCENARIOS[scenario]
    version = f"{entry_point}-{len(emulator.journal())}-{abs(hash(scenario)) % 10000}"
    tunnels_before = len(proxy.tunnels)
    home = tmp_path / "home"
    home.mkdir()

    result = ENTRY_POINTS[entry_point](tmp_path, _environment(home, url, variables(str(ca_path), f"http://127.0.0.1:{proxy.port}")),
                                       version)

    output = result.stdout + result.stderr
    assert _reached(emulator, version) is reaches, output
    assert (len(proxy.tunnels) > tunnels_before) is proxied, output
    if not reaches:
        assert "certificate verif" in output.lower() or "tls" in output.lower(), output
    assert DEMO_API_KEY not in output
