# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ``stackify.retrace.deployment``: the whole task runs on the controller.

The API key never travels to a managed host, the host needs no Python (network devices and
Windows hosts work too), and no connection is opened at all: ~35 ms per task instead of the
~0.4-0.7 s of a module shipped to a host.  ``delegate_to``, ``run_once``, loops and tags keep
their usual meaning because they are handled by Ansible before this plugin runs.

Settings, highest first: the task's arguments, ``retrace_*`` variables (play, inventory, role and extra vars),
``module_defaults``, ``RETRACE_*`` environment variables, the defaults -- the precedence of the role (whose tasks
inherit module_defaults too) and the callback.  The core checks every value, and decides what a problem does
(:mod:`._resolve`, :mod:`._run`); Ansible checks ``state``.
"""

from __future__ import annotations

import multiprocessing
import os

from ansible import context
from ansible.errors import AnsibleError
from ansible.module_utils.ansible_release import __version__ as ansible_version
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.mod_args import ModuleArgsParser
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import load_extra_vars

from ansible_collections.stackify.retrace.plugins.module_utils import _resolve, _run
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import KNOWN_VARIABLES, MODULE_SETTINGS, TASK_SPEC
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_task import TaskLines, deployment_task
from ansible_collections.stackify.retrace.plugins.plugin_utils._ansible_variables import is_template, variable_sources
from ansible_collections.stackify.retrace.plugins.plugin_utils._source import detect, detect_controller_job

display = Display()
ROLE = "stackify.retrace.tracked_deployment"


class ActionModule(ActionBase):
    _requires_connection = False
    _supports_check_mode = True
    TRANSFERS_FILES = False
    #: the task's arguments that are not settings
    TASK_ARGUMENTS = tuple(TASK_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        # A bad state or for_host is a bug in the playbook, not a tracking problem: it fails the task, strict or not.
        checked = ArgumentSpecValidator(TASK_SPEC).validate({name: self._task.args[name] for name in TASK_SPEC if name in self._task.args})
        if checked.error_messages:
            return dict(result, failed=True, error="invalid_input", msg="; ".join(checked.error_messages))
        for_host = self._task.args.get("for_host")
        variables, templar = task_vars, self._templar
        if for_host and for_host != task_vars.get("inventory_hostname"):
            try:
                variables = host_variables(self._task, for_host)
            except AnsibleError as error:
                return dict(result, failed=True, error="invalid_input", msg=f"for_host: {error}")
            templar = self._templar.copy_with_new_env(available_variables=variables)
        job = detect_controller_job(os.environ, task_vars)
        run_pid = _run_pid()
        place = _run.process_place(run_pid) if run_pid is not None else None
        resolved = self._resolve(task_vars, place, job, variables, templar)
        host = task_vars.get("inventory_hostname")
        # What happened goes to stderr, as the callback's lines do: a machine-readable stdout callback stays parseable.
        # A no_log task shows none of it.
        shown = {} if self._task.no_log else dict(say=lambda line: display.display(line, stderr=True),
                                                  detail=lambda line: display.v(line, host=host),
                                                  debug=lambda line: display.vvv(line, host=host))
        lines = TaskLines(**shown)
        run = _run.DeploymentRun(_run.policy_of(resolved), lines, owner_pid=run_pid, hosts_in_task=self._hosts_in_task(task_vars),
                                 workflow_job_id=job.workflow_job_id if job else None, job_id=job.job_id if job else None,
                                 place=place, calls_are_tasks=True, dry_run="check mode" if self._task.check_mode else None)
        return dict(result, **deployment_task(self._task.args["state"], resolved, run,
                                              entry_point=f"ansible-module; ansible-core {ansible_version}",
                                              name_fields=job.name_fields() if job else None))

    def _resolve(self, task_vars, place, job, host_vars, templar, detect_memo=None):
        """Every setting with its source: the task's arguments, ``retrace_*`` variables (``host_vars``, templated with
        ``templar``: the task's host's, or the host ``for_host`` names), module_defaults, ``RETRACE_*``, then the version
        this run started (end tasks) and detection (controller job, CI, git of the playbook's directory).
        ``detect_memo``: a dict in which detection is kept for the next resolution with the same values."""
        extra_vars = load_extra_vars(self._loader)
        variables = variable_sources(host_vars, extra_vars, templar, KNOWN_VARIABLES)
        arguments, written, defaulted = self._arguments()
        # An argument the playbook writes literally is the project's; one written as a template is a variable's value.
        templated = {name for name in arguments if is_template(written.get(name, "{{"))}
        # The role's own start and end tasks take no settings but the state: they are not a way to set one.
        settable = () if task_vars.get("ansible_role_name") == ROLE else None
        own = _pick(arguments, defaulted, False)
        defaults = _pick(arguments, defaulted, True)
        sources = [
            _resolve.Source("the task's arguments", _pick(own, templated, False), _resolve.PROJECT, "the task's {option} argument",
                            settable=settable),
            _resolve.Source("a task argument given by variables", _pick(own, templated, True), _resolve.VARIABLES),
            *variables.sources,
            # Defaults: below every retrace_* variable (the role's tasks inherit them too), above the environment.
            _resolve.Source("module_defaults", _pick(defaults, templated, False), _resolve.PROJECT),
            _resolve.Source("module_defaults given by variables", _pick(defaults, templated, True), _resolve.VARIABLES),
            _resolve.environment_source(os.environ, MODULE_SETTINGS),
        ]
        unknown = _resolve.unknown_settings(arguments, "the task's arguments", MODULE_SETTINGS) + variables.unknown
        fallbacks = [_run.started_from(place, "the version this run started")] if place is not None else []

        def detected(values):
            key = tuple(sorted((name, repr(value)) for name, value in values.items()))
            found = detect_memo.get(key) if detect_memo is not None else None
            if found is None:
                found = detect(os.environ, task_vars.get("playbook_dir"), values, job)
                if detect_memo is not None:
                    detect_memo[key] = found
            return _resolve.detected_source(found.values, found.notes, found.provider)
        return _resolve.resolve(sources, MODULE_SETTINGS, fallbacks=fallbacks + [detected], unknown=unknown, environ=os.environ,
                                problems=variables.problems)

    def _arguments(self):
        """The task's settings as Ansible gives them (module_defaults merged in), the same as the playbook writes them
        (templates unrendered; module_defaults below the task's own), and the names only module_defaults gave."""
        arguments = {name: value for name, value in self._task.args.items() if name not in self.TASK_ARGUMENTS}
        written = self._written_arguments()
        # Ansible has merged the module_defaults that apply to this task into its arguments; the task's own win.
        defaulted = {name for name in arguments if name not in written}
        return arguments, {**self._written_defaults(self._task.resolved_action), **written}, defaulted

    def _written_arguments(self):
        """The task's arguments as the playbook writes them, templates unrendered; {} when they cannot be read."""
        try:
            return ModuleArgsParser(self._task.get_ds(), self._task.collections).parse(skip_action_validation=True)[1]
        except AnsibleError:
            return {}

    def _written_defaults(self, action):
        """The module_defaults that apply to a task of ``action`` in this task's place, as the playbook writes them, merged as Ansible merges them
        (its groups first, then the action's own entry).  A group or entry written as one template gives arguments
        this cannot see: they, and every earlier one they may replace, are left out (read as templated).  ansible-core's
        own merge (``executor.module_common._get_action_arg_defaults``) is private and renders whole-entry templates,
        so it cannot tell what the playbook wrote from what a variable gave."""
        defaults = self._task.module_defaults
        play = getattr(self._task._parent, "_play", None)  # pylint: disable=protected-access
        action_groups = getattr(play, "_action_groups", None)
        groups = action_groups.get(action, []) if isinstance(action_groups, dict) else []
        merged = {}
        for entry in defaults if isinstance(defaults, list) else ():
            merged.update(entry if isinstance(entry, dict) else {})
        written = {}
        for key in [key for key in merged if key.startswith("group/") and key[len("group/"):] in groups] + [action]:
            value = merged.get(key)
            if isinstance(value, dict):
                written.update(value)
            elif value is not None:
                written = {}
        return written

    def _hosts_in_task(self, task_vars):
        """How many hosts run this very task now: one with run_once, else the current batch."""
        if self._task.run_once:
            return 1
        return len(task_vars.get("ansible_play_batch") or ()) or 1


def host_variables(task, host_name):
    """The variables ``task`` sees on the inventory host ``host_name``, as Ansible gives a task its ``task_vars``
    (inventory, facts, play, role and extra vars); AnsibleError when the inventory has no such host."""
    manager = task.get_variable_manager()
    host = manager._inventory.get_host(host_name)  # pylint: disable=protected-access
    if host is None:
        raise AnsibleError(f"no host {host_name!r} in the inventory")
    return manager.get_vars(play=task.get_play(), host=host, task=task)


def _pick(values, names, inside):
    return {name: value for name, value in values.items() if (name in names) is inside}


def _run_pid():
    """The process of the whole run, which the orphan guard watches; None for an ad-hoc command.

    An ad-hoc ``ansible -m stackify.retrace.deployment -a state=started`` is a single call, like
    ``fab retrace.start``: the deployment is meant to outlive the command, so no guard is armed.
    Action plugins run in a worker forked from ``ansible-playbook`` (ansible-core 2.18-2.21,
    ``ansible.utils.multiprocessing``, fork context), so the run is the worker's parent; a strategy
    that runs tasks in the main process has no parent process of its own there.
    """
    if context.CLIARGS.get("module_name"):
        return None
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else os.getpid()
