# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for ``stackify.retrace.deployment_targets``: the deployments of a list of hosts, one per target.

Each host's settings are resolved exactly as a ``stackify.retrace.deployment`` task with ``for_host`` set to that host
resolves them (this plugin is that action plugin, with a list of hosts instead of a state), and the core groups hosts
whose settings describe the same deployment (:meth:`._run.DeploymentRun.target_for`).  Nothing is sent, no connection
is opened, and the API key is never part of the result.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.ansible_release import __version__ as ansible_version
from ansible.plugins.action import ActionBase

from ansible_collections.stackify.retrace.plugins.action.deployment import ActionModule as DeploymentAction
from ansible_collections.stackify.retrace.plugins.action.deployment import _run_pid, host_variables
from ansible_collections.stackify.retrace.plugins.module_utils import _run
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import TARGETS_SPEC
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_task import PREFIX as LINE_PREFIX, TaskLines
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_transport import AnsibleUrlsTransport
from ansible_collections.stackify.retrace.plugins.plugin_utils._ansible_variables import PREFIX, is_template, templated
from ansible_collections.stackify.retrace.plugins.plugin_utils._source import detect_controller_job

#: the action whose tasks these targets are for: its module_defaults apply
DEPLOYMENT_ACTION = "stackify.retrace.deployment"
#: values read the same on every host that has them: a resolution of such ``retrace_*`` values serves them all
_LITERALS = (str, int, float, bool, type(None))


class ActionModule(DeploymentAction):
    TASK_ARGUMENTS = tuple(TARGETS_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = ActionBase.run(self, tmp, task_vars)
        task_vars = task_vars or {}
        checked = ArgumentSpecValidator(TARGETS_SPEC).validate(dict(self._task.args))
        if checked.error_messages:
            return dict(result, failed=True, error="invalid_input", msg="; ".join(checked.error_messages))
        hosts = list(dict.fromkeys(checked.validated_parameters["hosts"]))
        job = detect_controller_job(os.environ, task_vars)
        run_pid = _run_pid()
        place = _run.process_place(run_pid) if run_pid is not None else None
        try:
            resolutions = self._resolutions(hosts, task_vars, place, job)
        except AnsibleError as error:
            return dict(result, failed=True, error="invalid_input", msg=str(error))
        lines = TaskLines()
        if not hosts:
            return dict(result, changed=False, targets=[], unresolved=[], msg="no hosts")
        policy = _run.policy_of(resolutions[hosts[0]])  # strict as the first host reads it, as the start task would
        run = _run.DeploymentRun(policy, lines, place=place, calls_are_tasks=True)
        first = {}
        for host in hosts:
            resolved = resolutions[host]
            transport = AnsibleUrlsTransport(resolved["validate_certs"], resolved["ca_path"], resolved["use_proxy"])
            target = run.target_for(host, resolved, transport, entry_point=f"ansible-module; ansible-core {ansible_version}",
                                    name_fields=job.name_fields() if job else None)
            first.setdefault(id(target), resolved)
        # What resolving said (an unknown setting, where the version came from) is the start task's to say.
        del lines.said[:], lines.warnings[:], lines.errors[:]
        if len(run.targets) == 1:
            # One deployment, recordable or not: the start task reports it, as it does for a single target.
            return dict(result, changed=False, targets=[_listed(run.targets[0], first)], unresolved=[], msg=_summary(run.targets, []))
        listed = [_listed(target, first) for target in run.targets if target.recordable]
        unresolved, stops = [], False
        for target in run.targets:
            if not target.recordable:
                step = run.open(target)  # sends nothing: says what is NOT recorded, naming the hosts
                stops = stops or step.fails_run
                unresolved.append({"hosts": list(target.hosts), "problem": step.line})
        result.update(changed=False, targets=listed, unresolved=unresolved)
        if lines.warnings:
            result["warnings"] = lines.warnings
        if stops:
            return dict(result, failed=True, error="invalid_input", msg=LINE_PREFIX + "; ".join(lines.errors))
        return dict(result, msg=_summary(run.targets, unresolved))

    def _resolutions(self, hosts, task_vars, place, job):
        """Each host's resolved settings; hosts whose ``retrace_*`` values are all literals share one resolution."""
        by_values, resolutions, detect_memo = {}, {}, {}
        for host in hosts:
            variables = task_vars if host == task_vars.get("inventory_hostname") else host_variables(self._task, host)
            own = {name: value for name, value in variables.items() if name.startswith(PREFIX)}
            key = None
            if all(isinstance(value, _LITERALS) and not is_template(value) for value in own.values()):
                key = tuple(sorted((name, repr(value)) for name, value in own.items()))
            if key is None or key not in by_values:
                templar = self._templar.copy_with_new_env(available_variables=variables)
                resolved = self._resolve(task_vars, place, job, variables, templar, detect_memo)
                if key is not None:
                    by_values[key] = resolved
            resolutions[host] = resolved if key is None else by_values[key]
        return resolutions

    def _arguments(self):
        """The module_defaults a ``stackify.retrace.deployment`` task gets here, templated as Ansible templates a task's
        arguments; this task's own arguments are no settings."""
        written = self._written_defaults(DEPLOYMENT_ACTION)
        arguments = {name: templated(self._templar, value) for name, value in written.items()}
        return arguments, written, set(arguments)


def _listed(target, first):
    """One target as the task returns it: what names the deployment, its hosts, and the host to read its settings from."""
    options = first[id(target)].as_dict()
    deployment = target.deployment
    fields = ({"app_name": deployment.app_name, "environment_name": deployment.environment_name, "version": deployment.version}
              if deployment is not None else {name: options.get(name) for name in ("app_name", "environment_name", "version")})
    return dict(fields, label=target.label, hosts=list(target.hosts), host=target.hosts[0])


def _summary(targets, unresolved):
    recordable = [target.label for target in targets if target.recordable]
    text = f"{len(recordable)} deployment(s): " + "; ".join(recordable) if recordable else "no deployment can be recorded"
    if unresolved:
        text += f"; NOT recorded for {_run.hosts_text([host for entry in unresolved for host in entry['hosts']])}"
    return text
