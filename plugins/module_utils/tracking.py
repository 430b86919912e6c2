# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Track any Python code as one Retrace deployment: start, the work, then complete or cancel.

``tracked_deployment`` is a context manager and, because ``contextlib.contextmanager``
objects are ``ContextDecorator``s, a decorator too::

    with tracked_deployment(client, deployment):
        deploy()

    @tracked_deployment(client, deployment, TrackingPolicy(strict=True))
    def deploy(): ...

It runs on the same engine as the callback, the module and the Fabric tasks (:mod:`._run`): stale-start
recovery, the orphan guard, strict and fail-open behave exactly as docs/lifecycle.md says.
"""

from __future__ import annotations

import contextlib
import os
import typing as t

from ._run import DeploymentRun, Target, describe
from .client import DeploymentClient
from .deployment import Deployment
from .errors import RetraceError
from .settings import TrackingPolicy

Say = t.Callable[[str], None]

__all__ = ["TrackingPolicy", "describe", "tracked_deployment"]


class _LineReporter:
    """The engine's lines to two callables: ``warn`` for what went wrong, ``say`` for what happened."""

    def __init__(self, warn: Say | None, say: Say | None):
        self._warn = warn or (lambda line: None)
        self._say = say or (lambda line: None)

    def info(self, line: str) -> None:
        self._say(line)

    def detail(self, line: str) -> None:
        self._say(line)

    def warning(self, line: str) -> None:
        self._warn(line)

    error = warning

    def debug(self, line: str) -> None:
        pass


@contextlib.contextmanager
def tracked_deployment(client: DeploymentClient, deployment: Deployment, policy: TrackingPolicy = TrackingPolicy(), *,
                       warn: Say | None = None, say: Say | None = None) -> t.Iterator[Deployment]:
    """Wrap work in start / complete, sending cancel on *any* exception, then re-raising it.

    KeyboardInterrupt and SystemExit cancel too.  While the work runs, an orphan guard
    (``policy.orphan_guard``) cancels the deployment if this process is killed outright.
    A failing cancel never hides the original error: it is reported through ``warn`` and attached
    to the original as a note.  With ``policy.strict`` False (the default) a failing start or
    complete is one ``warn`` line naming what was not recorded, and the work still runs; with
    True a failing start raises before the work runs and a failing complete raises after it.
    ``say`` gets the lines that say what happened (started, each call sent, completed).
    """
    run = DeploymentRun(policy, _LineReporter(warn, say), owner_pid=os.getpid())
    target = run.add(Target(deployment, client, describe(deployment)))
    _raise_if_it_fails(run.open(target))
    try:
        yield deployment
    except BaseException as original:
        step = run.close(target, succeeded=False)
        if step.error is not None:
            original.add_note(f"Retrace cancel also failed: {step.error}")
        raise
    _raise_if_it_fails(run.close(target, succeeded=True))


def _raise_if_it_fails(step) -> None:
    if step.fails_run and isinstance(step.error, RetraceError):
        raise step.error
