"""Every attempt ends within its time, whatever the server does; no answer is read past a few KiB.

Both transports (the standard-library one of the callback, Fabric and the guard; the Ansible one of the action
plugin) against a real server on loopback that answers 202 and then sends its body one byte every half second,
never ends a chunked body, sends a 1 GiB body, or sends its header line (or even its status line) one byte at a time.
Each call runs in a
process of its own, so that its peak memory (``ru_maxrss``) is its own and a call that never returns fails the
test instead of hanging it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from loopback_servers import HostileApi

#: the attempt's time given to the transport
TIMEOUT = 2.0
#: what a loaded 2-core machine may add to it (thread start, the shutdown reaching the reader); measured: < 0.05 s
SLACK = 3.0
#: peak memory a call may add, in MiB: the body read is capped at a few KiB (a 1 GiB body once took 2.2 GB)
MEMORY_SLACK_MIB = 50

CALL = textwrap.dedent("""
    import json, resource, sys, time
    sys.path[:0] = {paths!r}
    from ansible_collections.stackify.retrace.plugins.module_utils import transport
    from ansible_collections.stackify.retrace.plugins.module_utils._ansible_transport import AnsibleUrlsTransport
    chosen = transport.UrllibTransport() if sys.argv[1] == "urllib" else AnsibleUrlsTransport()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.monotonic()
    outcome = {{}}
    try:
        response = chosen.post(sys.argv[2], b"{{}}", {{"Authorization": "ApiKey secret"}}, float(sys.argv[3]))
        outcome.update(status=response.status, body_bytes=len(response.body), cut=response.cut)
    except transport.TransportError as error:
        outcome.update(error=type(error).__name__, message=str(error), sent=error.sent)
    outcome.update(seconds=time.monotonic() - began,
                   growth_mib=(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    print(json.dumps(outcome))
""")


def post_in_a_process(transport_name: str, url: str, timeout: float = TIMEOUT) -> dict:
    code = CALL.format(paths=[path for path in sys.path if path])
    completed = subprocess.run([sys.executable, "-c", code, transport_name, url, str(timeout)], capture_output=True, text=True,
                               timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout)
    print(f"{transport_name} {url}: {outcome}")  # the measured time and memory, shown with pytest -rP
    return outcome


TRANSPORTS = ("urllib", "ansible")


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_a_body_sent_one_byte_at_a_time_is_cut_when_the_attempt_s_time_is_up(transport_name):
    with HostileApi({"*": "trickle"}) as api:
        outcome = post_in_a_process(transport_name, api.url + "/api/v1/deployments/start")
        exchange = api.wait_until_left("start", within=10)

    # The status line and headers came: HTTP 202 is Retrace's answer, the body only carries a message.
    assert outcome.get("status") == 202, outcome
    assert TIMEOUT - 0.2 <= outcome["seconds"] <= TIMEOUT + SLACK, outcome
    assert exchange is not None and exchange.still_sending_when_left, exchange


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_a_header_line_sent_one_byte_at_a_time_is_cut_and_the_status_is_the_answer(transport_name):
    with HostileApi({"*": "slow-header"}) as api:
        outcome = post_in_a_process(transport_name, api.url + "/api/v1/deployments/start")
        exchange = api.wait_until_left("start", within=10)

    # The status line came whole: 202 is the answer; the headers, cut, are not believed.
    assert outcome.get("status") == 202, outcome
    assert outcome["cut"] == f"its headers still arriving after {TIMEOUT:.1f} s", outcome
    assert TIMEOUT - 0.2 <= outcome["seconds"] <= TIMEOUT + SLACK, outcome
    assert exchange is not None and exchange.still_sending_when_left, exchange


@pytest.mark.parametrize("transport_name", TRANSPORTS)
def test_a_status_line_sent_one_byte_at_a_time_is_no_answer(transport_name):
    with HostileApi({"*": "slow-status"}) as api:
        outcome = post_in_a_process(transport_name, api.url + "/api/v1/deployments/start")
        exchange = api.wait_until_left("start", within=10)

    assert outcome.get("error") == "TimedOut", outcome
    assert outcome["message"] == f"no answer within {TIMEOUT:.1f} s" and outcome["sent"] is True, outcome
    assert outcome["seconds"] <= TIMEOUT + SLACK, outcome
    assert exchange is not None and exchange.still_sending_when_left, exchange


@pytest.mark.parametrize("transport_name", TRANSPORTS)
@pytest.mark.parametrize("mode", ["chunked-forever", "gigabyte"])
def test_a_huge_or_endless_body_is_read_no_further_than_the_cap(transport_name, mode):
    with HostileApi({"*": mode}) as api:
        outcome = post_in_a_process(transport_name, api.url + "/api/v1/deployments/start", timeout=30.0)
        exchange = api.wait_until_left("start", within=10)

    assert outcome.get("status") == 202, outcome
    assert outcome["body_bytes"] <= 8192, outcome
    # Not bounded by the attempt's time (30 s) but by the cap: the client reads a few KiB and hangs up.
    assert outcome["seconds"] < SLACK, outcome
    assert outcome["growth_mib"] < MEMORY_SLACK_MIB, outcome
    assert exchange is not None and exchange.still_sending_when_left, exchange
