# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings shared by every entry point: names, environment variables, defaults, checks.

The module, the callback, the role and the Fabric tasks all read the same option
names; this file is the one place that says what they are and which environment
variables feed them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import stat
import string
import typing as t
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidInput
from ._redaction import ApiKey

# The release version, sent in the User-Agent.  The one place code reads it: pyproject.toml takes the Fabric
# wheel's version from this line; tests/unit/test_collection_metadata.py fails when galaxy.yml says another.
VERSION = "2.0.0"
DEFAULT_API_URL = "https://api.stackify.net"
DEFAULT_TIMEOUT = 10.0
DEFAULT_DEADLINE = 30.0
#: bytes of ``api_key_file`` read at most: a Stackify key is a few dozen characters
API_KEY_FILE_LIMIT = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: what a 401 tells the user to check, by the setting the key came from
KEY_SOURCES = {"api_key": "api_key / RETRACE_API_KEY", "api_key_file": "the file named by api_key_file / RETRACE_API_KEY_FILE"}


# --- every option, once: what it holds, its default, its environment variables ---------------------------

@dataclasses.dataclass(frozen=True)
class Option:
    """One setting, as every entry point knows it: its kind decides how a value is checked (:mod:`._resolve`).

    Kinds: ``text`` (a deployment field), ``key``, ``path``, ``url``, ``format`` (``name_format``), ``bool``,
    ``seconds``, ``choice``, ``list`` (Fabric's steps).
    """

    kind: str
    default: t.Any = None
    #: environment variables read for it, first one set (not empty) wins
    environment: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


STALE_START_CHOICES = ("recover", "fail")
#: the settings every entry point shares, by name; entry points add their own (``OPTIONS_BY_ENTRY_POINT``)
OPTIONS: dict[str, Option] = {
    "api_key": Option("key", environment=("RETRACE_API_KEY", "STACKIFY_API_KEY")),
    "api_key_file": Option("path", environment=("RETRACE_API_KEY_FILE",)),
    "api_url": Option("url", DEFAULT_API_URL, ("RETRACE_API_URL",)),
    "app_name": Option("text", environment=("RETRACE_APP_NAME",)),
    "environment_name": Option("text", environment=("RETRACE_ENVIRONMENT_NAME",)),
    "version": Option("text", environment=("RETRACE_VERSION",)),
    "name": Option("text", environment=("RETRACE_DEPLOYMENT_NAME",)),
    "name_format": Option("format", environment=("RETRACE_NAME_FORMAT",)),
    "branch": Option("text", environment=("RETRACE_BRANCH",)),
    "commit": Option("text", environment=("RETRACE_COMMIT",)),
    "uri": Option("text", environment=("RETRACE_URI",)),
    "validate_certs": Option("bool", True),
    "ca_path": Option("path"),
    "timeout": Option("seconds", DEFAULT_TIMEOUT),
    "deadline": Option("seconds", DEFAULT_DEADLINE),
    "strict": Option("bool", False, ("RETRACE_STRICT",)),
    "stale_start": Option("choice", "recover", ("RETRACE_STALE_START",), STALE_START_CHOICES),
    "orphan_guard": Option("bool", True, ("RETRACE_ORPHAN_GUARD",)),
}
#: settings only some entry points have
CALLBACK_OPTIONS: dict[str, Option] = {
    "use_proxy": Option("bool", True),
    "time_budget": Option("seconds", 10.0, ("RETRACE_TIME_BUDGET",)),
    "track_check_mode": Option("bool", False, ("RETRACE_TRACK_CHECK_MODE",)),
    "track_ad_hoc": Option("bool", False, ("RETRACE_TRACK_AD_HOC",)),
}
MODULE_OPTIONS: dict[str, Option] = {"use_proxy": Option("bool", True)}
FABRIC_OPTIONS: dict[str, Option] = {
    "steps": Option("list", ()),
    "parallel": Option("bool", True),
    "fail_fast": Option("bool", True),
    "detect_source": Option("bool", True),
}
#: option -> environment variables read for it (the shared options that have any)
ENVIRONMENT_VARIABLES = {name: option.environment for name, option in OPTIONS.items() if option.environment}
DEPLOYMENT_OPTIONS = ("app_name", "environment_name", "version", "name", "branch", "commit", "uri")
#: placeholders ``name_format`` may use: the deployment's own fields, then what a controller job
#: (AWX / Automation Platform) says about itself (empty outside one)
NAME_FORMAT_FIELDS = ("version", "app_name", "environment_name", "branch", "commit",
                      "user", "job_template", "job_id", "workflow")

# Words Ansible's own ``boolean()`` accepts (ansible.module_utils.parsing.convert_bool, 2.19), so that
# RETRACE_STRICT=yes means the same to the callback, the module and Fabric.  Anything else is refused
# rather than guessed: Invoke would read FABRIC_RETRACE_STRICT=false as true.
TRUE_WORDS = frozenset(("y", "yes", "on", "1", "true", "t"))
FALSE_WORDS = frozenset(("n", "no", "off", "0", "false", "f", ""))


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """Where and how to talk to Retrace.  Build it with :meth:`create`."""

    api_key: ApiKey
    api_url: str = DEFAULT_API_URL
    validate_certs: bool = True
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    #: the setting the key came from (:data:`KEY_SOURCES`), named when Retrace rejects it
    key_source: str = KEY_SOURCES["api_key"]

    @classmethod
    def create(cls, api_key=None, api_url=None, validate_certs=True, timeout=None, deadline=None,
               api_key_file=None) -> "ApiSettings":
        """Validate and normalise; raise :class:`InvalidInput` naming the option at fault.

        The key comes from ``api_key`` or from the file ``api_key_file`` names (:func:`resolve_api_key`),
        read here, once: the settings (and the orphan guard, which gets them in memory) hold the key itself.
        """
        key = resolve_api_key(api_key, api_key_file)
        url = _check_api_url(DEFAULT_API_URL if api_url is None else api_url)
        if not isinstance(validate_certs, bool):
            raise InvalidInput("validate_certs", f"must be true or false, got {type(validate_certs).__name__}")
        timeout = _check_seconds(DEFAULT_TIMEOUT if timeout is None else timeout, "timeout")
        deadline = _check_seconds(DEFAULT_DEADLINE if deadline is None else deadline, "deadline")
        from_file = api_key_file is not None and api_key_file != "" and (api_key is None or api_key == "")
        source = KEY_SOURCES["api_key_file" if from_file else "api_key"]
        return cls(api_key=key, api_url=url, validate_certs=validate_certs, timeout=timeout, deadline=deadline,
                   key_source=source)

    def endpoint(self, action: str) -> str:
        return f"{self.api_url}/api/v1/deployments/{action}"


def parse_boolean(value, option: str) -> bool:
    """``value`` (a bool, 0/1, or a word such as "yes" / "false") as a bool; raise InvalidInput otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise InvalidInput(option, f"must be true or false, got {value!r}")


def parse_seconds(value, option: str) -> float:
    """``value`` (a number, or its text: ``"2.5"``) as seconds in (0, 3600]; raise InvalidInput otherwise."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidInput(option, f"must be a number of seconds, got {value!r}") from None
    return _check_seconds(value, option)


@dataclasses.dataclass(frozen=True)
class TrackingPolicy:
    """How a tracked run treats Retrace; build it with :meth:`create`.

    - ``strict``: False (default) -- a start or end that Retrace refuses or cannot receive, or a setting that is
      missing or invalid, is one warning line and the deployment goes on; True -- it fails the run.
    - ``stale_start``: "recover" (default) -- a start answered 409 "already in progress", with no live
      run on this machine holding that deployment, cancels the stale deployment and starts again, once;
      "fail" -- the 409 is an error like any other.
    - ``orphan_guard``: True (default) -- a detached watcher cancels the deployment if the process that
      started it dies without ending it (see :mod:`._guard`).
    - ``time_budget``: the most seconds tracking may add to the whole run, every call together (the callback's
      ``time_budget``); None -- each call has its own ``deadline`` only.
    """

    strict: bool = False
    stale_start: str = "recover"
    orphan_guard: bool = True
    time_budget: float | None = None

    @classmethod
    def create(cls, strict=None, stale_start=None, orphan_guard=None, time_budget=None) -> "TrackingPolicy":
        """Validate; None means the default. Raise :class:`InvalidInput` naming the option at fault."""
        stale = cls.stale_start if stale_start is None else stale_start
        # Exactly as written, as Ansible's ``choices`` checks it: one environment, one outcome.
        if stale not in STALE_START_CHOICES:
            raise InvalidInput("stale_start", f"must be one of {', '.join(STALE_START_CHOICES)}, got {stale!r}")
        return cls(strict=cls.strict if strict is None else parse_boolean(strict, "strict"),
                   stale_start=stale,
                   orphan_guard=cls.orphan_guard if orphan_guard is None else parse_boolean(orphan_guard, "orphan_guard"),
                   time_budget=None if time_budget is None else parse_seconds(time_budget, "time_budget"))


# --- the deployment Name ---------------------------------------------------------------------------------


def deployment_name(options, job_fields=None) -> str | None:
    """The ``Name`` to send: ``options["name"]`` if set, else ``options["name_format"]`` rendered, else None.

    ``options`` uses the shared option names; ``job_fields`` are a controller job's own values
    (``ControllerJob.name_fields()``).  None lets Retrace show the version, as it always did.
    Raises :class:`InvalidInput` for a bad ``name_format`` (:func:`render_name_format`).
    """
    if options.get("name") or not options.get("name_format"):
        if options.get("name"):
            check_rendered(options["name"], "name")
        return options.get("name") or None
    fields = {field: options.get(field) for field in DEPLOYMENT_OPTIONS}
    fields.update(job_fields or {})
    return shorten_name(render_name_format(options["name_format"], fields)) or None


#: the longest ``Name`` sent (the core's limit for text fields, deployment.DEFAULT_MAX_LENGTH)
NAME_LIMIT = 255


def shorten_name(name: str) -> str:
    """A Name rendered from ``name_format``, cut to :data:`NAME_LIMIT` characters ending with "…" if longer.

    A rendered Name is cosmetic (a long job template or workflow name should not turn tracking off); an explicit
    ``name`` that is too long is still refused, since whoever wrote it can shorten it.
    """
    return name if len(name) <= NAME_LIMIT else name[:NAME_LIMIT - 1].rstrip() + "\u2026"


#: what left in a value shows a Jinja expression that was never rendered
JINJA_MARKERS = ("{{", "{%")


def check_rendered(value, option: str) -> None:
    """Refuse ``value`` holding ``{{`` or ``{%``: a Jinja expression nobody rendered, which would be sent as is.

    Entry points template what Ansible would template; what is left holding these pairs was never meant to be sent:
    a value given at launch (AWX marks launch-time extra vars unsafe, never templated), or one from the environment or
    a configuration file, which nothing templates.  No real version, app, environment, branch, commit, link or name
    holds them.  Raises :class:`InvalidInput` naming ``option``.
    """
    if isinstance(value, str) and any(marker in value for marker in JINJA_MARKERS):
        raise InvalidInput(option, f"holds a Jinja expression that was not rendered ({value.strip()[:80]!r}): values given at "
                                   "launch (AWX marks them unsafe), in the environment or in a configuration file are not "
                                   "templated; give the value itself")


def render_name_format(name_format: str, fields) -> str:
    """The deployment ``Name`` that ``name_format`` (e.g. ``"{version} by {user} ({job_template})"``) gives.

    ``fields`` maps :data:`NAME_FORMAT_FIELDS` to text or None; None renders as nothing and runs of
    spaces are collapsed.  Python format specs apply (``{commit:.7}``: the first 7 characters).
    Raises :class:`InvalidInput` ("name_format") for an unknown placeholder, attribute or index access,
    a conversion (``!r``) or a bad spec, before anything is sent.
    """
    if not isinstance(name_format, str):
        raise InvalidInput("name_format", f"must be a string, got {type(name_format).__name__}")
    values = {field: "" if fields.get(field) is None else str(fields[field]) for field in NAME_FORMAT_FIELDS}
    try:
        parsed = list(string.Formatter().parse(name_format))
    except ValueError as error:
        raise InvalidInput("name_format", f"is not a valid format ({error}); write literal braces as {{{{ and }}}}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        written = f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
        if "{" in (spec or ""):
            raise InvalidInput("name_format", f"has a placeholder inside the format spec of {{{field}}} ({written}): "
                                              "a spec is plain text, such as {commit:.7}")
        if conversion:
            raise InvalidInput("name_format", f"has {written}: conversions (!r, !s, !a) are not allowed; "
                                              "write the placeholder alone, such as {version}")
        if field not in NAME_FORMAT_FIELDS:
            raise InvalidInput("name_format", f"has {{{field}}}: use only "
                               + ", ".join(f"{{{name}}}" for name in NAME_FORMAT_FIELDS))
    try:
        rendered = name_format.format_map(values)
    except ValueError as error:
        raise InvalidInput("name_format", f"has a bad format spec ({error})") from None
    return " ".join(rendered.split())


def is_loopback_host(host: str) -> bool:
    """True for the hosts a plain ``http://`` API may name: ``localhost`` as written (any case) and loopback addresses.

    Not ``localhost.``: an absolute name, which resolvers look up in DNS rather than ``/etc/hosts``, and DNS may answer
    with any address; nor other names (``localhost.localdomain``, ``ip6-localhost``), which only some machines map to
    loopback.  Whatever the name, the transport also checks the address it connected to before it sends a byte
    (transport.py): a name is the user's intent, the address is what receives the key.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: the longest host name DNS carries (RFC 1035: 255 octets on the wire), and the longest label
HOST_NAME_LIMIT = 253
LABEL_LIMIT = 63
_HOST_NAME_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "-_")


def host_problem(host: str) -> str | None:
    """What keeps ``host`` (a URL's host: lower case, IPv6 without brackets) from being looked up, or None.

    An IP address, or a name whose labels are letters, digits, ``-`` and ``_`` once IDNA-encoded (as the socket
    module encodes it), none empty (a trailing dot is the root, not a label), none longer than 63 characters, the
    whole at most 253: what a resolver takes.  Checked with the settings, so that such a host is a setting named
    in one line rather than a ``UnicodeError`` from the first connection.
    """
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if "" in labels:
        return "has an empty label (two dots in a row, or a leading dot)"
    encoded = []
    for label in labels:
        if label.isascii() and len(label) > LABEL_LIMIT:
            return f"has a label longer than {LABEL_LIMIT} characters"
        try:
            encoded.append(label.encode("idna").decode("ascii").lower())
        except UnicodeError:  # a character IDNA refuses, or a label longer than 63 characters once encoded
            return "is not a valid host name (it cannot be IDNA-encoded)"
        if not set(encoded[-1]) <= _HOST_NAME_CHARACTERS:
            return "is not a valid host name (letters, digits, - and _ only)"
    if len(".".join(encoded)) > HOST_NAME_LIMIT:
        return f"is longer than {HOST_NAME_LIMIT} characters"
    return None


def resolve_api_key(api_key=None, api_key_file=None) -> ApiKey:
    """The API key, from ``api_key`` (text or :class:`ApiKey`) or read from the file ``api_key_file`` names.

    Each entry point hands over what it found for both settings, its own option first, else the environment
    (``api_key``: ``RETRACE_API_KEY``, then ``STACKIFY_API_KEY``; ``api_key_file``: ``RETRACE_API_KEY_FILE``);
    None or "" is unset.  Both set, from whichever source, is an error: two keys in play (say a playbook's
    ``api_key`` and a controller credential's file) are two accounts perhaps, and no rule could tell which
    one is meant -- so the same settings and environment give the same outcome on every entry point.

    Raises :class:`InvalidInput`: naming ``api_key`` when neither is set or the key is malformed, both names
    when both are set ("set api_key or api_key_file, not both"), ``api_key_file`` and its path for a file
    that cannot be used (:func:`read_api_key_file`).  No message ever holds the key or any part of the file.
    """
    given_key = api_key is not None and api_key != ""
    given_file = api_key_file is not None and api_key_file != ""
    if given_key and given_file:
        raise InvalidInput("api_key, api_key_file", "both are set: set api_key or api_key_file, not both (api_key may "
                                                    "come from RETRACE_API_KEY or STACKIFY_API_KEY, api_key_file from "
                                                    "RETRACE_API_KEY_FILE)")
    if given_file:
        return read_api_key_file(api_key_file)
    return _check_api_key(api_key)


def read_api_key_file(path) -> ApiKey:
    """The key held by the regular file ``path`` (``~`` and ``$VARS`` expanded): UTF-8 text, surrounding whitespace
    and newlines stripped, at most :data:`API_KEY_FILE_LIMIT` bytes.

    The file is opened once, with ``O_NONBLOCK`` so that a FIFO cannot hang the run, and checked with ``fstat``
    on the open descriptor (a regular file; no race with a rename).  Raises :class:`InvalidInput` naming ``api_key_file`` and ``path`` if it is
    missing, unreadable, not a regular file, too large, not UTF-8, empty, or holds a malformed key; the
    content is never quoted.
    """
    if not isinstance(path, str):
        raise InvalidInput("api_key_file", f"must be a path, got {type(path).__name__}")
    expanded = os.path.expanduser(os.path.expandvars(path))
    try:
        descriptor = os.open(expanded, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise InvalidInput("api_key_file", f"cannot read {path!r}: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise InvalidInput("api_key_file", f"{path!r} is not a regular file")
        chunks, size = [], 0
        while size <= API_KEY_FILE_LIMIT:
            chunk = os.read(descriptor, API_KEY_FILE_LIMIT + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise InvalidInput("api_key_file", f"cannot read {path!r}: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    if size > API_KEY_FILE_LIMIT:
        raise InvalidInput("api_key_file", f"{path!r} is larger than {API_KEY_FILE_LIMIT} bytes: it should hold the API key only")
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("api_key_file", f"{path!r} is not UTF-8 text") from None
    key = text.strip()
    if not key:
        raise InvalidInput("api_key_file", f"{path!r} is empty: it should hold the API key")
    return _check_api_key(key, option="api_key_file", where=f" (in {path!r})")


def _check_api_key(api_key, option: str = "api_key", where: str = "") -> ApiKey:
    if isinstance(api_key, ApiKey):
        api_key = api_key.reveal()
    if api_key is None or api_key == "":
        raise InvalidInput("api_key", "is required: set api_key or api_key_file, or the RETRACE_API_KEY or "
                                      "RETRACE_API_KEY_FILE environment variable")
    if not isinstance(api_key, str):
        raise InvalidInput(option, f"must be a string, got {type(api_key).__name__}")
    # Never echo the key back, not even the offending part of it.
    if any(char.isspace() or not char.isprintable() for char in api_key):
        raise InvalidInput(option, f"must not contain spaces, newlines or control characters{where} "
                                   "(check how it was pasted or templated)")
    # Stackify keys are ASCII; anything else cannot go into an HTTP header and would fail deep in http.client.
    if not api_key.isascii():
        raise InvalidInput(option, f"must contain only ASCII characters{where} (check how it was pasted or templated)")
    return ApiKey(api_key)


def normalise_api_url(api_url) -> str:
    """``api_url`` checked and in one spelling: scheme and host in lower case, no default port, no trailing slash.

    So that ``https://API.stackify.net:443/`` and ``https://api.stackify.net`` are one API for the requests,
    the messages, the orphan guard's identity and the ledger.  Raises :class:`InvalidInput` naming ``api_url``.
    """
    return _check_api_url(api_url)


def _check_api_url(api_url) -> str:
    if not isinstance(api_url, str) or not api_url.strip():
        raise InvalidInput("api_url", "must be a non-empty URL such as https://api.stackify.net")
    url = api_url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address
        raise InvalidInput("api_url", f"is not a valid URL, got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("api_url", f"must be an absolute https:// URL, got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput("api_url", "must not carry credentials, a query or a fragment")
    problem = host_problem(parts.hostname)
    if problem is not None:
        raise InvalidInput("api_url", f"host {parts.hostname!r} {problem}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise InvalidInput("api_url", f"plain http:// would send the API key unencrypted to {parts.hostname}; "
                           "use https:// (http is allowed only for localhost, as written, and loopback addresses)")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput("api_url", f"has an invalid port, got {url!r}") from None
    host = parts.hostname  # lower case, without the brackets of an IPv6 address
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _check_seconds(value, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(option, f"must be a number of seconds, got {type(value).__name__}")
    if not 0 < value <= 3600:
        raise InvalidInput(option, f"must be more than 0 and at most 3600 seconds, got {value}")
    return float(value)
