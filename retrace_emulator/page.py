"""The emulator's web page: what a pipeline sent, as a live, read-only picture of deployments on a time axis.

    GET /                         the page (retrace_emulator/static/index.html)
    GET /_emulator/page/<file>    its script, style sheet and icon (also served as /favicon.ico)
    GET /_emulator/updates        what changed since the page last asked, as JSON (see `updates`)

The page polls `/_emulator/updates` every second rather than holding a Server-Sent Events stream open:
- a poll is one short ordinary request, so the server stays a plain ThreadingHTTPServer: no thread parked per open
  tab for hours, no wake-up logic for stop(), nothing held while the API is under load;
- each poll carries cursors (journal `seq`, deployment book revision), so it costs what is new, capped at
  UPDATES_LIMIT items, never the whole journal; a page that was away or fell behind catches up in one answer;
- a second of latency is far below what real Retrace shows (it lists deployments minutes later).

Everything in an update comes from the redacted journal and from deployment records passed through the same
redaction, so no API key can reach the page. The page inserts every value as text, never as HTML.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from retrace_emulator.contract import KNOWN_FIELDS
from retrace_emulator.faults import describe_fault_spec
from retrace_emulator.journal import describe_agent, redact

if TYPE_CHECKING:  # pragma: no cover
    from retrace_emulator.server import RetraceEmulator

PAGE_PATH = "/"
FAVICON_PATH = "/favicon.ico"
FILES_PREFIX = "/_emulator/page/"
#: the methods the page's files answer (the page is read-only)
METHODS = ("GET", "HEAD")
#: static files of the page, by the name they are served under, with their media type
FILES = {
    "index.html": "text/html; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
#: the most calls, and the most deployments, one update carries: the newest ones (the page shows no more anyway)
UPDATES_LIMIT = 100
# The page loads only its own files and talks only to its own origin; even a value that were ever inserted as
# HTML could then run no script.
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)


def page_file(path: str) -> str | None:
    """The name of the static file served at ``path``, or None when ``path`` is not one of the page's files."""
    if path == PAGE_PATH:
        return "index.html"
    if path == FAVICON_PATH:
        return "icon.svg"
    if path.startswith(FILES_PREFIX) and path[len(FILES_PREFIX):] in FILES:
        return path[len(FILES_PREFIX):]
    return None


@functools.cache
def read_file(name: str) -> bytes:
    """The bytes of a static file shipped in the package (read once)."""
    return resources.files("retrace_emulator").joinpath("static", name).read_bytes()


def updates(emulator: "RetraceEmulator", query: str, limit: int = UPDATES_LIMIT) -> dict[str, Any]:
    """What changed since the cursors in ``query`` (``generation``, ``calls``: last seq seen, ``deployments``: last revision).

    Answer: ``generation`` (it changes at every reset: then the cursors start over and the page forgets what it had),
    ``server_time`` (ms since the epoch), ``calls`` (journal entries after ``calls``, oldest first), ``deployments``
    (records changed after ``deployments``), the new cursors ``calls_cursor`` and ``deployments_cursor``, and
    ``skipped_calls`` / ``skipped_deployments``: how many older ones were left out because of ``limit``.
    """
    asked = parse_qs(query)
    # Read once, before the data: a reset meanwhile then shows as a new generation at the next poll, which starts over.
    generation = emulator.generation
    same_generation = asked.get("generation", [""])[0] == generation
    calls_after = _cursor(asked, "calls") if same_generation else 0
    revision = _cursor(asked, "deployments") if same_generation else 0
    entries, new_calls = emulator.journal_after(calls_after, limit)
    records, changed, revision_now = emulator.contract.book.changed_after(revision, limit)
    secrets = list(emulator.accounts)
    return {
        "generation": generation,
        "server_time": time.time() * 1000,
        "calls": [_call(entry) for entry in entries],
        "calls_cursor": entries[-1]["seq"] if entries else calls_after,
        "skipped_calls": new_calls - len(entries),
        "deployments": [_deployment(changed_at, redact(record, secrets)) for changed_at, record in records],
        "deployments_cursor": revision_now if records else revision,
        "skipped_deployments": changed - len(records),
    }


def _cursor(asked: dict[str, list[str]], name: str) -> int:
    try:
        return max(int(asked.get(name, ["0"])[0]), 0)
    except ValueError:
        return 0


def _call(entry: dict) -> dict[str, Any]:
    """One journal entry (already redacted when recorded), as the page shows it."""
    body = entry["body"] if isinstance(entry.get("body"), dict) else {}
    fields = {name: body[name] for name in KNOWN_FIELDS if isinstance(body.get(name), str)}
    agent = (entry.get("headers") or {}).get("User-Agent")
    entry_point, by_guard = describe_agent(agent)
    return {
        "seq": entry["seq"],
        "at": _epoch_ms(entry["time"]),
        "method": entry["method"],
        "path": entry["path"],
        "action": entry["action"],
        "status": entry["status"],
        "outcome": entry["outcome"],
        "processed_status": entry["processed_status"],
        "verdict": _verdict(entry),
        "fault": describe_fault_spec(entry["fault"]) or None,
        "agent": agent,
        "entry_point": entry_point,
        "orphan_guard": by_guard,
        "key_fingerprint": entry["key_fingerprint"],
        "fields": fields,
        "message": _message(entry),
        "warnings": entry["warnings"],
        "deployment": _deployment_id(entry["key_fingerprint"], fields),
    }


def _verdict(entry: dict) -> str:
    """accepted (2xx), refused (the contract said no: 400, 401, 404, 405, 409, 413) or fault (injected)."""
    if entry["fault"] or entry["status"] is None:
        return "fault"
    return "accepted" if 200 <= entry["status"] < 300 else "refused"


def _message(entry: dict) -> str | None:
    response = entry.get("response")
    if isinstance(response, str):
        return response  # an injected fault's text body
    if isinstance(response, dict) and (entry["status"] or 0) >= 300 and isinstance(response.get("Message"), str):
        return response["Message"]
    return None


def _deployment(revision: int, record: dict) -> dict[str, Any]:
    """One deployment record (redacted), with who sent each step of its history."""
    history = []
    for step in record["history"]:
        entry_point, by_guard = describe_agent(step.get("agent"))
        history.append({"action": step["action"], "at": _epoch_ms(step["time"]), "one_shot": bool(step.get("one_shot")),
                        "agent": step.get("agent"), "entry_point": entry_point, "orphan_guard": by_guard})
    fields = {name: record.get(name) for name in KNOWN_FIELDS}
    return {"id": _deployment_id(record["key_fingerprint"], fields), "revision": revision, "key_fingerprint": record["key_fingerprint"],
            "state": record["state"], "fields": fields, "history": history}


def _deployment_id(fingerprint: str | None, fields: dict[str, Any]) -> str | None:
    """The same id for a deployment record and for every call that names it (account, app, environment, version)."""
    identity = [fingerprint] + [fields.get(name) for name in ("AppName", "EnvironmentName", "Version")]
    if not all(isinstance(part, str) and part for part in identity):
        return None
    return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()[:16]


def _epoch_ms(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time).timestamp() * 1000
