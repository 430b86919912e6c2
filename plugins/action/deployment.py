# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ``stackify.retrace.deployment``: the whole task runs on the controller.

The API key never travels to a managed host, the host needs no Python (network devices and
Windows hosts work too), and no connection is opened at all: ~35 ms per task instead of the
~0.4-0.7 s of a module shipped to a host.  ``delegate_to``, ``run_once``, loops and tags keep
their usual meaning because they are handled by Ansible before this plugin runs.
"""

from __future__ import annotations

import multiprocessing
import os

from ansible import context
from ansible.module_utils.ansible_release import __version__ as ansible_version
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import ARGUMENT_SPEC, check_text_types
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_task import run_deployment_task
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
from ansible_collections.stackify.retrace.plugins.plugin_utils._source import detect_controller_job

display = Display()


class ActionModule(ActionBase):
    _requires_connection = False
    _supports_check_mode = True
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        try:
            check_text_types(self._task.args)
        except InvalidInput as error:
            return dict(result, failed=True, msg=str(error), error=error.kind)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, error="invalid_input",
                        msg="Invalid options for stackify.retrace.deployment: " + _describe(validation.errors))
        params = validation.validated_parameters
        job = detect_controller_job(os.environ, task_vars or {})
        outcome = run_deployment_task(
            _with_job_context(params, job),
            check_mode=self._task.check_mode,
            entry_point=f"ansible-module; ansible-core {ansible_version}",
            log=lambda message: display.vv(message, host=self._host_name(task_vars)),
            hosts_in_task=self._hosts_in_task(task_vars or {}),
            run_pid=_run_pid(),
            name_fields=job.name_fields() if job is not None else None,
            workflow_job_id=job.workflow_job_id if job is not None else None,
            job_id=job.job_id if job is not None else None,
            # What the task's arguments set (the role passes retrace_api_url so): the rest came from the environment.
            given={name for name, value in self._task.args.items() if value is not None and value != ""},
        )
        return dict(result, **outcome)

    def _hosts_in_task(self, task_vars):
        """How many hosts run this very task now: one with run_once, else the current batch."""
        if self._task.run_once:
            return 1
        return len(task_vars.get("ansible_play_batch") or ()) or 1

    @staticmethod
    def _host_name(task_vars):
        return (task_vars or {}).get("inventory_hostname")


def _with_job_context(params, job):
    """``params`` with version, branch, commit and uri the task left unset taken from the controller job, if any.

    The same values the callback takes from the same job (plugin_utils/_source.py), so that a module task,
    the role and the callback record one deployment alike; only what the controller says is used here:
    the module does not ask git or CI systems.
    """
    if job is None:
        return params
    filled = dict(params)
    for option, value in (("version", job.revision), ("branch", job.branch), ("commit", job.revision), ("uri", job.url)):
        if not filled.get(option) and value:
            filled[option] = value
    return filled


def _run_pid():
    """The process of the whole run, which the orphan guard watches; None for an ad-hoc command.

    An ad-hoc ``ansible -m stackify.retrace.deployment -a state=started`` is a single call, like
    ``fab retrace.start``: the deployment is meant to outlive the command, so no guard is armed.
    Action plugins run in a worker forked from ``ansible-playbook`` (ansible-core 2.18-2.19,
    ``ansible.utils.multiprocessing``, fork context), so the run is the worker's parent; a strategy
    that runs tasks in the main process has no parent process of its own there.
    """
    if context.CLIARGS.get("module_name"):
        return None
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else os.getpid()


def _describe(errors):
    # The validator's text for unknown options starts with their names alone ("colour. Supported...").
    return "; ".join(f"unsupported parameters {error.msg}" if isinstance(error, UnsupportedError) else error.msg
                     for error in errors.errors)
