# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping the commands a Connection runs on its host, for ``fab deploy`` and for :func:`~retrace_fabric.tracked`.

Closing an SSH session is not enough: sshd signals the command only when it runs on a pty (SIGHUP); without one
(Fabric's default, ``run.pty: false``) the command goes on after fab has told Retrace "cancel".  Two ways are used
together, because each misses cases the other covers:

- the SSH "signal" request (RFC 4254 section 6.9) on each running command's channel: the protocol's own way, but
  OpenSSH's sshd refuses it for root logins;
- a command on a new session of the same connection (:data:`TERMINATE_SIBLING_SESSIONS`) that signals every
  process the other sessions of that connection started, and their process groups: sshd starts each session's
  command as a child of the connection's sshd process, so they are that process's descendants, whichever process
  group or session they moved to.  Once it has ended, that tree is gone.

Both send SIGTERM, then SIGKILL to what is left after :data:`REMOTE_GRACE`, as local commands get.
"""

from __future__ import annotations

import contextlib
import threading
import time
import typing as t
import weakref

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

CONNECT_ERRORS = (OSError, EOFError, paramiko.SSHException)
#: on a signal, how long the remote commands get to end on SIGTERM before they are sent SIGKILL (as local commands)
REMOTE_GRACE = 1.0
#: on a signal, how long in all fab waits for the remote commands' stop (the kill command on each connection, and
#: the commands' own sessions) before it closes the connections: the kill command needs a session opened and a
#: command started (two round trips), up to REMOTE_GRACE on the host and one more trip for its end.  A slow link or
#: a loaded machine needs seconds; the bound keeps the cancel from waiting on a host that never answers.
REMOTE_STOP_LIMIT = 5.0
#: how often the stop looks at what is left
POLL = 0.02


class RemoteCommands:
    """The commands Connections run while :meth:`kept` is in force, and :meth:`stop` to end them all."""

    def __init__(self) -> None:
        #: the Remote runners of the commands (a finished one drops out), for :meth:`stop` to reach their channels
        self._runners: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.RLock()  # reentrant: a second signal may come while the first is handled

    @contextlib.contextmanager
    def kept(self, connection) -> t.Iterator[None]:
        """While the block runs, ``connection`` makes its runners (``runners.remote``: whichever class is configured)
        through us, so that :meth:`stop` can reach the command each one runs; the configuration is put back after."""
        make_runner = connection.config.runners.remote

        def make_kept_runner(*args, **kwargs):
            runner = make_runner(*args, **kwargs)
            with self._lock:
                self._runners.add(runner)
            return runner

        connection.config.runners.remote = make_kept_runner
        try:
            yield
        finally:
            connection.config.runners.remote = make_runner

    def stop(self) -> dict:
        """SIGTERM to every command still running, SIGKILL to those left after :data:`REMOTE_GRACE`; return the
        transports (SSH connections) on which the end of a command was not confirmed within :data:`REMOTE_STOP_LIMIT`,
        each with whether the kill command ran to its end there (:class:`SiblingStop` ``ended``).

        Only a command's exit status confirms its end, and sshd sends it once the command has ended *and* its output
        is closed: a command whose channel has none may have survived (the kill command did not end: the stop is not
        known to be done), or something it started is holding its output open (the kill command ended: every process
        it could signal in the tree got SIGKILL, so what holds it left the tree, or runs as a user the login may not
        signal)."""
        with self._lock:
            runners = list(self._runners)
        running = [channel for channel in (getattr(runner, "channel", None) for runner in runners)
                   if isinstance(channel, paramiko.Channel) and not channel.closed and not channel.exit_status_ready()]
        for channel in running:
            send_signal(channel, "TERM")
        stops = {transport: SiblingStop(transport) for transport in {channel.transport for channel in running}}
        started_at = time.monotonic()
        for sibling_stop in stops.values():
            sibling_stop.start()
        killed = False
        while True:
            now = time.monotonic()
            left = [channel for channel in running if not channel.exit_status_ready()]
            if not killed and now >= started_at + REMOTE_GRACE:
                for channel in left:
                    send_signal(channel, "KILL")  # harmless where sshd refuses it
                killed = True
            if now >= started_at + REMOTE_STOP_LIMIT or (not left and all(stop.finished.is_set() for stop in stops.values())):
                break
            time.sleep(min(POLL, max(0.0, started_at + REMOTE_STOP_LIMIT - now)))
        return {channel.transport: stops[channel.transport].ended.is_set()
                for channel in running if not channel.exit_status_ready()}


def send_signal(channel: paramiko.Channel, name: str) -> None:
    """Send the command on ``channel`` the signal ``name`` ("TERM", without "SIG"): RFC 4254 section 6.9.

    paramiko has no public call for this request; it is built as paramiko's own Channel methods build theirs
    (``exec_command``, ``resize_pty``), hence ``_send_user_message``.  OpenSSH's sshd delivers it to the command's
    process group (since 7.9, not for root logins); a server that does not, ignores it (no reply is asked for).  A transport
    already going away must not keep the cancel from being sent: a failure to send is ignored.
    """
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string(name)
    try:
        channel.transport._send_user_message(message)  # pylint: disable=protected-access
    except CONNECT_ERRORS:
        pass


#: Stop every other session of this SSH connection with everything its command started, wherever it moved.  sshd
#: starts each session's command as a child of the connection's sshd process (this shell's parent, ``$PPID``), in a
#: session of its own; the command's children may make process groups or sessions of their own (``timeout``, a shell's
#: ``set -m`` job, ``setsid``), so signalling the session's group alone misses them: the whole tree of that sshd
#: process is signalled, except this shell's own subtree.  A process that left the tree (reparented to init by a
#: double fork) is out of reach, as on any SSH disconnect.  One POSIX sh command (dash, busybox ash), in parts:
TERMINATE_SIBLING_SESSIONS = (
    # tree: every descendant of $PPID but this shell ($$) and what it runs (ps, awk, the $(...) subshells), from one
    # listing of each process's parent (``ps -o pid= -o ppid=`` is POSIX), parents before their children: awk adds
    # the children of the processes found until no process is added (POSIX awk has no recursive functions to lean on)
    'tree() { ps -e -o pid= -o ppid= | awk -v root="$PPID" -v self="$$" \''
    '{ parent[$1] = $2 } '
    'END { found[root] = 1; count = 0; grown = 1; while (grown) { grown = 0; for (pid in parent) '
    'if (!(pid in found) && pid != self && (parent[pid] in found)) { found[pid] = 1; order[++count] = pid; grown = 1 } } '
    'for (i = 1; i <= count; i++) print order[i] }\'; }; '
    # send SIGNAL PIDS: to the process group each process leads (a session's group is led by its command; a group
    # also reaches the processes started after the listing), then to each process, in one ``kill`` so that they
    # come at once: a shell whose child got the signal first must not run its next command.  A pid that leads no
    # group, or went meanwhile, fails harmlessly: ``kill`` goes on with the others.
    'send() { groups=; for pid in $2; do groups="$groups -$pid"; done; kill -s "$1" -- $groups $2 2>/dev/null; }; '
    'send TERM "$(tree)"; '
    # up to REMOTE_GRACE (1 s, polled every 0.1 s) for the tree to be gone, listed anew each time; ``kill -s 0``, as
    # dash takes no ``kill -0 --``; a ``sleep`` that takes no fraction makes it one wait of 1 s
    'tries=0; while [ "$tries" -lt 10 ]; do '
    'left=; for pid in $(tree); do if kill -s 0 "$pid" 2>/dev/null; then left="$left $pid"; fi; done; '
    '[ -n "$left" ] || break; '
    'sleep 0.1 2>/dev/null || { sleep 1; tries=9; }; tries=$((tries + 1)); done; '
    # SIGKILL to what is left, listed again: a child forked during the wait is caught too
    'send KILL "$(tree)"'
)


class SiblingStop:
    """:data:`TERMINATE_SIBLING_SESSIONS` on a new session of ``transport``, in a daemon thread of its own: paramiko waits
    for the server's answers without a timeout, and nothing may keep the cancel waiting past
    :data:`REMOTE_STOP_LIMIT`.  ``ended`` is set once the command has ended on the host (its exit status came),
    ``finished`` once nothing more will come of it (ended, or it could not run)."""

    def __init__(self, transport: paramiko.Transport):
        self.transport = transport
        self.ended = threading.Event()
        self.finished = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="stop-remote-steps").start()

    def _run(self) -> None:
        try:
            channel = self.transport.open_session(timeout=REMOTE_STOP_LIMIT)
            channel.exec_command(TERMINATE_SIBLING_SESSIONS)
            if channel.status_event.wait(REMOTE_STOP_LIMIT) and channel.exit_status_ready():
                self.ended.set()
        except CONNECT_ERRORS:
            pass  # the connection is being closed: the steps' sessions end with it, as far as sshd ends them
        finally:
            self.finished.set()
