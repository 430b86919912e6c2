# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  The options of ``stackify.retrace.deployment``, from the core's option table.

The core checks every setting (:mod:`._resolve`); Ansible checks ``state`` and ``for_host`` only.  :data:`ARGUMENT_SPEC`
says what each option is for the module's ``main()`` (run without its action plugin) and for ``ansible-test``'s check
of the documentation; the action plugin hands the task's arguments to the core as written.
"""

from __future__ import annotations

from .settings import CALLBACK_OPTIONS, MODULE_OPTIONS, OPTIONS

#: what the module reads, by name: the shared settings and the module's own
MODULE_SETTINGS = {**OPTIONS, **MODULE_OPTIONS}
#: ``retrace_*`` names that are settings of some entry point: the callback's own are known, though the module ignores them
KNOWN_VARIABLES = {**MODULE_SETTINGS, **CALLBACK_OPTIONS}
VARIABLE_PREFIX = "retrace_"
STATES = ("started", "completed", "cancelled")
STATE_SPEC = {"state": dict(type="str", required=True, choices=list(STATES))}
#: the arguments of a task that are not settings: Ansible checks them (the action plugin too)
TASK_SPEC = {**STATE_SPEC, "for_host": dict(type="str")}
#: the arguments of ``stackify.retrace.deployment_targets``
TARGETS_SPEC = {"hosts": dict(type="list", elements="str", required=True)}
_TYPES = {"bool": "bool", "seconds": "float", "path": "path"}


def _argument(option):
    spec = {"type": _TYPES.get(option.kind, "str")}
    if option.default is not None:
        spec["default"] = option.default
    if option.choices:
        spec["choices"] = list(option.choices)
    if option.kind == "key":
        spec["no_log"] = True
    return spec


ARGUMENT_SPEC = {**TASK_SPEC, **{name: _argument(option) for name, option in MODULE_SETTINGS.items()}}
