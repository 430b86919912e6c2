"""Cost of Retrace tracking on a one-host ``fab deploy`` over loopback SSH: tracked vs. untracked.

    .venv/bin/python scripts/bench_fabric.py [--runs 7] [--steps demo/fabric/bench-deploy.yaml]

Tracked: this repository's fabfile (``fab -H host deploy``: start, the steps, complete, against the
emulator).  Untracked: a plain fabfile running the same steps on the same host with ``c.run``.  Runs
alternate so both see the same machine load; the figure is the ratio of the medians (target <= 1.05).
A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
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
        print(c.run(step, hide=True, in_stream=False, env={"RETRACE_VERSION": version}).stdout, end="")
'''


DEFAULT_STEPS = REPO_ROOT / "demo" / "fabric" / "bench-deploy.yaml"


def measure(runs: int = 7, steps_file: pathlib.Path = DEFAULT_STEPS) -> dict:
    """Alternating tracked/untracked ``fab -H host deploy`` runs (after one warm-up pair).

    Returns {"steps", "tracked", "untracked" (lists of seconds), "calls" (requests the emulator received),
    "expected_calls", "ratio" (of the medians), "fastest_ratio", "overhead" (seconds per deploy)}.
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
        for run in range(runs + 1):  # run 0 warms caches and is not counted
            for kind, directory in (("untracked", untracked), ("tracked", tracked)) if run % 2 else (("tracked", tracked), ("untracked", untracked)):
                elapsed = _time(command + ["--version", f"bench-{run}"], directory, environ)
                if run:
                    times[kind].append(elapsed)
        calls = len(emulator.requests())
    tracked_median, untracked_median = statistics.median(times["tracked"]), statistics.median(times["untracked"])
    return {"steps": len(steps), **times, "calls": calls, "expected_calls": 2 * (runs + 1),
            "ratio": tracked_median / untracked_median, "fastest_ratio": min(times["tracked"]) / min(times["untracked"]),
            "overhead": tracked_median - untracked_median}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each kind (default 7)")
    parser.add_argument("--steps", type=pathlib.Path, default=DEFAULT_STEPS,
                        help="a YAML file whose retrace.steps are deployed (default: demo/fabric/bench-deploy.yaml)")
    args = parser.parse_args()
    figures = measure(args.runs, args.steps)
    print(f"steps per deploy: {figures['steps']} (from {args.steps.relative_to(REPO_ROOT) if args.steps.is_relative_to(REPO_ROOT) else args.steps})")
    for kind in ("untracked", "tracked"):
        values = figures[kind]
        print(f"{kind:>9}: median {statistics.median(values):.3f} s  min {min(values):.3f} s  max {max(values):.3f} s  ({len(values)} runs)")
    print(f"Retrace calls received by the emulator: {figures['calls']} (expected {figures['expected_calls']})")
    print(f"wall ratio tracked / untracked (medians): {figures['ratio']:.3f}  (target <= 1.05)")
    print(f"wall ratio tracked / untracked (fastest runs, least disturbed by machine load): {figures['fastest_ratio']:.3f}")
    print(f"tracking overhead: {figures['overhead']:+.3f} s per deploy")
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
