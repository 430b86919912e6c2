"""Chaos soak: deployments stopped at random moments, by random means; how many stay in progress in Retrace?

    .venv/bin/python scripts/bench_chaos.py [--runs 207] [--seed N] [--parallel 2] [--grace 20] [--budget 600]

Each run is a real ``ansible-playbook`` with the callback (on one host, or on two hosts whose groups are two
apps: two deployments in one run), a real ``ansible-playbook`` with the tracked_deployment role, or a real
``fab deploy`` (local steps), against one Retrace emulator on loopback, with its own version.  It is
stopped at a random moment (a seeded fraction of how long an undisturbed run of its entry point takes on
this machine, measured just before the soak; the seed is printed, and ``--seed`` replays a soak) by a
random one of:

- SIGINT to the process group (Ctrl-C in a terminal);
- SIGTERM to the main process (``kill PID``, a CI runner's cancel);
- SIGHUP to the process group (the terminal or SSH session closed);
- SIGKILL to the process group (ansible-runner's and AWX's cancel and ``job_timeout``);
- SIGKILL to the main process alone (the OOM killer, a crash);
- an ansible-runner cancel: ``ansible_runner.run(..., cancel_callback=...)`` (callback and role only).

Delays range from before the start is sent to after the run has ended by itself, so some runs send
nothing and some complete.  After the last run and a grace period, the emulator's deployment state is
read: the goal is **0** deployments left in progress (each app of a two-app run counts).  Also printed,
per entry point and per way of stopping: how the deployments ended, ends Retrace refused or received twice, and how long after the stop
the end landed (median / max; for SIGKILL and the ansible-runner cancel that is the orphan guard).

A soak, not a test: it is part of ``make bench`` (scripts/benchmark.py), not of ``make test``; it
exits 0 even when a deployment stays in progress (the figure says so), and 2 only when it could not
run at all.  docs/benchmark.md explains the figures.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from collection_path import use_checkout_as_collection

COLLECTIONS_ROOT = use_checkout_as_collection()

# pylint: disable=wrong-import-position
import ansible_runner  # noqa: E402
import yaml  # noqa: E402

from retrace_emulator import DEMO_API_KEY, DEMO_APP, DEMO_ENVIRONMENTS, RetraceEmulator  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
ENTRY_POINTS = ("callback", "callback (2 targets)", "role", "fab deploy")
#: the apps the "callback (2 targets)" runs deploy: its inventory's groups web and api, one host each
TWO_TARGETS = {"web": "Shop.Web", "api": "Shop.Api"}
#: way of stopping -> (signal, to the whole process group?); "runner-cancel" is ansible-runner's own
STOPS = {
    "SIGINT": (signal.SIGINT, True),
    "SIGTERM": (signal.SIGTERM, False),
    "SIGHUP": (signal.SIGHUP, True),
    "SIGKILL-group": (signal.SIGKILL, True),
    "SIGKILL-main": (signal.SIGKILL, False),
    "runner-cancel": (None, True),
}
#: ways of stopping after which no code of the run can send anything: only the orphan guard can
KILLS = ("SIGKILL-group", "SIGKILL-main", "runner-cancel")
#: seconds after the stop a run's processes may take to exit before the soak kills what is left
EXIT_TIMEOUT = 60.0
#: when a run is stopped, as a fraction of how long an undisturbed run of its entry point takes on this machine
#: right now (measured before the soak, two at a time like the soak): from before the start is sent to a little
#: after the run would have ended by itself, so some runs send nothing and some complete first
MOMENTS = (0.05, 1.1)
#: short steps: each Ansible task costs ~1 s of its own on a loaded 2-core machine, a local fab step almost nothing
STEP = "sleep 0.3"
ANSIBLE_STEPS = 3
FAB_STEPS = 6


@dataclasses.dataclass
class Run:
    index: int
    entry: str
    stop: str
    moment: float  # fraction of the undisturbed length of its entry point (MOMENTS)
    version: str
    delay: float = 0.0  # seconds after the spawn: moment x the length measured before the soak
    stopped_at: float | None = None  # time.monotonic() of the stop; None if the run ended before it
    exited_at: float | None = None  # time.monotonic() the main process was seen gone
    returncode: int | None = None
    hung: bool = False
    log: pathlib.Path | None = None


# --- the three entry points, set up once -------------------------------------------------------------------

class Workbench:
    """Files shared by every run of the soak, in one temporary directory."""

    def __init__(self, directory: pathlib.Path, emulator: RetraceEmulator):
        self.directory = directory
        self.emulator = emulator
        steps = [{"name": f"Deployment step {number}", "ansible.builtin.command": STEP} for number in range(ANSIBLE_STEPS)]
        self.callback_playbook = self._write("callback/site.yml", [
            {"name": "Deploy", "hosts": "all", "gather_facts": False, "tasks": steps}])
        self._write("role/steps.yml", steps)
        self.role_playbook = self._write("role/site.yml", [
            {"name": "Deploy", "hosts": "all", "gather_facts": False, "tasks": [
                {"name": "Tracked deployment", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"},
                 "vars": {"tracked_deployment_tasks": "steps.yml"}}]}])
        self.inventory = directory / "hosts.ini"
        self.inventory.write_text("web1 ansible_connection=local\n", encoding="utf-8")
        # group vars in the inventory itself: ansible-runner takes it as text, with no group_vars/ beside it
        self.two_target_inventory = directory / "two-targets.ini"
        self.two_target_inventory.write_text("".join(
            f"[{group}]\n{group}1 ansible_connection=local\n[{group}:vars]\nretrace_app_name={app}\n"
            for group, app in TWO_TARGETS.items()), encoding="utf-8")
        fab = directory / "fab"
        fab.mkdir()
        (fab / "fabfile.py").symlink_to(ROOT / "fabfile.py")
        settings = {"api_url": emulator.url, "app_name": "DemoApp", "environment_name": "Production",
                    "steps": [STEP] * FAB_STEPS, "timeout": 2, "deadline": 10}
        (fab / "fabric.yaml").write_text(yaml.safe_dump({"retrace": settings}), encoding="utf-8")
        (fab / "runtime.yaml").write_text(yaml.safe_dump({"run": {"in_stream": False}}), encoding="utf-8")
        self.fab_directory = fab

    def _write(self, name: str, data) -> pathlib.Path:
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path

    def apps(self, entry: str) -> tuple[str, ...]:
        """The apps one run of ``entry`` deploys: one deployment each, all of the run's version."""
        return tuple(TWO_TARGETS.values()) if entry == "callback (2 targets)" else (DEMO_APP,)

    def inventory_for(self, entry: str) -> pathlib.Path:
        return self.two_target_inventory if entry == "callback (2 targets)" else self.inventory

    def ansible_environment(self, run: Run) -> dict:
        env = {name: value for name, value in os.environ.items() if not name.startswith(("ANSIBLE_", "RETRACE_", "STACKIFY_"))}
        env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   ANSIBLE_CONFIG=str(self.directory / "none.cfg"), ANSIBLE_LOCAL_TEMP=str(self.directory / f"tmp-{run.index}"),
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_NOCOLOR="1",
                   PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                   RETRACE_API_URL=self.emulator.url, RETRACE_API_KEY=DEMO_API_KEY, RETRACE_APP_NAME="DemoApp",
                   RETRACE_ENVIRONMENT_NAME="Production", RETRACE_VERSION=run.version)
        if run.entry.startswith("callback"):
            env["ANSIBLE_CALLBACKS_ENABLED"] = "stackify.retrace.deployment"
        return env

    def command(self, run: Run) -> tuple[list[str], pathlib.Path, dict]:
        """argv, working directory and environment of one run."""
        if run.entry == "fab deploy":
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.directory), "LANG": "C.UTF-8",
                   "PYTHONPATH": str(ROOT), "RETRACE_API_KEY": DEMO_API_KEY,
                   "GIT_CEILING_DIRECTORIES": str(self.directory)}
            return ([str(BIN / "fab"), "-f", str(self.fab_directory / "runtime.yaml"), "deploy", "--version", run.version],
                    self.fab_directory, env)
        playbook = self.role_playbook if run.entry == "role" else self.callback_playbook
        return [str(BIN / "ansible-playbook"), "-i", str(self.inventory_for(run.entry)), str(playbook)], playbook.parent, \
            self.ansible_environment(run)


def calibrate(bench: Workbench, parallel: int) -> dict[str, float]:
    """Seconds an undisturbed run of each entry point takes (``parallel`` at once, the slowest), on this machine now."""
    lengths = {}
    for entry in ENTRY_POINTS:
        runs = [Run(-1 - number, entry, "none", 0.0, f"calibration-{_slug(entry)}-{number}") for number in range(parallel)]

        def undisturbed(run: Run) -> float:
            argv, cwd, env = bench.command(run)
            began = time.monotonic()
            subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False, timeout=EXIT_TIMEOUT)
            return time.monotonic() - began

        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            lengths[entry] = max(pool.map(undisturbed, runs))
    return lengths


def _slug(entry: str) -> str:
    """"callback (2 targets)" -> "callback-2-targets": a name for versions."""
    return "-".join("".join(char if char.isalnum() else " " for char in entry).split())


# --- one run ------------------------------------------------------------------------------------------------

def execute(bench: Workbench, run: Run) -> Run:
    if run.stop == "runner-cancel":
        return _execute_under_ansible_runner(bench, run)
    argv, cwd, env = bench.command(run)
    run.log = bench.directory / f"run-{run.index:03d}.log"
    signum, whole_group = STOPS[run.stop]
    with open(run.log, "wb") as output:
        # its own session: a group to signal, and nothing of ours (the soak's terminal) in it
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    gone = threading.Event()

    def watch() -> None:
        process.wait()
        run.exited_at = time.monotonic()
        gone.set()

    threading.Thread(target=watch, daemon=True).start()
    if not gone.wait(run.delay):
        run.stopped_at = time.monotonic()
        try:
            if whole_group:
                os.killpg(process.pid, signum)
            else:
                os.kill(process.pid, signum)
        except ProcessLookupError:  # it ended in the very same instant
            run.stopped_at = None
    run.hung = not gone.wait(EXIT_TIMEOUT)
    run.returncode = process.returncode
    _kill_group(process.pid)  # ansible workers outlive a SIGKILL of the main process alone
    return run


def _execute_under_ansible_runner(bench: Workbench, run: Run) -> Run:
    root = bench.directory / f"runner-{run.index:03d}"
    (root / "project").mkdir(parents=True)
    playbook = bench.role_playbook if run.entry == "role" else bench.callback_playbook
    for source in playbook.parent.iterdir():
        (root / "project" / source.name).write_bytes(source.read_bytes())
    envvars = {name: value for name, value in bench.ansible_environment(run).items()
               if name.startswith(("ANSIBLE_", "RETRACE_")) and name != "ANSIBLE_CONFIG"}
    deadline = time.monotonic() + run.delay

    def cancel() -> bool:
        if time.monotonic() < deadline:
            return False
        if run.stopped_at is None:
            run.stopped_at = time.monotonic()
        return True

    # pexpect_timeout: how often ansible-runner asks the cancel callback (default 5 s)
    result = ansible_runner.run(private_data_dir=str(root), playbook="site.yml", inventory=bench.inventory_for(run.entry).read_text(),
                                envvars=envvars, quiet=True, settings={"pexpect_timeout": 0.2}, cancel_callback=cancel)
    run.exited_at = time.monotonic()
    run.returncode = result.rc
    if result.status != "canceled":
        run.stopped_at = None  # it ended by itself before the cancel came
    run.log = root / "artifacts"
    return run


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- what the emulator saw ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    """What became of one deployment of a run (a run of "callback (2 targets)" has two)."""

    run: Run
    app: str
    state: str  # "not started", "completed", "cancelled", "in progress"
    #: ends answered 409 once the start was accepted (a second end after the deployment was closed).  A 409 before
    #: that is a run stopped while its start was in flight: its cancel, and its guard's sent again until the start
    #: can no longer land, find nothing to end yet, as designed (docs/lifecycle.md).
    refused_ends: int
    accepted_ends: int
    end_latency: float | None  # seconds from the stop to the accepted end, when the run was stopped after the start
    by_guard: bool  # the end landed after the run's main process was gone
    journal: list  # (action, status, seconds after the stop) of this run's requests


def outcome(run: Run, app: str, entries: list[dict], states: dict[tuple[str, str], str]) -> Outcome:
    """The deployment of ``app`` that ``run`` made, from the emulator's journal and its deployments' states, keyed by
    (AppName, Version)."""
    mine = [entry for entry in entries if (entry.get("body") or {}).get("Version") == run.version
            and (entry.get("body") or {}).get("AppName") == app]
    ends = [entry for entry in mine if entry["action"] in ("complete", "cancel")]
    accepted = [entry for entry in ends if entry["status"] == 202]
    state = {None: "not started", "in_progress": "in progress"}.get(states.get((app, run.version)), states.get((app, run.version)))
    latency, by_guard = None, False
    if accepted and run.stopped_at is not None and accepted[0]["monotonic"] >= run.stopped_at:
        latency = accepted[0]["monotonic"] - run.stopped_at
        # after SIGKILL nothing of the run can send; otherwise the end came after its main process was gone
        by_guard = run.stop in KILLS or (run.exited_at is not None and accepted[0]["monotonic"] > run.exited_at)
    origin = run.stopped_at if run.stopped_at is not None else (mine[0]["monotonic"] if mine else 0.0)
    journal = [(entry["action"], entry["status"], round(entry["monotonic"] - origin, 2)) for entry in mine]
    started = [entry["monotonic"] for entry in mine if entry["action"] == "start" and entry["status"] == 202]
    refused = [entry for entry in ends if entry["status"] == 409 and started and entry["monotonic"] >= started[0]]
    return Outcome(run, app, state, len(refused), len(accepted), latency, by_guard, journal)


# --- the soak ---------------------------------------------------------------------------------------------------

def pairs() -> list[tuple[str, str]]:
    """Every (entry point, way of stopping) the soak tries: all but an ansible-runner cancel of ``fab deploy``."""
    return [(entry, stop) for entry in ENTRY_POINTS for stop in STOPS if not (entry == "fab deploy" and stop == "runner-cancel")]


#: runs of a soak by default: 9 of each pair
RUNS = 9 * len(pairs())


def plan(runs: int, rng: random.Random, seed: int, only: tuple[str, ...] = ()) -> list[Run]:
    """Every (entry point, way of stopping) pair about equally often, in random order, with random delays.

    ``only``: "ENTRY:STOP" pairs (e.g. "role:SIGHUP") to keep, to look closer at one case.
    """
    pairs_kept = [(entry, stop) for entry, stop in pairs() if not only or f"{entry}:{stop}" in only]
    if not pairs_kept:
        raise SystemExit(f"bench_chaos: --only {' '.join(only)} names no pair; entry points {ENTRY_POINTS}, stops {tuple(STOPS)}")
    chosen: list[tuple[str, str]] = []
    while len(chosen) < runs:
        rng.shuffle(pairs_kept)
        chosen += pairs_kept
    return [Run(index, entry, stop, round(rng.uniform(*MOMENTS), 3), f"chaos-{seed}-{index:03d}")
            for index, (entry, stop) in enumerate(chosen[:runs])]


def soak(runs: int, seed: int, parallel: int, grace: float, budget: float, keep: bool = False,
         only: tuple[str, ...] = ()) -> dict:
    """Run the soak; print its progress and figures; return the figures (for scripts/benchmark.py)."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        # children inherit an ignored signal (nohup, some CI shells): the soak needs them at their default
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # ansible-runner finds ansible-playbook there
    rng = random.Random(seed)
    planned = plan(runs, rng, seed, only)
    print(f"chaos soak: {runs} runs, seed {seed} (replay with --seed {seed}), {parallel} at a time, "
          f"grace {grace:g} s, budget {budget:g} s", flush=True)
    began = time.monotonic()
    done: list[Run] = []
    account = {"apps": [DEMO_APP, *TWO_TARGETS.values()], "environments": list(DEMO_ENVIRONMENTS)}
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp, RetraceEmulator({DEMO_API_KEY: account}) as emulator:
        bench = Workbench(pathlib.Path(tmp), emulator)
        lengths = calibrate(bench, parallel)
        print("  undisturbed runs take " + ", ".join(f"{entry} {seconds:.1f} s" for entry, seconds in lengths.items())
              + " here now: stops fall between " + " and ".join(f"{moment:g}" for moment in MOMENTS) + " of that", flush=True)
        for run in planned:
            run.delay = round(run.moment * lengths[run.entry], 2)
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            pending = iter(planned)
            futures = set()
            while True:
                while len(futures) < parallel and time.monotonic() - began < budget:
                    run = next(pending, None)
                    if run is None:
                        break
                    futures.add(pool.submit(execute, bench, run))
                if not futures:
                    break
                finished, futures = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    done.append(future.result())
                    if len(done) % 10 == 0:
                        print(f"  {len(done)} runs done ({time.monotonic() - began:.0f} s)", flush=True)
        print(f"  all {len(done)} runs stopped; grace period {grace:g} s for the orphan guards ...", flush=True)
        time.sleep(grace)
        entries = emulator.requests()
        states = {(record["AppName"], record["Version"]): record["state"] for record in emulator.deployments()}
        outcomes = [outcome(run, app, entries, states) for run in sorted(done, key=lambda run: run.index)
                    for app in bench.apps(run.entry)]
        figures = report(outcomes, seed, time.monotonic() - began, len(planned))
        if keep and figures["in_progress"]:
            for item in outcomes:
                if item.state == "in progress":
                    text = item.run.log.read_text(errors="replace") if item.run.log and item.run.log.is_file() else ""
                    print(f"\n--- run {item.run.index} ({item.run.entry}, {item.app}, {item.run.stop}, {item.run.delay} s) ---\n{text[-3000:]}")
    return figures


def report(outcomes: list[Outcome], seed: int, seconds: float, planned: int) -> dict:
    """Print the tables (a row counts deployments: two per run of "callback (2 targets)"); return the headline figures."""
    def table(title: str, key) -> None:
        groups: dict[str, list[Outcome]] = collections.defaultdict(list)
        for item in outcomes:
            groups[key(item)].append(item)
        print(f"\n{title:<20} {'deployments':>11} {'not started':>12} {'completed':>10} {'cancelled':>10} {'IN PROGRESS':>12} "
              f"{'409 ends':>9} {'double ends':>12}   end landed after the stop: median / max (by guard)")
        for name in sorted(groups):
            items = groups[name]
            count = collections.Counter(item.state for item in items)
            latencies = [item.end_latency for item in items if item.end_latency is not None]
            guard = sum(1 for item in items if item.by_guard)
            timing = f"{statistics.median(latencies):.2f} s / {max(latencies):.2f} s ({guard})" if latencies else "-"
            print(f"{name:<20} {len(items):>11} {count['not started']:>12} {count['completed']:>10} {count['cancelled']:>10} "
                  f"{count['in progress']:>12} {sum(item.refused_ends for item in items):>9} "
                  f"{sum(1 for item in items if item.accepted_ends > 1):>12}   {timing}")

    table("entry point", lambda item: item.run.entry)
    table("way of stopping", lambda item: item.run.stop)
    in_progress = [item for item in outcomes if item.state == "in progress"]
    guard_latencies = [item.end_latency for item in outcomes if item.by_guard and item.end_latency is not None]
    runs = list({item.run.index: item.run for item in outcomes}.values())
    hung = sum(1 for run in runs if run.hung)
    print(f"\nruns: {len(runs)} of {planned} planned (seed {seed}), {len(outcomes)} deployments, {seconds:.0f} s; processes "
          f"that outlived {EXIT_TIMEOUT:g} s after the stop: {hung}"
          + "".join(f"\n  run {run.index}: {run.entry}, {run.stop} after {run.delay} s" for run in runs if run.hung))
    if guard_latencies:
        print(f"orphan guard: {len(guard_latencies)} ends landed after the run was gone; from the stop: median "
              f"{statistics.median(guard_latencies):.2f} s, max {max(guard_latencies):.2f} s")
    odd = [item for item in outcomes if item.state == "in progress" or item.accepted_ends > 1 or item.refused_ends]
    print(f"deployments left in progress: {len(in_progress)} (goal 0)"
          + "".join(f"\n  run {item.run.index}: {item.run.entry}, {item.run.stop} after {item.run.delay} s, "
                    f"{item.app} version {item.run.version}" for item in in_progress))
    for item in odd:  # (action, status, seconds after the stop): what Retrace saw of each run that went wrong
        print(f"  run {item.run.index} ({item.run.entry}, {item.run.stop} after {item.run.delay} s, exit "
              f"{item.run.returncode}), {item.app} {item.state}: {item.journal}")
    return {"runs": len(runs), "deployments": len(outcomes), "planned": planned, "seed": seed, "seconds": seconds, "in_progress": len(in_progress),
            "double_ends": sum(1 for item in outcomes if item.accepted_ends > 1),
            "refused_ends": sum(item.refused_ends for item in outcomes),
            "guard_median": statistics.median(guard_latencies) if guard_latencies else None,
            "guard_max": max(guard_latencies) if guard_latencies else None, "guard_ends": len(guard_latencies),
            "per_entry": {entry: sum(1 for item in in_progress if item.run.entry == entry) for entry in ENTRY_POINTS},
            "per_stop": {stop: sum(1 for item in in_progress if item.run.stop == stop) for stop in STOPS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs in all (default {RUNS}: 9 of each of the {len(pairs())} pairs)")
    parser.add_argument("--seed", type=int, default=None, help="replay a soak (default: the current time)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--grace", type=float, default=20.0, help="seconds to wait for orphan guards after the last run")
    parser.add_argument("--budget", type=float, default=600.0, help="no new run starts after this many seconds")
    parser.add_argument("--show-logs", action="store_true", help="print the output of runs left in progress")
    parser.add_argument("--only", nargs="+", default=(), metavar="ENTRY:STOP",
                        help='only these pairs, e.g. "role:SIGHUP" "fab deploy:SIGKILL-main"')
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    soak(args.runs, seed, args.parallel, args.grace, args.budget, keep=args.show_logs, only=tuple(args.only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
