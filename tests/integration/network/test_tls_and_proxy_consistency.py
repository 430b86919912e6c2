"""One environment, one outcome: the callback, the module and ``fab`` reach Retrace -- or
refuse to -- under the same CA bundle and proxy variables.

Everything is real and on loopback: the emulator behind a TLS front whose certificate comes from a
throw-away CA, a CONNECT proxy that records what it tunnels, ``ansible-playbook`` with the callback,
``ansible-playbook`` with the module, and ``fab retrace.start``.
"""

from __future__ import annotations

import socket

import pytest

from entry_points import ENTRY_POINTS, environment
from loopback_servers import CapturingProxy, TlsFront, certificate_authority
from retrace_emulator.accounts import DEMO_API_KEY
from retrace_emulator.server import RetraceEmulator


@pytest.fixture(scope="module")
def tls_retrace(tmp_path_factory):
    """(https URL of the emulator behind a TLS front, CA file, emulator, proxy)."""
    directory = tmp_path_factory.mktemp("tls")
    ca_path, server_context = certificate_authority(directory)
    with RetraceEmulator() as emulator, TlsFront(emulator.port, server_context) as front, CapturingProxy() as proxy:
        yield front.url, ca_path, emulator, proxy


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

    result = ENTRY_POINTS[entry_point](tmp_path, environment(home, url, variables(str(ca_path), f"http://127.0.0.1:{proxy.port}")),
                                       version)

    output = result.output
    assert _reached(emulator, version) is reaches, output
    assert (len(proxy.tunnels) > tunnels_before) is proxied, output
    if not reaches:
        assert "certificate verif" in output.lower() or "tls" in output.lower(), output
    assert DEMO_API_KEY not in output


# --- a plain-http API (loopback only) is never reached through a proxy: the key would cross it in clear --------

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
#: the variables that once sent an http:// API's request -- Authorization header included -- to the proxy
PLAIN_HTTP_SCENARIOS = {
    "every proxy variable": lambda proxy: dict.fromkeys(PROXY_VARIABLES, proxy),
    "http_proxy empty, HTTP_PROXY set": lambda proxy: {"http_proxy": "", "HTTP_PROXY": proxy},
    "REQUEST_METHOD and HTTP_PROXY (CGI)": lambda proxy: {"REQUEST_METHOD": "GET", "HTTP_PROXY": proxy},
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("scenario", PLAIN_HTTP_SCENARIOS)
def test_no_entry_point_sends_a_plain_http_request_through_a_proxy(tmp_path, scenario, entry_point):
    with RetraceEmulator() as emulator, CapturingProxy() as proxy:
        home = tmp_path / "home"
        home.mkdir()
        result = ENTRY_POINTS[entry_point](tmp_path, environment(home, emulator.url, PLAIN_HTTP_SCENARIOS[scenario](proxy.url)),
                                           f"{entry_point}-plain")
        output = result.output
        assert _reached(emulator, f"{entry_point}-plain"), output
        assert proxy.connections == 0 and DEMO_API_KEY.encode() not in proxy.everything, output


# --- a proxy that fails is named, never its password ------------------------------------------------------

@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_dead_proxy_is_named_with_its_variable_and_without_its_password(tls_retrace, tmp_path, entry_point):
    url, ca_path, emulator, _proxy = tls_retrace
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]  # bound, never listening: connections to it are refused
        home = tmp_path / "home"
        home.mkdir()
        variables = {"SSL_CERT_FILE": str(ca_path), "HTTPS_PROXY": f"http://deployer:s3cret-pw@127.0.0.1:{dead_port}"}
        result = ENTRY_POINTS[entry_point](tmp_path, environment(home, url, variables), f"{entry_point}-dead-proxy")
    output = " ".join(result.output.split())
    assert f"proxy http://127.0.0.1:{dead_port} (from HTTPS_PROXY): connection refused" in output, output
    assert "s3cret-pw" not in output and "deployer" not in output
    assert not _reached(emulator, f"{entry_point}-dead-proxy")
