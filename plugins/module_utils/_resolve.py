# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  Which value each setting takes, and where it came from.

Every entry point hands :func:`resolve` its settings sources, highest precedence first, as data: the callback
its extra vars, the play's host and group vars, the environment and ``ansible.cfg``; the action plugin the task's
arguments and the environment; Fabric its flags, ``FABRIC_RETRACE_*``, ``RETRACE_*`` and ``fabric.yaml``.
:func:`resolve` raises nothing: it returns each value with its :class:`Source`, the unknown keys with a close
match, and every problem found, so that the run engine (:mod:`._run`) decides what a problem does, knowing
``strict``, which is resolved first.

Rules that need origins live here, once:

* empty environment variables count as unset; a value given as ``""`` elsewhere is given, and empty;
* booleans are parsed strictly, numbers from their text, text fields must be text (YAML's ``1.10`` is refused);
* the key is only sent to a URL from a trusted source (:func:`key_destination_problem`).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing as t

from .errors import InvalidInput
from .settings import (DEFAULT_API_URL, OPTIONS, Option, check_rendered, normalise_api_url, parse_boolean,
                       parse_seconds)

#: trust levels of a source.  ``project``: what the project's own files write literally (ansible.cfg, a task's literal
#: argument, fabric.yaml, a command-line flag) -- trusted like the playbooks, which run with the key anyway.
#: ``variables``: Ansible variables (group_vars, play vars, facts, a task argument that is a template): whoever launches
#: the run can reach them (extra vars outrank them all, and a merged value does not say where it came from).
#: ``launch``: what whoever launches the run gives (extra vars: AWX surveys and launch prompts).
PROJECT, ENVIRONMENT, VARIABLES, LAUNCH, DETECTED, DEFAULT = "project", "environment", "variables", "launch", "detected", "default"
#: a value this run or place recorded earlier: the version a start sent, for the end sent from the same place
RECORDED = "recorded"
#: options whose value is a secret: never quoted in a problem
SECRET_OPTIONS = ("api_key",)
#: the options that identify a deployment, which detection (git, CI, a controller job) may fill
DETECTED_OPTIONS = ("version", "branch", "commit", "uri")
#: a deployment has none without these; given empty (``-e retrace_version=`` with $VERSION unset), nothing is made up
REQUIRED_TEXT = ("app_name", "environment_name", "version")


@dataclasses.dataclass(frozen=True)
class Source:
    """One place settings come from, with the name a user knows it by.

    ``spelling`` says how a user sets an option there, as a format of ``{option}``, ``{OPTION}`` (upper case) and
    ``{dashed}`` (``app-name``): ``"-e retrace_{option}=..."``, ``"--{dashed}"``; the environment's spelling comes
    from the option table instead; None when the source cannot be written by a user (detection).
    ``notes`` say, by option, why the source could not give a value (git refused the directory...): said when
    that option is missing.  ``settable``: the only options a user can set there (Fabric's task flags never take
    the key), None for every option; ``how_to_set`` names no other.
    """

    name: str
    values: t.Mapping[str, t.Any]
    trust: str
    spelling: str | None = None
    notes: t.Mapping[str, str] = dataclasses.field(default_factory=dict)
    settable: t.Collection[str] | None = None

    def how_to_set(self, option: str) -> str | None:
        if not self.spelling or (self.settable is not None and option not in self.settable):
            return None
        return self.spelling.format(option=option, OPTION=option.upper(), dashed=option.replace("_", "-"))


def environment_source(environ: t.Mapping[str, str], options: t.Mapping[str, Option] = OPTIONS,
                       name: str = "the environment") -> Source:
    """The options found in ``environ`` by their variables (:attr:`Option.environment`); empty values count as unset."""
    values = {}
    for option, spec in options.items():
        value = next((environ[variable] for variable in spec.environment if environ.get(variable)), None)
        if value is not None:
            values[option] = value
    return Source(name, values, ENVIRONMENT)


def environment_spelling(option: str, options: t.Mapping[str, Option] = OPTIONS) -> str | None:
    spec = options.get(option)
    return spec.environment[0] if spec is not None and spec.environment else None


@dataclasses.dataclass(frozen=True)
class UnknownSetting:
    key: str
    where: str
    suggestion: str | None

    def line(self) -> str:
        hint = f" (did you mean {self.suggestion}?)" if self.suggestion else ""
        return f"unknown setting {self.key!r} in {self.where}{hint}: it is ignored"


def unknown_settings(keys: t.Iterable[str], where: str, known: t.Iterable[str], prefix: str = "",
                     upper_case: bool = False) -> list[UnknownSetting]:
    """The ``keys`` (as written, e.g. ``retrace_stirct``) that are not ``prefix + <known option>``, each with a close match.

    ``upper_case``: the keys are environment variables, an option spelt in capitals (``FABRIC_RETRACE_STRICT``)."""
    known = tuple(known)
    found = []
    for key in keys:
        name = key[len(prefix):] if key.startswith(prefix) else key
        if (name.lower() if upper_case else name) in known:
            continue
        match = difflib.get_close_matches(name.replace("-", "_").lower(), known, 1)
        suggestion = (match[0].upper() if upper_case else match[0]) if match else None
        found.append(UnknownSetting(key, where, prefix + suggestion if suggestion else None))
    return found


@dataclasses.dataclass(frozen=True)
class Value:
    value: t.Any
    #: where it came from; None for the built-in default
    source: Source | None


class Resolved:
    """Every option's value and origin, the unknown keys, and the problems found (as :class:`InvalidInput`)."""

    def __init__(self, values: dict[str, Value], options: t.Mapping[str, Option], sources: t.Sequence[Source],
                 unknown: list[UnknownSetting], problems: list[InvalidInput]):
        self.values = values
        self.options = options
        self.sources = tuple(sources)
        self.unknown = unknown
        self.problems = problems

    def __getitem__(self, option: str) -> t.Any:
        return self.values[option].value if option in self.values else None

    def get(self, option: str, default: t.Any = None) -> t.Any:
        value = self[option]
        return default if value is None else value

    def source_of(self, option: str) -> Source | None:
        return self.values[option].source if option in self.values else None

    @property
    def strict(self) -> bool:
        """``strict`` as given; a value that is not a boolean counts as strict (it was meant: its problem says so)."""
        value = self["strict"]
        return value is not False and value is not None

    def as_dict(self) -> dict[str, t.Any]:
        return {option: self[option] for option in self.options}

    def how_to_set(self, option: str) -> str:
        """``-e retrace_version=..., RETRACE_VERSION or [callback_retrace] version``: the ways to give ``option``."""
        ways = []
        for source in self.sources:
            if option in SECRET_OPTIONS and source.trust == LAUNCH:
                continue  # a key on a command line shows in the process list and the shell's history
            way = source.how_to_set(option) if source.trust != ENVIRONMENT else environment_spelling(option, self.options)
            if way and way not in ways:
                ways.append(way)
        if option == "api_key":
            ways.insert(ways.index("RETRACE_API_KEY") + 1 if "RETRACE_API_KEY" in ways else 0,
                        "RETRACE_API_KEY_FILE (a file holding the key)")
        if not ways:
            return ""
        return ways[0] if len(ways) == 1 else ", ".join(ways[:-1]) + " or " + ways[-1]

    def missing(self, option: str, problem: str = "is not set") -> InvalidInput:
        """``option: is not set (<notes>): set it with <how>`` -- the problem for a required option nobody gave."""
        notes = [source.notes[option] for source in self.sources if option in source.notes]
        said = f" ({'; '.join(notes)})" if notes else ""
        how = self.how_to_set(option)
        return InvalidInput(option, f"{problem}{said}" + (f": set it with {how}" if how else ""))


Fallback = t.Callable[[t.Mapping[str, t.Any]], "Source | None"]


def resolve(sources: t.Sequence[Source], options: t.Mapping[str, Option] = OPTIONS, *,
            fallbacks: t.Sequence[Fallback] = (), unknown: t.Sequence[UnknownSetting] = (),
            environ: t.Mapping[str, str] | None = None, problems: t.Sequence[InvalidInput] = ()) -> Resolved:
    """Walk ``sources`` (highest precedence first) and return every option's first value, checked.

    ``fallbacks`` are asked, in order, for the options still unset after the sources, with the values found so far
    (a run's recorded version, then detection: a controller job, CI, git); each returns a :class:`Source` or None.
    Only options in ``options`` are read.  ``environ`` is where the key-destination rule finds the environment's
    API URL and key (:func:`key_destination_problem`).  ``problems``: what the entry point found wrong before
    (a settings file it could not read), said first.  Never raises.
    """
    sources = list(sources)
    chosen: dict[str, Value] = {}
    for option in options:
        for source in sources:
            value = source.values.get(option)
            if value is not None:
                chosen[option] = Value(value, source)
                break
    for fallback in fallbacks:
        if all(option in chosen for option in DETECTED_OPTIONS):
            break
        source = fallback({option: found.value for option, found in chosen.items()})
        if source is None:
            continue
        sources.append(source)
        for option in DETECTED_OPTIONS:
            if option not in chosen and source.values.get(option) is not None:
                chosen[option] = Value(source.values[option], source)
    problems = list(problems)
    values: dict[str, Value] = {}
    for option, spec in options.items():
        found = chosen.get(option)
        if found is None:
            values[option] = Value(spec.default, None)
            continue
        try:
            values[option] = Value(_checked(found.value, option, spec), found.source)
        except InvalidInput as problem:
            problems.append(_naming_source(problem, found.source))
            # strict stays meant even when its value is not a word we know: see Resolved.strict
            values[option] = Value(found.value if option == "strict" else spec.default, found.source)
    resolved = Resolved(values, options, sources, list(unknown), problems)
    if environ is not None and "api_url" in options:
        problem = key_destination_problem(resolved, environ)
        if problem is not None:
            problems.append(problem)
    return resolved


def _checked(value: t.Any, option: str, spec: Option) -> t.Any:
    """``value`` of ``option`` checked and converted by the option's kind; raises InvalidInput."""
    kind = spec.kind
    if kind == "bool":
        return parse_boolean(value, option)
    if kind == "seconds":
        if isinstance(value, bool):
            raise InvalidInput(option, f"must be a number of seconds, got {value!r}")
        return parse_seconds(value, option)
    if kind == "choice":
        if value not in spec.choices:
            raise InvalidInput(option, f"must be one of {', '.join(spec.choices)}, got {value!r}")
        return value
    if kind == "list":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise InvalidInput(option, f"must be a list, got {type(value).__name__}")
        return list(value)
    # text, key, path, url, format: text as given (the core's constructors check the rest)
    if isinstance(value, bool) or not isinstance(value, str):
        raise InvalidInput(option, _not_text(value, option))
    if option not in SECRET_OPTIONS and kind != "format":
        check_rendered(value, option)
    if option in REQUIRED_TEXT and not value.strip():
        raise InvalidInput(option, "is empty")
    return value


def _not_text(value: t.Any, option: str) -> str:
    if isinstance(value, float) and option not in SECRET_OPTIONS:
        return (f"must be a string, got the number {value!r}; YAML reads unquoted values such as 1.10 as numbers (1.1), "
                "so quote it")
    # The builtin type a user wrote: Ansible hands over tagged subclasses (_AnsibleTaggedDict...) of YAML's values.
    kind = "list" if isinstance(value, (list, tuple)) else next(cls.__name__ for cls in type(value).__mro__ if cls.__module__ == "builtins")
    return f"must be a string, got {kind}"


def _naming_source(problem: InvalidInput, source: Source | None) -> InvalidInput:
    if source is None or source.trust == DETECTED:
        return problem
    return InvalidInput(problem.option, f"{problem.problem} (from {source.name})")


# --- where the key may go ------------------------------------------------------------------------------

def key_destination_problem(resolved: Resolved, environ: t.Mapping[str, str]) -> InvalidInput | None:
    """The problem naming ``api_url`` when the key could go to a URL that whoever launches the run chose; else None.

    The rule, the same on every entry point: the key goes to the URL from the environment (``RETRACE_API_URL``, else
    the default) or to one the project's own files write literally (ansible.cfg, a task's literal ``api_url``
    argument or ``module_defaults`` entry, fabric.yaml, a ``--api-url`` flag).  A URL that Ansible variables give
    (extra vars, group_vars, play vars, facts, a templated argument) receives a key only when whoever launched the
    run gave that key too, as text (``-e retrace_api_key=...``): they know it already.

    Why so strict: whoever may set extra vars (an AWX launch prompt or survey, a shared CI job's parameters) may not be
    allowed to read the credential the environment holds, or the key the project keeps in Vault; extra vars outrank
    every other variable, can be read by any template (``vars``, ``hostvars``, a ``set_fact``, an inventory plugin),
    and a merged value does not say where it came from.  A key file is the controller's secret whoever names it:
    ``-e retrace_api_key_file=<any file>`` with a URL of theirs would send that file's content away.
    """
    url_source = resolved.source_of("api_url")
    if url_source is None or url_source.trust in (PROJECT, ENVIRONMENT) or not resolved["api_url"]:
        return None
    if not resolved["api_key"] and not resolved["api_key_file"]:
        return None  # no key to send: said as a missing setting
    key_source = resolved.source_of("api_key") if resolved["api_key"] else None
    if key_source is not None and key_source.trust == LAUNCH:
        return None  # the launcher's own key, as text: it goes with the launcher's URL
    try:
        given = normalise_api_url(resolved["api_url"])
    except InvalidInput:
        return None  # refused for what it is when the client is built
    expected = environ.get("RETRACE_API_URL") or DEFAULT_API_URL
    try:
        if given == normalise_api_url(expected):
            return None
    except InvalidInput:
        pass
    key_from = (key_source or resolved.source_of("api_key_file"))
    return InvalidInput("api_url", f"{given} (from {url_source.name}) is refused: Ansible variables can be set by whoever "
                                   f"launches the run, and the API key (from {key_from.name if key_from else 'the environment'}) "
                                   f"is only sent to the URL from the environment ({expected}) or to one the project's own "
                                   "files write (ansible.cfg, a task's literal api_url or module_defaults, fabric.yaml). Set the "
                                   "URL beside the key: RETRACE_API_URL (in AWX, the credential's API URL)")


def detected_source(values: t.Mapping[str, t.Any], notes: t.Mapping[str, str] | None = None,
                    provider: str | None = None) -> Source:
    """What detection found (plugin_utils/_source.py ``detect``: a controller job, CI, git) as the lowest source."""
    return Source(f"detection ({provider})" if provider else "detection", dict(values), DETECTED, notes=dict(notes or {}))
