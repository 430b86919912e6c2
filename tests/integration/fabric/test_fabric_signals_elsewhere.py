"""Signals outside ``fab deploy``: a single call in flight, and a user's ``tracked()`` block running commands on a group
of hosts made from the task's config.  Real ``fab``, real signals, the emulator and the loopback sshd."""

from __future__ import annotations

import secrets
import signal

import pytest

from test_fabric_interrupts import PROMPT, Running, _kill_all, _processes_with, _until_gone


@pytest.mark.parametrize("action", ["start", "complete"])
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_a_single_call_is_in_flight_exits_128_plus_n_and_says_so(project, action, signum, code):
    project.emulator.inject(action, [{"hang": 10}])
    fab = Running(project, f"retrace.{action}", "--version", "5.3.0")
    fab.wait_for(lambda: project.emulator.requests(action), f"{action} in flight")

    assert fab.ended_within(fab.signal(signum), PROMPT) == code, fab.output()
    assert f"interrupted by {signal.Signals(signum).name} while the {action} call was in flight" in fab.output()


GROUP_FABFILE = '''
from fabric import SerialGroup, task
import retrace_fabric


@task
def release(c, hosts="", marker="", seconds="20"):
    with retrace_fabric.tracked(c, version="5.3.1"):
        for connection in SerialGroup(*hosts.split(","), config=c.config):
            connection.run(f"touch {marker}; sleep {seconds}", in_stream=False)
'''


def test_a_signal_stops_the_commands_a_tracked_block_runs_on_a_group_of_hosts(ssh_project, sshd):
    # The hosts are Connections the block makes from the task's config, not the task's own Connection.
    fabfile = ssh_project.directory / "fabfile.py"
    fabfile.unlink()  # a link to the checkout's fabfile: writing through it would replace that file
    fabfile.write_text(GROUP_FABFILE)
    marker = ssh_project.directory / "command-running"
    sleep_marker = f"21.{secrets.randbelow(10 ** 9):09d}"
    fab = Running(ssh_project, "release", "--hosts", ",".join(sshd.host_strings[:2]), "--marker", str(marker),
                  "--seconds", sleep_marker)
    fab.wait_for(marker.exists, "the command running on the first host")
    try:
        assert fab.ended_within(fab.signal(signal.SIGINT), PROMPT) == 130, fab.output()
        assert ssh_project.actions() == [("start", 202), ("cancel", 202)]
        assert _until_gone(sleep_marker) == [], "the command of the tracked block still runs after fab ended"
        assert len(_processes_with(sleep_marker)) == 0
    finally:
        _kill_all(sleep_marker)
