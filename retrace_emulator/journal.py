"""The journal: every API request the emulator received, in arrival order, with what it did about it.

Entries are plain JSON-ready dicts so that tests, the HTTP endpoint and the JSON-lines file all see the
same thing. An entry never holds an API key, only `key_fingerprint`.

Entry fields:
    seq, time (ISO 8601, UTC), monotonic, method, path, action (None off the API paths),
    status (what the client received; None when it received no HTTP answer),
    outcome ("answered", "dropped", "reset", "hung"), processed (the deployment logic ran),
    processed_status (what the deployment logic decided, even when the answer was lost),
    fault (the fault spec applied, or None), key_fingerprint, headers (Content-Type, User-Agent),
    body_raw (the body text as received; undecodable bytes shown as U+FFFD), body (parsed JSON or None),
    response (the JSON body sent, or None), warnings (list of strings).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from retrace_emulator.accounts import key_fingerprint
from retrace_emulator.faults import describe_fault_spec

RECORDED_HEADERS = ("Content-Type", "User-Agent")
# Our clients send "stackify-retrace/<version> (<entry point>; ...)"; the orphan guard's watcher adds "; orphan-guard".
_OUR_AGENT = re.compile(r"stackify-retrace/\S+ \(([^)]*)\)")
ORPHAN_GUARD_MARK = "orphan-guard"


def _copy(value: Any) -> Any:
    # Entries hold only JSON values: a JSON round trip copies them several times faster than copy.deepcopy.
    return json.loads(json.dumps(value))


class Journal:
    """Thread-safe list of entries, mirrored as JSON lines to a file when a path is given."""

    def __init__(self, path: str | None = None):
        self.path = path
        self._lock = threading.Lock()
        self._entries: list[dict] = []
        self._seq = 0
        self._file = None

    def open_file(self) -> None:
        """Start mirroring to the file, if a path was given.

        Append, line-buffered: the file survives resets and restarts and can be tailed while tests run.
        """
        with self._lock:
            if self.path and self._file is None:
                self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # pylint: disable=consider-using-with

    def record(self, entry: dict) -> int:
        """Give the entry its sequence number, store it and write it out; return the number.

        A stored entry is never changed afterwards (the handler is done with it once recorded): readers take references
        under the lock and copy them after releasing it, so a reader of large entries never holds up the API calls
        that wait to be recorded. (No copy is made for the caller: every API call records an entry, none reads it back.)
        """
        with self._lock:
            self._seq += 1
            seq = self._seq
            stored = {"seq": seq, **entry}
            self._entries.append(stored)
            if self._file is not None:
                self._file.write(json.dumps(stored, ensure_ascii=False) + "\n")
        return seq

    def entries(self) -> list[dict]:
        """Copies of all entries, so callers cannot change the record."""
        with self._lock:
            entries = list(self._entries)
        return _copy(entries)

    def entries_after(self, seq: int, limit: int, view: Callable[[dict], Any] | None = None) -> tuple[list[Any], int]:
        """The newest ``limit`` entries numbered after ``seq``, and how many entries follow ``seq`` in all.

        Each entry is passed through ``view`` (default: a full copy) after the lock is released; a view must not change
        the entry it is given. Only those entries are read: a reader that follows the journal pays for what is new
        and for what it keeps of it, not for the journal's length nor for whole entries it does not show.
        """
        with self._lock:
            # entry n sits at index n - 1: numbering restarts with the list
            first = max(seq, 0)
            newer = len(self._entries) - first
            chosen = self._entries[max(first, len(self._entries) - limit):] if limit > 0 else []
        return [(view or _copy)(entry) for entry in chosen], max(newer, 0)

    def clear(self) -> None:
        """Forget the entries and restart numbering; the file keeps its history."""
        with self._lock:
            self._entries.clear()
            self._seq = 0

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def format_timeline(entries: Iterable[dict]) -> str:
    """Render entries as a table: time offset, client, action, app/env/version, status, note.

    The offset counts from the first entry. The note shows the fault applied, else the error message
    or the first warning.
    """
    entries = list(entries)
    if not entries:
        return "(no requests)"
    origin = entries[0]["monotonic"]
    rows = [("TIME", "CLIENT", "ACTION", "APP / ENVIRONMENT / VERSION", "STATUS", "NOTE")]
    rows.extend(_timeline_row(entry, origin) for entry in entries)
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5] for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _timeline_row(entry: dict, origin: float) -> tuple[str, str, str, str, str, str]:
    return (
        f"+{entry['monotonic'] - origin:.3f}s",
        _client(entry.get("headers") or {}),
        entry.get("action") or f"{entry['method']} {entry['path']}",
        _target(entry.get("body")),
        _status_cell(entry),
        _note(entry),
    )


def describe_agent(user_agent: str | None) -> tuple[str, bool]:
    """Who sent a request: (the entry point named in our User-Agent, else the agent's first word such as curl/8.5,
    and whether the orphan guard sent it)."""
    agent = user_agent or ""
    match = _OUR_AGENT.match(agent)
    if match:
        parts = [part.strip() for part in match.group(1).split(";")]
        return parts[0] or "-", ORPHAN_GUARD_MARK in parts[1:]
    return agent.split(" ", 1)[0] or "-", False


def _client(headers: dict) -> str:
    entry_point, by_guard = describe_agent(headers.get("User-Agent"))
    return f"{entry_point} (orphan guard)" if by_guard else entry_point


def _target(body) -> str:
    if not isinstance(body, dict):
        return "-"
    names = [body.get(name) for name in ("AppName", "EnvironmentName", "Version")]
    return " / ".join(name if isinstance(name, str) and name else "?" for name in names)


def _status_cell(entry: dict) -> str:
    if entry.get("status") is not None:
        return str(entry["status"])
    if entry.get("processed_status") is not None:
        return f"({entry['processed_status']}) {entry['outcome']}"
    return entry.get("outcome") or "-"


def _note(entry: dict) -> str:
    if entry.get("fault"):
        return f"fault: {describe_fault_spec(entry['fault'])}"
    response = entry.get("response")
    if isinstance(response, dict) and (entry.get("status") or 0) >= 300 and response.get("Message"):
        return str(response["Message"])
    warnings = entry.get("warnings") or []
    return f"warning: {warnings[0]}" if warnings else ""


def redact_entry(entry: dict, secrets: Iterable[str | None]) -> dict:
    """The entry with every API key a client put into it replaced (see `redact`), and a warning naming where it was.

    Every string of the entry is redacted, after decoding: the path and query (percent-encoded), a recorded header,
    the body as received (a key written with JSON escapes such as ``\\u002d``) and as parsed (values and the
    names of its members), the answer and the contract's messages that quote the body. The entry itself when no key
    is in it.
    """
    redacted = redact(entry, secrets)
    if redacted is entry:
        return entry
    leaked = [place for place, names in _REQUEST_PLACES.items() if any(redacted.get(name) is not entry.get(name) for name in names)]
    redacted["warnings"] = [*redacted["warnings"],
                            f"an API key appeared in the request {' and '.join(leaked or ['answer'])}; it was redacted from this entry"]
    return redacted


#: where a client can put a key, named as the warning names them, with the entry fields that hold each
_REQUEST_PLACES = {"method": ("method",), "path": ("path",), "headers": ("headers",), "body": ("body_raw", "body")}


def redact(value: Any, secrets: Iterable[str | None]) -> Any:
    """``value`` (JSON-like) with each secret replaced by ``<redacted key FINGERPRINT>`` in every string and member name.

    Every form a client or a server may write a key in is found (for keys of MIN_LENGTH_FOR_FORMS characters or more;
    shorter ones as written only): the key in any letter case (``EMULATOR-DEMO-KEY``), split by whitespace or line
    breaks, or by their escapes (``emulator -demo-key``, ``emulator-\\ndemo-key``), and its base64, standard or
    URL-safe, padded or not, alone or inside a longer base64 text (``ApiKey <key>`` encoded whole), at any alignment,
    also wrapped over lines: every base64 character the key's bytes take part in is replaced, with up to three of
    the text around it.

    A string is also read decoded, as a reader would decode it: percent-encoding (``emulator%2Ddemo%2Dkey``, up to
    three times over) and backslash escapes (``emulator\\u002ddemo-key``). A JSON string literal holding a key is
    replaced by the literal of its redacted value, so a JSON text stays JSON; any other string whose decoded form
    holds a key is shown decoded, redacted. Unchanged parts are the very same objects: ``redact(value) is value``
    when there is no key in it, and nothing is copied then.
    """
    secrets = tuple(sorted({secret for secret in secrets if secret}, key=lambda secret: (-len(secret), secret)))
    if not secrets or _surely_clean(value, secrets):
        return value
    return _redact_value(value, secrets)


def _surely_clean(value: Any, secrets: tuple[str, ...]) -> bool:
    """True when no string of ``value`` can hold a secret, even decoded or in another form: the test every API call's
    entry takes, a few passes of C code over its JSON text, without whitespace and case-folded.

    A string with a backslash (``\\\\`` in JSON), a ``%`` or a control character written ``\\u00..`` may hide one: such
    a value takes the thorough way. The escapes JSON writes for the other whitespace (``\\n``, ``\\t``) are dropped
    with it, as the split form's separators."""
    forms = [_forms(secret) for secret in secrets]
    if not all(form.plain_in_json for form in forms):
        return False  # JSON would write such a secret differently: the text cannot tell
    text = _JSON_TEXT(value)
    if "\\\\" in text or "%" in text or "\\u" in text:
        return False
    # In an ASCII JSON text the only whitespace left as written is the space.
    squeezed = text.replace(" ", "") if text.isascii() else "".join(text.split())
    if squeezed.count("\\") != squeezed.count('\\"'):  # not only quotes escaped: maybe "\n" and the like
        for escape in _JSON_WHITESPACE_ESCAPES:
            squeezed = squeezed.replace(escape, "")
    folded = squeezed.casefold()
    return not any(form.may_be_in(text, squeezed, folded) for form in forms)


def _redact_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if isinstance(value, dict):
        # Checked first, copied only when something changes: every API call's entry passes here, almost never with a key.
        if all(_redact_value(name, secrets) is name and _redact_value(item, secrets) is item for name, item in value.items()):
            return value
        return {_redact_value(name, secrets): _redact_value(item, secrets) for name, item in value.items()}
    if isinstance(value, list):
        if all(_redact_value(item, secrets) is item for item in value):
            return value
        return [_redact_value(item, secrets) for item in value]
    return value


# Made once (json.dumps makes one per call), compact: fewer spaces to drop (see `_surely_clean`).
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode
# What json.dumps(..., ensure_ascii=False) writes as an escape: a quote, a backslash, a control character.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
# A JSON string literal; no nested quantifier can backtrack.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BACKSLASH_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
#: percent-decoding rounds: a key encoded twice over (%252D) is still found
_PERCENT_ROUNDS = 3

# The forms of a key below mirror plugins/module_utils/_redaction.py, the collection's client's redaction, with its
# algorithm and its limits: the emulator is standard-library-only and runs without the collection (CI images, a
# laptop, a container of its own), so it cannot import it, and the few lines are copied. Two differences: a
# character's cases are spelled out ([kK]) rather than left to re.IGNORECASE (which also takes a few look-alikes, such
# as "ſ" for "s"), so that the quick test (`_surely_clean`), which case-folds the entry's text, finds whatever the
# patterns find; and a form that begins inside an escape takes its backslash along (the journal keeps JSON texts).

#: keys shorter than this are redacted only as written: their other forms would match ordinary text (as the client's)
MIN_LENGTH_FOR_FORMS = 8
#: what may stand between two characters of a key that was split: whitespace, or its escape as a server writes it
_SEPARATOR = r"(?:\s|\\[nrt])*"
#: base64 characters next to the part only the key decides: they hold its first and last bits (and a few of the text
#: around it, redacted too)
_BASE64_EDGE = r"[A-Za-z0-9+/_-]{0,3}"
#: how JSON writes the whitespace characters it escapes, but for those it writes \u000b-style (see `_surely_clean`)
_JSON_WHITESPACE_ESCAPES = ("\\n", "\\r", "\\t", "\\f")


class _Forms:
    """One key's forms, the test for them in an entry's JSON text, and what replaces them."""

    def __init__(self, secret: str):
        self.secret = secret
        self.marker = f"<redacted key {key_fingerprint(secret)}>"
        self.plain_in_json = not _JSON_ESCAPED.search(secret)  # JSON writes it as it is
        self.every_form = len(secret) >= MIN_LENGTH_FOR_FORMS
        forms = [re.escape(secret)]
        if self.every_form:
            self.folded = secret.casefold()
            self.cores = _base64_cores(secret.encode("utf-8"))
            forms = [_SEPARATOR.join(map(_cases, secret))] + [_BASE64_EDGE + _split_anywhere(core) + _BASE64_EDGE for core in self.cores]
        # With the backslashes just before it: a form may begin with the "n" of an escape "\n" (a base64 character), and
        # a marker put in its place would leave a lone backslash, a JSON text no longer JSON (see `_marker_after`).
        self.pattern = re.compile(r"(?P<slashes>\\*)(?:" + "|".join(forms) + ")")

    def may_be_in(self, text: str, squeezed: str, folded: str) -> bool:
        """Whether a JSON text (as written; without whitespace or its escapes; that case-folded) may hold a form."""
        if not self.every_form:
            return self.secret in text
        return self.folded in folded or any(core in squeezed for core in self.cores)

    def replace(self, text: str) -> str:
        return self.pattern.sub(self._marker_after, text)

    def _marker_after(self, match: re.Match) -> str:
        """The marker, after the backslashes before the form less the one that began an escape (an odd one out)."""
        slashes = match.group("slashes")
        return slashes[:len(slashes) // 2 * 2] + self.marker


@functools.lru_cache(maxsize=64)
def _forms(secret: str) -> _Forms:
    return _Forms(secret)


def _cases(character: str) -> str:
    """A pattern of the character in any of its cases that case-folds as it does (one character each)."""
    folded = character.casefold()
    cases = [case for case in dict.fromkeys((character, character.lower(), character.upper(), folded))
             if len(case) == 1 and case.casefold() == folded]
    return re.escape(character) if len(cases) == 1 else "[" + "".join(re.escape(case) for case in cases) + "]"


def _split_anywhere(text: str) -> str:
    return _SEPARATOR.join(re.escape(character) for character in text)


def _base64_cores(secret: bytes) -> list[str]:
    """The base64 characters only ``secret``'s bytes decide, for each alignment of it in a longer text, in both alphabets."""
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).decode("ascii")
        first_group = -(-offset // 3)  # the groups that hold no filler byte...
        last_group = (offset + len(secret)) // 3  # ...and no byte of whatever follows the secret
        core = encoded[first_group * 4:last_group * 4]
        if core:
            cores += [core, core.translate(str.maketrans("+/", "-_"))]
    return list(dict.fromkeys(cores))


def _redact_text(text: str, secrets: tuple[str, ...]) -> str:
    redacted = _replace(text, secrets)
    if "\\" in redacted:
        redacted = _JSON_STRING.sub(lambda literal: _redact_json_literal(literal.group(0), secrets), redacted)
        redacted = _redacted_decoded(redacted, _BACKSLASH_ESCAPE.sub(_unescape, redacted), secrets)  # escapes outside a literal
    if "%" in redacted:
        redacted = _redacted_decoded(redacted, _percent_decoded(redacted), secrets)
    return text if redacted == text else redacted


def _redacted_decoded(text: str, decoded: str, secrets: tuple[str, ...]) -> str:
    """``decoded`` redacted (itself decoded further: a percent-encoded escape) when it holds a key, else ``text``.

    Each call decodes a shorter text than the last, so the recursion ends."""
    if decoded == text:
        return text
    redacted = _redact_text(decoded, secrets)
    return text if redacted is decoded else redacted


def _replace(text: str, secrets: tuple[str, ...]) -> str:
    """Every form of every secret replaced, the longest secrets first (one may hold another)."""
    for secret in secrets:
        text = _forms(secret).replace(text)
    return text


def _redact_json_literal(literal: str, secrets: tuple[str, ...]) -> str:
    if "\\" not in literal:
        return literal  # its text is its value: the plain replacement already saw it
    try:
        value = json.loads(literal)
    except ValueError:
        return literal
    redacted = _redact_text(value, secrets)
    return literal if redacted is value else json.dumps(redacted, ensure_ascii=False)


def _unescape(escape: re.Match) -> str:
    code = escape.group(1)
    if code[0] in "ux" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _SIMPLE_ESCAPES.get(code, code)


def _percent_decoded(text: str) -> str:
    for _round in range(_PERCENT_ROUNDS):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text
