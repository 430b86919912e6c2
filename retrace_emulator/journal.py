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

import copy
import json
import re
import threading
from collections.abc import Iterable
from typing import Any

from retrace_emulator.accounts import key_fingerprint
from retrace_emulator.faults import describe_fault_spec

RECORDED_HEADERS = ("Content-Type", "User-Agent")
# Our clients send "stackify-retrace/<version> (<entry point>; ...)"; the orphan guard's watcher adds "; orphan-guard".
_OUR_AGENT = re.compile(r"stackify-retrace/\S+ \(([^)]*)\)")
ORPHAN_GUARD_MARK = "orphan-guard"


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
        """Give the entry its sequence number, store it and write it out; return the stored entry."""
        with self._lock:
            self._seq += 1
            stored = {"seq": self._seq, **entry}
            self._entries.append(stored)
            if self._file is not None:
                self._file.write(json.dumps(stored, ensure_ascii=False) + "\n")
            return copy.deepcopy(stored)

    def entries(self) -> list[dict]:
        """Copies of all entries, so callers cannot change the record."""
        with self._lock:
            return copy.deepcopy(self._entries)

    def entries_after(self, seq: int, limit: int) -> tuple[list[dict], int]:
        """Copies of the newest ``limit`` entries numbered after ``seq``, and how many entries follow ``seq`` in all.

        Only those are copied: a reader that follows the journal pays for what is new, not for its whole length.
        """
        with self._lock:
            newer = self._entries[max(seq, 0):]  # entry n sits at index n - 1: numbering restarts with the list
            # Entries hold only JSON values: a JSON round trip copies them several times faster than copy.deepcopy.
            return json.loads(json.dumps(newer[-limit:] if limit > 0 else [])), len(newer)

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
    """Replace any API key a client put in the path, a recorded header or the body, so that no key is ever written anywhere."""
    secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
    places = {"path": entry["path"], "headers": " ".join(value or "" for value in (entry.get("headers") or {}).values()),
              "body": entry["body_raw"]}
    leaked = [name for name, text in places.items() if any(secret in (text or "") for secret in secrets)]
    if not leaked:
        return entry
    redacted = redact(entry, secrets)
    redacted["warnings"].append(f"an API key appeared in the request {' and '.join(leaked)}; it was redacted from this entry")
    return redacted


def redact(value: Any, secrets: Iterable[str | None]) -> Any:
    """A copy of ``value`` (JSON-like) with each secret replaced by ``<redacted key FINGERPRINT>`` (``value`` itself when there is no secret)."""
    secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
    return _redact_value(value, secrets) if secrets else value


def _redact_value(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, f"<redacted key {key_fingerprint(secret)}>")
        return value
    if isinstance(value, dict):
        return {name: _redact_value(item, secrets) for name, item in value.items()}
    if isinstance(value, list):
        return [_redact_value(item, secrets) for item in value]
    return value
