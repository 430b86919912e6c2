"""The module's orphan guard, driven for real: ansible-playbook killed in the middle, with real signals.

A ``started`` task arms a watcher on the ansible-playbook process; a ``completed`` / ``cancelled``
task of the same run releases it.  When the run dies first, however it dies, one cancel arrives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from ansible_run import BIN, DEMO, calls, play, stop_run, task, write_playbook

GUARD_LANDS_WITHIN = 15.0


def _start_playbook(playbook, env, marker):
    return _start_playbook_with(playbook, env, marker)


def _start_playbook_with(playbook, env, marker, *args):
    """ansible-playbook PLAYBOOK ARGS in its own process group (as ansible-runner runs it), once ``marker`` exists.

    Its output goes to a file: a worker still running a task may outlive a killed ansible-playbook
    and hold a pipe open.
    """
    output = (playbook.parent / "output.txt").open("wb")
    process = subprocess.Popen([str(BIN / "ansible-playbook"), str(playbook), *args], env=env, cwd=playbook.parent,
                               stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    process.output = playbook.parent / "output.txt"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.output.read_text()
        time.sleep(0.05)
    return process


def _wait_for(emulator, expected, seconds=GUARD_LANDS_WITHIN):
    deadline = time.monotonic() + seconds
    while calls(emulator) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return calls(emulator)


def _long_play(tmp_path, marker):
    return write_playbook(tmp_path, [play(
        task("started", version="7.0", **DEMO),
        {"name": "Deployment step", "ansible.builtin.shell": f"touch {marker} && sleep 60"},
        task("completed", version="7.0", **DEMO),
    )])


@pytest.mark.parametrize("how", ["SIGKILL to the process group", "SIGKILL to ansible-playbook alone", "SIGHUP", "SIGTERM"])
def test_a_run_killed_after_the_start_is_cancelled_by_the_guard(tmp_path, ansible_env, retrace_emulator, how):
    marker = tmp_path / "deploying"
    process = _start_playbook(_long_play(tmp_path, marker), ansible_env, marker)
    killed_at = time.monotonic()
    if how == "SIGKILL to the process group":
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    else:
        stop_run(process, signal.SIGKILL if how == "SIGKILL to ansible-playbook alone" else getattr(signal, how))
    assert _wait_for(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]
    assert time.monotonic() - killed_at < GUARD_LANDS_WITHIN


def test_the_guard_sends_nothing_when_the_run_ends_the_deployment(tmp_path, ansible_env, retrace_emulator):
    playbook = write_playbook(tmp_path, [play(task("started", version="7.1", **DEMO), task("completed", version="7.1", **DEMO),
                                              task("started", version="7.2", **DEMO), task("cancelled", version="7.2", **DEMO))])
    run = subprocess.run([str(BIN / "ansible-playbook"), str(playbook)], env=ansible_env, cwd=tmp_path, text=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    assert run.returncode == 0, run.stdout
    time.sleep(2)  # a guard that wrongly fired would have landed by now
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202), ("start", 202), ("cancel", 202)]


def test_a_playbook_that_ends_without_closing_the_deployment_is_cancelled(tmp_path, ansible_env, retrace_emulator):
    playbook = write_playbook(tmp_path, [play(task("started", version="7.3", **DEMO))])
    run = subprocess.run([str(BIN / "ansible-playbook"), str(playbook)], env=ansible_env, cwd=tmp_path, text=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    assert run.returncode == 0, run.stdout
    assert _wait_for(retrace_emulator, [("start", 202), ("cancel", 202)]) == [("start", 202), ("cancel", 202)]


def test_orphan_guard_false_leaves_the_deployment_open_for_a_later_run(tmp_path, ansible_env, retrace_emulator):
    first = write_playbook(tmp_path, [play(task("started", version="7.4", orphan_guard=False, **DEMO))], name="first.yml")
    second = write_playbook(tmp_path, [play(task("completed", version="7.4", **DEMO))], name="second.yml")
    for playbook in (first, second):
        run = subprocess.run([str(BIN / "ansible-playbook"), str(playbook)], env=ansible_env, cwd=tmp_path, text=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                             check=False)
        assert run.returncode == 0, run.stdout
        time.sleep(1)
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]
    assert retrace_emulator.deployments()[0]["state"] == "completed"


def test_a_stale_start_left_by_a_dead_run_is_recovered(tmp_path, ansible_env, retrace_emulator):
    marker = tmp_path / "deploying"
    process = _start_playbook(_long_play(tmp_path, marker), {**ansible_env, "RETRACE_ORPHAN_GUARD": "false"}, marker)
    os.killpg(process.pid, signal.SIGKILL)  # no guard: as if the container had been killed
    process.wait(timeout=30)
    marker.unlink()
    process = _start_playbook(_long_play(tmp_path, marker), ansible_env, marker)
    output = stop_run(process, signal.SIGTERM)
    assert "was left in progress by a run that ended without closing it" in output
    assert _wait_for(retrace_emulator, [("start", 202), ("start", 409), ("cancel", 202), ("start", 202), ("cancel", 202)]) == [
        ("start", 202), ("start", 409), ("cancel", 202), ("start", 202), ("cancel", 202)]


def test_an_ad_hoc_start_is_a_single_call_that_outlives_the_command(tmp_path, ansible_env, retrace_emulator):
    for state in ("started", "completed"):
        run = subprocess.run([str(BIN / "ansible"), "localhost", "-m", "stackify.retrace.deployment", "-a",
                              f"state={state} version=7.5 app_name=DemoApp environment_name=Production"],
                             env=ansible_env, cwd=tmp_path, text=True, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=120, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        time.sleep(1.5)  # a guard armed on the ansible command would have cancelled by now
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]


def test_a_start_task_for_several_hosts_is_guarded_once(tmp_path, ansible_env, retrace_emulator):
    """No run_once: the second host's start is this run's own (sent or not, depending on which host is first to
    find the run's record); the one watcher the run armed cancels the deployment when the run is killed."""
    marker = tmp_path / "deploying"
    playbook = write_playbook(tmp_path, [play(
        task("started", version="7.6", **DEMO),
        {"name": "Deployment step", "ansible.builtin.shell": f"touch {marker} && sleep 60", "run_once": True},
        hosts="all",
    )])
    (tmp_path / "inventory.ini").write_text("web1 ansible_connection=local\nweb2 ansible_connection=local\n")
    process = _start_playbook_with(playbook, ansible_env, marker, "-i", str(tmp_path / "inventory.ini"))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + GUARD_LANDS_WITHIN
    while ("cancel", 202) not in calls(retrace_emulator) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls(retrace_emulator).count(("start", 202)) == 1 and calls(retrace_emulator)[-1] == ("cancel", 202), \
        calls(retrace_emulator)
    assert set(calls(retrace_emulator)) <= {("start", 202), ("start", 409), ("cancel", 202)}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_while_its_start_is_in_flight_is_cancelled_once_the_start_lands(tmp_path, ansible_env, retrace_emulator,
                                                                                      signum):
    """The guard is armed before the start is sent: Ctrl-C (to the process group) or SIGTERM while Retrace has
    processed the start but not answered it still ends with a cancel.

    ansible-playbook forwards the signal to its workers (each in a session of its own); now and then (about one run
    in five here) the worker running the start is missed, and ansible-playbook, before it exits, waits for that
    worker's call to end: its ``deadline`` bounds the wait."""
    retrace_emulator.inject("start", [{"process": True, "hang": 60}])
    playbook = write_playbook(tmp_path, [play(task("started", version="7.5", timeout=5, deadline=8, **DEMO),
                                              task("completed", version="7.5", **DEMO))])
    output = (tmp_path / "output.txt").open("wb")
    process = subprocess.Popen([str(BIN / "ansible-playbook"), str(playbook)], env=ansible_env, cwd=tmp_path,
                               stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while retrace_emulator.pending_faults().get("start"):  # the start has arrived once its fault is taken
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "output.txt").read_text()
        time.sleep(0.05)
    try:
        os.killpg(process.pid, signum) if signum == signal.SIGINT else os.kill(process.pid, signum)
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + GUARD_LANDS_WITHIN
    while ("cancel", 202) not in calls(retrace_emulator) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("cancel", 202) in calls(retrace_emulator), (calls(retrace_emulator), (tmp_path / "output.txt").read_text())
    assert [deployment["state"] for deployment in retrace_emulator.deployments()] == ["cancelled"]


def test_a_run_whose_starts_another_run_holds_never_ends_that_deployment(tmp_path, ansible_env, retrace_emulator):
    """Run A deploys version 7.7; run B, the same version, starts it from five hosts (no run_once), fails, and its rescue
    sends a cancel: every start of B got 409, so B ends nothing -- neither its rescue nor its guard cancels A's."""
    marker = tmp_path / "a-deploying"
    first = tmp_path / "a"
    first.mkdir()
    process = _start_playbook(write_playbook(first, [play(
        task("started", version="7.7", **DEMO),
        {"name": "Deployment step", "ansible.builtin.shell": f"touch {marker} && sleep 20"},
        task("completed", version="7.7", **DEMO))]), ansible_env, marker)
    try:
        second = tmp_path / "b"
        second.mkdir()
        (second / "inventory.ini").write_text("".join(f"h{n} ansible_connection=local\n" for n in range(1, 6)))
        playbook = write_playbook(second, [play({"block": [
            task("started", version="7.7", **DEMO),
            {"name": "A failing step", "ansible.builtin.fail": {"msg": "broken"}}],
            "rescue": [task("cancelled", version="7.7", **DEMO)]}, hosts="all")])
        completed = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(second / "inventory.ini"), str(playbook)], env=ansible_env,
                                   cwd=second, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
        output = completed.stdout + completed.stderr
        assert "no cancel sent" in output, output
    finally:
        process.wait(timeout=60)
    # B's guard, were it armed, cancels as B exits: A's complete comes after that, so one look at the end suffices.
    assert [entry["state"] for entry in retrace_emulator.deployments()] == ["completed"], calls(retrace_emulator)
    assert ("cancel", 202) not in calls(retrace_emulator)
