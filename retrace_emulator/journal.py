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

from retrace_emulator.faults import describe_fault_spec

RECORDED_HEADERS = ("Content-Type", "User-Agent")


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


def _client(headers: dict) -> str:
    """Who sent it: the entry point named in our User-Agent, else the agent's first word (e.g. curl/8.5)."""
    agent = headers.get("User-Agent") or ""
    match = re.match(r"stackify-retrace/\S+ \(([^;)]+)", agent)
    if match:
        return match.group(1)
    return agent.split(" ", 1)[0] or "-"


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
