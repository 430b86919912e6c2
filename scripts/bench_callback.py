"""What the stackify.retrace.deployment callback costs: wall-time ratios, tracked vs. untracked.

    .venv/bin/python scripts/bench_callback.py [--rounds 21] [--hosts 500] [--many-host-rounds 5] [--targets 5]

1. A trivial one-task playbook on localhost, run alternately with and without the callback
   (against the local emulator): the ratio of the medians, of wall time and of CPU time.
   Target: CPU ratio <= 1.03.  The CPU counted is that of ansible-playbook, its workers and the
   orphan guard's watcher: this process makes itself a child subreaper, so the watcher, which
   detaches from ansible-playbook, is reparented to it and reaped here (RUSAGE_CHILDREN).
2. The same playbook against an inventory of many hosts in several groups, every group's group_vars naming the
   same app (one target): exactly 2 requests must reach the emulator, and the tracked/untracked ratio must be
   no worse than with 1 host.
3. The same hosts and groups, each group's group_vars naming an app of its own (``--targets`` of them), run in
   the same rounds as 2: exactly 2 requests per target (a start and a complete each); the CPU tracking adds with
   one target and with several, and their difference as a % of the untracked run's CPU (flat: under 1 %).

Prints figures; never fails on timing (only on a wrong request count).
"""

from __future__ import annotations

import argparse
import collections
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

from retrace_emulator import DEMO_API_KEY, DEMO_APP, RetraceEmulator  # noqa: E402  (needs the path set above)

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


#: several targets cost no more than one when the CPU tracking adds differs by less than this % of the untracked run's
FLAT_PERCENT = 1.0

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


def write_grouped_inventory(directory: pathlib.Path, hosts: int, apps: list[str]) -> pathlib.Path:
    """``hosts`` local hosts in one group per entry of ``apps`` (about equal blocks), each group's group_vars naming
    its app, as a user would: ``retrace_app_name: App1`` in ``group_vars/group1.yml``."""
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, app in enumerate(apps):
        group = f"group{index + 1}"
        first, last = index * hosts // len(apps), (index + 1) * hosts // len(apps)
        lines += [f"[{group}]"] + [f"host{n:04d} ansible_connection=local" for n in range(first, last)]
        (directory / "group_vars" / f"{group}.yml").write_text(f"retrace_app_name: {app}\n")
    inventory = directory / "hosts.ini"
    inventory.write_text("\n".join(lines) + "\n")
    return inventory


@dataclasses.dataclass
class TargetFigures:
    """The same hosts and groups tracked as one target and as ``targets``; CPU seconds are medians over rounds."""

    targets: int
    #: one target (every group names the same app): tracked vs untracked, as in section 2
    one: Figures
    #: the tracked runs with ``targets`` targets
    spread_wall: float
    spread_cpu: float
    #: median over rounds of (tracked with ``targets`` - tracked with one target), CPU seconds; the two ran in the same round
    paired_cpu_difference: float
    #: per tracked run, "action status" -> count, of the requests the emulator received during it
    requests_one: list[dict]
    requests_spread: list[dict]

    @property
    def added_one_ms(self) -> float:
        return (self.one.tracked_cpu - self.one.untracked_cpu) * 1000

    @property
    def added_spread_ms(self) -> float:
        return (self.spread_cpu - self.one.untracked_cpu) * 1000

    @property
    def difference_percent(self) -> float:
        """What tracking several targets adds beyond one, as a % of the untracked run's CPU."""
        return (self.spread_cpu - self.one.tracked_cpu) / self.one.untracked_cpu * 100

    @property
    def flat(self) -> bool:
        return self.difference_percent < FLAT_PERCENT

    @property
    def requests_right(self) -> bool:
        """Each tracked run sent one start and one complete per target, and Retrace accepted them all."""
        return (all(sent == {"start 202": 1, "complete 202": 1} for sent in self.requests_one)
                and all(sent == {"start 202": self.targets, "complete 202": self.targets} for sent in self.requests_spread))

    def requests_per_run(self, which: list[dict]) -> str:
        """"2" when every run sent as many requests, else each run's count ("2 2 3")."""
        counts = [sum(sent.values()) for sent in which]
        return f"{counts[0]}" if len(set(counts)) == 1 else " ".join(map(str, counts))


def measure_targets(emulator: RetraceEmulator, workdir: pathlib.Path, hosts: int, targets: int, rounds: int) -> TargetFigures:
    """``hosts`` hosts in ``targets`` groups, tracked as one target and as ``targets``, and untracked.

    The emulator must accept the apps App1 ... App<targets> (``RetraceEmulator(allow_any_app=True)``).  Each round runs
    the three, its order rotated round by round, so that all three see the same machine and none always goes first.
    One untracked run serves both: the two inventories differ only in the app their group_vars name, which only the
    callback reads.
    """
    if not become_subreaper():
        print("warning: not a child subreaper: the orphan guard's CPU time is not counted", file=sys.stderr)
    playbook = workdir / "site.yml"
    playbook.write_text(PLAYBOOK)
    one_target = write_grouped_inventory(workdir / f"targets-1-of-{hosts}", hosts, [DEMO_APP] * targets)
    spread = write_grouped_inventory(workdir / f"targets-{targets}-of-{hosts}", hosts, [f"App{n + 1}" for n in range(targets)])
    tracked_env = environment(emulator.url, workdir, tracked=True)
    untracked_env = environment(emulator.url, workdir, tracked=False)
    kinds = {"one": (one_target, tracked_env), "spread": (spread, tracked_env), "untracked": (one_target, untracked_env)}
    for inventory, env in kinds.values():  # warm-up
        run_once(inventory, playbook, env)
    runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    sent: dict[str, list[dict]] = {"one": [], "spread": []}
    order = list(kinds)
    for number in range(rounds):
        for kind in order[number % 3:] + order[:number % 3]:
            inventory, env = kinds[kind]
            before = len(emulator.requests())
            runs[kind].append(run_once(inventory, playbook, env))
            if kind in sent:
                sent[kind].append(dict(collections.Counter(f"{entry['action']} {entry['status']}"
                                                           for entry in emulator.requests()[before:])))
    one_runs, spread_runs, untracked_runs = runs["one"], runs["spread"], runs["untracked"]
    one = Figures(statistics.median(wall for wall, _cpu in one_runs), statistics.median(wall for wall, _cpu in untracked_runs),
                  statistics.median(cpu for _wall, cpu in one_runs), statistics.median(cpu for _wall, cpu in untracked_runs),
                  sum(sum(counts.values()) for counts in sent["one"]) / rounds,
                  statistics.median(tracked_cpu / untracked_cpu for (_w1, tracked_cpu), (_w2, untracked_cpu)
                                    in zip(one_runs, untracked_runs)))
    return TargetFigures(targets, one, statistics.median(wall for wall, _cpu in spread_runs),
                         statistics.median(cpu for _wall, cpu in spread_runs),
                         statistics.median(spread_cpu - one_cpu for (_w1, spread_cpu), (_w2, one_cpu) in zip(spread_runs, one_runs)),
                         sent["one"], sent["spread"])


def describe_targets(figures: TargetFigures, hosts: int) -> list[str]:
    """The lines scripts/bench_callback.py prints about one target against several."""
    verdict = "flat" if figures.flat else "NOT flat"
    return [
        f"{hosts} hosts in {figures.targets} groups: requests per tracked run {figures.requests_per_run(figures.requests_one)} "
        f"with 1 target (target 2), {figures.requests_per_run(figures.requests_spread)} with {figures.targets} targets "
        f"(target {2 * figures.targets}: a start and a complete each)",
        f"CPU added by tracking (tracked - untracked, medians): {figures.added_one_ms:+.0f} ms with 1 target, "
        f"{figures.added_spread_ms:+.0f} ms with {figures.targets} targets (untracked run {figures.one.untracked_cpu:.2f} s of CPU)",
        f"{figures.targets} targets - 1 target: {figures.added_spread_ms - figures.added_one_ms:+.0f} ms = "
        f"{figures.difference_percent:+.2f} % of the untracked run's CPU: {verdict} (flat: under {FLAT_PERCENT:g} %); "
        f"paired per round: {figures.paired_cpu_difference * 1000:+.0f} ms = "
        f"{figures.paired_cpu_difference / figures.one.untracked_cpu * 100:+.2f} %",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="rounds of the 1-host runs (default 21)")
    parser.add_argument("--hosts", type=int, default=500, help="hosts in the many-host inventory (default 500)")
    parser.add_argument("--many-host-rounds", type=int, default=5, help="rounds of the many-host runs (default 5; each "
                        "round is three runs: one target, several targets, untracked)")
    parser.add_argument("--targets", type=int, default=5, help="groups of the many-host inventory, each its own app in "
                        "the several-target runs (default 5)")
    args = parser.parse_args()
    load_before = f"{os.getloadavg()[0]:.2f}"
    with RetraceEmulator(allow_any_app=True) as emulator, tempfile.TemporaryDirectory(prefix="retrace-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        one = measure(emulator, workdir, 1, args.rounds)
        spread = measure_targets(emulator, workdir, args.hosts, args.targets, args.many_host_rounds)
        many = spread.one
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
    print("\n".join(describe_targets(spread, args.hosts)))
    for label, sent in (("1 target", spread.requests_one), (f"{args.targets} targets", spread.requests_spread)):
        if not spread.requests_right:
            print(f"requests of each tracked run, {label}: {sent}", file=sys.stderr)
    return 0 if one.requests_per_run == 2 and spread.requests_right else 1


if __name__ == "__main__":
    sys.exit(main())
