# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  The ``retrace_*`` variables of a play, as settings sources for the core.

Shared by the callback and the module's action plugin, so that both read a playbook's variables alike: extra vars
(``-e``, an AWX survey or launch prompt) are a source of their own, trusted as little as whoever launches the run;
the play's other variables (group_vars, host_vars, play and role vars) are the project's.  Values are templated as a
task would template them.

Where a template's value really comes from is found out, not guessed: an ``api_url`` written as a template anywhere
(``retrace_api_url: "{{ target }}"`` in group_vars, ``api_url: "{{ urls.retrace }}"`` in a task) is rendered a second
time without the extra vars; if it then fails or reads otherwise, the extra vars chose it, and a key from the
environment is not sent there (:func:`._resolve.key_destination_problem`).
"""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleError

from ansible_collections.stackify.retrace.plugins.module_utils._resolve import (PROJECT, VARIABLES, Source, UnknownSetting,
                                                                                unknown_settings)
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils.settings import JINJA_MARKERS

PREFIX = "retrace_"
EXTRA_VARS = "extra vars"
PLAY_VARIABLES = "the play's variables"
#: the one setting whose origin decides where the key may go
TRUSTED_ORIGIN_OPTIONS = ("api_url",)
#: extra vars a controller (AWX) adds to every job by itself: nobody launching a job chooses them
CONTROLLER_VARIABLES = ("awx_", "tower_")


class Sources(t.NamedTuple):
    sources: list[Source]
    unknown: list[UnknownSetting]
    problems: list[InvalidInput]


def variable_sources(variables: t.Mapping[str, t.Any], extra_vars: t.Mapping[str, t.Any], templar,
                     known: t.Iterable[str]) -> Sources:
    """``retrace_*`` in ``variables`` (a play's, for one host: extra vars included) as two sources, extra vars and the
    play's; the keys that are no option (``retrace_stirct``); a value that cannot be templated, as a problem."""
    extra, play, problems = {}, {}, []
    given = {name: value for name, value in variables.items() if name.startswith(PREFIX)}
    for name, value in given.items():
        option = name[len(PREFIX):]
        where = EXTRA_VARS if name in extra_vars else PLAY_VARIABLES
        try:
            rendered = templated(templar, value)
        except AnsibleError as error:
            problems.append(InvalidInput(option, f"cannot be templated ({_first_line(error)}) (from {where})"))
            continue
        chosen_by_extra_vars = where == EXTRA_VARS or (
            option in TRUSTED_ORIGIN_OPTIONS and depends_on_extra_vars(value, rendered, variables, chosen(extra_vars), templar))
        (extra if chosen_by_extra_vars else play)[option] = rendered
    sources = [Source(EXTRA_VARS, extra, VARIABLES, "-e retrace_{option}=..."),
               Source(PLAY_VARIABLES, play, PROJECT, "retrace_{option} in group_vars or play vars")]
    return Sources(sources, unknown_settings(given, "the play's variables and extra vars", known, prefix=PREFIX), problems)


def chosen(extra_vars: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The extra vars whoever launches the run chooses (``-e``, a survey, a launch prompt): not the controller's own."""
    return {name: value for name, value in extra_vars.items() if not name.startswith(CONTROLLER_VARIABLES)}


def templated(templar, value: t.Any) -> t.Any:
    """``value`` as a task would see it (raises AnsibleError: an undefined variable...); text that is no template, or
    that Ansible will not template (a launch-time extra var AWX marks unsafe), as it is."""
    return templar.template(value) if is_template(value) else value


def is_template(value: t.Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in JINJA_MARKERS)


def depends_on_extra_vars(written: t.Any, rendered: t.Any, variables: t.Mapping[str, t.Any], extra_vars: t.Mapping[str, t.Any],
                          templar) -> bool:
    """True when the template ``written`` renders otherwise (or not at all) without the extra vars: they chose it."""
    if not is_template(written) or not extra_vars:
        return False
    without = {name: value for name, value in variables.items() if name not in extra_vars}
    try:
        return templar.copy_with_new_env(available_variables=without).template(written) != rendered
    except AnsibleError:
        return True


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
