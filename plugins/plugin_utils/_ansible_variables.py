# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  The ``retrace_*`` variables of a play, as settings sources for the core.

Shared by the callback and the module's action plugin, so that both read a playbook's variables alike: extra vars
(``-e``, an AWX survey or launch prompt) are what whoever launches the run gives (``launch``); the play's other
variables (group_vars, host_vars, play and role vars, facts) are Ansible variables (``variables``), which the
launcher can reach too.  Values are templated as a task would template them.  Where the key may go, knowing that,
is the core's rule (:func:`._resolve.key_destination_problem`).
"""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleError
from ansible.parsing.vault import EncryptedString

from ansible_collections.stackify.retrace.plugins.module_utils._resolve import (LAUNCH, VARIABLES, Source, UnknownSetting,
                                                                                unknown_settings)
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils.settings import JINJA_MARKERS

PREFIX = "retrace_"
EXTRA_VARS = "extra vars"
PLAY_VARIABLES = "the play's variables"


class Sources(t.NamedTuple):
    sources: list[Source]
    unknown: list[UnknownSetting]
    problems: list[InvalidInput]


def variable_sources(variables: t.Mapping[str, t.Any], extra_vars: t.Mapping[str, t.Any], templar,
                     known: t.Iterable[str], before_tasks: bool = False) -> Sources:
    """``retrace_*`` in ``variables`` (a play's, for one host: extra vars included) as two sources, extra vars and the
    play's; the keys that are no option (``retrace_stirct``); a value that cannot be templated, as a problem.
    ``before_tasks``: read before any task ran (the callback), which a value that cannot be templated is told."""
    extra, play, problems = {}, {}, []
    given = {name: value for name, value in variables.items() if name.startswith(PREFIX)}
    for name, value in given.items():
        option = name[len(PREFIX):]
        where = EXTRA_VARS if name in extra_vars else PLAY_VARIABLES
        try:
            rendered = templated(templar, value)
        except AnsibleError as error:
            why = (f"; it is read as the run starts, before facts and set_fact: give it with -e {name}=... or track the"
                   " deployment with the role") if before_tasks else ""
            problems.append(InvalidInput(option, f"cannot be templated ({_first_line(error)}) (from {where}){why}"))
            continue
        (extra if where == EXTRA_VARS else play)[option] = rendered
    sources = [Source(EXTRA_VARS, extra, LAUNCH, "-e retrace_{option}=..."),
               Source(PLAY_VARIABLES, play, VARIABLES, "retrace_{option} in group_vars or play vars")]
    return Sources(sources, unknown_settings(given, "the play's variables and extra vars", known, prefix=PREFIX), problems)


def templated(templar, value: t.Any) -> t.Any:
    """``value`` as a task would see it (raises AnsibleError: an undefined variable, a vault it cannot open...): a
    value vaulted inline (``!vault``) decrypted; text that is no template, or that Ansible will not template (a
    launch-time extra var AWX marks unsafe), as it is."""
    return templar.template(value) if is_template(value) or isinstance(value, EncryptedString) else value


def is_template(value: t.Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in JINJA_MARKERS)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
