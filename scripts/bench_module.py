"""How much one stackify.retrace.deployment task costs next to an ansible.builtin.uri task making the same POST.

Target: module task <= 0.25 x uri task.  Both playbooks run against the same local
Retrace emulator, alternate start/complete for fresh versions (so every call is accepted), on
localhost with a local connection; the time of an empty playbook (Ansible's own start-up) is
subtracted, and the best of several rounds is kept to damp noise from other processes.

Usage: .venv/bin/python scripts/bench_module.py [--tasks 10] [--rounds 2]
Prints per-task milliseconds for each and the ratio; exits 1 when the ratio is above the target.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrace_emulator import DEMO_API_KEY  # noqa: E402 pylint: disable=wrong-import-position
from retrace_emulator.server import RetraceEmulator  # noqa: E402 pylint: disable=wrong-import-position

TARGET_RATIO = 0.25
BODY = {"AppName": "DemoApp", "EnvironmentName": "Production"}


def module_task(url: str, action: str, version: str) -> dict:
    state = {"start": "started", "complete": "completed"}[action]
    return {"stackify.retrace.deployment": {"state": state, "api_url": url, "api_key": DEMO_API_KEY,
                                            "app_name": BODY["AppName"], "environment_name": BODY["EnvironmentName"],
                                            "version": version}}


def uri_task(url: str, action: str, version: str) -> dict:
    return {"ansible.builtin.uri": {"url": f"{url}/api/v1/deployments/{action}", "method": "POST", "body_format": "json",
                                    "body": {**BODY, "Version": version, "Name": version}, "status_code": [202],
                                    "headers": {"Authorization": f"ApiKey {DEMO_API_KEY}"}}}


def playbook(make_task, url: str, count: int, label: str) -> list:
    tasks = []
    run_id = time.monotonic_ns()
    for index in range(count):
        version = f"{label}-{run_id}-{index // 2}"
        tasks.append(make_task(url, "start" if index % 2 == 0 else "complete", version))
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def timed_run(plays: list, workdir: pathlib.Path, env: dict) -> float:
    path = workdir / "bench.yml"
    path.write_text(json.dumps(plays))
    started = time.perf_counter()
    subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"), str(path)], env=env, check=True,
                   stdout=sys.stderr if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def environment() -> dict:
    """ansible-playbook's environment: this checkout as the collection, no RETRACE_* from the caller's shell."""
    collections = ROOT / "build" / "bench-collections"
    link = collections / "ansible_collections" / "stackify" / "retrace"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RETRACE_", "STACKIFY_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    return env


def measure(tasks: int = 10, rounds: int = 2, keep: str = "best") -> dict:
    """Per-task seconds of each kind, empty-playbook time subtracted; ``keep`` is "best" or "median" of the rounds.

    Each round runs the empty, module and uri playbooks one after another, so both kinds see the same load.
    Returns {"empty", "module", "uri", "ratio", "rejected"} (rejected: requests the emulator did not accept).
    """
    env = environment()
    times: dict[str, list[float]] = {"empty": [], "module": [], "uri": []}
    with RetraceEmulator() as emulator, tempfile.TemporaryDirectory() as workdir:
        for _round in range(rounds):
            times["empty"].append(timed_run([{"hosts": "localhost", "gather_facts": False, "tasks": []}], pathlib.Path(workdir), env))
            for label, make_task in (("module", module_task), ("uri", uri_task)):
                plays = playbook(make_task, emulator.url, tasks, label)
                times[label].append(timed_run(plays, pathlib.Path(workdir), env))
        rejected = len([entry for entry in emulator.requests() if entry["status"] != 202])
    pick = min if keep == "best" else statistics.median
    empty = pick(times["empty"])
    figures = {"empty": empty, "module": (pick(times["module"]) - empty) / tasks, "uri": (pick(times["uri"]) - empty) / tasks,
               "rejected": rejected}
    figures["ratio"] = figures["module"] / figures["uri"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10, help="tasks per playbook (even; default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best is kept (default 2)")
    args = parser.parse_args()
    figures = measure(args.tasks, args.rounds)
    if figures["rejected"]:
        print(f"bench: {figures['rejected']} request(s) were not accepted; figures are not comparable", file=sys.stderr)
        return 2
    print(f"ansible-playbook start-up (empty play): {figures['empty'] * 1000:7.0f} ms")
    print(f"stackify.retrace.deployment, per task:  {figures['module'] * 1000:7.1f} ms")
    print(f"ansible.builtin.uri, per task:          {figures['uri'] * 1000:7.1f} ms")
    print(f"ratio module / uri:                     {figures['ratio']:7.3f}  (target <= {TARGET_RATIO})")
    return 0 if figures["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
