#!/usr/bin/python
# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment
short_description: Record the start, completion or cancellation of a deployment in Stackify Retrace
version_added: 1.0.0
description:
  - Sends one call of the Retrace Deployment Tracking API
    (C(POST /api/v1/deployments/start), C(complete) or C(cancel)), so Retrace can mark the
    deployment on its performance graphs.
  - Runs entirely on the Ansible controller, through an action plugin. The API key is never
    copied to a managed host, no connection to the host is opened, and the host needs no Python,
    so the task works in plays against Linux, Windows or network devices alike.
    O(api_key) and the other environment fallbacks read the controller's environment.
  - Sending the start from several hosts makes Retrace answer HTTP 409 for all but the first, so
    set C(run_once) to V(true) for start, complete and cancel, or use the C(stackify.retrace.tracked_deployment)
    role, which sends exactly one start and one complete or cancel around your deployment tasks.
  - One task records one deployment (one application, environment and version). A play deploying several
    applications or environments sends one call per deployment, with a C(loop); O(for_host) makes each call read the
    C(retrace_*) variables of a host of that deployment. The C(stackify.retrace.tracked_deployment) role does this
    for you, listing the deployments with P(stackify.retrace.deployment_targets#module).
  - Under C(serial), a C(run_once) start task runs once per batch; the later batches find the deployment this run
    started still in progress and send nothing again (RV(tracked=true), no warning), so a start in a C(serial)
    play and an end in a later play record one deployment.
  - "Settings, highest first: the task's arguments; C(retrace_*) variables wherever you keep them (C(group_vars),
    C(host_vars), play vars, role vars, extra vars: C(retrace_version), C(retrace_api_key)...); C(module_defaults)
    for the module or its group C(group/stackify.retrace.retrace); the controller's C(RETRACE_*) environment
    variables; the defaults. The same order as the C(stackify.retrace.tracked_deployment) role (whose tasks inherit
    C(module_defaults) too) and the callback, so one set of C(retrace_*) variables serves all of them."
  - Every setting is checked before anything is sent. Ansible itself checks O(state) only (a bad O(state) is a
    bug in the playbook and fails the task); the others are checked by the collection, so that a bad value is
    treated like every other tracking problem.
  - "Tracking never takes a deployment down unless you ask for it: with O(strict=false) (the default) a setting
    that is missing or invalid (no API key, no version), or a call that Retrace refuses or cannot receive, leaves
    the task C(ok) with RV(tracked=false) and one warning saying what was NOT recorded and how to fix it, so the
    play goes on deploying. Set O(strict=true) to fail the task instead. The default is V(false) because a
    failing task stops the play, which would stop a deployment because of its monitoring."
  - An argument or C(retrace_*) variable that is not a setting (a typo such as C(stirct)) is named in one warning,
    with the setting it is close to, and ignored; it never fails the task.
  - "After an accepted V(started), an orphan guard (O(orphan_guard)) watches the C(ansible-playbook) process. If the
    run ends (killed by AWX or ansible-runner, Ctrl-C, SIGTERM, SIGHUP, a crash, or simply the end of the playbook)
    before a V(completed) or V(cancelled) task of the same run, it cancels the deployment. To close the deployment
    in a later, separate run, set O(orphan_guard=false) on the start. An ad-hoc C(ansible -m stackify.retrace.deployment
    -a state=started) is a single call whose deployment outlives the command, so it arms no guard."
  - "O(version), O(branch), O(commit) and O(uri) left unset are found as the callback finds them. V(completed) and
    V(cancelled) first reuse the version the V(started) task of the same run sent (so a checkout that became
    C(-dirty) meanwhile still names the same deployment). Then, in an AWX / Automation Platform job (recognised by
    the C(awx_job_id) extra var, or E(JOB_ID) with E(AWX_HOST)), the job: O(version) and O(commit) from the project
    revision, O(branch) from the project's or the job's branch, O(uri) the job's page in the controller
    (E(AWX_HOST)); then a tag the CI system built (GitHub Actions, GitLab CI, Jenkins...); then
    C(git describe --tags --always --dirty) of the playbook's directory; then the AWX job's id. When none gives a
    version, nothing is recorded and the warning says how to set one; when git refuses the checkout (\"dubious
    ownership\"), it gives the C(safe.directory) command. O(name_format) can name the launching user and the job
    template."
author:
  - Stackify Retrace collection maintainers (@stackify)
extends_documentation_fragment:
  - stackify.retrace.api
  - stackify.retrace.api.deployment
  - stackify.retrace.api.lifecycle
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
options:
  state:
    description:
      - V(started) opens the deployment, V(completed) closes it as successful, V(cancelled)
        closes it as failed or abandoned.
      - V(completed) with no V(started) before it records a one-shot deployment, as Stackify's own Jenkins
        plugin does (it only ever sends complete); give O(name), O(branch), O(commit) and O(uri) then, since
        that call is all Retrace learns about it.
      - Retrace refuses (HTTP 409) to cancel a deployment that is not in progress, and to start one that
        already is (see O(stale_start) for a start left in progress by a run that died).
    type: str
    required: true
    choices: [started, completed, cancelled]
  for_host:
    description:
      - The inventory host whose C(retrace_*) variables (C(host_vars), its groups' C(group_vars), facts) the task reads,
        instead of those of the host it runs for. With C(run_once) and a C(loop), one task records the deployment of
        each group of hosts, for example the targets P(stackify.retrace.deployment_targets#module) lists.
      - The task's own arguments, C(module_defaults) and the controller's environment apply as usual.
      - A name that is not in the inventory fails the task.
      - Run without its action plugin, the module reads no variables, and ignores this.
    type: str
    version_added: 2.1.0
attributes:
  check_mode:
    support: full
    details: Sends nothing and returns the request it would have sent.
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Runs on the controller; the managed host is never contacted, whatever its platform.
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  become:
    support: none
  connection:
    support: none
    details: No connection to the managed host is opened.
  delegation:
    support: full
    details: C(delegate_to) is accepted (its host's variables are used); the call is made from the controller in any case.
notes:
  - Retrace answers HTTP 202 when it has queued a call; the deployment can take up to five
    minutes to appear in Retrace.
  - For tracking a whole playbook run, from the first task to the last, use the
    P(stackify.retrace.deployment#callback) callback plugin instead.
  - Run without its action plugin (the module file copied on its own into a C(library/) folder), the module reads
    its arguments and the environment of the host it runs on, detects nothing, and Ansible checks the arguments'
    types itself.
seealso:
  - name: The Retrace Deployment Tracking API
    description: What Stackify documents, and the contract this collection implements where it is silent.
    link: https://github.com/stackify/ansible-collection-retrace/blob/main/docs/retrace-api.md
"""

EXAMPLES = r"""
# Start, deploy, complete: run_once, because the deployment is one event for all hosts.
- name: Tell Retrace the deployment starts
  stackify.retrace.deployment:
    state: started
    api_key: "{{ vault_retrace_api_key }}"   # from an Ansible Vault file
    app_name: Shop
    environment_name: Production
    version: "{{ app_version }}"
    branch: main
    commit: "{{ app_commit }}"
    uri: "https://ci.example.com/builds/{{ build_id }}"
  run_once: true

- name: Tell Retrace the deployment is complete
  stackify.retrace.deployment:
    state: completed
    api_key: "{{ vault_retrace_api_key }}"
    app_name: Shop
    environment_name: Production
    version: "{{ app_version }}"
  run_once: true

# Cancel explicitly, for example after a manual abort.
- name: Cancel the deployment in Retrace
  stackify.retrace.deployment:
    state: cancelled
    app_name: Shop
    environment_name: Production
    version: "2.4.1"
  run_once: true

# Key, URL and names from the controller's environment
# (RETRACE_API_KEY, RETRACE_APP_NAME, RETRACE_ENVIRONMENT_NAME, RETRACE_VERSION...).
- name: Start with settings from the environment
  stackify.retrace.deployment:
    state: started
  run_once: true

# Settings kept once for the module, the role and the callback, for example in group_vars/production.yml:
#   retrace_app_name: Shop
#   retrace_environment_name: Production
# The tasks then need only the state; the version is git describe of the playbook's directory,
# the AWX job's revision or a CI tag, unless given (-e retrace_version=2.4.1).
- name: Start with settings from retrace_* variables
  stackify.retrace.deployment:
    state: started
  run_once: true

# In a play for ONE host: complete on success, cancel when a step fails; the play still fails.
# For several hosts use the stackify.retrace.tracked_deployment role: per-host rescue
# would send one cancel per failed host and a complete for the others.
- name: Deploy with tracking
  block:
    - name: Start
      stackify.retrace.deployment:
        state: started
        app_name: Shop
        environment_name: Staging
        version: "{{ app_version }}"
    - name: Deploy
      ansible.builtin.include_tasks: deploy-steps.yml
    - name: Complete
      stackify.retrace.deployment:
        state: completed
        app_name: Shop
        environment_name: Staging
        version: "{{ app_version }}"
  rescue:
    - name: Cancel
      stackify.retrace.deployment:
        state: cancelled
        app_name: Shop
        environment_name: Staging
        version: "{{ app_version }}"
    - name: Fail with the original error
      ansible.builtin.fail:
        msg: "{{ ansible_failed_task.name }} failed: {{ ansible_failed_result.msg | default('see above') }}"

# Fail the play when Retrace cannot record the start (the default only warns).
- name: Start, strictly
  stackify.retrace.deployment:
    state: started
    version: "{{ app_version }}"
    strict: true
  run_once: true

# A one-shot deployment: only complete, with everything Retrace should show.
- name: Record a finished deployment
  stackify.retrace.deployment:
    state: completed
    version: "{{ app_version }}"
    name: "Shop {{ app_version }}"
    branch: main
    commit: "{{ app_commit }}"
    uri: "https://ci.example.com/builds/{{ build_id }}"
  run_once: true

# Several applications in one play (group_vars/web.yml sets retrace_app_name: Shop.Web,
# group_vars/api.yml retrace_app_name: Shop.Api): one start per deployment, each reading
# the variables of one of its hosts.
- name: List the deployments of the play's hosts
  stackify.retrace.deployment_targets:
    hosts: "{{ ansible_play_batch }}"
  run_once: true
  register: deployment_targets

- name: Start each deployment
  stackify.retrace.deployment:
    state: started
    for_host: "{{ item.host }}"
  run_once: true
  loop: "{{ deployment_targets.targets }}"
  loop_control:
    label: "{{ item.label }}"
  register: deployment_starts

# Check mode: see what would be sent.
- name: Show the request without sending it
  stackify.retrace.deployment:
    state: started
    app_name: Shop
    environment_name: Production
    version: "2.4.1"
  check_mode: true
  register: deployment_request

# Try it against the local emulator: python -m retrace_emulator --port 8765
- name: Start a deployment at the emulator
  stackify.retrace.deployment:
    state: started
    api_url: http://127.0.0.1:8765
    api_key: emulator-demo-key
    app_name: DemoApp
    environment_name: Staging
    version: "1.0.0"
  run_once: true
"""

RETURN = r"""
deployment:
  description:
    - The JSON fields of the request, as sent (or, in check mode, as they would be sent).
    - C(Name) defaults to C(Version); cancel carries only C(Version), C(AppName), C(EnvironmentName).
    - Never contains the API key.
  returned: when the options are valid
  type: dict
  sample:
    Name: "2.4.1"
    Branch: main
    Commit: 3f2c1ab
    Version: "2.4.1"
    AppName: Shop
    EnvironmentName: Production
state:
  description: The O(state) requested.
  returned: always
  type: str
  sample: started
status:
  description: HTTP status of the accepted call, or of the refusal.
  returned: when Retrace answered
  type: int
  sample: 202
tracked:
  description:
    - Whether Retrace holds the deployment as this task left it - it accepted the call, or (a start in a later
      C(serial) batch) this run had started it already. V(false) in check mode, and when nothing was recorded
      with O(strict=false) (the task is then C(ok) and a warning says what was NOT recorded and why).
  returned: always
  type: bool
  sample: true
joined:
  description:
    - V(true) when, in an AWX / Automation Platform job launched by a workflow (job slices are one), Retrace answered
      the start with HTTP 409 (already in progress); usually a sibling job of that workflow started it, but a
      deployment left in progress by an earlier run gets the same answer. The task is C(ok) with RV(tracked=false)
      and no warning; the deployment is never cancelled and started again (a stale one stays in progress until a
      run outside a workflow recovers it or it is cancelled; see docs/awx.md).
    - The job remembers the join, and its later O(state=completed) / O(state=cancelled) tasks for that deployment
      return V(true) too and send nothing (RV(tracked=false), no warning). The job that started the deployment
      ends it, so one slice's rescue never cancels a live sibling's deployment.
  returned: when a sibling job had started the deployment (the start, and this job's later end tasks for it)
  type: bool
  sample: true
attempts:
  description: Requests made, retries included; V(0) in check mode or when nothing was sent.
  returned: always
  type: int
  sample: 1
api_url:
  description: The Retrace API base URL used, normalised.
  returned: when the options are valid
  type: str
  sample: https://api.stackify.net
error:
  description:
    - Kind of failure; one of V(invalid_input) (a setting missing or invalid, so nothing was sent),
      V(authentication_rejected), V(request_rejected), V(unknown_app_or_environment), V(bad_transition),
      V(api_unreachable).
  returned: failure, and when nothing was recorded with O(strict=false)
  type: str
  sample: bad_transition
"""

import os

from ansible.module_utils.ansible_release import __version__ as ansible_version
from ansible.module_utils.basic import AnsibleModule, _load_params

from ansible_collections.stackify.retrace.plugins.module_utils import _resolve, _run
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import ARGUMENT_SPEC, MODULE_SETTINGS, TASK_SPEC
from ansible_collections.stackify.retrace.plugins.module_utils._ansible_task import TaskLines, deployment_task


def main():
    # Normally the action plugin of the same name does this on the controller; this path runs only when the
    # module is executed on its own (for example copied into a library/ folder): no variables, no detection.
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    # The arguments as written, not as the spec converted them, defaults left out: the core checks them, and
    # the environment outranks only what the task did not set.
    # for_host names whose variables to read; on its own the module reads none.
    arguments = {name: value for name, value in _load_params().items() if not name.startswith("_") and name not in TASK_SPEC}
    resolved = _resolve.resolve([_resolve.Source("the task's arguments", arguments, _resolve.PROJECT, "the task's {option} argument"),
                                 _resolve.environment_source(os.environ, MODULE_SETTINGS)], MODULE_SETTINGS, environ=os.environ)
    lines = TaskLines(detail=module.debug, debug=module.debug)
    run = _run.DeploymentRun(_run.policy_of(resolved), lines, calls_are_tasks=True, dry_run="check mode" if module.check_mode else None)
    result = deployment_task(module.params["state"], resolved, run, entry_point=f"ansible-module-on-host; ansible-core {ansible_version}")
    for warning in result.pop("warnings", ()):
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
