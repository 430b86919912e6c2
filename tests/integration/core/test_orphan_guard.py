"""The orphan guard (plugins/module_utils/_guard.py) as a process, against the real emulator.

Each test starts an "owner" process that opens a deployment and arms the guard, then ends it the
way runs really end, and reads what the emulator received and what the watcher holds open.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pty
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import _guard as guard
from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport
from retrace_emulator import DEMO_API_KEY

LANDS_WITHIN = 15.0
SECRET = DEMO_API_KEY

OWNER = textwrap.dedent("""
    import os, sys, time
    sys.path[:0] = {paths!r}
    from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
    from ansible_collections.stackify.retrace.plugins.module_utils._guard import arm_orphan_guard
    from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport
    key = open(sys.argv[4]).read()
    os.unlink(sys.argv[4])
    client, deployment = create_client(dict(api_key=key, api_url=sys.argv[1], app_name="DemoApp",
                                            environment_name="Production", version=sys.argv[2]), UrllibTransport(), entry_point="test")
    if sys.argv[3] == "unanswered start":
        import dataclasses
        from ansible_collections.stackify.retrace.plugins.module_utils.tracking import tracked_deployment
        client.settings = dataclasses.replace(client.settings, deadline=1.0, timeout=1.0)
        with tracked_deployment(client, deployment, warn=print):
            print("deployed untracked", flush=True)
        sys.exit(0)
    if sys.argv[3] in ("start in flight", "guarded start"):
        import dataclasses
        client.settings = dataclasses.replace(client.settings, deadline=3.0, timeout=2.0)  # the watcher's 409 window: 5 s
    if sys.argv[3] == "guarded start":  # as the engine does: the guard is armed as the start is sent
        guard = arm_orphan_guard(client, deployment, log=print)
        client.start(deployment)
        print("armed", guard.armed, flush=True)
        time.sleep(120)
    if sys.argv[3] == "start in flight":  # stopped while Retrace holds its start: its own cancel comes first
        import threading
        guard = arm_orphan_guard(client, deployment, log=print)
        print("armed", guard.armed, flush=True)
        threading.Thread(target=client.start, args=(deployment,), daemon=True).start()
        while not os.path.exists(sys.argv[5]):  # the test says when the start has reached Retrace
            time.sleep(0.01)
        try:
            client.cancel(deployment)
        except Exception as error:
            print("cancel refused:", type(error).__name__, flush=True)
        sys.exit(0)
    client.start(deployment)
    guard = arm_orphan_guard(client, deployment, log=print)
    print("armed", guard.armed, flush=True)
    if sys.argv[3] == "release":
        client.complete(deployment)
        print("released", guard.release(), flush=True)
    elif sys.argv[3] == "completing":
        print("completing", guard.completing(), flush=True)  # then killed before its complete is sent
    elif sys.argv[3] == "exit":
        sys.exit(0)
    time.sleep(120)
""")


def _owner(emulator, version, mode="wait", *extra, **popen):
    """The key reaches the owner through a file it deletes: never through its argv or environment."""
    code = OWNER.format(paths=[path for path in sys.path if path])
    key_file = pathlib.Path(tempfile.mkdtemp()) / "key"
    key_file.write_text(SECRET)
    return subprocess.Popen([sys.executable, "-c", code, emulator.url, version, mode, str(key_file), *extra],
                            start_new_session=True, **popen)


def _calls(emulator):
    return [(entry["action"], entry["status"]) for entry in emulator.requests()]


def _until(emulator, expected):
    deadline = time.monotonic() + LANDS_WITHIN
    while _calls(emulator) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return _calls(emulator)


def _wait_armed(process):
    line = process.stdout.readline()
    assert line.strip() in (b"armed True", "armed True"), line


def _client(emulator, version):
    return create_client(dict(api_key=SECRET, api_url=emulator.url, app_name="DemoApp", environment_name="Production",
                              version=version), UrllibTransport(), entry_point="test")


@pytest.mark.parametrize("how", ["SIGKILL to the group", "SIGKILL to the owner", "SIGHUP", "SIGTERM", "exits"])
def test_the_owner_dying_without_ending_the_deployment_sends_one_cancel(retrace_emulator, how):
    process = _owner(retrace_emulator, "g1", "exit" if how == "exits" else "wait", stdout=subprocess.PIPE)
    _wait_armed(process)
    ended_at = time.monotonic()
    if how == "SIGKILL to the group":
        os.killpg(process.pid, signal.SIGKILL)
    elif how != "exits":
        os.kill(process.pid, {"SIGKILL to the owner": signal.SIGKILL, "SIGHUP": signal.SIGHUP, "SIGTERM": signal.SIGTERM}[how])
    process.wait(timeout=30)
    assert _until(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]
    assert time.monotonic() - ended_at < LANDS_WITHIN
    client, deployment = _client(retrace_emulator, "g1")
    assert guard.live_guard_owner(client.settings, deployment) is None


def test_a_released_guard_sends_nothing(retrace_emulator):
    process = _owner(retrace_emulator, "g2", "release", stdout=subprocess.PIPE)
    _wait_armed(process)
    assert process.stdout.readline().strip() == b"released True"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(1.5)
    assert _calls(retrace_emulator) == [("start", 202), ("complete", 202)]


def test_a_run_killed_while_completing_gets_a_complete_never_a_cancel(retrace_emulator):
    process = _owner(retrace_emulator, "g7", "completing", stdout=subprocess.PIPE)
    _wait_armed(process)
    assert process.stdout.readline().strip() == b"completing True"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert _until(retrace_emulator, [("start", 202), ("complete", 202)]) == [("start", 202), ("complete", 202)]
    time.sleep(0.5)
    assert _calls(retrace_emulator) == [("start", 202), ("complete", 202)]


def test_a_start_that_got_no_answer_is_cancelled_after_the_run(retrace_emulator):
    # Retrace processed the start but its answer never came: the run warns "NOT recorded" and deploys,
    # and the guard it armed anyway cancels the start once the run is over, instead of leaving it in progress.
    retrace_emulator.inject("start", [{"process": True, "hang": True}] * 5)
    process = _owner(retrace_emulator, "g8", "unanswered start", stdout=subprocess.PIPE)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0 and "NOT recorded: start failed" in output and "deployed untracked" in output
    deadline = time.monotonic() + LANDS_WITHIN
    while [entry["action"] for entry in retrace_emulator.requests()][-1:] != ["cancel"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [entry["action"] for entry in retrace_emulator.requests()][-1] == "cancel"
    assert retrace_emulator.deployments()[0]["state"] == "cancelled"


def test_a_start_processed_after_the_run_s_cancel_was_refused_is_cancelled_by_the_guard(retrace_emulator, tmp_path):
    # The run is stopped while Retrace holds its start: the run's cancel is refused (409: the start is not processed
    # yet), the run exits, the watcher's first cancel is refused too; Retrace then processes the start.  The watcher
    # sends its cancel again until the start can no longer land, so the deployment does not stay in progress.
    retrace_emulator.inject("start", [{"delay": 3}])
    start_arrived = tmp_path / "start-arrived"
    process = _owner(retrace_emulator, "g9", "start in flight", str(start_arrived), stdout=subprocess.PIPE)
    _wait_armed(process)
    deadline = time.monotonic() + LANDS_WITHIN
    while retrace_emulator.pending_faults().get("start") and time.monotonic() < deadline:  # taken: the start is in
        time.sleep(0.02)
    start_arrived.touch()
    output = process.communicate(timeout=60)[0].decode()
    assert "cancel refused: BadTransition" in output, output

    deadline = time.monotonic() + 2 * LANDS_WITHIN
    while [d["state"] for d in retrace_emulator.deployments()] != ["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    calls = _calls(retrace_emulator)
    assert [d["state"] for d in retrace_emulator.deployments()] == ["cancelled"], calls
    assert calls[-1] == ("cancel", 202) and calls.count(("start", 202)) == 1, calls
    assert calls.index(("start", 202)) < calls.index(("cancel", 202)), calls
    assert calls[:2] == [("cancel", 409), ("cancel", 409)], calls  # the run's, then the watcher's first


def test_the_watcher_sending_again_after_a_409_never_ends_a_new_run_s_deployment(retrace_emulator, tmp_path):
    # As above, but a new run of the same version starts on this machine while the watcher still gets 409s: the
    # new run's deployment is its own to end, and the watcher, seeing that run's guard, stops sending.
    retrace_emulator.inject("start", [{"delay": 3}])
    start_arrived = tmp_path / "start-arrived"
    stopped = _owner(retrace_emulator, "g10", "start in flight", str(start_arrived), stdout=subprocess.PIPE)
    _wait_armed(stopped)
    watcher = _find_watcher(stopped.pid)
    deadline = time.monotonic() + LANDS_WITHIN
    while retrace_emulator.pending_faults().get("start") and time.monotonic() < deadline:
        time.sleep(0.02)
    start_arrived.touch()
    assert "cancel refused: BadTransition" in stopped.communicate(timeout=60)[0].decode()
    deadline = time.monotonic() + LANDS_WITHIN
    while ("cancel", 409) not in _calls(retrace_emulator)[1:] and time.monotonic() < deadline:
        time.sleep(0.02)  # the watcher's first cancel, refused: it now sends again after each pause

    new_run = _owner(retrace_emulator, "g10", "guarded start", stdout=subprocess.PIPE)
    try:
        _wait_armed(new_run)
        deadline = time.monotonic() + 2 * LANDS_WITHIN
        while os.path.exists(f"/proc/{watcher}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{watcher}"), "the stopped run's watcher is still sending"
        calls = _calls(retrace_emulator)
        assert ("cancel", 202) not in calls, calls
        assert [d["state"] for d in retrace_emulator.deployments()] == ["in_progress"], calls
    finally:
        os.killpg(new_run.pid, signal.SIGKILL)
        new_run.wait(timeout=30)


def test_the_watcher_holds_no_terminal_is_outside_the_group_and_keeps_the_key_in_memory(retrace_emulator):
    controller, terminal = pty.openpty()
    process = _owner(retrace_emulator, "g3", stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    client, deployment = _client(retrace_emulator, "g3")
    deadline = time.monotonic() + 30
    while guard.live_guard_owner(client.settings, deployment) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    watcher = _find_watcher(process.pid)
    # Its own session (not the run's) and not its leader: it can never acquire a controlling terminal.
    assert os.getpgid(watcher) != process.pid and os.getsid(watcher) not in (os.getsid(process.pid), watcher)
    with open(f"/proc/{watcher}/cmdline", "rb") as cmdline, open(f"/proc/{watcher}/environ", "rb") as environ:
        assert SECRET.encode() not in cmdline.read() + environ.read()
    targets = [os.readlink(f"/proc/{watcher}/fd/{fd}") for fd in os.listdir(f"/proc/{watcher}/fd")]
    assert not any(target.startswith(("/dev/pts", "/dev/tty")) for target in targets), targets
    assert all(target == "/dev/null" or target.startswith(("socket:", "anon_inode:")) for target in targets), targets
    # The run's pty is closed by the watcher: once the owner is gone, the controller side reads EOF at once.
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    eof_deadline = time.monotonic() + 5
    while True:
        try:
            if not os.read(controller, 4096):
                break
        except OSError:  # EIO: no process holds the terminal side any more
            break
        assert time.monotonic() < eof_deadline
    os.close(controller)
    assert _until(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]


def _find_watcher(owner_pid):
    """The watcher is a fork of the owner: the same command line, another pid.

    The guard forks twice; the middle process (same command line too, the leader of the new session) may not have
    exited yet when the watcher already answers: it is skipped, so that the test never inspects the wrong process.
    """
    with open(f"/proc/{owner_pid}/cmdline", "rb") as owner:
        command = owner.read()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as candidate:
                    if pid != owner_pid and candidate.read() == command and os.getsid(pid) != pid:
                        return pid
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no watcher process found")


@pytest.fixture
def short_tmpdir(monkeypatch):
    """Another place for the watchers' directory (guard.RUNTIME_DIRECTORY), short enough for socket paths."""
    directory = pathlib.Path(tempfile.mkdtemp(dir="/tmp", prefix="g-"))
    monkeypatch.setattr(guard, "RUNTIME_DIRECTORY", str(directory))
    yield directory
    shutil.rmtree(directory)


def test_a_directory_another_user_could_enter_is_refused(short_tmpdir, retrace_emulator):
    tmp_path = short_tmpdir
    directory = tmp_path / f"stackify-retrace-{os.getuid()}"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    client, deployment = _client(retrace_emulator, "g4")
    said = []
    assert guard.arm_orphan_guard(client, deployment, log=said.append).armed is False
    assert said and "not a private directory" in said[0]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777 and list(directory.iterdir()) == []


def test_release_and_liveness_questions_never_raise_when_the_directory_is_unsafe(short_tmpdir, retrace_emulator):
    tmp_path = short_tmpdir
    (tmp_path / f"stackify-retrace-{os.getuid()}").mkdir(mode=0o777)
    (tmp_path / f"stackify-retrace-{os.getuid()}").chmod(0o777)
    client, deployment = _client(retrace_emulator, "g5")
    assert guard.release_orphan_guard(client.settings, deployment, os.getpid()) is False
    assert guard.live_guard_owner(client.settings, deployment) is None


def test_runs_with_different_tmpdirs_see_each_other(monkeypatch, retrace_emulator, tmp_path):
    # CI systems give each job its own TMPDIR: a live sibling must still be seen, never taken for a dead run.
    client, deployment = _client(retrace_emulator, "g6")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "job-a"))
    armed = guard.arm_orphan_guard(client, deployment)
    try:
        monkeypatch.setenv("TMPDIR", str(tmp_path / "job-b"))
        monkeypatch.setattr("tempfile.tempdir", None)
        assert guard.live_guard_owner(client.settings, deployment) == os.getpid()
    finally:
        assert armed.release()
    assert _calls(retrace_emulator) == []


# --- the fork itself, in a run with signal handlers and threads ---------------------------------------

SIGNAL_DURING_FORK = textwrap.dedent("""
    import ctypes, functools, os, signal, sys
    # Before logging is imported: after-fork hooks run in the order they were registered, so this one runs just
    # before logging's.  It is C code that sends the signal without running its Python handler (libc's kill, not
    # os.kill): the handler runs at the next Python code, inside logging's hook, as when a signal arrives while the
    # fork runs its hooks.  One shot: a later fork sends nothing.
    kill = ctypes.CDLL(None, use_errno=True).kill
    os.register_at_fork(after_in_parent=functools.partial(next, map(kill, [os.getpid()], [int(signal.SIGINT)]), None))
    import logging, threading
    sys.path[:0] = {paths!r}
    from ansible_collections.stackify.retrace.plugins.module_utils import _guard
    from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
    from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport

    class Interrupted(Exception):
        pass

    handled = []
    def stop(signum, frame):  # as Fabric's: note the signal, stop the run
        handled.append(signum)
        raise Interrupted()
    signal.signal(signal.SIGINT, stop)
    ignored = []
    sys.unraisablehook = lambda unraisable: ignored.append(repr(unraisable.exc_value))
    client, deployment = create_client(dict(api_key="k", api_url=sys.argv[1], app_name="DemoApp",
                                            environment_name="Production", version="f1"), UrllibTransport(), entry_point="test")
    try:
        guard = _guard.arm_orphan_guard(client, deployment)
        print("returned", guard.release(), flush=True)
    except Interrupted:
        print("interrupted", flush=True)
    print("handled", [int(signum) for signum in handled], "ignored", ignored, flush=True)
    got_logger = threading.Event()
    threading.Thread(target=lambda: (logging.getLogger("another.thread"), got_logger.set()), daemon=True).start()
    print("logging lock free", got_logger.wait(10), flush=True)
    print("watcher", _guard.live_guard_owner(client.settings, deployment), flush=True)
""")


def test_a_stop_signal_during_the_fork_is_handled_once_after_it_and_logging_stays_usable(retrace_emulator):
    code = SIGNAL_DURING_FORK.format(paths=[path for path in sys.path if path])
    finished = subprocess.run([sys.executable, "-c", code, retrace_emulator.url], capture_output=True, text=True,
                              timeout=60, check=False)
    assert finished.stdout.splitlines() == ["interrupted", f"handled [{int(signal.SIGINT)}] ignored []",
                                            "logging lock free True", "watcher None"], finished.stdout + finished.stderr
    assert _calls(retrace_emulator) == []  # the interrupted run's watcher was stood down: it sends nothing


IMPORT_HELD_AT_FORK = textwrap.dedent("""
    import codecs, importlib.machinery, os, sys, threading
    sys.path[:0] = {paths!r}
    from ansible_collections.stackify.retrace.plugins.module_utils._guard import arm_orphan_guard
    from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
    from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport
    key = open(sys.argv[2]).read()
    os.unlink(sys.argv[2])
    # An IP address as the API URL: nothing has imported the IDNA codec yet (a host name would have, to check it).
    client, deployment = create_client(dict(api_key=key, api_url=sys.argv[1], app_name="DemoApp",
                                            environment_name="Production", version="f2"), UrllibTransport(), entry_point="test")
    assert "encodings.idna" not in sys.modules

    importing, go_on = threading.Event(), threading.Event()

    # The connecting thread's import of encodings.idna stops in the module's body, holding its import lock, until the
    # run's main thread waits for that lock too, or else until the fork is over (the watcher then inherits it held).
    class SlowImport:
        def find_spec(self, name, path=None, target=None):
            if name != "encodings.idna" or threading.current_thread().name != "connect":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path, target)
            spec.loader = SlowLoader(spec.loader)
            return spec

    class SlowLoader:
        def __init__(self, loader):
            self.loader = loader
        def create_module(self, spec):
            return None
        def exec_module(self, module):
            importing.set()
            go_on.wait()
            self.loader.exec_module(module)

    def release_when_the_main_thread_waits_for_the_import():
        main = threading.main_thread().ident
        while not go_on.wait(0.01):
            frame = sys._current_frames().get(main)
            while frame is not None:
                if frame.f_code.co_filename == "<frozen importlib._bootstrap>" and frame.f_code.co_name == "acquire":
                    go_on.set()  # a module lock: the only one held is encodings.idna's
                frame = frame.f_back

    sys.meta_path.insert(0, SlowImport())
    os.register_at_fork(after_in_parent=go_on.set)
    connecting = threading.Thread(target=codecs.lookup, args=("idna",), name="connect")  # as a host name is encoded
    connecting.start()
    importing.wait()
    threading.Thread(target=release_when_the_main_thread_waits_for_the_import, daemon=True).start()
    guard = arm_orphan_guard(client, deployment, log=print)
    connecting.join()
    print("armed", guard.armed, flush=True)
    import time
    time.sleep(120)
""")


def test_the_watcher_sends_its_cancel_though_another_thread_was_importing_at_the_fork(retrace_emulator):
    code = IMPORT_HELD_AT_FORK.format(paths=[path for path in sys.path if path])
    key_file = pathlib.Path(tempfile.mkdtemp()) / "key"
    key_file.write_text(SECRET)
    process = subprocess.Popen([sys.executable, "-c", code, retrace_emulator.url, str(key_file)], start_new_session=True,
                               stdout=subprocess.PIPE)
    watcher = None
    try:
        _wait_armed(process)
        watcher = _find_watcher(process.pid)
        client, deployment = _client(retrace_emulator, "f2")
        client.start(deployment)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert _until(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if watcher is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(watcher, signal.SIGKILL)  # a watcher that hung


# --- one watcher per run and API account, holding every deployment of the run ------------------------

ARMER = textwrap.dedent("""
    import os, sys
    sys.path[:0] = {paths!r}
    from ansible_collections.stackify.retrace.plugins.module_utils import _guard
    from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
    from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport
    url, owner, version, _marker, when = sys.argv[1:6]
    targets = []
    for spec in sys.argv[6:]:  # app:key file
        app, key_file = spec.split(":", 1)
        key = open(key_file).read()
        os.unlink(key_file)
        targets.append(create_client(dict(api_key=key, api_url=url, app_name=app, environment_name="Production",
                                          version=version), UrllibTransport(), entry_point="test"))
    if when == "on go":  # the test's barrier: every armer is ready, then all arm at once
        print("ready", flush=True)
        sys.stdin.readline()
    for client, deployment in targets:
        guard = _guard.arm_orphan_guard(client, deployment, owner_pid=int(owner), log=print)
        control = _guard._control_path(int(owner), _guard._account(client))
        print("armed", deployment.app_name, guard.armed, guard.created, _guard._ask(control, _guard._PING).decode(),
              flush=True)
""")

OTHER_SECRET = "another-account-key"
TWO_ACCOUNTS = dict(accounts={SECRET: {"apps": ["DemoApp"], "environments": ["Production"]},
                              OTHER_SECRET: {"apps": ["DemoApp"], "environments": ["Production"]}}, allow_any_app=True)


class Run:
    """An owner process (as ansible-playbook) and processes arming for it (as module tasks), against the emulator.

    Every armer's command line holds a marker the watchers inherit (they are forks): the live processes holding it,
    once the armers are done, are the run's watchers.
    """

    def __init__(self, emulator, version):
        self.emulator, self.version = emulator, version
        self.marker = f"guard-run-{os.getpid()}-{time.monotonic_ns()}"
        self.owner = subprocess.Popen(["sleep", "300"], start_new_session=True)

    def armer(self, *apps, key=SECRET, when="now"):
        specs = []
        for app in apps:
            key_file = pathlib.Path(tempfile.mkdtemp()) / "key"
            key_file.write_text(key)
            specs.append(f"{app}:{key_file}")
        code = ARMER.format(paths=[path for path in sys.path if path])
        return subprocess.Popen([sys.executable, "-c", code, self.emulator.url, str(self.owner.pid), self.version,
                                 self.marker, when, *specs], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def arm(self, *apps, key=SECRET):
        """Arm ``apps`` from one process, which then exits; {app: (created, pid the control socket names)}."""
        armer = self.armer(*apps, key=key)
        return self.armed(armer, armer.communicate(timeout=60)[0])

    @staticmethod
    def armed(armer, output):
        assert armer.returncode == 0, output
        answers = {}
        for line in output.splitlines():
            _armed, app, armed, created, _alive, _owner, watcher = line.split()
            assert armed == "True", output
            answers[app] = (created == "True", int(watcher))
        return answers

    def start(self, *apps, key=SECRET):
        for app in apps:
            client, deployment = self.client(app, key)
            client.start(deployment)

    def client(self, app, key=SECRET):
        return create_client(dict(api_key=key, api_url=self.emulator.url, app_name=app, environment_name="Production",
                                  version=self.version), UrllibTransport(), entry_point="test")

    def watchers(self):
        """The live (not zombie) processes carrying the marker."""
        found = []
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline, open(f"/proc/{pid}/stat", "rb") as stat_file:
                    if self.marker.encode() in cmdline.read() and stat_file.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                        found.append(pid)
            except OSError:
                continue
        return sorted(found)

    def kill_owner_and_wait_for_the_watchers(self):
        os.kill(self.owner.pid, signal.SIGKILL)
        self.owner.wait(timeout=30)
        deadline = time.monotonic() + LANDS_WITHIN
        while self.watchers() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.watchers() == [], "a watcher is still running"

    def ends(self):
        """What reached Retrace after the starts: (app, action, status, key fingerprint), in order."""
        return [(entry["body"]["AppName"], entry["action"], entry["status"], entry["key_fingerprint"])
                for entry in self.emulator.requests() if entry["action"] != "start"]

    def close(self):
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.owner.pid, signal.SIGKILL)
        self.owner.wait(timeout=30)
        for pid in self.watchers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def run(request, retrace_emulator):
    started = Run(retrace_emulator, request.node.name[-40:].replace("[", "-").replace("]", ""))
    yield started
    started.close()


def _actions(ends):
    return sorted((app, action, status) for app, action, status, _key in ends)


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_one_watcher_holds_every_deployment_of_a_run_and_ends_those_the_run_did_not(run):
    apps = ("Shop.Web", "Shop.Api", "Shop.Jobs")
    run.start(*apps)
    answers = run.arm(*apps)
    watchers = run.watchers()
    assert len(watchers) == 1 and {pid for _created, pid in answers.values()} == set(watchers), (answers, watchers)
    assert all(created for created, _pid in answers.values()), answers
    assert run.arm("Shop.Web") == {"Shop.Web": (False, watchers[0])}  # armed again: the same watcher holds it
    for app in apps:  # each deployment still answers on its own socket
        client, deployment = run.client(app)
        assert guard.live_guard_owner(client.settings, deployment) == run.owner.pid

    client, released = run.client("Shop.Api")
    assert guard.release_orphan_guard(client.settings, released, run.owner.pid) is True
    assert guard.live_guard_owner(client.settings, released) is None
    assert run.watchers() == watchers  # the others still held
    run.kill_owner_and_wait_for_the_watchers()
    assert _actions(run.ends()) == [("Shop.Jobs", "cancel", 202), ("Shop.Web", "cancel", 202)]


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_a_deployment_completing_when_the_run_died_gets_its_complete_the_others_a_cancel(run):
    apps = ("Shop.Web", "Shop.Api", "Shop.Jobs")
    run.start(*apps)
    run.arm(*apps)
    client, completing = run.client("Shop.Api")
    assert guard.orphan_guard_of(client.settings, completing, run.owner.pid).completing() is True
    run.kill_owner_and_wait_for_the_watchers()
    assert _actions(run.ends()) == [("Shop.Api", "complete", 202), ("Shop.Jobs", "cancel", 202),
                                    ("Shop.Web", "cancel", 202)]


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_processes_of_one_run_arming_at_the_same_moment_share_one_watcher(run):
    apps = [("Shop.Web", "Shop.Api"), ("Shop.Jobs", "Shop.Admin")]
    run.start(*(app for pair in apps for app in pair))
    armers = [run.armer(*pair, when="on go") for pair in apps]
    for armer in armers:
        assert armer.stdout.readline() == "ready\n"
    for armer in armers:  # the barrier: both are past their imports, and go together
        armer.stdin.write("go\n")
        armer.stdin.flush()
    answers = {}
    for armer in armers:
        answers.update(Run.armed(armer, armer.communicate(timeout=60)[0]))
    watchers = run.watchers()
    assert len(watchers) == 1 and {pid for _created, pid in answers.values()} == set(watchers), (answers, watchers)
    run.kill_owner_and_wait_for_the_watchers()
    assert _actions(run.ends()) == sorted((app, "cancel", 202) for pair in apps for app in pair)


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_a_deployment_added_while_the_watcher_leaves_is_held(run):
    # The run releases the watcher's only deployment while another of its processes is adding one (it holds the
    # run's lock, as every arm does): the watcher cannot leave before it has served that add, and holds it.
    run.start("Shop.Web", "Shop.Api")
    ((_created, watcher),) = run.arm("Shop.Web").values()
    client, first = run.client("Shop.Web")
    control = guard._control_path(run.owner.pid, guard._account(client))
    with guard._run_lock(control.removesuffix(".sock") + ".lock"):
        assert guard.release_orphan_guard(client.settings, first, run.owner.pid) is True
        client, added = run.client("Shop.Api")
        assert guard._ask(control, guard._add_message(client, added, guard._account(client))) == b"ok"
    assert guard.live_guard_owner(client.settings, added) == run.owner.pid
    assert run.watchers() == [watcher]
    run.kill_owner_and_wait_for_the_watchers()
    assert _actions(run.ends()) == [("Shop.Api", "cancel", 202)]


@pytest.mark.retrace_emulator(allow_any_app=True)
def test_a_watcher_that_released_everything_leaves_and_the_next_arm_forks_a_new_one(run):
    run.start("Shop.Web", "Shop.Api")
    ((_created, first_watcher),) = run.arm("Shop.Web").values()
    client, deployment = run.client("Shop.Web")
    control = guard._control_path(run.owner.pid, guard._account(client))
    assert guard.release_orphan_guard(client.settings, deployment, run.owner.pid) is True
    deadline = time.monotonic() + LANDS_WITHIN
    while run.watchers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.watchers() == [] and not os.path.exists(control)
    assert not os.path.exists(control.removesuffix(".sock") + ".lock")
    ((created, second_watcher),) = run.arm("Shop.Api").values()
    assert created and second_watcher != first_watcher and run.watchers() == [second_watcher]
    run.kill_owner_and_wait_for_the_watchers()
    assert _actions(run.ends()) == [("Shop.Api", "cancel", 202)]


@pytest.mark.retrace_emulator(**TWO_ACCOUNTS)
def test_a_deployment_of_another_api_account_gets_a_watcher_of_its_own(run):
    run.start("Shop.Web", "Shop.Api")
    run.start("Shop.Jobs", key=OTHER_SECRET)
    answers = {**run.arm("Shop.Web", "Shop.Api"), **run.arm("Shop.Jobs", key=OTHER_SECRET)}
    watchers = run.watchers()
    assert len(watchers) == 2 and {pid for _created, pid in answers.values()} == set(watchers), (answers, watchers)
    assert answers["Shop.Web"][1] == answers["Shop.Api"][1] != answers["Shop.Jobs"][1], answers
    run.kill_owner_and_wait_for_the_watchers()
    ends = run.ends()
    assert _actions(ends) == [("Shop.Api", "cancel", 202), ("Shop.Jobs", "cancel", 202), ("Shop.Web", "cancel", 202)]
    keys = {app: key for app, _action, _status, key in ends}
    assert keys["Shop.Web"] == keys["Shop.Api"] != keys["Shop.Jobs"], keys  # each sent with its own account's key


def test_messages_waiting_when_the_owner_died_are_answered_before_the_ends(short_tmpdir):
    # The watcher's own code in this process, no fork: its owner is already gone, and a release, a completing and an
    # add wait on its sockets, unanswered.  Each is served (the released socket closes on the way), then the ends.
    owner = subprocess.Popen(["true"])
    owner.wait()
    clients = {app: create_client(dict(api_key=SECRET, api_url="http://127.0.0.1:9", app_name=app,
                                       environment_name="Production", version="g11"), UrllibTransport(), entry_point="test")
               for app in ("Shop.Web", "Shop.Api", "Shop.Jobs", "Shop.Extra")}
    client, first = clients["Shop.Web"]
    account = guard._account(client)
    control_path = guard._control_path(owner.pid, account)
    watcher = guard._Watcher(owner.pid, client, first, account, guard._listen(control_path), control_path)
    paths = {}
    for app in ("Shop.Web", "Shop.Api", "Shop.Jobs"):
        paths[app] = guard._socket_path(client.settings, clients[app][1], owner.pid)
        watcher.hold(guard._listen(paths[app]), clients[app][1], client, client.user_agent)
    waiting = []
    for path, message in ((paths["Shop.Web"], guard._RELEASE), (paths["Shop.Jobs"], guard._COMPLETING),
                          (control_path, guard._add_message(*clients["Shop.Extra"], account))):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(path)
        connection.sendall(message)
        waiting.append(connection)

    held = watcher.watch()
    assert sorted((each.deployment.app_name, each.end) for each in held) == [
        ("Shop.Api", "cancel"), ("Shop.Extra", "cancel"), ("Shop.Jobs", "complete")]
    for connection in waiting:
        with connection:
            assert connection.recv(64) == b"ok\n"
    assert os.listdir(os.path.dirname(control_path)) == []  # every socket and the lock file removed
