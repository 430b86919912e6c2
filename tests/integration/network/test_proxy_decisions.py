"""The proxy rule (docs/core.md, "Proxies"), row by row, through every transport, against real servers on loopback.

Each row names the API's scheme, the environment, and the one outcome every transport must reach: straight to the
API ("direct"), through the proxy ("proxy"), or an error naming the proxy.  The API is a loopback server (behind a
TLS front for https) and the proxy a capturing one that relays CONNECT tunnels and plain requests, so a row that
went the wrong way shows in what the proxy received.  The key never reaches the proxy in clear, in any row.
"""

from __future__ import annotations

import base64
import socket

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import transport
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_transport import AnsibleUrlsTransport
from loopback_servers import CapturingProxy, HostileApi, TlsFront, certificate_authority

KEY = "proxy-table-key-0123456789"
TRANSPORTS = {"urllib": transport.UrllibTransport, "ansible": AnsibleUrlsTransport}

#: (API scheme, environment -- "{proxy}" is the capturing proxy's URL, "{dead}" a port nobody listens on, "{port}" the API's
#: port --, transport option use_proxy, outcome: "direct", "proxy", or the start of the error message)
ROWS = {
    # https: https_proxy, else HTTPS_PROXY; set but empty means "no proxy"
    "https, nothing set": ("https", {}, True, "direct"),
    "https, HTTPS_PROXY": ("https", {"HTTPS_PROXY": "{proxy}"}, True, "proxy"),
    "https, https_proxy": ("https", {"https_proxy": "{proxy}"}, True, "proxy"),
    "https, https_proxy wins over HTTPS_PROXY": ("https", {"https_proxy": "{proxy}", "HTTPS_PROXY": "http://127.0.0.1:{dead}"}, True, "proxy"),
    "https, empty https_proxy turns HTTPS_PROXY off": ("https", {"https_proxy": "", "HTTPS_PROXY": "{proxy}"}, True, "direct"),
    "https, empty HTTPS_PROXY": ("https", {"HTTPS_PROXY": ""}, True, "direct"),
    "https, blank https_proxy": ("https", {"https_proxy": "  ", "HTTPS_PROXY": "{proxy}"}, True, "direct"),
    "https, HTTP_PROXY only": ("https", {"HTTP_PROXY": "{proxy}", "http_proxy": "{proxy}"}, True, "direct"),
    "https, ALL_PROXY not honoured": ("https", {"ALL_PROXY": "{proxy}", "all_proxy": "{proxy}"}, True, "direct"),
    "https, REQUEST_METHOD changes nothing": ("https", {"REQUEST_METHOD": "GET", "HTTPS_PROXY": "{proxy}"}, True, "proxy"),
    "https, proxy without a scheme": ("https", {"HTTPS_PROXY": "127.0.0.1:{proxy_port}"}, True, "proxy"),
    "https, proxy with credentials": ("https", {"HTTPS_PROXY": "http://deployer:s3cret@127.0.0.1:{proxy_port}"}, True, "proxy"),
    "https, use_proxy false": ("https", {"HTTPS_PROXY": "{proxy}"}, False, "direct"),
    # no_proxy: same case rule; *, names, domains, addresses, networks, ports
    "https, no_proxy address": ("https", {"HTTPS_PROXY": "{proxy}", "no_proxy": "127.0.0.1"}, True, "direct"),
    "https, NO_PROXY network": ("https", {"HTTPS_PROXY": "{proxy}", "NO_PROXY": "127.0.0.0/8"}, True, "direct"),
    "https, no_proxy *": ("https", {"HTTPS_PROXY": "{proxy}", "no_proxy": "*"}, True, "direct"),
    "https, no_proxy other network": ("https", {"HTTPS_PROXY": "{proxy}", "no_proxy": "10.0.0.0/8, example.com"}, True, "proxy"),
    "https, no_proxy this port": ("https", {"HTTPS_PROXY": "{proxy}", "no_proxy": "127.0.0.1:{port}"}, True, "direct"),
    "https, no_proxy other port": ("https", {"HTTPS_PROXY": "{proxy}", "no_proxy": "127.0.0.1:1"}, True, "proxy"),
    "https, no_proxy names are not resolved": ("https", {"HTTPS_PROXY": "{proxy}", "no_proxy": "localhost"}, True, "proxy"),
    "https, empty no_proxy wins over NO_PROXY": ("https", {"HTTPS_PROXY": "{proxy}", "no_proxy": "", "NO_PROXY": "127.0.0.1"}, True, "proxy"),
    # failures name the proxy and the variable, never the credentials
    "https, dead proxy": ("https", {"HTTPS_PROXY": "http://deployer:s3cret@127.0.0.1:{dead}"}, True,
                          "proxy http://127.0.0.1:{dead} (from HTTPS_PROXY): connection refused"),
    "https, dead proxy from https_proxy": ("https", {"https_proxy": "http://127.0.0.1:{dead}"}, True,
                                           "proxy http://127.0.0.1:{dead} (from https_proxy): connection refused"),
    "https, socks proxy": ("https", {"HTTPS_PROXY": "socks5://127.0.0.1:{dead}"}, True,
                           "proxy socks5://127.0.0.1:{dead} (from HTTPS_PROXY): only http:// proxies are supported"),
    # plain http (loopback only) is never proxied, whatever is set
    "http, HTTP_PROXY": ("http", {"HTTP_PROXY": "{proxy}"}, True, "direct"),
    "http, http_proxy": ("http", {"http_proxy": "{proxy}"}, True, "direct"),
    "http, empty http_proxy and HTTP_PROXY": ("http", {"http_proxy": "", "HTTP_PROXY": "{proxy}"}, True, "direct"),
    "http, REQUEST_METHOD and HTTP_PROXY": ("http", {"REQUEST_METHOD": "GET", "HTTP_PROXY": "{proxy}"}, True, "direct"),
    "http, ALL_PROXY": ("http", {"ALL_PROXY": "{proxy}", "all_proxy": "{proxy}"}, True, "direct"),
    "http, HTTPS_PROXY": ("http", {"HTTPS_PROXY": "{proxy}", "https_proxy": "{proxy}"}, True, "direct"),
}


@pytest.fixture(name="servers", scope="module")
def fixture_servers(tmp_path_factory):
    ca_path, server_context = certificate_authority(tmp_path_factory.mktemp("ca"))
    with HostileApi({"*": "ok"}) as api, TlsFront(api.port, server_context) as front, socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        yield api, front, str(ca_path), unused.getsockname()[1]


@pytest.mark.parametrize("transport_name", TRANSPORTS)
@pytest.mark.parametrize("row", ROWS)
def test_every_transport_follows_the_proxy_rule(servers, row, transport_name):
    api, front, ca_path, dead = servers
    scheme, variables, use_proxy, expected = ROWS[row]
    url = (front.url if scheme == "https" else api.url) + "/api/v1/deployments/start"
    with CapturingProxy() as proxy:
        values = {"proxy": proxy.url, "proxy_port": proxy.port, "dead": dead, "port": int(url.split(":")[2].split("/")[0])}
        environ = {"SSL_CERT_FILE": ca_path, **{name: value.format(**values) for name, value in variables.items()}}
        chosen = TRANSPORTS[transport_name](use_proxy=use_proxy, environ=environ)
        served_before = len(api.exchanges)
        try:
            outcome = chosen.post(url, b"{}", {"Authorization": f"ApiKey {KEY}"}, 5.0)
        except transport.TransportError as error:
            outcome = error

        if expected in ("direct", "proxy"):
            assert isinstance(outcome, transport.Response) and outcome.status == 202, outcome
            assert len(api.exchanges) == served_before + 1
            assert (proxy.connections > 0) is (expected == "proxy"), proxy.everything
        else:
            assert isinstance(outcome, transport.TransportError) and str(outcome) == expected.format(**values), outcome
            assert "s3cret" not in str(outcome) and "deployer" not in str(outcome)
            assert len(api.exchanges) == served_before
        # The key crosses a proxy only inside TLS: never in clear, in any row.
        assert KEY.encode() not in proxy.everything and base64.b64encode(KEY.encode()) not in proxy.everything
        if row == "https, proxy with credentials":
            assert b"Proxy-Authorization: Basic " + base64.b64encode(b"deployer:s3cret") in proxy.everything
            assert b"Proxy-Authorization" not in api.exchanges[-1].request  # for the proxy only, never sent on


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_a_proxy_asking_for_credentials_is_named_once_without_retrying(servers, transport_name):
    """407 to CONNECT: the proxy wants (other) credentials. Retrying cannot help: one attempt, one line saying what to
    fix, the proxy's credentials not in it."""
    from ansible_collections.stackify.retrace.plugins.module_utils.client import DeploymentClient
    from ansible_collections.stackify.retrace.plugins.module_utils.deployment import Deployment
    from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable
    from ansible_collections.stackify.retrace.plugins.module_utils.settings import ApiSettings
    _api, front, ca_path, _dead = servers
    with CapturingProxy(wants_credentials=True) as proxy:
        proxied = f"http://deployer:wr0ng@127.0.0.1:{proxy.port}"
        chosen = TRANSPORTS[transport_name](environ={"SSL_CERT_FILE": ca_path, "HTTPS_PROXY": proxied})
        client = DeploymentClient(ApiSettings.create(api_key=KEY, api_url=front.url, deadline=20), transport=chosen)
        with pytest.raises(ApiUnreachable) as raised:
            client.start(Deployment.create(app_name="Shop", environment_name="Production", version="1"))
    said = str(raised.value)
    assert f"proxy http://127.0.0.1:{proxy.port} (from HTTPS_PROXY) answered 407 Proxy Authentication Required" in said
    assert "http://user:password@host:port" in said and "wr0ng" not in said and "deployer" not in said
    assert len(proxy.tunnels) == 1, "a proxy refusing the credentials is asked again"
