# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where Fabric's settings come from, as data for the core's resolver (:mod:`.core._resolve`).

Highest first, for every option (the shared ones and Fabric's own):

1. task flags (``--app-name`` ...; never the key nor its file: flags leak into shell history and ``ps``)
   (``fab deploy`` with ``retrace.targets``: then the host's entry there, for the deployment fields it sets)
2. ``FABRIC_RETRACE_<OPTION>`` environment variables
3. the shared ``RETRACE_*`` environment variables (``STACKIFY_API_KEY`` too)
4. the ``retrace:`` section of Fabric's config files (``-f`` file, ``fabric.yaml`` beside the fabfile,
   ``~/.fabric.yaml``, ``/etc/fabric.yaml``, in Fabric's own order)
5. for ``retrace.complete`` / ``cancel``, the version ``retrace.start`` sent from this directory; then detection
   (unless ``detect_source`` is false): the CI system's tag or ``git describe`` for the version, branch / commit /
   uri from the CI system or git
6. built-in defaults

The core checks every value (booleans take the words Ansible takes, from any source) and says what is wrong;
this module only finds the values.  The environment is read here, directly, so that the variables work in any
fabfile, whether or not its collection declared the section with ``configure()``.
"""

from __future__ import annotations

import os
import typing as t

from .core import _resolve, _source
from .core._run import started_from
from .core.errors import InvalidInput
from .core.settings import FABRIC_OPTIONS, OPTIONS

SECTION = "retrace"
FABRIC_ENV_PREFIX = "FABRIC_RETRACE_"
#: every variable that may hold the key: removed from this process's environment once read
KEY_VARIABLES = ("RETRACE_API_KEY", "STACKIFY_API_KEY", "FABRIC_RETRACE_API_KEY")
#: options a task flag (and a keyword of ``tracked()``) may set: no key-related flag at all
FLAG_OPTIONS = ("app_name", "environment_name", "version", "name", "name_format", "branch", "commit", "uri", "api_url")
#: what ``fab deploy`` deploys and how: not tracking settings, so a problem with them stops ``fab deploy`` always
DEPLOY_OPTIONS = {name: FABRIC_OPTIONS[name] for name in ("steps", "parallel", "fail_fast")}
#: what the run engine reads: the shared options, and whether to detect what is unset
TRACKING_OPTIONS = {**OPTIONS, "detect_source": FABRIC_OPTIONS["detect_source"]}
#: ``retrace.targets``: the deployments of one ``fab deploy``, each with its hosts (:func:`deploy_targets`)
TARGETS = "targets"
TARGETS_VARIABLE = FABRIC_ENV_PREFIX + TARGETS.upper()
#: said where ``retrace.targets`` is set but the call records one deployment (single calls, ``tracked()``, a local run)
TARGETS_NOT_HERE = "retrace.targets applies to fab deploy; this call records the deployment the other settings describe"
#: the settings a ``targets`` entry may give its hosts, besides ``hosts``
TARGET_FIELDS = ("app_name", "environment_name", "version", "name")
KNOWN_KEYS = (*{**OPTIONS, **FABRIC_OPTIONS}, TARGETS)
SECTION_NAME = "the retrace: section of Fabric's config"
#: the version a lone start sent from this directory, as single calls describe it
STARTED_HERE = "the one retrace.start sent from this directory"

#: Every key the ``retrace:`` section may hold, None meaning "not set".  Nothing needs to ``configure()`` it: the
#: settings are read here.  A fabfile that wants ``c.config.retrace.<key>`` to exist anyway may declare it with these
#: values; None keeps Invoke from casting ``FABRIC_RETRACE_*`` strings itself (it would read ``false`` as true).
CONFIG_DEFAULTS: dict[str, t.Any] = dict.fromkeys(KNOWN_KEYS)

#: FABRIC_RETRACE_* variables taken out of the environment when this package is imported (see
#: :func:`capture_fabric_variables`); read through :func:`environment`.
_CAPTURED: dict[str, str] = {}


def capture_fabric_variables(environ: t.MutableMapping[str, str] | None = None) -> None:
    """Take ``FABRIC_RETRACE_*`` out of the environment before Invoke loads it (the fabfile is imported first).

    Invoke casts such a variable to the type the same key has in a config file: ``false`` becomes true
    for a boolean, ``0.5`` crashes with a traceback for a whole number.  Kept here, they are checked by the
    core like every other source -- and FABRIC_RETRACE_API_KEY no longer reaches any command this run starts.
    """
    environ = os.environ if environ is None else environ
    for name in [name for name in environ if name.startswith(FABRIC_ENV_PREFIX)]:
        _CAPTURED[name] = environ.pop(name)


def environment() -> dict[str, str]:
    """The process environment with the captured ``FABRIC_RETRACE_*`` variables (live ones win)."""
    return {**_CAPTURED, **os.environ}


def forget_key_variables(environ: t.MutableMapping[str, str]) -> None:
    """Move the key's variables out of ``environ`` into this module's memory, once read.

    Commands run later (local steps, a user's ``c.run``, git) must not inherit the key, yet a second
    ``tracked()`` in the same run must still find it (:func:`environment` includes what was moved).
    """
    for name in KEY_VARIABLES:
        if name in environ:
            value = environ.pop(name)
            if environ is os.environ:
                _CAPTURED[name] = value


def config_section(config) -> tuple[dict[str, t.Any], InvalidInput | None]:
    """The ``retrace:`` section as a dict, and the problem if it is not a mapping (then it is empty)."""
    found = config.get(SECTION) if config is not None else None
    if found is None:
        return {}, None
    if not hasattr(found, "keys"):
        return {}, InvalidInput(SECTION, f"must be a mapping of settings (app_name: ..., steps: ...), got {type(found).__name__} "
                                         f"{found!r}")
    return {key: found[key] for key in found.keys()}, None


def sources(config, flags: t.Mapping[str, t.Any] | None = None,
            environ: t.Mapping[str, str] | None = None) -> list[_resolve.Source]:
    """Fabric's settings sources, highest first (this module's docstring)."""
    environ = environment() if environ is None else environ
    options = {**OPTIONS, **FABRIC_OPTIONS}
    flagged = {option: value for option, value in (flags or {}).items() if option in FLAG_OPTIONS and value is not None}
    fabric_variables = {option: environ[FABRIC_ENV_PREFIX + option.upper()] for option in options
                        if environ.get(FABRIC_ENV_PREFIX + option.upper())}
    section, _problem = config_section(config)
    return [_resolve.Source("the task's flags", flagged, _resolve.PROJECT, "--{dashed}", settable=FLAG_OPTIONS),
            _resolve.Source("FABRIC_RETRACE_* variables", fabric_variables, _resolve.ENVIRONMENT, FABRIC_ENV_PREFIX + "{OPTION}"),
            _resolve.environment_source(environ, options),
            _resolve.Source(SECTION_NAME, section, _resolve.PROJECT, "retrace.{option} in fabric.yaml")]


def resolve(config, flags: t.Mapping[str, t.Any] | None = None, *, environ: t.Mapping[str, str] | None = None,
            directory: str | None = None, started_here: str | None = None, entry: "TargetEntry | None" = None,
            targets: bool = False, problems: t.Sequence[InvalidInput] = ()) -> _resolve.Resolved:
    """The tracking settings, each with its source; problems and unknown keys as data, nothing raised.

    ``started_here``: a directory whose last ``retrace.start`` gives the version when nothing else does (single
    calls' complete / cancel), before detection in ``directory`` (default: the current one).  ``entry``: the
    ``retrace.targets`` entry of the hosts resolved for, below the flags (an entry without fields adds nothing);
    ``targets``: ``retrace.targets`` is set, so that a host in no entry is told it can be put in one.  ``problems``:
    found before, said first.
    """
    environ = environment() if environ is None else environ
    found = sources(config, flags, environ)
    if entry is not None and entry.fields is not None:
        found.insert(1, _resolve.Source(f"{entry.where} of {SECTION_NAME}", entry.fields, _resolve.PROJECT,
                                        f"{{option}} in {entry.where} of retrace.targets", settable=TARGET_FIELDS))
    elif entry is not None or targets:
        found.insert(1, _resolve.Source(f"retrace.targets in {SECTION_NAME}", {}, _resolve.PROJECT,
                                        "{option} in a retrace.targets entry listing the host", settable=TARGET_FIELDS))
    section, problem = config_section(config)
    fallbacks: list[_resolve.Fallback] = []
    if started_here is not None:
        fallbacks.append(started_from(started_here, STARTED_HERE))
    if _resolve.resolve(found, {"detect_source": FABRIC_OPTIONS["detect_source"]})["detect_source"]:
        where = directory or os.getcwd()
        fallbacks.append(lambda values: _resolve.detected_source(*_source.detect(environ, where, values)))
    # A section that could not be read at all is the first reason why the deployment is not recorded.
    unknown = _resolve.unknown_settings(map(str, section), SECTION_NAME, KNOWN_KEYS)
    unknown += _resolve.unknown_settings(sorted(name for name in environ if name.startswith(FABRIC_ENV_PREFIX)),
                                         "the environment", KNOWN_KEYS, prefix=FABRIC_ENV_PREFIX, upper_case=True)
    if TARGETS_VARIABLE in environ:
        unknown.append(TargetsOutOfPlace(TARGETS_VARIABLE, "the environment", None))
    return _resolve.resolve(found, TRACKING_OPTIONS, fallbacks=fallbacks, environ=environ, unknown=unknown,
                            problems=([problem] if problem is not None else []) + list(problems))


class TargetsOutOfPlace(_resolve.UnknownSetting):
    """``FABRIC_RETRACE_TARGETS``: a list of mappings, which only a config file holds."""

    def line(self) -> str:
        return f"retrace.targets is read from fabric.yaml (or a Fabric config file) only: {self.key} is ignored"


def deploy_settings(config, environ: t.Mapping[str, str] | None = None) -> _resolve.Resolved:
    """``steps``, ``parallel`` and ``fail_fast``: what ``fab deploy`` runs, checked; a broken section is a problem."""
    _section, problem = config_section(config)
    return _resolve.resolve(sources(config, None, environ), DEPLOY_OPTIONS, problems=[problem] if problem is not None else [])


class TargetEntry(t.NamedTuple):
    """One entry of ``retrace.targets``: the deployment fields it sets, and its hosts as written."""

    where: str
    #: None for an entry left out (a wrong key, a host listed earlier): its hosts are in no entry
    fields: dict[str, t.Any] | None
    #: as written, but for a host an earlier entry lists
    hosts: list[str]


TARGET_SHAPE = "- {app_name: ..., environment_name: ..., hosts: [web1, web2]}"


def deploy_targets(config) -> tuple[list[TargetEntry], list[InvalidInput]] | None:
    """``retrace.targets`` as entries, with the problems of its shape; None when it is not set (one deployment).

    An entry that is not a mapping, or whose ``hosts`` is not a non-empty list of host strings, is left out, with a
    problem; an entry with an unknown key or a host already listed in an earlier entry (the same host name and port,
    whatever the user) is left out: a host listed earlier stays in its earlier entry, the entry keeps its other hosts
    but not its fields (they are in no entry), and the problem says so.  Values are checked by the resolver.
    """
    section, _problem = config_section(config)
    raw = section.get(TARGETS)
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)) or not raw:
        return [], [InvalidInput(TARGETS, f"must be a non-empty list of deployments with their hosts ({TARGET_SHAPE}), "
                                          f"got {raw!r}")]
    entries: list[TargetEntry] = []
    problems: list[InvalidInput] = []
    listed: dict[tuple[str, str], tuple[str, str]] = {}  # each machine's entry, and the host string written there
    for number, item in enumerate(raw, 1):
        where = f"entry {number}"
        if not hasattr(item, "keys"):
            problems.append(InvalidInput(TARGETS, f"{where} must be a mapping ({TARGET_SHAPE}), got {item!r}"))
            continue
        hosts = item.get("hosts")
        if (not isinstance(hosts, (list, tuple)) or not hosts
                or not all(isinstance(host, str) and host.strip() for host in hosts)):
            unknown = "".join(f"; unknown key {str(key)!r}" for key in item.keys() if key not in (*TARGET_FIELDS, "hosts"))
            problems.append(InvalidInput(TARGETS, f"{where}: hosts must be a non-empty list of hosts ([web1, deploy@web2:2222]), "
                                                  f"got {hosts!r}{unknown}"))
            continue
        hosts = [host.strip() for host in hosts]
        wrong = [f"unknown key {str(key)!r}" for key in item.keys() if key not in (*TARGET_FIELDS, "hosts")]
        earlier = {host: listed[machine(host)] for host in hosts if machine(host) in listed}
        wrong += [f"{host} is in {first_where} already" + (f", as {first}" if first != host else "")
                  for host, (first_where, first) in earlier.items()]
        for host in hosts:
            listed.setdefault(machine(host), (where, host))
        if wrong:
            left = [host for host in hosts if host not in earlier]  # a host listed earlier stays in its earlier entry
            problems.append(InvalidInput(TARGETS, f"{where}: {'; '.join(wrong)} (an entry sets {', '.join(TARGET_FIELDS)} "
                                                  f"and hosts; a host is in one entry): {where} is left out"
                                                  + (f", {', '.join(left)} in no entry" if left else "")))
            entries.append(TargetEntry(where, None, left))
            continue
        entries.append(TargetEntry(where, {key: item[key] for key in TARGET_FIELDS if item.get(key) is not None}, hosts))
    return entries, problems


def machine(host: str) -> tuple[str, str]:
    """The host name and port a host string names, whatever its user: ``deploy@web1`` and ``web1:22`` are one machine."""
    address = host.rpartition("@")[2]
    name, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or (":" in name and not name.endswith("]")):
        name, port = address, "22"  # no port, or a bare IPv6 address
    return name.strip("[]").lower(), port
