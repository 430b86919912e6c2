"""Real signals to the real ``fab`` (SIGINT, SIGTERM, SIGHUP, SIGKILL): one start, one cancel, 128 + N.

Each test starts ``fab`` in its own session, waits until a step is really running (it touches a
marker file), sends the signal to fab's process (or its whole group, as a terminal's Ctrl-C or
ansible-runner's cancel does), and reads what the emulator received.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

#: seconds fab gets to end after the signal (it has to send one cancel; the steps sleep for 20 s)
PROMPT = 12.0  # generous for a loaded machine, still well short of the 20 s steps
GUARD_WINDOW = 15.0
#: seconds a remote step gets to be gone once fab has ended
REMOTE_END = 10.0


class Running:
    """A fab process in its own session, its output in files (no pipe can keep a test waiting)."""

    def __init__(self, project, *args: str, env: dict | None = None):
        self.directory = pathlib.Path(project.directory)
        self.stdout_path, self.stderr_path = self.directory / "fab.out", self.directory / "fab.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(project.command(*args), cwd=project.directory, env=project.environment(env),
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)

    def wait_for(self, condition, what: str, timeout: float = 20.0) -> None:
        ends_at = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"fab ended before {what}: {self.process.returncode}\n{self.output()}")
            if time.monotonic() > ends_at:
                self.process.kill()
                pytest.fail(f"never saw {what}\n{self.output()}")
            time.sleep(0.05)

    def signal(self, signum: int, group: bool = False) -> float:
        (os.killpg if group else os.kill)(self.process.pid, signum)
        return time.monotonic()

    def ended_within(self, sent_at: float, seconds: float) -> int:
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"fab still running {seconds} s after the signal\n{self.output()}")
        assert time.monotonic() - sent_at < seconds
        return code

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()


def _marker_steps(project, tail: list[str] | None = None) -> pathlib.Path:
    marker = pathlib.Path(project.directory) / "step-running"
    project.fabric_yaml({"steps": [f"touch {marker}; sleep 20", f"touch {marker}.next"] + (tail or [])})
    return marker


def _actions(project):
    return project.actions()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_during_a_local_step_cancels_at_once_and_runs_no_further_step(project, signum, code):
    marker = _marker_steps(project)
    fab = Running(project, "deploy", "--version", "5.0.1")
    fab.wait_for(marker.exists, "the local step running")

    returned = fab.ended_within(fab.signal(signum), PROMPT)

    assert returned == code, fab.output()
    assert _actions(project) == [("start", 202), ("cancel", 202)]
    assert not pathlib.Path(f"{marker}.next").exists(), "the next step ran"
    assert f"interrupted by {signal.Signals(signum).name}" in fab.output()
    assert "see the warning above" not in fab.output()


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_during_a_single_host_run_cancels_at_once(ssh_project, sshd, signum, code):
    marker = _marker_steps(ssh_project)
    fab = Running(ssh_project, "-H", sshd.host_strings[0], "deploy", "--version", "5.0.2")
    fab.wait_for(marker.exists, "the remote step running")

    assert fab.ended_within(fab.signal(signum), PROMPT) == code, fab.output()
    assert _actions(ssh_project) == [("start", 202), ("cancel", 202)]


@pytest.mark.parametrize("fail_fast", [True, False], ids=["fail_fast", "no fail_fast"])
def test_a_signal_during_a_serial_run_cancels_at_once(ssh_project, sshd, fail_fast):
    marker = _marker_steps(ssh_project)
    ssh_project.fabric_yaml({"parallel": False, "fail_fast": fail_fast, "steps": [f"touch {marker}; sleep 20"]})
    first, second = sshd.host_strings[:2]
    fab = Running(ssh_project, "-H", f"{first},{second}", "deploy", "--version", "5.0.3")
    fab.wait_for(marker.exists, "the first host's step running")

    assert fab.ended_within(fab.signal(signal.SIGINT), PROMPT) == 130, fab.output()
    assert _actions(ssh_project) == [("start", 202), ("cancel", 202)]
    rows = {line.split()[0]: line for line in fab.output().splitlines() if line.startswith("  ")}
    assert "interrupted" in rows[first] and "stopped by the interruption" in rows[first], fab.output()
    # the interruption, not a failure, left the second host: it was not run, whatever fail_fast says
    assert "not run" in rows[second] and rows[second].endswith("skipped: the run was interrupted"), fab.output()


@pytest.mark.parametrize("pty", [False, True], ids=["pipes", "run.pty"])
def test_ctrl_c_to_the_whole_group_exits_130_not_1(project, pty):
    marker = _marker_steps(project)
    _runtime(project, pty)
    fab = Running(project, "deploy", "--version", "5.0.4")
    fab.wait_for(marker.exists, "the local step running")

    assert fab.ended_within(fab.signal(signal.SIGINT, group=True), PROMPT) == 130, fab.output()
    assert _actions(project) == [("start", 202), ("cancel", 202)]
    assert "exited with status -2" not in fab.output()


def test_an_interrupt_while_complete_is_in_flight_sends_the_complete_again_never_a_cancel(project):
    # The work was done: a cancel landing before the hung complete would give Retrace two opposite ends.
    project.fabric_yaml({"steps": ["true"], "timeout": 5, "deadline": 10})
    project.emulator.inject("complete", [{"hang": 10}])
    fab = Running(project, "deploy", "--version", "5.0.5")
    fab.wait_for(lambda: project.emulator.requests("complete"), "complete in flight")

    assert fab.ended_within(fab.signal(signal.SIGTERM), PROMPT) == 143, fab.output()
    assert _actions(project)[0] == ("start", 202) and _actions(project)[-1] == ("complete", 202)
    assert "cancel" not in [action for action, _status in _actions(project)]
    assert "completed in Retrace" in fab.output() and "see the warning above" not in fab.output()


def test_an_interrupt_while_start_is_in_flight_leaves_nothing_in_progress(project):
    """The run's cancel finds the start not processed (409); the guard stays armed for a start that lands late and,
    once fab is gone, sends its own cancel, again after each 409: none ends anything, as nothing was started."""
    marker = _marker_steps(project)
    project.fabric_yaml({"steps": [f"touch {marker}"], "timeout": 2, "deadline": 3})
    project.emulator.inject("start", [{"hang": 10}])
    fab = Running(project, "deploy", "--version", "5.0.6")
    fab.wait_for(lambda: project.emulator.requests("start"), "start in flight")

    assert fab.ended_within(fab.signal(signal.SIGINT), PROMPT) == 130, fab.output()
    ends_at = time.monotonic() + GUARD_WINDOW
    while len(project.actions()) < 3 and time.monotonic() < ends_at:
        time.sleep(0.1)
    actions = project.actions()
    assert actions[0] == ("start", None) and set(actions[1:]) == {("cancel", 409)} and len(actions) >= 3, fab.output()
    assert not marker.exists(), "a step ran after the interruption"
    assert [deployment["state"] for deployment in project.emulator.deployments()] == []


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_start_is_in_flight_cancels_the_start_when_it_lands_later(project, signal_number):
    """Retrace holds the start past fab's end (its cancel, and the guard's first, are refused: 409); when the start
    is processed, the guard's next cancel ends it: nothing is left in progress."""
    project.fabric_yaml({"steps": ["true"], "timeout": 5, "deadline": 10})
    project.emulator.inject("start", [{"delay": 2}])
    fab = Running(project, "deploy", "--version", "5.0.9")
    fab.wait_for(lambda: not project.emulator.pending_faults().get("start"), "start in flight")

    assert fab.ended_within(fab.signal(signal_number), PROMPT) == 128 + signal_number, fab.output()
    ends_at = time.monotonic() + 2 * GUARD_WINDOW
    while [deployment["state"] for deployment in project.emulator.deployments()] != ["cancelled"] and time.monotonic() < ends_at:
        time.sleep(0.1)
    assert [deployment["state"] for deployment in project.emulator.deployments()] == ["cancelled"], project.actions()
    assert project.actions()[0] == ("cancel", 409) and project.actions()[-1] == ("cancel", 202), project.actions()
    assert "NOT recorded: the run was stopped while its start was in flight" in fab.output(), fab.output()


OWN_FABFILE = '''
import sys
from fabric import task
from invoke import Collection
from invoke.exceptions import Exit
import retrace_fabric


@task
def release(c, how="exit"):
    with retrace_fabric.tracked(c):
        if how == "exit":
            raise Exit()
        sys.exit(0)


ns = Collection(release)
'''


@pytest.mark.parametrize("how", ["exit", "sys.exit"])
def test_a_clean_exit_inside_tracked_cancels_and_fails_the_run(project, how):
    (project.directory / "fabfile.py").unlink()
    (project.directory / "fabfile.py").write_text(OWN_FABFILE)
    project.fabric_yaml({"version": "5.0.7"})

    result = project.run("release", "--how", how)

    assert result.returncode == 1, result.stdout + result.stderr
    assert project.actions() == [("start", 202), ("cancel", 202)]
    assert "before the tracked block finished" in result.stderr


@pytest.mark.parametrize("group", [True, False], ids=["process group", "fab alone"])
def test_sigkill_leaves_one_cancel_to_the_orphan_guard(project, group):
    marker = _marker_steps(project)
    fab = Running(project, "deploy", "--version", "5.0.8")
    fab.wait_for(marker.exists, "the local step running")

    fab.signal(signal.SIGKILL, group=group)
    fab.process.wait(timeout=PROMPT)
    ends_at = time.monotonic() + GUARD_WINDOW
    while project.actions()[-1:] != [("cancel", 202)] and time.monotonic() < ends_at:
        time.sleep(0.1)

    assert project.actions() == [("start", 202), ("cancel", 202)]
    if not group:
        os.killpg(fab.process.pid, signal.SIGKILL)  # the step fab left behind


TRACKED_COMMAND_FABFILE = '''
from fabric import task
import retrace_fabric


@task
def release(c, marker="", seconds="20"):
    with retrace_fabric.tracked(c, version="5.1.0"):
        c.run(f"touch {marker}; sleep {seconds}", in_stream=False)
        c.run(f"touch {marker}.next", in_stream=False)
'''


@pytest.mark.parametrize("signum, code, remote", [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True),
                                                  (signal.SIGHUP, 129, True)])
def test_a_signal_during_c_run_inside_tracked_cancels_at_once(ssh_project, sshd, signum, code, remote):
    (ssh_project.directory / "fabfile.py").unlink()
    (ssh_project.directory / "fabfile.py").write_text(TRACKED_COMMAND_FABFILE)
    marker = ssh_project.directory / "command-running"
    # a sleep of its own length names the command's processes in /proc (Fabric's default: no pty)
    sleep_marker = f"20.{secrets.randbelow(10 ** 9):09d}"
    hosts = ("-H", sshd.host_strings[0]) if remote else ()
    fab = Running(ssh_project, *hosts, "release", "--marker", str(marker), "--seconds", sleep_marker)
    fab.wait_for(marker.exists, "the command running")

    try:
        assert fab.ended_within(fab.signal(signum), PROMPT) == code, fab.output()
        assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
        assert _until_gone(sleep_marker) == [], "the command run in the tracked block still runs after fab ended"
        assert not pathlib.Path(f"{marker}.next").exists()
    finally:
        _kill_all(sleep_marker)


def _processes_with(marker: str) -> list[int]:
    """The pids of the processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command_line = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # ended meanwhile
            if marker in command_line:
                found.append(int(entry))
    return found


@pytest.fixture
def shared():
    """A directory anyone may write to (pytest's own are private to their owner): a step run as nobody writes here."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="retrace-remote-step-"))
    directory.chmod(0o1777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


#: how a remote step runs: (pty, sudo to another user, hosts in parallel, children in process groups of their own)
REMOTE_MODES = {
    "pipes": (False, False, 1, False),      # Fabric's default: sshd sends the command no signal when its session closes
    "pty": (True, False, 1, False),         # sshd sends SIGHUP when the session closes; fab still stops it first
    "sudo-nobody": (False, True, 1, False),  # the step runs as another user, under sudo
    "parallel": (False, False, 2, False),   # two hosts at once, each stopped
    "own-groups": (False, False, 1, True),  # `timeout` and a `set -m` job: out of the session's process group
    "own-groups-pty": (True, False, 1, True),
}
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
#: the modes tried with one signal only: what they test (the processes the stop finds) is the same for each signal
ONE_SIGNAL = {"own-groups": signal.SIGINT, "own-groups-pty": signal.SIGTERM}


@pytest.mark.parametrize("signum, code, mode", [
    pytest.param(signum, code, mode, id=f"{signal.Signals(signum).name}-{mode}")
    for mode in REMOTE_MODES for signum, code in SIGNALS if ONE_SIGNAL.get(mode, signum) == signum])
def test_a_signal_stops_the_remote_step_in_every_mode(ssh_project, sshd, shared, signum, code, mode):
    pty, sudo, hosts, own_groups = REMOTE_MODES[mode]
    # a sleep of its own length names this step's processes (the shell's -c text and sleep's argument) in /proc
    marker = f"30.{secrets.randbelow(10 ** 9):09d}"
    command = f"touch {shared}/started.$$; sleep {marker}; touch {shared}/after.$$"
    if own_groups:
        # GNU timeout moves to a process group of its own, a `set -m` shell puts its job in one: each sleep says it
        # started once it is there
        started = f"touch {shared}/started.$$; exec sleep {marker}"
        command = (f"timeout 100 sh -c '{started}' & bash -c 'set -m; sh -c \"{started}\" & wait' & "
                   f"wait; touch {shared}/after.$$")
        started_count = 2 * hosts
    else:
        started_count = hosts
    # Fabric's sudo prefixes the command as given: a shell keeps all of it under sudo
    step = {"run": f"sh -c '{command}'", "sudo": True} if sudo else command
    ssh_project.fabric_yaml({"steps": [step], "parallel": hosts > 1})
    _runtime(ssh_project, pty, sudo_user="nobody" if sudo else None)
    fab = Running(ssh_project, "-H", ",".join(sshd.host_strings[:hosts]), "deploy", "--version", "5.0.9")
    fab.wait_for(lambda: len(list(shared.glob("started.*"))) == started_count, f"the remote step running on {hosts} host(s)")
    try:
        if sudo:
            assert {_owner(pid) for pid in _processes_with(marker)} >= {"nobody"}, "the step does not run as nobody"
        assert fab.ended_within(fab.signal(signum), PROMPT) == code, fab.output()
        assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
        assert _until_gone(marker) == [], f"the remote step still runs after fab ended ({mode})"
        assert list(shared.glob("after.*")) == [], "the remote step went on after the signal"
        assert fab.output().count("stopped by the interruption") == hosts, fab.output()
    finally:
        _kill_all(marker)


def _owner(pid: int) -> str:
    try:
        return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    except (OSError, KeyError):
        return "?"


def _runtime(project, pty: bool, sudo_user: str | None = None, connect_timeout: float | None = None) -> None:
    """Fabric's runtime config for the run: a pty or pipes, the sudo user, the SSH connect timeout."""
    runtime = yaml.safe_load(project.runtime_config.read_text())
    runtime["run"]["pty"] = pty
    if sudo_user is not None:
        runtime["sudo"] = {"user": sudo_user}
    if connect_timeout is not None:
        runtime["timeouts"]["connect"] = connect_timeout
    project.runtime_config.write_text(yaml.safe_dump(runtime))


def _remote_step_running(ssh_project, sshd, step: str, version: str) -> Running:
    """``fab deploy`` of the one ``step`` on the first host without a pty, once the step has touched ``started``."""
    ssh_project.fabric_yaml({"steps": [step]})
    _runtime(ssh_project, pty=False)
    fab = Running(ssh_project, "-H", sshd.host_strings[0], "deploy", "--version", version)
    fab.wait_for((ssh_project.directory / "started").exists, "the remote step running")
    return fab


def _until_gone(marker: str) -> list[int]:
    ends_at = time.monotonic() + REMOTE_END
    while _processes_with(marker) and time.monotonic() < ends_at:
        time.sleep(0.05)
    return _processes_with(marker)


def _kill_all(marker: str) -> None:
    for pid in _processes_with(marker):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_a_remote_step_that_ignores_sigterm_is_killed(ssh_project, sshd):
    # As local commands: SIGTERM, then SIGKILL to what is left after 1 s.
    directory = ssh_project.directory
    started, after = directory / "started", directory / "after"
    marker = f"31.{secrets.randbelow(10 ** 9):09d}"
    fab = _remote_step_running(ssh_project, sshd, f'trap "" TERM; touch {started}; sleep {marker}; touch {after}', "5.2.0")
    try:
        assert fab.ended_within(fab.signal(signal.SIGTERM), PROMPT) == 143, fab.output()
        assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
        assert _until_gone(marker) == [], "the remote step that ignores SIGTERM still runs after fab ended"
        assert not after.exists(), "the remote step went on after the signal"
        assert "stopped by the interruption" in fab.output()
    finally:
        _kill_all(marker)


def test_a_daemon_holding_the_step_output_makes_the_stop_unconfirmed(ssh_project, sshd):
    # The step's double-forked `sleep` leaves the step's process tree (its parent is init) with the step's output
    # open: the step's own processes are killed, but sshd sends no exit status while the output is open, and the
    # summary must not say the step was stopped.
    directory = ssh_project.directory
    started = directory / "started"
    step_marker, daemon_marker = f"34.{secrets.randbelow(10 ** 9):09d}", f"35.{secrets.randbelow(10 ** 9):09d}"
    fab = _remote_step_running(ssh_project, sshd, f"(setsid sleep {daemon_marker} &); touch {started}; sleep {step_marker}",
                               "5.2.3")
    try:
        assert fab.ended_within(fab.signal(signal.SIGTERM), PROMPT) == 143, fab.output()
        assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
        assert _until_gone(step_marker) == [], "the remote step still runs after fab ended"
        assert "may still be running on the host: something it started still holds its output open" in fab.output()
        assert "stopped by the interruption" not in fab.output(), fab.output()
    finally:
        _kill_all(step_marker)
        _kill_all(daemon_marker)


def test_the_first_of_two_signals_decides_the_exit_code_and_the_reason(ssh_project, sshd):
    # The step survives SIGTERM (its trap notes it) until the SIGKILL 1 s later: the second signal comes while fab
    # is stopping it.
    directory = ssh_project.directory
    started, termed = directory / "started", directory / "termed"
    marker = f"32.{secrets.randbelow(10 ** 9):09d}"
    fab = _remote_step_running(ssh_project, sshd, f'trap "touch {termed}" TERM; touch {started}; while :; do sleep {marker}; done',
                               "5.2.1")
    try:
        fab.signal(signal.SIGINT)
        fab.wait_for(termed.exists, "the remote step sent SIGTERM")
        assert fab.ended_within(fab.signal(signal.SIGTERM), PROMPT) == 130, fab.output()
        assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
        assert "interrupted by SIGINT" in fab.output() and "SIGTERM" not in fab.output(), fab.output()
        assert _until_gone(marker) == []
    finally:
        _kill_all(marker)


#: a ProxyCommand that relays stdin/stdout to the sshd port with every chunk held back LINK_DELAY s, each way
SLOW_RELAY = '''
import socket, sys, threading, time, queue

DELAY = float(sys.argv[2])
link = socket.create_connection(("127.0.0.1", int(sys.argv[1])))


def relay(read, write):
    chunks = queue.Queue()

    def send():
        while True:
            due, data = chunks.get()
            time.sleep(max(0.0, due - time.monotonic()))
            if not data:
                break
            write(data)

    sender = threading.Thread(target=send)
    sender.start()
    while True:
        data = read()
        chunks.put((time.monotonic() + DELAY, data))
        if not data:
            break
    sender.join()


def to_stdout(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def to_sshd(data):
    link.sendall(data)


upstream = threading.Thread(target=relay, args=(lambda: sys.stdin.buffer.raw.read(65536), to_sshd), daemon=True)
upstream.start()
relay(lambda: link.recv(65536), to_stdout)
'''
LINK_DELAY = 0.25


def test_a_host_still_connecting_when_the_signal_comes_ran_no_step(ssh_project, sshd, tmp_path):
    # The host's connection never gets the server's greeting (a ProxyCommand that relays nothing): Retrace has
    # answered the start, the host is still connecting, and the summary must not say a step was stopped there.
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host 127.0.0.1\n    ProxyCommand sleep 60\n")
    ssh_project.fabric_yaml({"steps": ["true"], "timeout": 5, "deadline": 10})
    fab = Running(ssh_project, "-S", str(ssh_config), "-H", sshd.host_strings[0], "deploy", "--version", "5.2.4")
    fab.wait_for(lambda: "5.2.4 of DemoApp to Production started" in fab.output(), "the start answered")

    assert fab.ended_within(fab.signal(signal.SIGTERM), PROMPT) == 143, fab.output()
    assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
    assert "stopped while connecting: no step ran" in fab.output(), fab.output()
    assert "stopped by the interruption" not in fab.output(), fab.output()


def test_a_signal_stops_the_remote_step_over_a_slow_link(ssh_project, sshd):
    # 0.25 s each way: the kill command's session, its start and its end take seconds, and are waited for.
    directory = ssh_project.directory
    started, after = directory / "started", directory / "after"
    marker = f"33.{secrets.randbelow(10 ** 9):09d}"
    relay = directory / "slow_relay.py"
    relay.write_text(SLOW_RELAY)
    port = sshd.ports[0]
    ssh_config = directory / "ssh_config"
    ssh_config.write_text(f"Host 127.0.0.1\n    ProxyCommand {sys.executable} {relay} {port} {LINK_DELAY}\n")
    ssh_project.fabric_yaml({"steps": [f"touch {started}; sleep {marker}; touch {after}"], "timeout": 5, "deadline": 10})
    _runtime(ssh_project, pty=False, connect_timeout=20)
    fab = Running(ssh_project, "-S", str(ssh_config), "-H", sshd.host_strings[0], "deploy", "--version", "5.2.2")
    fab.wait_for(started.exists, "the remote step running", timeout=40)
    try:
        assert fab.ended_within(fab.signal(signal.SIGTERM), PROMPT) == 143, fab.output()
        assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
        assert _until_gone(marker) == [], "the remote step still runs after fab ended over a slow link"
        assert not after.exists(), "the remote step went on after the signal"
        assert "stopped by the interruption" in fab.output()
    finally:
        _kill_all(marker)
