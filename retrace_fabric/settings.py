# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each Fabric setting comes from, in which order, and how it is checked.

Shared options (the ones every entry point of stackify.retrace knows), highest first:

1. task flags (``--app-name`` ...; never the key: flags leak into shell history and ``ps``)
2. ``FABRIC_RETRACE_<OPTION>`` environment variables
3. the shared ``RETRACE_*`` environment variables (``STACKIFY_API_KEY`` too)
4. the ``retrace:`` section of Fabric's config files (``-f`` file, ``fabric.yaml`` beside the
   fabfile, ``~/.fabric.yaml``, ``/etc/fabric.yaml``, in Fabric's own order)
5. detection: for ``retrace.complete`` / ``cancel``, the version ``retrace.start`` sent from this
   directory (:mod:`.core._ledger`); then ``git describe``; branch / commit / uri from the CI system or git
6. built-in defaults (``api_url``: https://api.stackify.net)

Fabric-only settings (:data:`FABRIC_SETTINGS`) come from ``FABRIC_RETRACE_<SETTING>``, then (for
``strict``, ``stale_start``, ``orphan_guard``) ``RETRACE_<SETTING>``, then the ``retrace:`` section,
then the default.  The environment is read here, directly, so the variables work in any fabfile,
whether or not its collection declared the section with ``configure()``; and every boolean, from
any source, goes through the core's one parser (Invoke itself would read ``FABRIC_X=false`` as true).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing as t

from .core import settings as core_settings
from .core.errors import InvalidInput
from .core.settings import Lifecycle, parse_boolean
from .core._source import detect_source, git_describe

SECTION = "retrace"
SHARED_OPTIONS = tuple(core_settings.ENVIRONMENT_VARIABLES)
#: options a task flag may set; the key is deliberately absent, and so is its file (no key-related flags at all)
FLAG_OPTIONS = tuple(option for option in SHARED_OPTIONS if option not in ("api_key", "api_key_file"))
FABRIC_ENV_PREFIX = "FABRIC_RETRACE_"
#: every variable that may hold the key: removed from this process's environment once read
KEY_VARIABLES = ("RETRACE_API_KEY", "STACKIFY_API_KEY", "FABRIC_RETRACE_API_KEY")

#: Fabric-only setting -> (type, default).  Types: bool, float (seconds), str, list (steps), choice.
FABRIC_SETTINGS: dict[str, tuple[str, t.Any]] = {
    "steps": ("list", []),
    "parallel": ("bool", True),
    "fail_fast": ("bool", True),
    "strict": ("bool", False),
    "stale_start": ("choice", "recover"),
    "orphan_guard": ("bool", True),
    "detect_source": ("bool", True),
    "validate_certs": ("bool", True),
    "ca_path": ("str", None),
    "timeout": ("float", core_settings.DEFAULT_TIMEOUT),
    "deadline": ("float", core_settings.DEFAULT_DEADLINE),
}

#: Every key the ``retrace:`` section may hold, None meaning "not set" (the defaults live in
#: :data:`FABRIC_SETTINGS`).  Nothing needs to ``configure()`` it: the settings are read here.  A fabfile
#: that wants ``c.config.retrace.<key>`` to exist anyway may declare it with these values; None keeps
#: Invoke from casting ``FABRIC_RETRACE_*`` strings itself (it would read ``false`` as true).
CONFIG_DEFAULTS: dict[str, t.Any] = {**{option: None for option in SHARED_OPTIONS}, **{name: None for name in FABRIC_SETTINGS}}
KNOWN_KEYS = tuple(CONFIG_DEFAULTS)


@dataclasses.dataclass(frozen=True)
class FabricSettings:
    """The checked ``retrace:`` section: shared options as given, Fabric-only settings typed."""

    shared: t.Mapping[str, t.Any]
    steps: t.Any
    parallel: bool
    fail_fast: bool
    strict: bool
    stale_start: str
    orphan_guard: bool
    detect_source: bool
    validate_certs: bool
    ca_path: str | None
    timeout: float
    deadline: float

    @property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle.create(strict=self.strict, stale_start=self.stale_start, orphan_guard=self.orphan_guard)


#: FABRIC_RETRACE_* variables taken out of the environment when this package is imported (see
#: :func:`capture_fabric_variables`); read through :func:`environment`.
_CAPTURED: dict[str, str] = {}


def capture_fabric_variables(environ: t.MutableMapping[str, str] | None = None) -> None:
    """Take ``FABRIC_RETRACE_*`` out of the environment before Invoke loads it (the fabfile is imported first).

    Invoke casts such a variable to the type the same key has in a config file: ``false`` becomes true
    for a boolean, ``0.5`` crashes with a traceback for a whole number.  Kept here, they are parsed
    by :func:`read_settings` like every other source -- and FABRIC_RETRACE_API_KEY no longer reaches
    any command this run starts.
    """
    environ = os.environ if environ is None else environ
    for name in [name for name in environ if name.startswith(FABRIC_ENV_PREFIX)]:
        _CAPTURED[name] = environ.pop(name)


def environment() -> dict[str, str]:
    """The process environment with the captured ``FABRIC_RETRACE_*`` variables (live ones win)."""
    return {**_CAPTURED, **os.environ}


def config_section(config) -> dict[str, t.Any]:
    """The ``retrace:`` section as a dict; raise InvalidInput if it is not a mapping or has unknown keys."""
    found = config.get(SECTION) if config is not None else None
    if found is None:
        return {}
    if not hasattr(found, "keys"):
        raise InvalidInput(SECTION, f"must be a mapping of settings (app_name: ..., steps: ...), got {type(found).__name__} {found!r}")
    section = {key: found[key] for key in found.keys()}
    unknown = [key for key in section if key not in KNOWN_KEYS]
    if unknown:
        hints = [f"{key!r}" + (f" (did you mean {match[0]}?)" if (match := difflib.get_close_matches(key.replace("-", "_"), KNOWN_KEYS, 1)) else "")
                 for key in unknown]
        raise InvalidInput(SECTION, f"unknown setting {', '.join(hints)}; known settings: {', '.join(KNOWN_KEYS)}")
    return section


def read_settings(config, environ: t.Mapping[str, str] | None = None) -> FabricSettings:
    """Check the section and the environment; raise :class:`InvalidInput` naming the setting at fault."""
    environ = environment() if environ is None else environ
    section = config_section(config)
    values = {name: _fabric_setting(name, kind, default, section, environ) for name, (kind, default) in FABRIC_SETTINGS.items()}
    Lifecycle.create(strict=values["strict"], stale_start=values["stale_start"], orphan_guard=values["orphan_guard"])
    return FabricSettings(shared={option: section.get(option) for option in SHARED_OPTIONS}, **values)


def _fabric_setting(name: str, kind: str, default, section: t.Mapping[str, t.Any], environ: t.Mapping[str, str]):
    candidates = [(FABRIC_ENV_PREFIX + name.upper(), environ.get(FABRIC_ENV_PREFIX + name.upper()) or None)]
    if name in core_settings.LIFECYCLE_ENVIRONMENT_VARIABLES:
        variable = core_settings.LIFECYCLE_ENVIRONMENT_VARIABLES[name]
        candidates.append((variable, environ.get(variable) or None))
    candidates.append((f"{SECTION}.{name}", section.get(name)))
    source, value = next(((source, value) for source, value in candidates if value is not None), (None, None))
    if value is None:
        return default
    if kind == "bool":
        return parse_boolean(value, name)
    if kind == "float":
        return _seconds(value, name, source)
    if kind == "str" or kind == "choice":
        if not isinstance(value, str):
            raise InvalidInput(name, f"must be a string, got {type(value).__name__} (from {source})")
        return value
    if kind == "list" and isinstance(value, str):
        raise InvalidInput(name, f"must be a list of commands in fabric.yaml, not a string (from {source})")
    return value


def _seconds(value, name: str, source: str) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise InvalidInput(name, f"must be a number of seconds, got {value!r} (from {source})") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(name, f"must be a number of seconds, got {type(value).__name__} (from {source})")
    return float(value)


def resolve_options(config, flags: t.Mapping[str, t.Any] | None = None, environ: t.Mapping[str, str] | None = None,
                    directory: str | None = None, settings: FabricSettings | None = None,
                    version_fallback: t.Callable[[dict], str | None] | None = None) -> dict[str, t.Any]:
    """Every option for the core's ``create_client``, chosen in the documented order; nothing is validated here.

    ``version_fallback(options)`` is asked for a version when no flag, variable or setting gave one,
    before ``git describe`` (single calls pass the ledger's answer).
    """
    environ = environment() if environ is None else environ
    flags = flags or {}
    settings = settings or read_settings(config, environ)
    shared_environment = core_settings.from_environment(environ)
    options: dict[str, t.Any] = {}
    for option in SHARED_OPTIONS:
        candidates = (
            flags.get(option) if option in FLAG_OPTIONS else None,
            environ.get(FABRIC_ENV_PREFIX + option.upper()) or None,
            shared_environment.get(option),
            settings.shared.get(option),
        )
        options[option] = next((value for value in candidates if value is not None), None)
    if options["version"] is None and version_fallback is not None:
        options["version"] = version_fallback(options)
    if settings.detect_source:
        options.update(_detected(options, environ, directory or os.getcwd()))
    # name_format (the same setting as the Ansible entry points'); no controller job fields in Fabric.
    options["name"] = core_settings.deployment_name(options)
    options.update(validate_certs=settings.validate_certs, timeout=settings.timeout, deadline=settings.deadline)
    return options


def _detected(options: t.Mapping[str, t.Any], environ: t.Mapping[str, str], directory: str) -> dict[str, t.Any]:
    """Fill version, branch, commit and uri the user left unset, from the CI system or git."""
    explicit = {field: options[field] for field in ("branch", "commit", "uri")}
    source = detect_source(environ, directory, **{field: value for field, value in explicit.items() if isinstance(value, str)})
    filled = {field: value if value is not None else getattr(source, field) for field, value in explicit.items()}
    if options["version"] is None:
        filled["version"] = git_describe(directory)
    return filled


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
