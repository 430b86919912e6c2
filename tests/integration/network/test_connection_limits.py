"""Connecting ends within the attempt's time however many addresses a name has, and reaches one that answers;
plain http reaches a loopback address or nothing.

The addresses are real sockets on this machine: listeners on loopback addresses (127.0.0.2, 127.0.0.3 ..., ``::1``
where the machine has it), some of them black holes that never answer a connection attempt
(:class:`loopback_servers.Blackhole`), and, for plain http, the machine's own address on its network interface.
Only name resolution is a stub (``socket.getaddrinfo`` answers for a few made-up names), so that a name can have
several addresses, or point off loopback, without touching ``/etc/hosts`` or DNS.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import transport
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_transport import AnsibleUrlsTransport
from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable
from loopback_servers import Blackhole, CapturingProxy, HostileApi, TlsFront, certificate_authority

KEY = "connection-limits-key-0123456789"
TRANSPORTS = {"urllib": transport.UrllibTransport, "ansible": AnsibleUrlsTransport}
NAME = "api.retrace.test"
#: what a loaded 2-core machine may add to an attempt's time (a thread's start, the last address's close).  Unbounded,
#: five unanswered addresses took five times the attempt's time.
SLACK = 2.5
START_PATH = "/api/v1/deployments/start"


@pytest.fixture(name="names")
def fixture_names(monkeypatch):
    """Made-up names -> [(address, port), ...] in the order the resolver gives them; a value that is a
    :class:`threading.Event` makes resolution wait for it (a resolver that does not answer).  Other names resolve as usual."""
    table: dict = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # pylint: disable=redefined-builtin
        if host not in table:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        if isinstance(table[host], threading.Event):
            table[host].wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        answers = []
        for address, address_port in table[host]:
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (0, socket.AF_UNSPEC, address_family):
                sockaddr = (address, address_port, 0, 0) if address_family == socket.AF_INET6 else (address, address_port)
                answers.append((address_family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return answers

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield table
    for value in table.values():
        if isinstance(value, threading.Event):
            value.set()


def post_within(chosen, url: str, timeout: float, limit: float = 60.0):
    """(outcome, seconds): the Response or TransportError of one POST, run in a thread so that a call that never ends
    fails the test after ``limit`` seconds instead of hanging it."""
    outcome: dict = {}

    def call():
        began = time.monotonic()
        try:
            outcome["result"] = chosen.post(url, b"{}", {"Authorization": f"ApiKey {KEY}"}, timeout)
        except transport.TransportError as error:
            outcome["result"] = error
        outcome["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the call had not returned after {limit} s"
    print(f"{url} (timeout {timeout}): {outcome['result']!r} after {outcome['seconds']:.3f} s")  # shown by pytest -rP
    return outcome["result"], outcome["seconds"]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_an_attempt_ends_in_its_time_however_many_addresses_do_not_answer(names, transport_name):
    holes = [Blackhole(f"127.0.0.{last}") for last in range(2, 7)]
    try:
        names[NAME] = [(hole.host, hole.port) for hole in holes]
        outcome, seconds = post_within(TRANSPORTS[transport_name](), f"http://{NAME}:{holes[0].port}{START_PATH}", 2.0)
    finally:
        for hole in holes:
            hole.close()

    assert isinstance(outcome, transport.TimedOut) and str(outcome) == "no connection within 2.0 s", outcome
    assert outcome.sent is False
    assert seconds <= 2.0 + SLACK, seconds


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_an_address_that_answers_is_reached_within_the_attempt_after_ones_that_do_not(names, transport_name):
    with Blackhole("127.0.0.2") as first, Blackhole("127.0.0.3") as second, HostileApi({"*": "ok"}, host="127.0.0.4") as api:
        names[NAME] = [(first.host, first.port), (second.host, second.port), ("127.0.0.4", api.port)]
        outcome, seconds = post_within(TRANSPORTS[transport_name](), f"http://{NAME}:{api.port}{START_PATH}", 3.0)

    assert isinstance(outcome, transport.Response) and outcome.status == 202, outcome
    assert seconds < 3.0, seconds
    assert len(api.exchanges) == 1


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no ::1")
@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_dual_stack_a_dead_ipv6_address_does_not_keep_the_ipv4_one_from_being_tried(names, transport_name):
    with Blackhole("::1") as hole, HostileApi({"*": "ok"}, host="127.0.0.2") as api:
        names["localhost"] = [("::1", hole.port), ("127.0.0.2", api.port)]
        outcome, seconds = post_within(TRANSPORTS[transport_name](), f"http://localhost:{api.port}{START_PATH}", 3.0)

    assert isinstance(outcome, transport.Response) and outcome.status == 202, outcome
    assert seconds < 3.0, seconds


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_a_resolver_that_does_not_answer_is_bounded_by_the_attempt(names, transport_name):
    names[NAME] = threading.Event()
    outcome, seconds = post_within(TRANSPORTS[transport_name](), f"http://{NAME}:8080{START_PATH}", 1.5, limit=20)

    assert isinstance(outcome, transport.TimedOut) and str(outcome) == "no connection within 1.5 s", outcome
    assert outcome.sent is False and seconds <= 1.5 + SLACK, seconds


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_an_attempt_is_answered_where_the_interpreter_starts_no_thread(names, monkeypatch, transport_name):
    """Python 3.12.0 and 3.12.1 start no thread at interpreter shutdown, where the callback ends a run that an error
    or Ctrl-C stopped: the attempt goes on without its watchdog and without a resolver thread."""
    client = threading.current_thread()
    real_start = threading.Thread.start

    def start(thread):
        if threading.current_thread() is client:  # the servers' threads still start
            raise RuntimeError("can't create new thread at interpreter shutdown")
        return real_start(thread)

    with HostileApi({"*": "ok"}, host="127.0.0.2") as api:
        names[NAME] = [("127.0.0.2", api.port)]
        monkeypatch.setattr(threading.Thread, "start", start)
        outcome = TRANSPORTS[transport_name]().post(f"http://{NAME}:{api.port}{START_PATH}", b"{}",
                                                    {"Authorization": f"ApiKey {KEY}"}, 5.0)

    assert isinstance(outcome, transport.Response) and outcome.status == 202, outcome
    assert len(api.exchanges) == 1


def test_a_proxy_whose_first_address_does_not_answer_is_reached_at_the_next(names, tmp_path):
    ca_path, server_context = certificate_authority(tmp_path)
    with HostileApi({"*": "ok"}) as api, TlsFront(api.port, server_context) as front, CapturingProxy() as proxy, \
            Blackhole("127.0.0.2") as hole:
        names["proxy.retrace.test"] = [(hole.host, hole.port), ("127.0.0.1", proxy.port)]
        environ = {"SSL_CERT_FILE": str(ca_path), "HTTPS_PROXY": f"http://proxy.retrace.test:{proxy.port}"}
        outcome, seconds = post_within(transport.UrllibTransport(environ=environ), front.url + START_PATH, 3.0)

    assert isinstance(outcome, transport.Response) and outcome.status == 202, outcome
    assert seconds < 3.0 and proxy.tunnels, (seconds, proxy.tunnels)


# --- plain http: a loopback address or nothing ---------------------------------------------------------------

def _address_off_loopback() -> str | None:
    """This machine's own address on a network interface (not loopback), or None."""
    for probe_target in ("192.0.2.1", "10.255.255.1", "203.0.113.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((probe_target, 9))  # UDP: nothing is sent; the kernel picks the source address
            except OSError:
                continue
            address = probe.getsockname()[0]
            if not address.startswith("127.") and address != "0.0.0.0":
                return address
    return None


OFF_LOOPBACK = _address_off_loopback()
needs_off_loopback = pytest.mark.skipif(OFF_LOOPBACK is None, reason="this machine has no address off loopback")


@needs_off_loopback
@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_plain_http_to_a_name_that_resolves_off_loopback_sends_nothing(names, transport_name):
    # "localhost." misses /etc/hosts and goes to DNS; a DNS answer (here: this machine's own network address, which
    # stands for any address off loopback) must not receive the key in clear.
    with HostileApi({"*": "ok"}, host=OFF_LOOPBACK) as api:
        names["localhost"] = [(OFF_LOOPBACK, api.port)]
        outcome, _seconds = post_within(TRANSPORTS[transport_name](), f"http://localhost:{api.port}{START_PATH}", 3.0)
        time.sleep(0.2)  # a request on its way would have been read by now

    assert isinstance(outcome, transport.TransportError), outcome
    assert outcome.sent is False and f"{OFF_LOOPBACK}, not a loopback address" in str(outcome), outcome
    assert api.exchanges == [] and api.accepted == 0


@needs_off_loopback
def test_plain_http_checks_the_address_it_connected_to_before_sending(names):
    with HostileApi({"*": "ok"}, host=OFF_LOOPBACK) as api:
        sock = socket.create_connection((OFF_LOOPBACK, api.port), timeout=5)
        with sock, pytest.raises(transport.TransportError, match=f"{OFF_LOOPBACK}, not a loopback address"):
            transport._require_loopback_peer(sock, "localhost")  # pylint: disable=protected-access
        time.sleep(0.2)
    assert api.exchanges == []


@needs_off_loopback
def test_the_client_names_api_url_and_sends_nothing_when_plain_http_resolves_off_loopback(names):
    with HostileApi({"*": "ok"}, host=OFF_LOOPBACK) as api:
        names["localhost"] = [(OFF_LOOPBACK, api.port)]
        client, deployment = create_client(
            {"api_key": KEY, "api_url": f"http://localhost:{api.port}", "app_name": "Shop", "environment_name": "Production",
             "version": "1.0", "timeout": 3, "deadline": 5}, transport.UrllibTransport(), entry_point="test")
        with pytest.raises(ApiUnreachable) as caught:
            client.start(deployment)
        time.sleep(0.2)

    message = str(caught.value)
    assert message.startswith(f"Retrace API at http://localhost:{api.port} not tried: "), message
    assert f"{OFF_LOOPBACK}, not a loopback address" in message and "\n" not in message, message
    assert caught.value.may_have_landed is False and caught.value.attempts == 1
    assert api.exchanges == []
