# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each Fabric setting comes from, and in which order.

Shared options (the ones every entry point of stackify.retrace knows), highest first:

1. task flags (``--app-name`` ...; never the key: flags leak into shell history and ``ps``)
2. ``FABRIC_RETRACE_<OPTION>`` environment variables
3. the shared ``RETRACE_*`` environment variables (``STACKIFY_API_KEY`` too)
4. the ``retrace:`` section of Fabric's config files (``-f`` file, ``fabric.yaml`` beside the
   fabfile, ``~/.fabric.yaml``, ``/etc/fabric.yaml``, in Fabric's own order)
5. detection: version from ``git describe``, branch / commit / uri from the CI system or git
6. built-in defaults (``api_url``: https://api.stackify.net)

Fabric-only settings (``steps``, ``parallel``, ``strict``, ``validate_certs``, ``ca_path``,
``timeout``, ``deadline``, ``detect_source``) follow Fabric's own config order.
"""

from __future__ import annotations

import os
import typing as t

from .core import settings as core_settings
from .core.source import detect_source, git_describe

SECTION = "retrace"
SHARED_OPTIONS = tuple(core_settings.ENVIRONMENT_VARIABLES)
#: options a task flag may set; the key is deliberately absent
FLAG_OPTIONS = tuple(option for option in SHARED_OPTIONS if option != "api_key")
FABRIC_ENV_PREFIX = "FABRIC_RETRACE_"

#: the ``retrace:`` section's defaults, declared with ``Collection.configure`` so Fabric also
#: reads ``FABRIC_RETRACE_*`` for them (Fabric ignores environment variables for undeclared keys)
CONFIG_DEFAULTS: dict[str, t.Any] = {
    **{option: None for option in SHARED_OPTIONS},
    "validate_certs": True,
    "ca_path": None,
    "timeout": core_settings.DEFAULT_TIMEOUT,
    "deadline": core_settings.DEFAULT_DEADLINE,
    "steps": [],
    "parallel": True,
    "strict": True,
    "detect_source": True,
}


def config_section(config) -> t.Mapping[str, t.Any]:
    """The ``retrace:`` section merged over the defaults (a user's fabfile may not declare them)."""
    found = config.get(SECTION) if config is not None else None
    return {**CONFIG_DEFAULTS, **dict(found or {})}


def resolve_options(config, flags: t.Mapping[str, t.Any] | None = None, environ: t.Mapping[str, str] | None = None,
                    directory: str | None = None) -> dict[str, t.Any]:
    """Every option for the core's ``create_client``, chosen in the documented order; nothing is validated here."""
    environ = os.environ if environ is None else environ
    flags = flags or {}
    section = config_section(config)
    shared_environment = core_settings.from_environment(environ)
    options: dict[str, t.Any] = {}
    for option in SHARED_OPTIONS:
        candidates = (
            flags.get(option) if option in FLAG_OPTIONS else None,
            environ.get(FABRIC_ENV_PREFIX + option.upper()) or None,
            shared_environment.get(option),
            section.get(option),
        )
        options[option] = next((value for value in candidates if value is not None), None)
    if section["detect_source"]:
        options.update(_detected(options, environ, directory or os.getcwd()))
    for option in ("validate_certs", "timeout", "deadline"):
        options[option] = section[option]
    return options


def _detected(options: t.Mapping[str, t.Any], environ: t.Mapping[str, str], directory: str) -> dict[str, t.Any]:
    """Fill version, branch, commit and uri the user left unset, from the CI system or git."""
    explicit = {field: options[field] for field in ("branch", "commit", "uri")}
    source = detect_source(environ, directory, **{field: value for field, value in explicit.items() if isinstance(value, str)})
    filled = {field: value if value is not None else getattr(source, field) for field, value in explicit.items()}
    if options["version"] is None:
        filled["version"] = git_describe(directory)
    return filled


def transport_options(config) -> dict[str, t.Any]:
    section = config_section(config)
    return {"validate_certs": section["validate_certs"], "ca_path": section["ca_path"]}
