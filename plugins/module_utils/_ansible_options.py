# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument spec of ``stackify.retrace.deployment``, declared once for the module and its action plugin.

Option names, environment variables and defaults come from the core (:mod:`.settings`); this
file only says how Ansible should parse them.  Validation of the values themselves stays in
the core: the spec checks types and choices, nothing more.
"""

from __future__ import annotations

import os

from ansible.module_utils.common.parameters import AnsibleFallbackNotFound

from .deployment import CANCEL, COMPLETE, START
from .errors import InvalidInput
from .settings import (DEFAULT_API_URL, DEFAULT_DEADLINE, DEFAULT_TIMEOUT, ENVIRONMENT_VARIABLES, LIFECYCLE_ENVIRONMENT_VARIABLES,
                       STALE_START_CHOICES, Lifecycle)

#: ``state`` option -> the core's action
STATE_ACTIONS = {"started": START, "completed": COMPLETE, "cancelled": CANCEL}
#: options that are not passed to the core's ``create_client``
TRANSPORT_OPTIONS = ("ca_path", "use_proxy")
LIFECYCLE_OPTIONS = tuple(LIFECYCLE_ENVIRONMENT_VARIABLES)


def first_set_environment_variable(*names):
    """Ansible fallback strategy: the first of ``names`` set to a non-empty value.

    Unlike ``env_fallback``, an empty variable counts as unset, as it does everywhere else in
    the collection (see ``settings.from_environment``).
    """
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    raise AnsibleFallbackNotFound


def _lifecycle_option(option, **spec):
    return dict(spec, default=getattr(Lifecycle, option),
                fallback=(first_set_environment_variable, [LIFECYCLE_ENVIRONMENT_VARIABLES[option]]))


def _text_option(option, **spec):
    variables = ENVIRONMENT_VARIABLES.get(option)
    if variables:
        spec["fallback"] = (first_set_environment_variable, list(variables))
    spec.setdefault("type", "str")
    return spec


ARGUMENT_SPEC = {
    "state": dict(type="str", required=True, choices=list(STATE_ACTIONS)),
    "api_key": _text_option("api_key", no_log=True),
    # Read by the core (settings.read_api_key_file), on the controller; both this and api_key set is an error.
    "api_key_file": _text_option("api_key_file", type="path"),
    "api_url": _text_option("api_url", default=DEFAULT_API_URL),
    "app_name": _text_option("app_name"),
    "environment_name": _text_option("environment_name"),
    "version": _text_option("version"),
    "name": _text_option("name"),
    "name_format": _text_option("name_format"),
    "branch": _text_option("branch"),
    "commit": _text_option("commit"),
    "uri": _text_option("uri"),
    "validate_certs": dict(type="bool", default=True),
    "ca_path": dict(type="path"),
    "use_proxy": dict(type="bool", default=True),
    "timeout": dict(type="float", default=DEFAULT_TIMEOUT),
    "deadline": dict(type="float", default=DEFAULT_DEADLINE),
    "strict": _lifecycle_option("strict", type="bool"),
    "stale_start": _lifecycle_option("stale_start", type="str", choices=list(STALE_START_CHOICES)),
    "orphan_guard": _lifecycle_option("orphan_guard", type="bool"),
}

_TEXT_OPTIONS = tuple(option for option, spec in ARGUMENT_SPEC.items() if spec["type"] == "str" or option == "api_key_file")
# bool before float: what the user wrote, not Python's class hierarchy; Ansible 2.19 hands over
# tagged subclasses (_AnsibleTaggedList...), so the plain name is taken from this list.
_NON_TEXT_TYPES = {bool: "bool", float: "float", list: "list", tuple: "list", dict: "dict", set: "set"}


def check_text_types(args):
    """Refuse values Ansible would silently turn into misleading strings.

    Ansible's ``str`` type converts anything: a list becomes ``"['a']"`` and YAML's
    ``version: 1.10`` arrives as the float 1.1.  Both would be sent to Retrace as if meant.
    """
    for option in _TEXT_OPTIONS:
        value = args.get(option)
        type_name = next((name for kind, name in _NON_TEXT_TYPES.items() if isinstance(value, kind)), None)
        if type_name is not None:
            raise InvalidInput(option, _type_problem(value, type_name))


def _type_problem(value, type_name):
    if type_name == "float":
        return (f"must be a string, got the number {float(value)!r}; YAML reads unquoted values such as 1.10 as "
                "numbers (1.1), so quote it")
    return f"must be a string, got {type_name}"


def core_options(params):
    """The validated task parameters, by the names ``client.create_client`` takes."""
    return {name: value for name, value in params.items()
            if name != "state" and name not in TRANSPORT_OPTIONS and name not in LIFECYCLE_OPTIONS}


def lifecycle(params):
    """The validated task parameters' :class:`Lifecycle` (strict, stale_start, orphan_guard)."""
    return Lifecycle.create(**{name: params.get(name) for name in LIFECYCLE_OPTIONS})
