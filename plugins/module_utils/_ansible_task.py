# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  One ``stackify.retrace.deployment`` task on the run engine (:mod:`._run`).

Shared by the action plugin (on the controller) and the module's ``main()`` (run without its action plugin):
each resolves its settings and makes the :class:`~._run.DeploymentRun`; this file sends the call ``state`` asks
for and translates the engine's :class:`~._run.Step` into the task's result, once.
"""

from __future__ import annotations

from . import _run
from ._ansible_transport import AnsibleUrlsTransport
from .deployment import CANCEL, COMPLETE, START

STATE_ACTIONS = {"started": START, "completed": COMPLETE, "cancelled": CANCEL}
#: states in which the deployment is in Retrace as this task left it
RECORDED_STATES = (_run.STARTED, _run.COMPLETED, _run.CANCELLED)
PREFIX = "Retrace: "


class TaskLines:
    """The engine's lines for one task: what happened becomes ``msg`` and is shown (``say``), warnings become the
    task's ``warnings``, an error its failure; ``detail`` and ``debug`` lines are shown at -v / -vvv.  ``say``,
    ``detail`` and ``debug`` are the entry point's display callables."""

    def __init__(self, say=None, detail=None, debug=None):
        self.said = []
        self.warnings = []
        self.errors = []
        self._say = say or (lambda line: None)
        self._detail = detail or (lambda line: None)
        self._debug = debug or (lambda line: None)

    def info(self, line):
        self.said.append(line)
        self._say(PREFIX + line)

    def detail(self, line):
        self._detail(f"Retrace {line}")

    def warning(self, line):
        self.warnings.append(PREFIX + line)

    def error(self, line):
        self.errors.append(line)

    def debug(self, line):
        self._debug(f"Retrace {line}")


def deployment_task(state, resolved, run, *, entry_point, name_fields=None):
    """Start (``started``), or resume and end (``completed`` / ``cancelled``), the deployment ``resolved`` describes;
    the task's result."""
    transport = AnsibleUrlsTransport(resolved["validate_certs"], resolved["ca_path"], resolved["use_proxy"])
    target = run.target(resolved, transport, entry_point=entry_point, name_fields=name_fields)
    if state == "started":
        step = run.open(target)
    else:
        step = run.close(run.resume(target), succeeded=state == "completed")
    return task_result(state, target, step, run.lines, run.dry_run)


def task_result(state, target, step, lines, dry_run):
    """The documented RETURN keys, from what the engine did."""
    result = {"changed": False, "state": state, "tracked": False, "attempts": 0}
    if target.deployment is not None:
        result.update(deployment=target.deployment.payload(STATE_ACTIONS[state]), api_url=target.client.settings.api_url)
    contact = step.call or step.error
    if contact is not None:
        result["attempts"] = contact.attempts
        if contact.status is not None:
            result["status"] = contact.status
    if step.error is not None:
        result["error"] = step.error.kind
    if step.state == _run.JOINED:
        result["joined"] = True
    elif step.state in RECORDED_STATES:
        result["tracked"] = not dry_run
        result["changed"] = bool(dry_run) or step.call is not None
    if lines.warnings:
        result["warnings"] = lines.warnings
    said = lines.errors if step.fails_run else lines.said
    result["msg"] = PREFIX + ("; ".join(said) or step.line or step.state)
    return dict(result, failed=True) if step.fails_run else result
