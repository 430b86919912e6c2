# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``fab retrace.start`` / ``retrace.complete`` / ``retrace.cancel``: the single calls, for any CI system.

Each is one call of the core's run engine, which says what was sent, what Retrace answered and what it means.
Exit codes: 0 accepted -- or, with ``strict`` off (the default), not recorded after one warning saying why; with
``strict``: 2 a setting is missing or invalid (nothing sent), 1 Retrace refused or could not be reached.

A start records the version it sent for this API URL, app, environment and directory; a complete or cancel from
the same place with no explicit version uses it, even if ``git describe`` says otherwise by then (``v1.4.2`` ->
``v1.4.2-dirty``).  The engine keeps that record (:mod:`.core._ledger`).
"""

from __future__ import annotations

import os

from invoke import Collection, task
from invoke.exceptions import Exit

from .core.deployment import CANCEL, COMPLETE, START
from .deploy import FLAG_HELP, deploy
from .settings import SECTION
from .tracking import Interrupted, new_run, signals_raise, stop_if_it_fails


def _flags(task_locals: dict) -> dict:
    """A task's flag values by option name (invoke needs each flag spelled out in the signature)."""
    return {option: value for option, value in task_locals.items() if option != "c"}


def _send(c, action: str, flags: dict) -> None:
    # No process stays alive between a start and its end: no orphan guard; the directory is where the start's
    # version is recorded for the end.
    place = os.path.realpath(os.getcwd())
    run, target, _resolved = new_run(c.config, flags, owner_pid=None, place=place, ends_a_start=action != START,
                                     calls_are_tasks=True)
    try:
        # Invoke turns a KeyboardInterrupt into exit 1, the code of a refused call: a signal is 128 + N, as everywhere.
        with signals_raise():
            if action == START:
                stop_if_it_fails(run.open(target))
            else:
                stop_if_it_fails(run.close(run.resume(target), succeeded=action == COMPLETE))
    except Interrupted as interruption:
        raise Exit(f"retrace: interrupted by {interruption.signal_name} while the {action} call was in flight: Retrace "
                   f"may have recorded it or not; send the call again to be sure", code=interruption.exit_code) from None


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
    """Tell Retrace the deployment has completed (one API call; with no start before it, a one-shot deployment).

    The deployment is identified by app, environment and version.  With no version given, the one
    retrace.start sent from this directory is used, then `git describe`.
    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    _send(c, COMPLETE, _flags(locals()))


@task(help=FLAG_HELP, auto_shortflags=False)
def cancel(c, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None, api_url=None):
    """Tell Retrace the started deployment was cancelled (one API call).

    Only app, environment and version are sent (Retrace ignores the rest on cancel).  With no
    version given, the one retrace.start sent from this directory is used, then `git describe`.
    The API key is read only from RETRACE_API_KEY (or STACKIFY_API_KEY, FABRIC_RETRACE_API_KEY,
    retrace.api_key in fabric.yaml), never from a flag: flags leak into shell history and process lists.
    """
    _send(c, CANCEL, _flags(locals()))


#: ``ns.add_collection(retrace_fabric.namespace)`` gives any fabfile ``fab retrace.start`` etc.
#: No ``configure()`` of the ``retrace:`` section: every setting, FABRIC_RETRACE_* included, is read by
#: :mod:`.settings` itself, and a declared section would let Invoke fail with its own traceback on a
#: ``retrace:`` that is not a mapping, before this package could name the mistake.
namespace = Collection(SECTION, start, complete, cancel)


def collection() -> Collection:
    """The root collection of this project's fabfile: ``deploy`` plus the ``retrace`` namespace."""
    root = Collection(deploy)
    root.add_collection(namespace)
    return root
