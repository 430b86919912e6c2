# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ``stackify.retrace.deployment`` task: validated parameters in, an Ansible result dict out.

Shared by the action plugin (the normal path, on the controller) and the module's ``main()``
(used only when the module is run without its action plugin).  Every core error is turned
into one ``msg`` here, and nowhere else.
"""

from __future__ import annotations

import os

from ._ansible_options import STATE_ACTIONS, core_options, lifecycle
from ._ansible_transport import AnsibleUrlsTransport
from .client import create_client
from .deployment import COMPLETE, START
from .errors import ApiUnreachable, BadTransition, InvalidInput, RetraceError
from ._guard import (arm_orphan_guard, forget_join, joined_in_job, live_guard_owner, orphan_guard_of, release_orphan_guard,
                    remember_join)
from .settings import check_key_destination, deployment_name, from_environment
from .tracking import describe, joined_message, open_deployment, start_may_have_landed


def run_deployment_task(params, *, check_mode, entry_point, log=None, transport=None, hosts_in_task=1, run_pid=None,
                        name_fields=None, workflow_job_id=None, job_id=None, given=None):
    """Send (or, in check mode, describe) the call ``params['state']`` asks for.

    ``hosts_in_task`` is how many hosts run this task at once: with several, a 409 on start
    most likely means each of them tried to start the same deployment.  ``run_pid`` is the
    process of the whole run (``ansible-playbook``): a ``started`` task arms the orphan guard on
    it, a ``completed`` / ``cancelled`` task releases that guard; None (the module run on a host)
    means no guard.

    With ``strict`` false (the default) a call Retrace refuses or cannot receive returns an
    ``ok`` result with ``tracked: false`` and one warning; with ``strict`` true the task fails.
    Invalid options always fail the task, before anything is sent.

    ``name_fields`` are the controller job's values for ``name_format`` placeholders (user,
    job_template...).  ``workflow_job_id`` names the controller workflow this job runs in (job slices
    are one): a 409 on start is then a sibling job's start, perhaps on another machine, so it is never
    recovered; the task returns ``ok`` with ``tracked: false`` and ``joined: true``, and no warning.  The
    job (``job_id``, the controller's job id) then remembers the join, and its later ``completed`` /
    ``cancelled`` tasks for that deployment send nothing (``joined: true`` again): the job that started it ends
    it, as with the callback.  Else one slice's rescue would cancel, or its success complete, a live sibling's
    deployment.

    ``given`` names the options the task's arguments set (the rest came from the environment or the defaults):
    a key from the environment is only sent to the URL from the environment (``settings.check_key_destination``).
    None (the module run on a host, where the raw arguments are gone): a value equal to its environment
    variable's counts as taken from it.
    """
    state = params["state"]
    action = STATE_ACTIONS[state]
    result = {"changed": False, "state": state, "tracked": False}
    transport = transport or AnsibleUrlsTransport(params.get("validate_certs", True), params.get("ca_path"),
                                                  params.get("use_proxy", True))
    warnings = []
    try:
        settings = lifecycle(params)
        _check_key_destination(params, given)
        params = dict(params, name=deployment_name(params, name_fields))
        client, deployment = create_client(core_options(params), transport, entry_point=entry_point, log=log)
    except InvalidInput as error:
        return dict(result, failed=True, msg=str(error), error=error.kind, attempts=0)
    result.update(api_url=client.settings.api_url, deployment=deployment.payload(action), attempts=0)
    job_key = f"{workflow_job_id}-{job_id}" if workflow_job_id and job_id else None
    if job_key and action != START and joined_in_job(client.settings, deployment, job_key):
        return dict(result, joined=True, msg=_joined_end_message(action, deployment, workflow_job_id))
    if check_mode:
        return dict(result, changed=True, msg=f"Would {_describe(action, deployment)} (check mode: nothing sent).")
    try:
        if action == START:
            # Several hosts in one task: a 409 is a sibling host's start, never a stale one to cancel.
            # In a controller workflow (job slices), a 409 is a sibling job's start: never a stale one either.
            stale_start = settings.stale_start if hosts_in_task == 1 and not workflow_job_id else "fail"
            call = open_deployment(client, deployment, stale_start=stale_start,
                                   warn=lambda message: warnings.append(f"Retrace: {message}"))
        else:
            if run_pid is not None and action == COMPLETE:
                orphan_guard_of(client.settings, deployment, run_pid).completing()  # never a cancel after this
            call = client.send(action, deployment)
    except RetraceError as error:
        # Joined: another job's start.  Not when this task runs for several hosts (the 409 is a sibling host's
        # start: the run_once hint below), nor when this very run holds the deployment (its own earlier start).
        if (workflow_job_id and action == START and isinstance(error, BadTransition) and hosts_in_task == 1
                and (run_pid is None or live_guard_owner(client.settings, deployment) != run_pid)):
            if job_key:
                remember_join(client.settings, deployment, job_key)
            return dict(result, joined=True, msg=joined_message(deployment, workflow_job_id) + ".")
        if run_pid is not None and action == START:
            # A refused start armed nothing, and must not release a guard a sibling start of this run armed.
            # No answer: the start may land after all; the guard cancels it when the run ends, unless a
            # completed / cancelled task of the run closes it first.
            if settings.orphan_guard and start_may_have_landed(error):
                arm_orphan_guard(client, deployment, owner_pid=run_pid, log=log)
        elif run_pid is not None and not isinstance(error, ApiUnreachable):
            # Retrace answered the end: nothing left for the guard to do.  Unreachable: it tries again at the end of the run.
            release_orphan_guard(client.settings, deployment, run_pid)
        message = _failure_message(error, hosts_in_task)
        failure = dict(result, msg=message, error=error.kind, **_contact_details(error))
        if settings.strict:
            return dict(failure, failed=True, warnings=warnings)
        return dict(failure, warnings=warnings + [f"Retrace: {describe(deployment)} NOT recorded: {action} failed: {message} "
                                                  "(strict: false, so the play goes on)"])
    if action == START and job_key:
        forget_join(client.settings, deployment, job_key)  # started by this job after all: its ends are its own
    if run_pid is not None:
        if action == START and settings.orphan_guard:
            arm_orphan_guard(client, deployment, owner_pid=run_pid, log=log)
        elif action != START:
            release_orphan_guard(client.settings, deployment, run_pid)
    return dict(result, changed=True, tracked=True, status=call.status, attempts=call.attempts, warnings=warnings,
                msg=f"Retrace accepted the request to {_describe(action, deployment)} (HTTP {call.status}, "
                    f"{call.attempts} attempt{'s' if call.attempts > 1 else ''}).")


def _check_key_destination(params, given):
    environment = from_environment(os.environ)
    if given is None:
        given = {name for name in ("api_key", "api_key_file", "api_url")
                 if params.get(name) is not None and params.get(name) != environment.get(name)}
    key_set = any(params.get(name) for name in ("api_key", "api_key_file"))
    check_key_destination(params.get("api_url"), key_from_environment=key_set and not {"api_key", "api_key_file"} & set(given),
                          url_from_environment="api_url" not in given, environ=os.environ,
                          api_key_file=params.get("api_key_file"))


def _joined_end_message(action, deployment, workflow_job_id):
    """The callback's words for a joined job's end (plugins/callback/deployment.py), for a module task."""
    outcome = "succeeded" if action == COMPLETE else "failed"
    return (f"Retrace: this job's part of {describe(deployment)} {outcome}; this job joined it (started by another job, "
            f"e.g. a sibling slice of workflow {workflow_job_id}), so the job that started it ends it: nothing sent.")


def _describe(action, deployment):
    return f"{action} deployment {deployment.version} of {deployment.app_name} in {deployment.environment_name}"


def _contact_details(error):
    """Status and attempts when Retrace was contacted; an invalid option never reached it."""
    details = {"attempts": error.attempts}
    if error.status is not None:
        details["status"] = error.status
    return details


def _failure_message(error, hosts_in_task):
    message = str(error)
    if isinstance(error, BadTransition) and error.action == START and hosts_in_task > 1:
        message = message if message.endswith(".") else message + "."
        message += (f" This task ran for {hosts_in_task} hosts, and each sent its own start: add 'run_once: true' "
                    "to the task, or use the stackify.retrace.tracked_deployment role.")
    return message
