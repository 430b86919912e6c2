"""What the stackify.retrace.deployment callback costs: wall-time ratios, tracked vs. untracked.

    .venv/bin/python scripts/bench_callback.py [--rounds 15] [--hosts 500]

1. A trivial one-task playbook on localhost, run alternately with and without the callback
   (against the local emulator): the ratio of the medians, of wall time and of CPU time.
   Target: CPU ratio <= 1.03.  The CPU counted is that of ansible-playbook, its workers and the
   orphan guard's watcher: this process makes itself a child subreaper, so the watcher, which
   detaches from ansible-playbook, is reparented to it and reaped here (RUSAGE_CHILDREN).
2. The same playbook against an inventory of many hosts: exactly 2 requests must reach the
   emulator, and the tracked/untracked ratio must be no worse than with 1 host.

Prints figures; never fails on timing (only on a wrong request count).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from collection_path import use_checkout_as_collection

COLLECTIONS_ROOT = use_checkout_as_collection()

from retrace_emulator import DEMO_API_KEY, RetraceEmulator  # noqa: E402  (needs the path set above)

ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: One trivial task
      ansible.builtin.debug:
        msg: hello
"""


def environment(emulator_url: str, workdir: pathlib.Path, tracked: bool) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("ANSIBLE_", "RETRACE_", "STACKIFY_"))}
    # As on a user's machine, the warm-up run may write bytecode (the callback loads its module_utils
    # through Python's caching loader): a PYTHONDONTWRITEBYTECODE of the shell running the benchmark
    # would make every run pay for compiling them, which no user's second run does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_CONFIG=str(workdir / "none.cfg"), ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_RETRY_FILES_ENABLED="false",
               RETRACE_API_URL=emulator_url, RETRACE_API_KEY=DEMO_API_KEY, RETRACE_APP_NAME="DemoApp",
               RETRACE_ENVIRONMENT_NAME="Production", RETRACE_VERSION="bench")
    if tracked:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "stackify.retrace.deployment"
    return env


#: prctl(2) option: orphaned descendants are reparented to this process instead of init (Linux 3.4+)
PR_SET_CHILD_SUBREAPER = 36
#: seconds to wait for a detached descendant (the orphan guard's watcher) to exit after a run
ORPHAN_WAIT = 10.0


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so that their CPU time is counted in RUSAGE_CHILDREN once reaped."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children() -> set[int]:
    """Pids of this process's children (their parent, field 4 of /proc/<pid>/stat, is us)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    if int(stat.read().rsplit(b")", 1)[1].split()[1]) == me:
                        found.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def reap_orphans(known: set[int], deadline: float = ORPHAN_WAIT) -> int:
    """Wait for the descendants adopted during a run (a released watcher exits within milliseconds).

    ``known``: children this process had before the run (a caller's own helpers, such as an sshd
    fixture); they are left alone.  Returns how many were reaped.
    """
    adopted, reaped = children() - known, 0
    give_up_at = time.monotonic() + deadline
    while adopted:
        for pid in sorted(adopted):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid  # reaped elsewhere
            if done:
                adopted.discard(pid)
                reaped += 1
        if adopted and time.monotonic() > give_up_at:
            print(f"warning: {len(adopted)} descendant(s) of ansible-playbook still alive after {deadline:g} s",
                  file=sys.stderr)
            break
        time.sleep(0.005)
    return reaped


def run_once(inventory: pathlib.Path, playbook: pathlib.Path, env: dict) -> tuple[float, float]:
    """Wall seconds of one run, and CPU seconds (user + system) of ansible-playbook, its workers and the watcher.

    The wall time stops when ansible-playbook exits; the CPU count waits for the watcher too.
    """
    known = children()
    cpu_before = _children_cpu()
    began = time.perf_counter()
    subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "-c", "local", "--forks", "50", str(playbook)],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=playbook.parent)
    wall = time.perf_counter() - began
    reap_orphans(known)
    return wall, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass
class Figures:
    tracked_wall: float
    untracked_wall: float
    tracked_cpu: float
    untracked_cpu: float
    requests_per_run: float
    #: median over rounds of tracked / untracked CPU of the two runs of one round (they ran back to back)
    paired_cpu_ratio: float = 1.0

    @property
    def wall_ratio(self) -> float:
        return self.tracked_wall / self.untracked_wall

    @property
    def cpu_ratio(self) -> float:
        return self.tracked_cpu / self.untracked_cpu


def measure(emulator: RetraceEmulator, workdir: pathlib.Path, hosts: int, rounds: int) -> Figures:
    """Medians of tracked and untracked runs (alternated, after one warm-up each), and requests per tracked run."""
    if not become_subreaper():
        print("warning: not a child subreaper: the orphan guard's CPU time is not counted", file=sys.stderr)
    inventory = workdir / f"hosts-{hosts}.ini"
    inventory.write_text("[all]\n" + "".join(f"host{n:04d} ansible_connection=local\n" for n in range(hosts)))
    playbook = workdir / "site.yml"
    playbook.write_text(PLAYBOOK)
    tracked_env = environment(emulator.url, workdir, tracked=True)
    untracked_env = environment(emulator.url, workdir, tracked=False)
    run_once(inventory, playbook, tracked_env)
    run_once(inventory, playbook, untracked_env)
    emulator.reset()
    tracked, untracked = [], []
    for _round in range(rounds):
        tracked.append(run_once(inventory, playbook, tracked_env))
        untracked.append(run_once(inventory, playbook, untracked_env))
    return Figures(statistics.median(wall for wall, _cpu in tracked), statistics.median(wall for wall, _cpu in untracked),
                   statistics.median(cpu for _wall, cpu in tracked), statistics.median(cpu for _wall, cpu in untracked),
                   len(emulator.requests()) / rounds,
                   statistics.median(tracked_cpu / untracked_cpu for (_w1, tracked_cpu), (_w2, untracked_cpu)
                                     in zip(tracked, untracked)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--many-host-rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = f"{os.getloadavg()[0]:.2f}"
    with RetraceEmulator() as emulator, tempfile.TemporaryDirectory(prefix="retrace-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        one = measure(emulator, workdir, 1, args.rounds)
        many = measure(emulator, workdir, args.hosts, args.many_host_rounds)
    print(f"load average before/after: {load_before} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")
    print(f"{'inventory':<12}{'tracked s':>11}{'untracked s':>13}{'wall ratio':>12}{'added ms':>10}{'cpu ratio':>11}{'requests/run':>14}")
    for label, figures in (("1 host", one), (f"{args.hosts} hosts", many)):
        print(f"{label:<12}{figures.tracked_wall:>11.3f}{figures.untracked_wall:>13.3f}{figures.wall_ratio:>12.3f}"
              f"{(figures.tracked_wall - figures.untracked_wall) * 1000:>10.0f}{figures.cpu_ratio:>11.3f}{figures.requests_per_run:>14.1f}")
    print(f"\ntrivial playbook, tracked/untracked CPU ratio: {one.cpu_ratio:.3f} (target <= 1.03; "
          f"watcher included); paired per round: {one.paired_cpu_ratio:.3f}; wall ratio {one.wall_ratio:.3f}")
    print(f"tracked run costs {(one.tracked_cpu - one.untracked_cpu) * 1000:+.0f} ms of CPU "
          f"({one.tracked_cpu * 1000:.0f} vs {one.untracked_cpu * 1000:.0f} ms); figures at a load average above "
          f"{os.cpu_count()} mostly measure the other load")
    verdict = "no worse" if many.wall_ratio <= one.wall_ratio else "WORSE"
    print(f"{args.hosts} hosts: {many.requests_per_run:g} requests per run (target 2); wall ratio {many.wall_ratio:.3f} "
          f"vs {one.wall_ratio:.3f} with 1 host ({verdict})")
    return 0 if one.requests_per_run == 2 and many.requests_per_run == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
