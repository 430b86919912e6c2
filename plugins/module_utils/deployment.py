# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a deployment is, how it is validated, and how it looks on the wire.

Everything a user can get wrong is checked here, before anything is sent, and each
problem is reported by the option name the user typed (``app_name``, not ``AppName``).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from urllib.parse import urlsplit

from .errors import InvalidInput
from .settings import check_rendered

START = "start"
COMPLETE = "complete"
CANCEL = "cancel"
ACTIONS = (START, COMPLETE, CANCEL)

#: option name -> JSON field name, in the order Stackify documents them
WIRE_FIELDS = {
    "name": "Name",
    "uri": "Uri",
    "branch": "Branch",
    "commit": "Commit",
    "version": "Version",
    "app_name": "AppName",
    "environment_name": "EnvironmentName",
}
IDENTITY_OPTIONS = ("app_name", "environment_name", "version")
DESCRIPTIVE_OPTIONS = ("name", "branch", "commit", "uri")

# The public record gives no limits; these are our contract (the emulator enforces them).
MAX_LENGTH = {"uri": 2048}
DEFAULT_MAX_LENGTH = 255


@dataclasses.dataclass(frozen=True)
class Deployment:
    """One deployment, identified by app, environment and version.

    Build it with :meth:`create`, which validates and normalises; the constructor
    itself trusts its arguments.
    """

    app_name: str
    environment_name: str
    version: str
    name: str | None = None
    branch: str | None = None
    commit: str | None = None
    uri: str | None = None

    @classmethod
    def create(cls, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None) -> "Deployment":
        """Validate every field and return a deployment; raise :class:`InvalidInput` naming the first bad option."""
        # An explicit name is checked for unrendered Jinja by settings.deployment_name; a rendered one may quote a
        # job template's name, whatever it holds.
        for option, value in (("app_name", app_name), ("environment_name", environment_name), ("version", version),
                              ("branch", branch), ("commit", commit), ("uri", uri)):
            check_rendered(value, option)
        values = {
            "app_name": _required(app_name, "app_name"),
            "environment_name": _required(environment_name, "environment_name"),
            "version": _required(version, "version"),
            "name": _optional(name, "name"),
            "branch": _optional(branch, "branch"),
            "commit": _optional(commit, "commit"),
            "uri": _optional(uri, "uri"),
        }
        if values["uri"] is not None:
            _check_absolute_http_url(values["uri"], "uri")
        return cls(**values)

    @property
    def display_name(self) -> str:
        """Name as Retrace shows it: Name defaults to Version."""
        return self.name or self.version

    def payload(self, action: str) -> dict:
        """The JSON body for ``action``; optional fields that are unset are left out, not sent as null."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        options = IDENTITY_OPTIONS if action == CANCEL else DESCRIPTIVE_OPTIONS + IDENTITY_OPTIONS
        fields = {WIRE_FIELDS[option]: getattr(self, option) for option in options}
        if action != CANCEL:
            fields["Name"] = self.display_name
        # Keep Stackify's documented field order so bodies read like their examples.
        return {wire: fields[wire] for wire in WIRE_FIELDS.values() if fields.get(wire) is not None}

    def as_options(self) -> dict:
        """The fields by option name, for results returned to users."""
        return {option: value for option, value in dataclasses.asdict(self).items() if value is not None}


def _required(value, option: str) -> str:
    if value is None:
        raise InvalidInput(option, "is required but was not set")
    text = _check_text(value, option)
    if not text:
        raise InvalidInput(option, "is required but is empty")
    return text


def _optional(value, option: str) -> str | None:
    if value is None:
        return None
    text = _check_text(value, option)
    return text or None


def _check_text(value, option: str) -> str:
    """Common checks for every field; returns the value with surrounding blanks trimmed."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise InvalidInput(option, f"must be a string, got {type(value).__name__}")
    text = value.strip()
    bad = next((char for char in text if unicodedata.category(char) in ("Cc", "Cs")), None)
    if bad is not None:
        raise InvalidInput(option, f"must not contain control characters (found {bad!r})")
    limit = MAX_LENGTH.get(option, DEFAULT_MAX_LENGTH)
    if len(text) > limit:
        raise InvalidInput(option, f"must be at most {limit} characters, got {len(text)}")
    return text


def _check_absolute_http_url(url: str, option: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(option, f"must be an absolute http:// or https:// URL, got {url!r}")
    if any(char.isspace() for char in url):
        raise InvalidInput(option, "must not contain spaces (encode them as %20)")
