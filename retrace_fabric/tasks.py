# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``fab retrace.start`` / ``retrace.complete`` / ``retrace.cancel``: the single calls, for any CI system.

Each prints one line saying what was sent and what Retrace answered, and exits non-zero
(1: refused or unreachable, 2: a setting is wrong, nothing sent) otherwise.
"""

from __future__ import annotations

from invoke import Collection, task

from .core.deployment import CANCEL, COMPLETE, START
from .deploy import FLAG_HELP, deploy
from .settings import CONFIG_DEFAULTS, SECTION
from .tracking import build_client, describe_call, exit_on_retrace_error, say


def _flags(task_locals: dict) -> dict:
    """A task's flag values by option name (invoke needs each flag spelled out in the signature)."""
    return {option: value for option, value in task_locals.items() if option != "c"}


def _send(c, action: str, flags: dict) -> None:
    with exit_on_retrace_error(f"retrace.{action}"):
        client, deployment = build_client(c.config, flags)
        say(describe_call(client, client.send(action, deployment)))


@task(help=FLAG_HELP, auto_shortflags=False)
def start(c, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None, api_url=None):
    """Tell Retrace a deployment has started (one API call).

    Settings come from the flags, FABRIC_RETRACE_*, RETRACE_*, then the retrace: section of
    fabric.yaml; version, branch, commit and uri fall back to git and the CI system.
    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    _send(c, START, _flags(locals()))


@task(help=FLAG_HELP, auto_shortflags=False)
def complete(c, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None, api_url=None):
    """Tell Retrace the started deployment has completed (one API call).

    The deployment is identified by app, environment and version: use the same ones as for start.
    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    _send(c, COMPLETE, _flags(locals()))


@task(help=FLAG_HELP, auto_shortflags=False)
def cancel(c, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None, api_url=None):
    """Tell Retrace the started deployment was cancelled (one API call).

    Only app, environment and version are sent (Retrace ignores the rest on cancel).
    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    _send(c, CANCEL, _flags(locals()))


#: ``ns.add_collection(retrace_fabric.namespace)`` gives any fabfile ``fab retrace.start`` etc.
namespace = Collection(SECTION, start, complete, cancel)
namespace.configure({SECTION: CONFIG_DEFAULTS})


def collection() -> Collection:
    """The root collection of this project's fabfile: ``deploy`` plus the ``retrace`` namespace."""
    root = Collection(deploy)
    root.add_collection(namespace)
    root.configure({SECTION: CONFIG_DEFAULTS})
    return root
