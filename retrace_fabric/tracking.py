# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tracking for any Fabric task: a context manager, a decorator, and the one place errors become ``Exit``.

::

    from retrace_fabric import tracked, track

    @task
    def deploy(c):
        with tracked(c, version="1.4.2"):   # start now, complete at the end, cancel on any error
            c.run("./release.sh")

    @task
    @track                                 # the same, around the whole task
    def migrate(c): ...
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import threading
import typing as t

from invoke.exceptions import Exit

from .core.client import CallResult, DeploymentClient, create_client
from .core.deployment import Deployment
from .core.errors import InvalidInput, RetraceError
from .core.settings import Lifecycle
from .core.tracking import tracked_deployment
from .settings import config_section, resolve_options, transport_options

ENTRY_POINT = "fabric"
#: exit codes: 1 the deployment failed or Retrace refused / could not be reached; 2 a setting is wrong
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception, so the wrapper cancels exactly as it does for Ctrl-C.

    A KeyboardInterrupt subclass, because invoke forwards those to a local command it is running.
    """


def say(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(f"retrace: {message}", file=sys.stderr, flush=True)


def build_client(config, flags: t.Mapping[str, t.Any] | None = None) -> tuple[DeploymentClient, Deployment]:
    """Resolve the settings (see :mod:`retrace_fabric.settings`) and validate them; nothing is sent."""
    from .transport import RequestsTransport  # requests costs ~85 ms to import: only when a call is due

    options = resolve_options(config, flags)
    client, deployment = create_client(options, RequestsTransport(**transport_options(config)), entry_point=ENTRY_POINT, log=warn)
    return client, deployment


def describe_call(client: DeploymentClient, result: CallResult) -> str:
    """One line: what was sent (never the key) and what Retrace answered."""
    sent = json.dumps(result.payload, ensure_ascii=False, separators=(", ", ": "))
    answer = f"HTTP {result.status}" + (f" {result.server_message}" if result.server_message else "")
    if result.recovered_from_conflict:
        answer += " (an earlier attempt had already been accepted)"
    attempts = "1 attempt" if result.attempts == 1 else f"{result.attempts} attempts"
    return f"retrace.{result.action}: sent {sent} to {client.settings.endpoint(result.action)} -> {answer} ({attempts}, {result.elapsed:.2f} s)"


class AnnouncingClient:
    """Prints one line per call the core's wrapper reports as accepted (its ``on_sent``)."""

    def __init__(self, client: DeploymentClient):
        self.client = client
        self.sent: list[str] = []

    def announce(self, result: CallResult) -> CallResult:
        self.sent.append(result.action)
        say(describe_call(self.client, result))
        return result


@contextlib.contextmanager
def exit_on_retrace_error(prefix: str = "retrace") -> t.Iterator[None]:
    """Translate the core's exceptions into ``Exit`` -- the one place this happens for Fabric."""
    try:
        yield
    except InvalidInput as error:
        raise Exit(f"{prefix}: invalid setting {error} (nothing was sent to Retrace)", code=EXIT_INVALID) from None
    except RetraceError as error:
        raise Exit(f"{prefix}: {error}", code=EXIT_FAILED) from None


@contextlib.contextmanager
def cancel_on_sigterm() -> t.Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (only the main thread can install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def tracked(c, **flags: t.Any) -> t.Iterator[Deployment]:
    """Start a Retrace deployment, run the block, then complete it -- or cancel it on any error,
    Ctrl-C or SIGTERM.  ``flags`` take the task flag names (``version="1.4.2"``); everything else
    comes from the ``retrace:`` config and the ``RETRACE_*`` environment.
    """
    with exit_on_retrace_error():
        client, deployment = build_client(c.config, flags)
        strict = config_section(c.config)["strict"]
        announcing = AnnouncingClient(client)
        try:
            with cancel_on_sigterm(), tracked_deployment(announcing.client, deployment, Lifecycle.create(strict=strict), warn=warn,
                                                        on_sent=announcing.announce):
                yield deployment
        except KeyboardInterrupt as interruption:
            raise interrupted_exit(interruption, announcing) from None


def retrace_outcome(announcing: AnnouncingClient) -> str:
    """What Retrace was told, in words, for the last line of a failed run."""
    if not announcing.sent:
        return "Retrace was not told (start was not accepted)"
    if announcing.sent[-1] == "cancel":
        return "the deployment was cancelled in Retrace"
    if announcing.sent[-1] == "complete":
        return "the deployment was completed in Retrace"
    return "Retrace could not be told to cancel: see the warning above"


def interrupted_exit(interruption: KeyboardInterrupt, announcing: AnnouncingClient) -> Exit:
    if isinstance(interruption, Terminated):
        return Exit(f"retrace: terminated (SIGTERM); {retrace_outcome(announcing)}", code=EXIT_TERMINATED)
    return Exit(f"retrace: interrupted; {retrace_outcome(announcing)}", code=EXIT_INTERRUPTED)


def track(function: t.Callable) -> t.Callable:
    """Decorator form of :func:`tracked` for a task ``function(c, ...)``; put it under ``@task``."""

    @functools.wraps(function)
    def tracked_task(c, *args, **kwargs):
        with tracked(c):
            return function(c, *args, **kwargs)

    return tracked_task
