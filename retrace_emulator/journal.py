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

    def record(self, entry: dict) -> dict:
        """Give the entry its sequence number, store it and write it out; return a copy of the stored entry.

        A stored entry is never changed afterwards (the handler is done with it once recorded): readers take references
        under the lock and copy them after releasing it, so a reader of large entries never holds up the API calls
        that wait to be recorded.
        """
        with self._lock:
            self._seq += 1
            stored = {"seq": self._seq, **entry}
            self._entries.append(stored)
            if self._file is not None:
                self._file.write(json.dumps(stored, ensure_ascii=False) + "\n")
        return _copy(stored)

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

    A string is also read decoded, as a reader would decode it: percent-encoding (``emulator%2Ddemo%2Dkey``, up to
    three times over) and backslash escapes (``emulator\\u002ddemo-key``). A JSON string literal holding a key is
    replaced by the literal of its redacted value, so a JSON text stays JSON; any other string whose decoded form
    holds a key is shown decoded, redacted. Unchanged parts are the very same objects: ``redact(value) is value``
    when there is no key in it, and nothing is copied then.
    """
    secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
    if not secrets or _surely_clean(value, secrets):
        return value
    return _redact_value(value, secrets)


def _surely_clean(value: Any, secrets: list[str]) -> bool:
    """True when no string of ``value`` can hold a secret, even decoded: the test every API call's entry takes, in
    one pass of C code over its JSON text. A string with a backslash (``\\\\`` in JSON) or a ``%`` may hide one."""
    if any(_JSON_ESCAPED.search(secret) for secret in secrets):
        return False  # JSON would write such a secret differently: the text cannot tell
    text = _JSON_TEXT(value)
    return "\\\\" not in text and "%" not in text and not _holds(text, secrets)


def _redact_value(value: Any, secrets: list[str]) -> Any:
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


_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode  # made once: json.dumps makes one per call
# What json.dumps(..., ensure_ascii=False) writes as an escape: a quote, a backslash, a control character.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
# A JSON string literal; no nested quantifier can backtrack.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BACKSLASH_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
#: percent-decoding rounds: a key encoded twice over (%252D) is still found
_PERCENT_ROUNDS = 3


def _redact_text(text: str, secrets: list[str]) -> str:
    redacted = _replace(text, secrets)
    if "\\" in redacted:
        redacted = _JSON_STRING.sub(lambda literal: _redact_json_literal(literal.group(0), secrets), redacted)
        redacted = _redacted_decoded(redacted, _BACKSLASH_ESCAPE.sub(_unescape, redacted), secrets)  # escapes outside a literal
    if "%" in redacted:
        redacted = _redacted_decoded(redacted, _percent_decoded(redacted), secrets)
    return text if redacted == text else redacted


def _redacted_decoded(text: str, decoded: str, secrets: list[str]) -> str:
    """``decoded`` redacted (itself decoded further: a percent-encoded escape) when it holds a key, else ``text``.

    Each call decodes a shorter text than the last, so the recursion ends."""
    if decoded == text:
        return text
    redacted = _redact_text(decoded, secrets)
    return text if redacted is decoded else redacted


def _replace(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, f"<redacted key {key_fingerprint(secret)}>")
    return text


def _holds(text: str, secrets: list[str]) -> bool:
    return any(secret in text for secret in secrets)


def _redact_json_literal(literal: str, secrets: list[str]) -> str:
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
