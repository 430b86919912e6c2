"""Cost of Retrace tracking on a one-host ``fab deploy`` over loopback SSH: tracked vs. untracked.

    .venv/bin/python scripts/bench_fabric.py [--runs 7] [--steps demo/fabric/bench-deploy.yaml]

Tracked: this repository's fabfile (``fab -H host deploy``: start, the steps, complete, against the
emulator).  Untracked: a plain fabfile running the same steps on the same host with ``c.run``, output
shown as Fabric shows it.  Runs come in pairs, back to back, in alternating order, so both kinds of a
pair see the same machine load; the headline figure is the median of the per-pair ratios (target <= 1.05),
with the ratio of the medians and of the fastest runs beside it.  Then, with the emulator hanging on
start, the tracked deploy is timed against the untracked one: the time added must stay within the
deadline.  A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import resource
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests" / "integration" / "fabric")]

from fabric_sshd import LoopbackSshd  # noqa: E402  (path set above)
from retrace_emulator import DEMO_API_KEY, RetraceEmulator  # noqa: E402

FAB = str(pathlib.Path(sys.executable).with_name("fab"))
UNTRACKED_FABFILE = '''\
from fabric import task


@task
def deploy(c, version=None):
    """The same steps, without Retrace."""
    for step in c.config.retrace.steps:
        c.run(step, in_stream=False, env={"RETRACE_VERSION": version})
'''


DEFAULT_STEPS = REPO_ROOT / "demo" / "fabric" / "bench-deploy.yaml"


#: seconds the tracked deploy may wait for a hanging API (retrace.deadline in the hanging measurement)
HANGING_DEADLINE = 5.0


def measure(runs: int = 7, steps_file: pathlib.Path = DEFAULT_STEPS, hanging_runs: int = 0) -> dict:
    """Alternating tracked/untracked ``fab -H host deploy`` runs (after one warm-up pair), then runs with the API hanging.

    Returns {"steps", "tracked", "untracked" (lists of seconds), "calls" (requests the emulator received),
    "expected_calls", "pair_ratio" (median of per-pair ratios), "ratio" (of the medians), "fastest_ratio",
    "overhead" (seconds per deploy), "hanging_added" (seconds added per deploy with the API hanging)}.
    """
    steps = yaml.safe_load(steps_file.read_text(encoding="utf-8"))["retrace"]["steps"]
    with tempfile.TemporaryDirectory(prefix="bench-fabric-") as tmp, RetraceEmulator() as emulator, \
            LoopbackSshd(pathlib.Path(tmp) / "sshd", hosts=1) as sshd:
        tracked, untracked = _projects(pathlib.Path(tmp), steps, sshd, emulator.url)
        environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RETRACE_API_KEY": DEMO_API_KEY, "HOME": tmp}
        # Measure what users get: byte code cached after the first run, as for Fabric itself in site-packages.
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
        command = [FAB, "-H", sshd.host_strings[0], "deploy"]
        times: dict[str, list[float]] = {"tracked": [], "untracked": []}
        cpu: dict[str, list[float]] = {"tracked": [], "untracked": []}
        for run in range(runs + 1):  # run 0 warms caches and is not counted
            for kind, directory in (("untracked", untracked), ("tracked", tracked)) if run % 2 else (("tracked", tracked), ("untracked", untracked)):
                before = _children_cpu()
                elapsed = _time(command + ["--version", f"bench-{run}"], directory, environ)
                if run:
                    times[kind].append(elapsed)
                    cpu[kind].append(_children_cpu() - before)
        calls = len(emulator.requests())
        hanging_added = []
        _set_deadline(tracked, HANGING_DEADLINE)
        emulator.inject("start", [{"hang": HANGING_DEADLINE * 4}] * (hanging_runs * 10))
        for run in range(hanging_runs):
            untracked_time = _time(command + ["--version", f"hang-{run}"], untracked, environ)
            hanging_added.append(_time(command + ["--version", f"hang-{run}"], tracked, environ) - untracked_time)
    tracked_median, untracked_median = statistics.median(times["tracked"]), statistics.median(times["untracked"])
    pairs = [tracked_time / untracked_time for tracked_time, untracked_time in zip(times["tracked"], times["untracked"])]
    return {"steps": len(steps), **times, "calls": calls, "expected_calls": 2 * (runs + 1),
            "pair_ratio": statistics.median(pairs), "ratio": tracked_median / untracked_median,
            "fastest_ratio": min(times["tracked"]) / min(times["untracked"]),
            "overhead": tracked_median - untracked_median, "hanging_added": hanging_added,
            "cpu_ratio": statistics.median(cpu["tracked"]) / statistics.median(cpu["untracked"])}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: fab and its local commands, not sshd."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _set_deadline(directory: pathlib.Path, seconds: float) -> None:
    config = yaml.safe_load((directory / "fabric.yaml").read_text(encoding="utf-8"))
    config["retrace"].update(timeout=seconds, deadline=seconds)
    (directory / "fabric.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each kind (default 7)")
    parser.add_argument("--hanging-runs", type=int, default=3, help="pairs of runs with the API hanging (default 3)")
    parser.add_argument("--steps", type=pathlib.Path, default=DEFAULT_STEPS,
                        help="a YAML file whose retrace.steps are deployed (default: demo/fabric/bench-deploy.yaml)")
    args = parser.parse_args()
    figures = measure(args.runs, args.steps, args.hanging_runs)
    print(f"steps per deploy: {figures['steps']} (from {args.steps.relative_to(REPO_ROOT) if args.steps.is_relative_to(REPO_ROOT) else args.steps})")
    for kind in ("untracked", "tracked"):
        values = figures[kind]
        print(f"{kind:>9}: median {statistics.median(values):.3f} s  min {min(values):.3f} s  max {max(values):.3f} s  ({len(values)} runs)")
    print(f"Retrace calls received by the emulator: {figures['calls']} (expected {figures['expected_calls']})")
    print(f"wall ratio tracked / untracked (median of {len(figures['tracked'])} back-to-back pairs): {figures['pair_ratio']:.3f}  (target <= 1.05)")
    print(f"wall ratio tracked / untracked (medians): {figures['ratio']:.3f}")
    print(f"wall ratio tracked / untracked (fastest runs, least disturbed by machine load): {figures['fastest_ratio']:.3f}")
    print(f"tracking overhead: {figures['overhead']:+.3f} s per deploy")
    print(f"CPU time of fab and its local commands, tracked / untracked (medians; insensitive to other load): {figures['cpu_ratio']:.3f}")
    added = figures["hanging_added"]
    if added:
        print(f"API hanging (deadline {HANGING_DEADLINE:.0f} s): tracked deploy took {', '.join(f'{value:+.2f}' for value in added)} s "
              f"more than untracked (max {max(added):.2f} s; target <= {HANGING_DEADLINE:.2f} s)")
    return 0


def _projects(root: pathlib.Path, steps: list, sshd: LoopbackSshd, api_url: str) -> tuple[pathlib.Path, pathlib.Path]:
    tracked, untracked = root / "tracked", root / "untracked"
    for directory in (tracked, untracked):
        directory.mkdir()
        config = {**sshd.fabric_config(), "run": {"in_stream": False},
                  "retrace": {"steps": steps, "app_name": "DemoApp", "environment_name": "Production", "api_url": api_url}}
        (directory / "fabric.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tracked / "fabfile.py").symlink_to(REPO_ROOT / "fabfile.py")
    (untracked / "fabfile.py").write_text(UNTRACKED_FABFILE, encoding="utf-8")
    return tracked, untracked


def _time(command: list[str], directory: pathlib.Path, environ: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=directory, env=environ, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} in {directory.name} failed ({result.returncode}): {result.stderr}")
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
