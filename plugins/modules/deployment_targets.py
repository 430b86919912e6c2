#!/usr/bin/python
# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment_targets
short_description: List the Stackify Retrace deployments of a play's hosts, one per application and environment
version_added: 2.1.0
description:
  - Reads the C(retrace_*) settings of each host in O(hosts), exactly as a P(stackify.retrace.deployment#module) task
    with O(stackify.retrace.deployment#module:for_host) set to that host reads them (C(host_vars), C(group_vars), play
    and role vars, extra vars, C(module_defaults), the controller's C(RETRACE_*) environment, detection of the
    version), and groups the hosts by the deployment they describe (API URL, application, environment and version).
  - Sends nothing and opens no connection. Run it once (C(run_once)), then one
    P(stackify.retrace.deployment#module) task per target (a C(loop) with
    O(stackify.retrace.deployment#module:for_host) set to the target's RV(targets[].host)). The
    C(stackify.retrace.tracked_deployment) role does exactly this.
  - "When all hosts describe one deployment, it is the only target, even when its settings cannot be recorded
    (no API key, no version): the start task then says what is NOT recorded, as for a single deployment."
  - "When the hosts describe several deployments, a host whose settings cannot be recorded (no application name)
    is left out of RV(targets): one warning per problem, naming its hosts, and the others are tracked.
    With C(strict) (as the first host of O(hosts) reads it), the task fails instead, before anything is sent."
author:
  - Stackify Retrace collection maintainers (@stackify)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
options:
  hosts:
    description:
      - The inventory hosts to group, usually V({{ ansible_play_batch }}).
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    support: full
    details: Sends nothing in any mode.
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Runs on the controller; no host is contacted.
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
    support: none
    details: The hosts read are those of O(hosts), wherever the task runs.
notes:
  - Run without its action plugin (the module file copied on its own into a C(library/) folder), the module can read
    no inventory, and fails.
seealso:
  - module: stackify.retrace.deployment
  - name: The tracked_deployment role, several apps or environments in one play
    description: How to set a target per group of hosts, with an inventory example.
    link: https://github.com/stackify/ansible-collection-retrace/blob/main/docs/role.md#several-apps-or-environments-in-one-play
"""

EXAMPLES = r"""
# Inventory: group_vars/web.yml sets retrace_app_name: Shop.Web, group_vars/api.yml retrace_app_name: Shop.Api.
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
"""

RETURN = r"""
targets:
  description:
    - One entry per deployment to record, in the order of their first host in O(hosts).
    - Never contains the API key.
  returned: success
  type: list
  elements: dict
  contains:
    app_name:
      description: The application name (C(AppName)); null when it is not set (a single target that cannot be recorded).
      type: str
      sample: Shop.Web
    environment_name:
      description: The environment name (C(EnvironmentName)).
      type: str
      sample: Production
    version:
      description: The version (C(Version)).
      type: str
      sample: 1.4.2
    label:
      description: How the collection's lines name the deployment.
      type: str
      sample: deployment 1.4.2 of Shop.Web to Production
    hosts:
      description: The hosts of O(hosts) whose settings describe this deployment.
      type: list
      elements: str
      sample: [web1, web2]
    host:
      description: One of RV(targets[].hosts), for O(stackify.retrace.deployment#module:for_host).
      type: str
      sample: web1
unresolved:
  description:
    - The hosts whose settings cannot be recorded, when the hosts describe several deployments, grouped by problem.
  returned: success
  type: list
  elements: dict
  contains:
    hosts:
      description: The hosts left untracked.
      type: list
      elements: str
      sample: [api3]
    problem:
      description: What is NOT recorded, and why.
      type: str
      sample: "deployment 1.4.2 to Production NOT recorded for api3: app_name: is not set (set retrace_app_name in group_vars or play vars)"
msg:
  description: The deployments found, in words.
  returned: always
  type: str
  sample: "2 deployment(s): deployment 1.4.2 of Shop.Web to Production; deployment 1.4.2 of Shop.Api to Production"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import TARGETS_SPEC


def main():
    # The action plugin of the same name does the work on the controller, where the inventory is.
    module = AnsibleModule(argument_spec=TARGETS_SPEC, supports_check_mode=True)
    module.fail_json(msg="stackify.retrace.deployment_targets runs on the controller, through its action plugin: "
                         "it cannot run as a module on a host")


if __name__ == "__main__":
    main()
