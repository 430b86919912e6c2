"""Many clients at once: every request answered and recorded once, state consistent."""

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from retrace_emulator import DEMO_API_KEY

PARALLEL = 50


def test_parallel_requests_are_all_answered_and_recorded(retrace_emulator):
    def start(version: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", retrace_emulator.port, timeout=10)
        body = json.dumps({"Version": f"v{version}", "AppName": "DemoApp", "EnvironmentName": "Production"})
        connection.request("POST", "/api/v1/deployments/start", body, {"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"})
        status = connection.getresponse().status
        connection.close()
        return status

    with ThreadPoolExecutor(PARALLEL) as pool:
        statuses = list(pool.map(start, range(PARALLEL)))
    assert statuses == [202] * PARALLEL
    journal = retrace_emulator.journal()
    assert sorted(entry["seq"] for entry in journal) == list(range(1, PARALLEL + 1))
    assert {entry["body"]["Version"] for entry in journal} == {f"v{n}" for n in range(PARALLEL)}
    assert len(retrace_emulator.deployments()) == PARALLEL


def start_the_same_deployment(emulator) -> int:
    """One start of the same deployment (DemoApp / Staging / "same") on a connection of its own: the HTTP status."""
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    body = json.dumps({"Version": "same", "AppName": "DemoApp", "EnvironmentName": "Staging"})
    connection.request("POST", "/api/v1/deployments/start", body, {"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"})
    status = connection.getresponse().status
    connection.close()
    return status


def test_racing_starts_of_one_deployment_let_exactly_one_win(retrace_emulator):
    with ThreadPoolExecutor(20) as pool:
        statuses = sorted(pool.map(lambda _index: start_the_same_deployment(retrace_emulator), range(20)))
    assert statuses == [202] + [409] * 19


def test_the_journal_lists_racing_starts_in_the_order_the_contract_decided_them(retrace_emulator, monkeypatch):
    """The winner of a race is journalled before the losers, even if its thread is slowed between verdict and record
    (what a loaded machine does; test_module_states compares journals of two hosts starting at once)."""
    contract = retrace_emulator.contract
    decide = contract.evaluate
    first = threading.Event()

    def slow_first_verdict(*args, **kwargs):
        verdict = decide(*args, **kwargs)
        if not first.is_set():
            first.set()
            time.sleep(0.5)  # the loser's request arrives meanwhile
        return verdict

    monkeypatch.setattr(contract, "evaluate", slow_first_verdict)

    with ThreadPoolExecutor(2) as pool:
        winner = pool.submit(start_the_same_deployment, retrace_emulator)
        assert first.wait(5)
        loser = pool.submit(start_the_same_deployment, retrace_emulator)
        assert (winner.result(), loser.result()) == (202, 409)
    assert [entry["status"] for entry in retrace_emulator.journal()] == [202, 409]
