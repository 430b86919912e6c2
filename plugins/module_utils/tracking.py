# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a tracked run begins and ends: start (recovering a stale one), the work, then complete or cancel.

``tracked_deployment`` is a context manager and, because ``contextlib.contextmanager``
objects are ``ContextDecorator``s, a decorator too::

    with tracked_deployment(client, deployment):
        deploy()

    @tracked_deployment(client, deployment, Lifecycle(strict=True))
    def deploy(): ...

:func:`open_deployment` is the start every entry point sends, with stale-start recovery; the
callback and the module, whose start and end happen in separate hooks or tasks, use it and
:mod:`._guard` directly.
"""

from __future__ import annotations

import contextlib
import typing as t

from .client import NO_ANSWER_PROBLEMS, CallResult, DeploymentClient
from .deployment import Deployment
from .errors import ApiUnreachable, BadTransition, RetraceError
from ._guard import OrphanGuard, arm_orphan_guard, live_guard_owner
from .settings import Lifecycle

Warn = t.Callable[[str], None]
OnSent = t.Callable[[CallResult], None]


def describe(deployment: Deployment) -> str:
    """``deployment 1.4.2 of Shop to Production``: how every message names a deployment."""
    return f"deployment {deployment.version} of {deployment.app_name} to {deployment.environment_name}"


def joined_message(deployment: Deployment, workflow_job_id) -> str:
    """What a job of a controller workflow says when its start is answered 409: it joins the deployment in progress.

    Usually a sibling slice started it; but nothing tells this job who did (Retrace has no read endpoint): a job of an
    earlier workflow, or one that died, leaves the same answer.  So the line says what is known, and docs/awx.md
    (Workflows) says what to do when no job of this workflow is running it.
    """
    return (f"Retrace: {describe(deployment)} is already in progress: started by another job, e.g. a sibling slice of "
            f"workflow {workflow_job_id}; this job joins it and sends no end")


def open_deployment(client: DeploymentClient, deployment: Deployment, *, stale_start: str = "recover",
                    warn: Warn | None = None, on_sent: OnSent | None = None) -> CallResult:
    """Send start; with ``stale_start="recover"``, recover a deployment a dead run left in progress.

    A start answered 409 means Retrace already has this deployment in progress.  If a live run on
    this machine holds it (its orphan guard answers), that is a sibling and the 409 is raised as
    :class:`BadTransition`.  Otherwise the run that started it died beyond any guard (container
    killed, machine lost): it is cancelled and started again, once, and ``warn`` gets one line.
    Runs on other machines cannot be seen (docs/lifecycle.md says where that limit lies).

    Raises every :class:`RetraceError` of :meth:`DeploymentClient.start` / ``cancel``.
    """
    warn = warn or (lambda message: None)
    on_sent = on_sent or (lambda result: None)
    try:
        result = client.start(deployment)
    except BadTransition as conflict:
        if stale_start != "recover":
            raise
        holder = live_guard_owner(client.settings, deployment)
        if holder is not None:
            raise BadTransition(
                f"{_sentence(conflict)} A live run on this machine (process {holder}) is deploying it now: it was not cancelled.",
                action=conflict.action, status=conflict.status, attempts=conflict.attempts,
                server_message=conflict.server_message) from None
        warn(f"{describe(deployment)} was left in progress by a run that ended without closing it "
             "(stale_start: recover): cancelling it and starting again")
        try:
            on_sent(client.cancel(deployment))
        except BadTransition:
            pass  # it ended meanwhile (its own guard's cancel landed first): nothing left to cancel
        result = client.start(deployment)
    if result.recovered_from_conflict:
        # 409 on a retry usually means our lost attempt landed; but if a live run on this machine holds
        # the deployment, the 409 was about its start, and this run must not end that deployment.
        holder = live_guard_owner(client.settings, deployment)
        if holder is not None:
            raise BadTransition(
                f"Retrace refused to start {describe(deployment)} (HTTP 409 on attempt {result.attempts}): a live run on "
                f"this machine (process {holder}) is deploying it now, so the 409 is about its start, not this one.",
                action=result.action, status=result.status, attempts=result.attempts, server_message=result.server_message)
    on_sent(result)
    return result


def _sentence(error: RetraceError) -> str:
    text = str(error).rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def start_may_have_landed(error: RetraceError) -> bool:
    """True when a failed start may still have reached Retrace: ANY attempt got no answer (timeouts, lost
    connections) or a gateway's 500/502/504, so it is unknown -- even if later attempts were answered 503.
    Refusals (401, 400, 409), TLS failures and refused connections had an answer or sent nothing.
    """
    if not isinstance(error, ApiUnreachable):
        return False
    if error.may_have_landed is not None:
        return error.may_have_landed
    return (error.last_problem or "").startswith(NO_ANSWER_PROBLEMS)


@contextlib.contextmanager
def tracked_deployment(client: DeploymentClient, deployment: Deployment, lifecycle: Lifecycle = Lifecycle(), *,
                       warn: Warn | None = None, on_sent: OnSent | None = None) -> t.Iterator[Deployment]:
    """Wrap work in start / complete, sending cancel on *any* exception, then re-raising it.

    KeyboardInterrupt and SystemExit cancel too.  While the work runs, an orphan guard
    (``lifecycle.orphan_guard``) cancels the deployment if this process is killed outright.
    A failing cancel never hides the original error: it is reported through ``warn`` and attached
    to the original as a note.  With ``lifecycle.strict`` False (the default) a failing start or
    complete is one ``warn`` line naming what was not recorded, and the work still runs; with
    True a failing start raises before the work runs and a failing complete raises after it.
    ``on_sent`` sees the result of every accepted call (for entry points that print them).
    """
    warn = warn or (lambda message: None)
    on_sent = on_sent or (lambda result: None)
    try:
        open_deployment(client, deployment, stale_start=lifecycle.stale_start, warn=warn, on_sent=on_sent)
        started = True
    except RetraceError as error:
        if start_may_have_landed(error) and lifecycle.orphan_guard:
            # No answer: the start may land after all.  A guard armed and never released cancels it once this
            # process is gone, outside the run's time, instead of leaving it in progress for good.
            arm_orphan_guard(client, deployment, log=warn)
        if lifecycle.strict:
            raise
        warn(f"{describe(deployment)} NOT recorded: start failed: {error}")
        started = False
    guard = arm_orphan_guard(client, deployment, log=warn) if started and lifecycle.orphan_guard else OrphanGuard(None)
    try:
        yield deployment
    except BaseException as original:
        if not started or _cancel_after(client, deployment, original, warn, on_sent):
            guard.release()
        raise
    try:
        if started:
            guard.completing()  # killed mid-call, the guard then sends complete too, never a cancel
            _attempt(lambda: on_sent(client.complete(deployment)), deployment, "complete", lifecycle.strict, warn)
    finally:
        guard.release()


def _attempt(call: t.Callable[[], object], deployment: Deployment, action: str, strict: bool, warn: Warn) -> bool:
    try:
        call()
    except RetraceError as error:
        if strict:
            raise
        warn(f"{describe(deployment)} NOT recorded: {action} failed: {error}")
        return False
    return True


def _cancel_after(client: DeploymentClient, deployment: Deployment, original: BaseException, warn: Warn,
                  on_sent: OnSent) -> bool:
    """Cancel after ``original``; True when the guard may stand down (Retrace answered, one way or the other)."""
    try:
        on_sent(client.cancel(deployment))
    except RetraceError as cancel_error:
        note = f"Retrace cancel also failed: {cancel_error}"
        warn(note)
        original.add_note(note)
        # Unreachable now: the guard tries the cancel once more when this process is gone.
        return not isinstance(cancel_error, ApiUnreachable)
    return True
