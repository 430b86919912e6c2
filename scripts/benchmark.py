"""Every performance promise of the docs, measured in one run on this machine: `make bench`.

    .venv/bin/python scripts/benchmark.py [--quick] [--hang-budget 5] [--chaos-runs 153] [--chaos-seed N]

Prints the machine, then medians and ratios (tracked and untracked runs alternate, so both see the
same load), each against its goal:

1. callback: tracked / untracked trivial playbook (goal <= 1.03); 1 host vs 500 hosts (flat); 500 hosts as 1 target
   vs as 5 (2 vs 10 requests; the CPU tracking adds: flat);
2. module task / ansible.builtin.uri task making the same POST (goal <= 0.25);
3. `fab deploy`, one host over loopback SSH, tracked / untracked (goal <= 1.05);
4. the API hanging: wall time the callback, the module and `fab deploy` add, against their budgets;
5. the emulator: requests per second it sustains on loopback, and that figure with its web page open (goal >= 0.90);
6. the chaos soak (scripts/bench_chaos.py): runs of the callback (one app, and two apps in one run), the role and
   `fab deploy` stopped at random moments by random signals or an ansible-runner cancel; deployments left in
   progress (goal 0).

A benchmark, not a test: it never fails on a timing (exit 0 unless something could not be measured, or a tracked run
sent a wrong number of requests: exit 1), and it is not part of `make test`.  docs/benchmark.md explains each figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SCRIPTS = pathlib.Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path[:0] = [str(SCRIPTS), str(ROOT)]

# pylint: disable=wrong-import-position
import bench_callback  # noqa: E402
import bench_chaos  # noqa: E402
import bench_fabric  # noqa: E402
import bench_module  # noqa: E402
import yaml  # noqa: E402

from retrace_emulator import DEMO_API_KEY, RetraceEmulator  # noqa: E402

FAB = str(pathlib.Path(sys.executable).with_name("fab"))
ANSIBLE_PLAYBOOK = str(pathlib.Path(sys.executable).with_name("ansible-playbook"))


@dataclasses.dataclass
class Figure:
    name: str
    value: str
    goal: str
    met: bool | None  # None: informative, no goal
    #: a count of requests, not a timing: a wrong count fails the benchmark
    count: bool = False

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


def machine() -> list[str]:
    model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [f"CPU:          {model}, {os.cpu_count()} cores, load average {load}",
            f"System:       {platform.platform()}",
            f"Python:       {platform.python_version()} ({sys.executable})",
            f"ansible-core: {_version('ansible-core')}   fabric: {_version('fabric')}   paramiko: {_version('paramiko')}"]


def _read(path: str) -> str:
    try:
        return pathlib.Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --- 1. callback -------------------------------------------------------------------------------------

def callback_figures(rounds: int, hosts: int, many_rounds: int, targets: int = 5) -> list[Figure]:
    with RetraceEmulator(allow_any_app=True) as emulator, tempfile.TemporaryDirectory(prefix="bench-callback-") as tmp:
        one = bench_callback.measure(emulator, pathlib.Path(tmp), 1, rounds)
        spread = bench_callback.measure_targets(emulator, pathlib.Path(tmp), hosts, targets, many_rounds)
    many = spread.one
    added_one, added_many = (one.tracked_wall - one.untracked_wall) * 1000, (many.tracked_wall - many.untracked_wall) * 1000
    figures = [
        Figure("callback: trivial playbook, tracked / untracked (wall, medians)",
               f"{one.wall_ratio:.3f}  ({one.tracked_wall:.2f} s / {one.untracked_wall:.2f} s, {added_one:+.0f} ms; CPU {one.cpu_ratio:.3f})",
               "<= 1.03",
               one.wall_ratio <= 1.03),
        Figure("callback: trivial playbook, tracked / untracked (CPU time of ansible-playbook and its workers, medians)",
               f"{one.cpu_ratio:.3f}  ({one.tracked_cpu:.2f} s / {one.untracked_cpu:.2f} s)", "<= 1.03",
               one.cpu_ratio <= 1.03),
        Figure(f"callback: {hosts} hosts, tracked / untracked (wall, medians)",
               f"{many.wall_ratio:.3f}  ({many.tracked_wall:.2f} s / {many.untracked_wall:.2f} s, {added_many:+.0f} ms; CPU {many.cpu_ratio:.3f})",
               "flat: <= the 1-host ratio", many.wall_ratio <= max(one.wall_ratio, 1.0)),
        Figure(f"callback: requests per tracked run, 1 host / {hosts} hosts",
               f"{one.requests_per_run:g} / {many.requests_per_run:g}", "2 / 2",
               one.requests_per_run == 2 and many.requests_per_run == 2, count=True),
        Figure(f"callback: requests per tracked run, {hosts} hosts as 1 target / as {targets} targets",
               f"{spread.requests_per_run(spread.requests_one)} / {spread.requests_per_run(spread.requests_spread)}",
               f"2 / {2 * targets}", spread.requests_right, count=True),
        Figure(f"callback: {hosts} hosts, CPU tracking adds as 1 target / as {targets} targets (medians)",
               f"{spread.difference_percent:+.2f} % of the untracked run's CPU  ({spread.added_one_ms:+.0f} ms / "
               f"{spread.added_spread_ms:+.0f} ms of {spread.one.untracked_cpu:.2f} s; paired per round "
               f"{spread.paired_cpu_difference * 1000:+.0f} ms)",
               f"flat: < {bench_callback.FLAT_PERCENT:g} % more", spread.flat),
    ]
    return figures


# --- 2. module ---------------------------------------------------------------------------------------

def module_figures(tasks: int, rounds: int) -> list[Figure]:
    result = bench_module.measure(tasks, rounds, keep="median")
    note = f" ({result['rejected']} requests not accepted: not comparable)" if result["rejected"] else ""
    return [Figure("module task / ansible.builtin.uri task, same POST (per task, medians)",
                   f"{result['ratio']:.3f}  ({result['module'] * 1000:.1f} ms / {result['uri'] * 1000:.1f} ms){note}",
                   "<= 0.25", result["ratio"] <= 0.25 and not result["rejected"])]


# --- 3. fab deploy -----------------------------------------------------------------------------------

def fabric_figures(runs: int) -> list[Figure]:
    result = bench_fabric.measure(runs)
    tracked, untracked = statistics.median(result["tracked"]), statistics.median(result["untracked"])
    return [Figure(f"fab deploy, 1 host over loopback SSH ({result['steps']} steps), tracked / untracked (medians)",
                   f"{result['ratio']:.3f}  ({tracked:.2f} s / {untracked:.2f} s, {result['overhead'] * 1000:+.0f} ms; "
                   f"fastest runs {result['fastest_ratio']:.3f})", "<= 1.05",
                   result["ratio"] <= 1.05 and result["calls"] == result["expected_calls"])]


# --- 4. the API hanging ---------------------------------------------------------------------------------

def hang_figures(budget: float) -> list[Figure]:
    """Every request hangs: how much wall time does each entry point add, against the budget it was given?

    "adds" is the hanging run against the same run with a healthy API, so the ordinary cost of tracking
    (the ratios above) is not counted twice; the verdict compares it with the budget.  The time added
    against an untracked run is shown too.
    """
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-hang-") as tmp, RetraceEmulator() as healthy, RetraceEmulator() as hanging:
        workdir = pathlib.Path(tmp)
        hanging.inject("*", [{"hang": True}] * 100)

        # callback: retrace_time_budget bounds everything it adds to the run
        inventory = workdir / "hosts.ini"
        inventory.write_text("[all]\nhost0000 ansible_connection=local\n")
        playbook = workdir / "site.yml"
        playbook.write_text(bench_callback.PLAYBOOK)

        def callback_run(url: str, tracked: bool) -> float:
            env = bench_callback.environment(url, workdir, tracked=tracked)
            env["RETRACE_TIME_BUDGET"] = str(budget)
            return bench_callback.run_once(inventory, playbook, env)[0]

        figures.append(_hang_figure("the callback", f"time_budget={budget:g} s", budget, callback_run(hanging.url, True),
                                    statistics.median(callback_run(healthy.url, True) for _attempt in range(3)),
                                    statistics.median(callback_run(healthy.url, False) for _attempt in range(3))))

        # module: one task; deadline bounds all its attempts
        module_env = bench_module.environment()

        def module_run(url: str | None, version: str) -> float:
            tasks = []
            if url:
                task = bench_module.module_task(url, "start", version)
                task["stackify.retrace.deployment"]["deadline"] = budget
                tasks = [dict(task, ignore_errors=True)]
            path = _write(workdir / "module.yml", [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
            return _timed([ANSIBLE_PLAYBOOK, str(path)], module_env, workdir)

        figures.append(_hang_figure("one module task", f"deadline={budget:g} s", budget, module_run(hanging.url, "hang"),
                                    statistics.median(module_run(healthy.url, f"ok-{n}") for n in range(3)),
                                    statistics.median(module_run(None, "") for _attempt in range(3))))

        # fab deploy (local steps): deadline bounds the start; the run stops, but never hangs
        tracked_hanging, untracked = _fab_projects(workdir / "hanging", hanging.url, budget)
        tracked_healthy, _untracked = _fab_projects(workdir / "healthy", healthy.url, budget)
        fab_env = {**os.environ, "PYTHONPATH": str(ROOT), "RETRACE_API_KEY": DEMO_API_KEY, "HOME": str(workdir)}

        def fab_run(directory: pathlib.Path, version: str) -> float:
            return _timed([FAB, "deploy", "--version", version], fab_env, directory, check=False)

        figures.append(_hang_figure("fab deploy", f"deadline={budget:g} s", budget, fab_run(tracked_hanging, "hang"),
                                    statistics.median(fab_run(tracked_healthy, f"ok-{n}") for n in range(3)),
                                    statistics.median(fab_run(untracked, f"plain-{n}") for n in range(3))))
    return figures


def _hang_figure(who: str, setting: str, budget: float, hanging: float, healthy: float, untracked: float) -> Figure:
    added = hanging - healthy
    return Figure(f"API hanging: time {who} adds ({setting})",
                  f"{added:.2f} s  (vs untracked: {hanging - untracked:+.2f} s)", f"<= {budget:g} s", added <= budget)


def _write(path: pathlib.Path, plays: list) -> pathlib.Path:
    path.write_text(json.dumps(plays))
    return path


def _timed(command: list[str], env: dict, cwd: pathlib.Path, check: bool = True) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if check and result.returncode not in (0, 2):
        raise SystemExit(f"benchmark: {' '.join(command)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return time.perf_counter() - began


def _fab_projects(root: pathlib.Path, api_url: str, deadline: float) -> tuple[pathlib.Path, pathlib.Path]:
    tracked, untracked = root / "fab-tracked", root / "fab-untracked"
    root.mkdir()
    settings = {"run": {"in_stream": False}, "retrace": {"steps": ["true"], "app_name": "DemoApp", "environment_name": "Production",
                                                         "api_url": api_url, "deadline": deadline}}
    for directory in (tracked, untracked):
        directory.mkdir()
        (directory / "fabric.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    (tracked / "fabfile.py").symlink_to(ROOT / "fabfile.py")
    (untracked / "fabfile.py").write_text(bench_fabric.UNTRACKED_FABFILE, encoding="utf-8")
    return tracked, untracked


# --- 5. the emulator -----------------------------------------------------------------------------------

#: what the page may cost the emulator: requests per second with the page open / without, at least
PAGE_OPEN_GOAL = 0.90


def emulator_figures(threads: int, round_seconds: float, rounds: int, limit: int) -> list[Figure]:
    """Requests per second, with no page open and with the page open (scripts/bench_page.py polling its data as the
    page does): ``rounds`` rounds of each, ``round_seconds`` long, in pairs whose order alternates (plain then page,
    page then plain, ...), so that both see the same machine and neither always goes first. The ratio compares the
    median rates of the rounds: one round disturbed by the machine's other work moves it little."""
    plain, with_page, polls = [], [], []
    for pair in range(rounds):
        for page_open in ((False, True) if pair % 2 == 0 else (True, False)):
            if page_open:
                with_page.append(_emulator_load(threads, round_seconds, limit, page=polls))
            else:
                plain.append(_emulator_load(threads, round_seconds, limit))
    rate, rate_with_page = _rate(plain), _rate(with_page)
    ratio = statistics.median(_rate([load]) for load in with_page) / statistics.median(_rate([load]) for load in plain)
    latency = statistics.median(latency for load in plain for latency in load["latencies"]) * 1000
    latency_with_page = statistics.median(latency for load in with_page for latency in load["latencies"]) * 1000
    errors = sum(load["errors"] for load in plain + with_page)
    carried, polled = sum(poll["calls"] for poll in polls), sum(poll["polls"] for poll in polls)
    poll_ms = sum(poll["seconds"] for poll in polls) / max(polled, 1) * 1000
    return [
        Figure(f"emulator: requests per second on loopback ({threads} keep-alive clients, {sum(load['elapsed'] for load in plain):.1f} s)",
               f"{rate:.0f} req/s  (median latency {latency:.1f} ms, {sum(load['requests'] for load in plain)} requests, {errors} not 202)",
               "informative", None),
        Figure(f"emulator: requests per second with its web page open / without ({rounds} alternating rounds of "
               f"{round_seconds:g} s each, medians)",
               f"{ratio:.3f}  ({rate_with_page:.0f} / {rate:.0f} req/s, median latency {latency_with_page:.1f} ms; "
               f"page: {polled} polls carrying {carried} calls, {poll_ms:.1f} ms each)",
               f">= {PAGE_OPEN_GOAL:.2f}", ratio >= PAGE_OPEN_GOAL),
    ]


def _emulator_load(threads: int, seconds: float, limit: int, page: list | None = None) -> dict:
    """Keep-alive clients posting start then complete for fresh versions, bounded in time and count. With ``page`` (a
    list), scripts/bench_page.py has the page open before the load starts and follows the emulator meanwhile; its
    figures are appended to that list."""
    counts, latencies, errors = [0] * threads, [], []
    with RetraceEmulator() as emulator:
        address = urllib.parse.urlsplit(emulator.url)
        viewer = None
        if page is not None:
            viewer = subprocess.Popen([sys.executable, str(SCRIPTS / "bench_page.py"), emulator.url], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            if viewer.stdout.readline().strip() != "open":  # its start-up is not part of the figure
                raise SystemExit("benchmark: scripts/bench_page.py could not open the page")
        stop_at = time.monotonic() + seconds

        def client(index: int) -> None:
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
            headers = {"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"}
            try:
                for number in range(limit):
                    if time.monotonic() > stop_at:
                        break
                    body = json.dumps({"AppName": "DemoApp", "EnvironmentName": "Production", "Version": f"rps-{index}-{number}"})
                    for action in ("start", "complete"):
                        began = time.perf_counter()
                        connection.request("POST", f"/api/v1/deployments/{action}", body=body, headers=headers)
                        response = connection.getresponse()
                        response.read()
                        latencies.append(time.perf_counter() - began)
                        if response.status != 202:
                            errors.append(response.status)
                        counts[index] += 1
            finally:
                connection.close()

        began = time.monotonic()
        workers = [threading.Thread(target=client, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - began
        if viewer is not None:
            out = viewer.communicate(input="", timeout=60)[0]
            if viewer.returncode != 0:
                raise SystemExit(f"benchmark: scripts/bench_page.py failed ({viewer.returncode})")
            page.append(json.loads(out))
    return {"requests": sum(counts), "elapsed": elapsed, "latencies": latencies, "errors": len(errors)}


def _rate(loads: list[dict]) -> float:
    return sum(load["requests"] for load in loads) / sum(load["elapsed"] for load in loads)


# --- 6. the chaos soak ----------------------------------------------------------------------------------

def chaos_figures(runs: int, seed: int | None) -> list[Figure]:
    """scripts/bench_chaos.py's soak (it prints its own tables); its headline figures."""
    seed = seed if seed is not None else int(time.time())
    soak = bench_chaos.soak(runs, seed, parallel=2, grace=20.0, budget=600.0)
    left = ", ".join(f"{name} {count}" for name, count in {**soak["per_entry"], **soak["per_stop"]}.items() if count)
    guard = (f"median {soak['guard_median']:.2f} s, max {soak['guard_max']:.2f} s over {soak['guard_ends']} ends"
             if soak["guard_ends"] else "no end landed after a run was gone")
    return [
        Figure(f"chaos soak: deployments left in progress ({soak['deployments']} deployments of {soak['runs']} runs, seed {soak['seed']})",
               f"{soak['in_progress']}" + (f"  ({left})" if left else ""), "0", soak["in_progress"] == 0),
        Figure("chaos soak: deployments ended twice, or ends refused (409)",
               f"{soak['double_ends']} / {soak['refused_ends']}", "0 / 0",
               soak["double_ends"] == 0 and soak["refused_ends"] == 0),
        Figure("chaos soak: orphan guard, from the stop to its cancel landing", guard, "<= 15 s",
               None if not soak["guard_ends"] else soak["guard_max"] <= 15),
    ]


#: runs of the chaos soak with --quick: 2 of each (entry point, way of stopping) pair
QUICK_CHAOS_RUNS = 2 * len(bench_chaos.pairs())


# --- report --------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute): a smoke run, noisier figures")
    parser.add_argument("--hang-budget", type=float, default=5.0, help="time budget / deadline given to each entry point "
                        "while the API hangs (default 5 s)")
    parser.add_argument("--hosts", type=int, default=500, help="hosts in the many-host callback inventory (default 500)")
    parser.add_argument("--chaos-runs", type=int, default=None, help=f"runs of the chaos soak (default {bench_chaos.RUNS}, "
                        f"{QUICK_CHAOS_RUNS} with --quick; 0 skips it)")
    parser.add_argument("--chaos-seed", type=int, default=None, help="replay a chaos soak (default: the current time)")
    args = parser.parse_args()
    rounds = {"callback": 3, "many": 1, "module": 2, "fabric": 2, "emulator": (2, 2.0)} if args.quick else \
        {"callback": 11, "many": 3, "module": 5, "fabric": 7, "emulator": (6, 5.0)}

    print("Stackify Retrace integrations: benchmark\n")
    print("\n".join(machine()) + "\n", flush=True)
    began = time.monotonic()
    figures: list[Figure] = []
    sections = (
        ("callback", lambda: callback_figures(rounds["callback"], args.hosts, rounds["many"])),
        ("module", lambda: module_figures(10, rounds["module"])),
        ("fab deploy", lambda: fabric_figures(rounds["fabric"])),
    )
    for label, measure in sections:
        print(f"measuring {label} ...", flush=True)
        figures += measure()
    print("measuring the API hanging ...", flush=True)
    figures += hang_figures(args.hang_budget)
    print("measuring the emulator ...", flush=True)
    emulator_rounds, round_seconds = rounds["emulator"]
    figures += emulator_figures(threads=4, round_seconds=round_seconds, rounds=emulator_rounds, limit=20000)
    chaos_runs = args.chaos_runs if args.chaos_runs is not None else (QUICK_CHAOS_RUNS if args.quick else bench_chaos.RUNS)
    if chaos_runs:
        print("running the chaos soak ...", flush=True)
        figures += chaos_figures(chaos_runs, args.chaos_seed)

    width = max(len(figure.name) for figure in figures)
    print(f"\n{'figure':<{width}}  {'goal':<26}  {'verdict':<7}  value")
    for figure in figures:
        print(f"{figure.name:<{width}}  {figure.goal:<26}  {figure.verdict:<7}  {figure.value}")
    missed = [figure.name for figure in figures if figure.met is False]
    print(f"\n{len(figures) - len(missed)} of {len(figures)} figures met their goal or have none; missed: {', '.join(missed) or 'none'}")
    print(f"load average after: {', '.join(f'{value:.2f}' for value in os.getloadavg())}; benchmark took {time.monotonic() - began:.0f} s")
    wrong_counts = [figure.name for figure in figures if figure.count and figure.met is False]
    if wrong_counts:
        print(f"wrong request counts (a bug, not a timing): {', '.join(wrong_counts)}", file=sys.stderr)
    return 1 if wrong_counts else 0


if __name__ == "__main__":
    sys.exit(main())
