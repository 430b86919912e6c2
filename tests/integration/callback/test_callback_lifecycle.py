"""Every started deployment ends, whatever ends the run: real ansible-playbook, ansible and
ansible-runner processes, real signals, the emulator's journal checked.

The deadlines below (15 s for the cancel to land, 4 s for ansible-runner to see EOF) are what the issue
promises, not speed figures: without the orphan guard the cancel never comes, and a watcher holding the
job's pty makes ansible-runner wait its full 5 s EOF timeout.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request

import ansible_runner
import pytest

from ansible_collections.stackify.retrace.tests.integration.callback.conftest import (
    ANSIBLE_BIN, kill_session, runner_private_data, wait_for_actions)
from ansible_collections.stackify.retrace.tests.reliability.reliability_helpers import retrace_warnings
from retrace_emulator import DEMO_API_KEY

STARTED_THEN_CANCELLED = [("start", 202), ("cancel", 202)]
DEPLOYMENT = "deployment 1.0.0 of DemoApp to Production"
OK_TASK = """
- name: Say hello
  ansible.builtin.debug:
    msg: hello
"""
NO_TASK_RAN = "Retrace: no task ran on any host: no deployment recorded"


def only_warning(output: str) -> str:
    warnings = retrace_warnings(output)
    assert len(warnings) == 1, output
    return warnings[0]


def start_in_background(runner, *args, env=None, raw=False) -> tuple[subprocess.Popen, pathlib.Path]:
    """ansible-playbook in its own session, output to a file: a test may kill it without waiting for EOF.

    ``raw``: ``args`` is the whole command line (e.g. ``nohup`` then ansible-playbook's)."""
    output = runner.workdir / "output.txt"
    with output.open("wb") as sink:
        process = subprocess.Popen(list(args) if raw else runner.command(*args), cwd=runner.workdir, env={**runner.env, **(env or {})},
                                   stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return process, output


def wait_for(marker: pathlib.Path, process: subprocess.Popen, output: pathlib.Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            kill_session(process.pid)
            raise AssertionError(f"the playbook never reached its marker task:\n{output.read_text()}")
        time.sleep(0.05)


def post(emulator, action: str, version: str = "1.0.0") -> int:
    body = json.dumps({"AppName": "DemoApp", "EnvironmentName": "Production", "Version": version}).encode()
    request = urllib.request.Request(f"{emulator.url}/api/v1/deployments/{action}", data=body, method="POST",
                                     headers={"Authorization": f"ApiKey {DEMO_API_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


# --- the run is killed outright: the orphan guard sends the cancel ------------------------------------

@pytest.mark.parametrize("whole_group", [True, False], ids=["process-group", "main-process-only"])
def test_sigkill_is_cancelled_by_the_orphan_guard(runner, sleeper, whole_group):
    playbook, marker = sleeper
    process, output = start_in_background(runner, str(playbook))
    try:
        wait_for(marker, process, output)
        (os.killpg if whole_group else os.kill)(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        assert wait_for_actions(runner.emulator, 2) == STARTED_THEN_CANCELLED, output.read_text()
    finally:
        kill_session(process.pid)


def run_under_ansible_runner(runner, playbook, monkeypatch, **options):
    private, envvars = runner_private_data(runner, playbook)
    monkeypatch.setenv("PATH", runner.env["PATH"])  # ansible-runner looks ansible-playbook up in its own PATH
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}
    return ansible_runner.run(private_data_dir=str(private), playbook="site.yml", inventory=inventory,
                              envvars=envvars, quiet=True, **options)


def test_ansible_runner_cancel_is_cancelled_and_runner_is_not_held(runner, sleeper, monkeypatch):
    playbook, marker = sleeper
    cancelled_at = []

    def cancel_once_the_task_runs():
        if marker.exists() and not cancelled_at:
            cancelled_at.append(time.monotonic())
        return bool(cancelled_at)

    result = run_under_ansible_runner(runner, playbook, monkeypatch, cancel_callback=cancel_once_the_task_runs)
    returned_after = time.monotonic() - cancelled_at[0]
    print(f"ansible-runner returned {returned_after:.2f} s after the cancel")  # shown with pytest -s
    assert result.status == "canceled", result.stdout.read()
    assert wait_for_actions(runner.emulator, 2) == STARTED_THEN_CANCELLED
    # After its SIGKILL, ansible-runner waits up to 5 s for EOF on the job's pty: the watcher must not hold it.
    assert returned_after < 4.8, f"ansible-runner took {returned_after:.1f} s after the cancel"


def test_ansible_runner_job_timeout_is_cancelled(runner, sleeper, monkeypatch):
    playbook, marker = sleeper
    began = time.monotonic()
    # Long enough for the start to be sent and the guard armed on a loaded machine: ansible-runner reads the
    # clock only between polls (pexpect_timeout, 5 s by default), so a short timeout could kill the run before either.
    result = run_under_ansible_runner(runner, playbook, monkeypatch, settings={"job_timeout": 15})
    assert result.status == "timeout", result.stdout.read()
    assert marker.exists() and time.monotonic() - began < 45, "the 60 s task was not cut short by job_timeout"
    assert wait_for_actions(runner.emulator, 2) == STARTED_THEN_CANCELLED


# --- SIGHUP: handled like SIGTERM --------------------------------------------------------------------

@pytest.mark.parametrize("whole_group", [False, True], ids=["main-process", "process-group"])
def test_sighup_cancels_before_the_process_ends(runner, sleeper, whole_group):
    playbook, marker = sleeper
    process, output = start_in_background(runner, str(playbook))
    try:
        wait_for(marker, process, output)
        (os.killpg if whole_group else os.kill)(process.pid, signal.SIGHUP)
        assert process.wait(timeout=30) == -signal.SIGHUP
        # Sent by the run itself, before it died: the line is in its output, and the guard stood down.
        assert f"Retrace: {DEPLOYMENT} cancelled: the run was stopped by SIGHUP" in output.read_text()
        assert wait_for_actions(runner.emulator, 2) == STARTED_THEN_CANCELLED
    finally:
        kill_session(process.pid)


def test_sighup_under_nohup_leaves_the_run_going_and_the_deployment_open(runner):
    """nohup ignores SIGHUP for the run: the playbook goes on to its end, so its deployment completes."""
    marker = runner.workdir / "task-is-running"
    playbook = runner.playbook("hup.yml", f"""
        - name: Long task
          ansible.builtin.shell: touch {marker} && sleep 3
    """)
    process, output = start_in_background(runner, "nohup", *runner.command(str(playbook)), raw=True)
    try:
        wait_for(marker, process, output)
        os.killpg(process.pid, signal.SIGHUP)
        assert process.wait(timeout=60) == 0, output.read_text()
        assert f"Retrace: {DEPLOYMENT} completed" in output.read_text()
        assert wait_for_actions(runner.emulator, 2) == [("start", 202), ("complete", 202)]
    finally:
        kill_session(process.pid)


# --- the guard stays quiet when the run closed the deployment itself -----------------------------------

@pytest.fixture
def guard_socket_pattern(runner):
    """Where this test's watcher listens: /tmp/stackify-retrace-<uid>/<token of this deployment>.<pid>.sock.

    The token hashes API URL, app, environment and version (plugins/module_utils/_guard.py); each test's
    emulator has its own URL, so tests running side by side never see each other's watchers.
    """
    identity = "\n".join((runner.emulator.url, "DemoApp", "Production", "1.0.0"))
    token = hashlib.sha256(identity.encode()).hexdigest()[:24]
    return f"/tmp/stackify-retrace-{os.getuid()}/{token}.*.sock"


def guard_sockets(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern))


@pytest.mark.parametrize("task, expected", [
    (OK_TASK, [("start", 202), ("complete", 202)]),
    ("- ansible.builtin.fail:\n    msg: broken", STARTED_THEN_CANCELLED),
])
def test_guard_is_armed_during_the_run_and_quiet_after_it(runner, guard_socket_pattern, task, expected):
    """A watcher holds the deployment while tasks run; when the run ended it itself, the watcher goes silently."""
    seen = runner.workdir / "sockets-seen-by-the-task"
    playbook = runner.playbook("site.yml", f"- ansible.builtin.shell: ls {guard_socket_pattern} > {seen}\n{task}")
    run = runner.run(str(playbook))
    assert run.returncode in (0, 2), run.output
    assert seen.read_text().strip().endswith(".sock"), "no orphan guard was armed during the run"
    assert wait_for_actions(runner.emulator, 3, within=3) == expected
    assert guard_sockets(guard_socket_pattern) == []  # released: the watcher removed its socket and exited


def test_orphan_guard_false_arms_no_watcher(runner, guard_socket_pattern):
    seen = runner.workdir / "sockets-seen-by-the-task"
    playbook = runner.playbook("site.yml", f"- ansible.builtin.shell: ls {guard_socket_pattern} > {seen}")
    run = runner.run(str(playbook))
    assert seen.read_text().strip().endswith(".sock"), run.output  # the default arms one...
    run = runner.run("-e", "retrace_orphan_guard=false", str(playbook))
    assert run.returncode == 2 and "No such file" in run.output  # ...the option none
    assert runner.actions() == [("start", 202), ("complete", 202), ("start", 202), ("cancel", 202)]


# --- stale starts --------------------------------------------------------------------------------------

def test_stale_start_is_recovered_with_one_line_unless_told_to_fail(runner):
    assert post(runner.emulator, "start") == 202  # a run that died beyond any guard left it in progress
    playbook = runner.playbook("site.yml", OK_TASK)
    run = runner.run(str(playbook), env={"RETRACE_STALE_START": "fail"})
    assert run.returncode == 0, run.output
    assert "already in progress" in only_warning(run.output)
    assert runner.actions() == [("start", 202), ("start", 409)]
    run = runner.run(str(playbook))
    assert run.returncode == 0, run.output
    assert "left in progress by a run that ended without closing it" in only_warning(run.output)
    assert runner.actions()[2:] == [("start", 409), ("cancel", 202), ("start", 202), ("complete", 202)]


def test_a_live_sibling_run_is_never_cancelled(runner, sleeper):
    playbook, marker = sleeper
    sibling, output = start_in_background(runner, str(playbook))
    try:
        wait_for(marker, sibling, output)
        run = runner.run(str(runner.playbook("second.yml", OK_TASK)))
        assert run.returncode == 0, run.output
        assert f"process {sibling.pid}" in only_warning(run.output)
        assert runner.actions() == [("start", 202), ("start", 409)]
    finally:
        kill_session(sibling.pid)


class StartHangsServer:
    """A Retrace stand-in on loopback whose start is received and never answered; every other call gets 202.

    ``start_received`` is set once a start has arrived: the moment a signal finds the start in flight.
    """

    def __init__(self):
        import http.server
        import threading
        server = self
        self.start_received = threading.Event()
        self.release = threading.Event()
        self.calls = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = self.path.rsplit("/", 1)[-1]
                server.calls.append(action)
                if action == "start":
                    server.start_received.set()
                    server.release.wait(60)
                    return
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_the_start_is_in_flight_cancels_it(runner, signum):
    """The start may land after all: the run's handler sends the cancel before ansible-playbook dies."""
    server = StartHangsServer()
    try:
        process, output = start_in_background(runner, "-e", "retrace_time_budget=30", "-e", "retrace_orphan_guard=false",
                                              str(runner.playbook("site.yml", OK_TASK)), env={"RETRACE_API_URL": server.url})
        try:
            assert server.start_received.wait(60), output.read_text()
            process.send_signal(signum)
            process.wait(30)
        finally:
            kill_session(process.pid)
        assert server.calls == ["start", "cancel"], output.read_text()
        assert "cancelled: the run was stopped while its start was in flight" in output.read_text()
    finally:
        server.close()


# --- strict ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how, env, args", [
    ("refused key, RETRACE_STRICT=yes", {"RETRACE_API_KEY": "not-the-key", "RETRACE_STRICT": "yes"}, ()),
    ("API down, -e retrace_strict=true", {"RETRACE_API_URL": "http://127.0.0.1:1"},
     ("-e", "retrace_strict=true", "-e", "retrace_time_budget=1")),
])
def test_strict_failed_start_stops_the_run_before_any_task(runner, how, env, args):
    marker = runner.workdir / "task-ran"
    playbook = runner.playbook("site.yml", f"- ansible.builtin.file:\n    path: {marker}\n    state: touch")
    run = runner.run(*args, str(playbook), env=env)
    assert run.returncode == 2, run.output  # what a failed task gives: the role and a module-tracked playbook alike
    assert not marker.exists(), how
    assert f"[ERROR]: Retrace: {DEPLOYMENT} NOT recorded: start failed" in run.stderr and "(strict: the run stops)" in run.stderr
    assert "not-the-key" not in run.output
    assert "complete" not in [action for action, _status in runner.actions()]


def test_strict_failed_end_makes_the_exit_code_non_zero(runner):
    refused = {"status": 400, "body": '{"Message": "refused on purpose"}'}
    ok_playbook = str(runner.playbook("site.yml", OK_TASK))
    runner.emulator.inject("complete", [refused])
    run = runner.run(ok_playbook)
    assert run.returncode == 0 and "refused on purpose" in only_warning(run.output)  # not strict: a warning only

    runner.write("ansible.cfg", "[callback_retrace]\nstrict = on\n")
    runner.emulator.inject("complete", [refused])
    run = runner.run(ok_playbook, env={"RETRACE_VERSION": "2.0.0"})  # 1.0.0 is still in progress
    assert run.returncode == 2, run.output
    assert "PLAY RECAP" in run.stdout and "failed=0" in run.stdout
    assert "[ERROR]: Retrace: deployment 2.0.0 of DemoApp to Production: the complete was NOT recorded" in run.stderr
    assert "refused on purpose" in run.stderr

    runner.emulator.inject("cancel", [refused])  # a failed run keeps its own exit code
    run = runner.run(str(runner.playbook("broken.yml", "- ansible.builtin.fail:\n    msg: broken")),
                     env={"RETRACE_VERSION": "3.0.0"})
    assert run.returncode == 2, run.output
    assert "refused on purpose" in only_warning(run.output)
    assert runner.actions() == [("start", 202), ("complete", 400)] * 2 + [("start", 202), ("cancel", 400)]


# --- booleans are read strictly from every source -------------------------------------------------------

def _set_everywhere(runner, option, where, value):
    env, args = {}, []
    if where == "env":
        env[f"RETRACE_{option.upper()}"] = value
    elif where == "ini":
        runner.write("ansible.cfg", f"[callback_retrace]\n{option} = {value}\n")
    else:
        args = ["-e", f"retrace_{option}={value}"]
    return env, args


@pytest.mark.parametrize("option, where", [
    ("orphan_guard", "env"), ("orphan_guard", "ini"), ("track_check_mode", "ini"), ("validate_certs", "ini"),
])
def test_a_non_boolean_word_is_refused_with_one_warning(runner, option, where):
    env, args = _set_everywhere(runner, option, where, "ture")
    run = runner.run(*args, str(runner.playbook("site.yml", OK_TASK)), env=env)
    assert run.returncode == 0, run.output
    assert f"{option}: must be true or false, got 'ture'" in only_warning(run.output)
    assert runner.actions() == []


@pytest.mark.parametrize("where", ["env", "extra vars", "ini"])
def test_strict_given_a_word_that_is_not_a_boolean_counts_as_strict(runner, where):
    """``strict: ture`` was meant: the run stops before its first task, naming the word, rather than deploy unchecked."""
    env, args = _set_everywhere(runner, "strict", where, "ture")
    marker = runner.workdir / "task-ran"
    run = runner.run(*args, str(runner.playbook("site.yml", f"- ansible.builtin.file:\n    path: {marker}\n    state: touch")), env=env)
    assert run.returncode == 2, run.output
    assert not marker.exists() and runner.actions() == []
    assert "strict: must be true or false, got 'ture'" in run.stderr and "(strict: the run stops)" in run.stderr


def test_strict_holds_when_another_setting_is_invalid(runner):
    """Ansible would refuse to load the callback over ``time_budget=abc`` and the run would go on untracked."""
    marker = runner.workdir / "task-ran"
    playbook = runner.playbook("site.yml", f"- ansible.builtin.file:\n    path: {marker}\n    state: touch")
    run = runner.run("-e", "retrace_strict=true", "-e", "retrace_time_budget=abc", str(playbook))
    assert run.returncode == 2, run.output
    assert not marker.exists() and runner.actions() == []
    assert "time_budget: must be a number of seconds, got 'abc' (from extra vars)" in run.stderr


# --- runs that deploy nothing are not deployments -------------------------------------------------------

def ad_hoc(runner, *args, env=None):
    command = [str(ANSIBLE_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", *args]
    return subprocess.run(command, cwd=runner.workdir, env={**runner.env, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_ad_hoc_command_sends_nothing(runner):
    result = ad_hoc(runner, "-m", "ansible.builtin.ping")
    assert result.returncode == 0, result.stdout + result.stderr
    assert runner.actions() == []
    assert "Retrace" not in result.stdout + result.stderr


def test_ad_hoc_command_tracked_on_request(runner):
    result = ad_hoc(runner, "-m", "ansible.builtin.ping", env={"RETRACE_TRACK_AD_HOC": "true"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert runner.actions() == [("start", 202), ("complete", 202)]
    assert {entry["body"]["Version"] for entry in runner.emulator.requests()} == {"1.0.0"}
    # No version from anywhere: nothing is made up (the host pattern, the module name, the time), as for playbooks.
    result = ad_hoc(runner, "-m", "ansible.builtin.ping", env={"RETRACE_TRACK_AD_HOC": "true", "RETRACE_VERSION": ""})
    assert result.returncode == 0 and len(runner.actions()) == 2
    assert "NOT recorded: version: is not set" in only_warning(result.stdout + result.stderr)


def test_ad_hoc_option_from_extra_vars_is_checked_strictly(runner):
    result = ad_hoc(runner, "-m", "ansible.builtin.ping", "-e", "retrace_track_ad_hoc=perhaps")
    assert "track_ad_hoc: must be true or false" in only_warning(result.stdout + result.stderr)
    assert runner.actions() == []


@pytest.mark.parametrize("args", [("--limit", "db1"), ()], ids=["limit-matching-no-host-of-the-play", "play-without-hosts"])
def test_run_in_which_no_task_ran_sends_nothing_and_says_so(runner, args):
    inventory = runner.write("hosts.ini", "[web]\nweb1 ansible_connection=local\n[db]\ndb1 ansible_connection=local\n")
    hosts = "web" if args else "group_with_no_hosts"
    run = runner.run("-i", str(inventory), *args, str(runner.playbook("site.yml", OK_TASK, hosts=hosts)))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    assert run.retrace_lines() == [NO_TASK_RAN]


def test_first_playbook_file_without_hosts_then_a_real_one_is_one_deployment(runner):
    empty = runner.playbook("empty.yml", OK_TASK, hosts="group_with_no_hosts")
    real = runner.playbook("real.yml", OK_TASK)
    run = runner.run(str(empty), str(real))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)]
    assert run.retrace_lines() == [f"Retrace: {DEPLOYMENT} started", f"Retrace: {DEPLOYMENT} completed"]
    merged = runner.run(str(empty), str(real), env={"RETRACE_VERSION": "1.0.1"}, merged=True).stdout
    assert merged.index("skipping: no hosts matched") < merged.index("Retrace: deployment 1.0.1 of DemoApp to Production started")


# --- the API hanging: the callback's time stays within time_budget ----------------------------------------

def test_stale_start_recovery_shares_the_start_s_part_of_the_budget(runner):
    """start (409), cancel, start again: three calls within the start's share of the budget, not one share each."""
    assert post(runner.emulator, "start") == 202
    runner.emulator.inject("start", [{"delay": 0.01}, {"hang": True}])  # the 409 as usual, then the new start hangs
    # Scaled so that the callback's own work before the first start (charged to the same share) fits on a loaded machine.
    runner.emulator.inject("cancel", [{"delay": 4.5}])
    run = runner.run("-e", "retrace_time_budget=9", str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert [entry["action"] for entry in runner.emulator.requests()][:4] == ["start", "start", "cancel", "start"]
    # The last start got no answer and may still land: the guard armed anyway cancels it after the run.
    deadline = time.monotonic() + 15
    while len(runner.emulator.requests()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [entry["action"] for entry in runner.emulator.requests()] == ["start", "start", "cancel", "start", "cancel"]
    failure = retrace_warnings(run.output)[-1]
    # The start's share is 6 s of 9; the cancel took 4.5 of them: the last start had what was left, not 6 s more.
    waited = float(re.search(r"no answer within ([0-9.]+) s", failure).group(1))
    assert waited < 2.5, failure


def test_an_empty_version_extra_var_is_refused_not_replaced(runner):
    # An unset $APP_VERSION in CI: `-e retrace_version=` must not become a made-up version.
    playbook = runner.playbook("site.yml", OK_TASK)
    run = runner.run("-e", "retrace_version=", str(playbook))
    assert run.returncode == 0, run.output
    assert "NOT recorded: version: is empty (from extra vars)" in " ".join(run.output.split())
    assert runner.actions() == []
    strict = runner.run("-e", "retrace_version=", "-e", "retrace_strict=true", str(playbook))
    assert strict.returncode == 2 and runner.actions() == []
