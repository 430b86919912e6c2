# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``fab retrace.start`` / ``retrace.complete`` / ``retrace.cancel``: the single calls, for any CI system.

Each prints one line saying what was sent and what Retrace answered.  Exit codes: 0 accepted -- or,
with ``strict`` off (the default), refused / unreachable after one warning saying what was NOT
recorded; 1 refused or unreachable with ``strict`` on; 2 a setting is wrong (nothing sent).

A start records the version it sent for this API URL, app, environment and directory
(:mod:`.core._ledger`); a complete or cancel from the same place with no explicit version uses it,
even if ``git describe`` says otherwise by then (``v1.4.2`` -> ``v1.4.2-dirty``).
"""

from __future__ import annotations

import os

from invoke import Collection, task
from invoke.exceptions import Exit

from .core import _ledger as ledger
from .core.deployment import CANCEL, COMPLETE, START
from .core.errors import RetraceError
from .core.settings import DEFAULT_API_URL
from .core.tracking import describe, open_deployment
from .deploy import FLAG_HELP, deploy
from .settings import SECTION, read_settings
from .tracking import (EXIT_FAILED, build_client, describe_call, describe_dry_run, exit_on_retrace_error, is_dry_run,
                       say, warn)


def _flags(task_locals: dict) -> dict:
    """A task's flag values by option name (invoke needs each flag spelled out in the signature)."""
    return {option: value for option, value in task_locals.items() if option != "c"}


def _place(options: dict) -> str | None:
    if not options.get("app_name") or not options.get("environment_name"):
        return None
    return ledger.place_key(options.get("api_url") or DEFAULT_API_URL, options["app_name"], options["environment_name"], os.getcwd())


def _started_here(action: str):
    """For complete / cancel: the version retrace.start sent from this place (None: detect as usual)."""
    def fallback(options: dict) -> str | None:
        place = _place(options)
        try:
            version = ledger.started_version(place) if place and action != START else None
        except ledger.UnsafeStateDirectory as error:
            warn(f"the versions retrace.start recorded are not used: {error}")
            version = None
        if version is not None:
            say(f"retrace.{action}: version {version}, the one retrace.start sent from this directory")
        return version
    return fallback


def _send(c, action: str, flags: dict) -> None:
    with exit_on_retrace_error(f"retrace.{action}"):
        settings = read_settings(c.config)
        client, deployment = build_client(c.config, flags, settings, version_fallback=_started_here(action))
    if is_dry_run(c.config):
        say(describe_dry_run(client, deployment, action))
        return
    place = ledger.place_key(client.settings.api_url, deployment.app_name, deployment.environment_name, os.getcwd())
    try:
        if action == START:
            open_deployment(client, deployment, stale_start=settings.stale_start, warn=warn,
                            on_sent=lambda result: say(describe_call(client, result)))
        else:
            say(describe_call(client, client.send(action, deployment)))
    except RetraceError as error:
        if settings.strict:
            raise Exit(f"retrace.{action}: {error}", code=EXIT_FAILED) from None
        warn(f"{describe(deployment)} NOT recorded: {action} failed: {error} (strict is off: exit status 0)")
        return
    try:
        if action == START:
            ledger.remember_start(place, deployment.version)
        else:
            ledger.forget_start(place)
    except OSError as error:
        warn(f"could not record the started version in {ledger.state_directory()}: {error.strerror or error}")


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
