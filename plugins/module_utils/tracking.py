# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start -> run the caller's work -> complete, or cancel when the work raises anything.

``tracked_deployment`` is a context manager and, because ``contextlib.contextmanager``
objects are ``ContextDecorator``s, a decorator too::

    with tracked_deployment(client, deployment):
        deploy()

    @tracked_deployment(client, deployment)
    def deploy(): ...
"""

from __future__ import annotations

import contextlib
import typing as t

from .client import DeploymentClient
from .deployment import Deployment
from .errors import RetraceError


@contextlib.contextmanager
def tracked_deployment(client: DeploymentClient, deployment: Deployment, *, strict: bool = True,
                       warn: t.Callable[[str], None] | None = None) -> t.Iterator[Deployment]:
    """Wrap work in start / complete, sending cancel on *any* exception, then re-raising it.

    KeyboardInterrupt and SystemExit cancel too.  A failing cancel never hides the original
    error: it is reported through ``warn`` and attached to the original as a note.  With
    ``strict=False`` a failing start or complete is reported through ``warn`` and the work
    still runs (tracking must not stop a deployment); with ``strict=True`` (the default) a
    failing start raises before the work runs and a failing complete raises after it.
    """
    warn = warn or (lambda message: None)
    started = _send(client.start, deployment, strict, warn)
    try:
        yield deployment
    except BaseException as original:
        if started:
            _cancel_after(client, deployment, original, warn)
        raise
    if started:
        _send(client.complete, deployment, strict, warn)


def _send(call: t.Callable[[Deployment], object], deployment: Deployment, strict: bool, warn: t.Callable[[str], None]) -> bool:
    try:
        call(deployment)
    except RetraceError as error:
        if strict:
            raise
        warn(f"Deployment tracking skipped: {error}")
        return False
    return True


def _cancel_after(client: DeploymentClient, deployment: Deployment, original: BaseException, warn: t.Callable[[str], None]) -> None:
    try:
        client.cancel(deployment)
    except RetraceError as cancel_error:
        note = f"Retrace cancel also failed: {cancel_error}"
        warn(note)
        original.add_note(note)
