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
redaction, so no API key can reach the page. The page inserts every value as text, never as HTML. Each value is cut
to SHOWN_CHARS characters, with control and format characters (a right-to-left override U+202E, a zero-width
space, a new line) written as visible escapes such as ``\\u202e``: whatever a client sends, an update stays small
and every character of it shows.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import unicodedata
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from retrace_emulator.contract import KNOWN_FIELDS, Changes
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
#: the most calls one update carries (the newest), and the most changed deployments (see DeploymentBook.changed_after)
UPDATES_LIMIT = 100
#: steps of a deployment's history one update carries: the latest ones (a lane draws no more), with the count of the rest
HISTORY_TAIL = 50
#: characters of one value (a field, a User-Agent, a message, a path) the page's data carries; the journal has them whole
SHOWN_CHARS = 256
#: combining marks kept after one character: more would pile up over the lines around it
COMBINING_KEPT = 3
#: warnings of one call the page's data carries
SHOWN_WARNINGS = 8
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


def updates(emulator: "RetraceEmulator", query: str, limit: int | None = None) -> dict[str, Any]:
    """What changed since the cursors in ``query`` (``generation``, ``calls``: last seq seen, ``deployments``: last revision).

    Answer: ``generation`` (it changes at every reset: then the cursors start over and the page forgets what it had),
    ``server_time`` (ms since the epoch), ``calls`` (the newest ``limit`` journal entries after ``calls``, oldest first)
    with ``calls_cursor`` and ``skipped_calls`` (how many older ones were left out), and ``deployments``: every
    deployment changed after ``deployments`` when at most ``limit`` did; else, with ``deployments_replace`` true,
    the picture that replaces what the page holds (see DeploymentBook.changed_after) and ``skipped_deployments``, how
    many deployments it leaves out; ``deployments_cursor`` is the revision to ask after next time.
    """
    limit = UPDATES_LIMIT if limit is None else limit
    asked = parse_qs(query)
    # Read once, before the data: a reset meanwhile then shows as a new generation at the next poll, which starts over.
    generation = emulator.generation
    same_generation = asked.get("generation", [""])[0] == generation
    calls_after = _cursor(asked, "calls") if same_generation else 0
    revision = _cursor(asked, "deployments") if same_generation else 0
    calls, new_calls = emulator.journal_after(calls_after, limit, view=_call)
    changes: Changes = emulator.contract.book.changed_after(revision, limit)
    secrets = list(emulator.accounts)
    return {
        "generation": generation,
        "server_time": time.time() * 1000,
        "calls": calls,
        "calls_cursor": calls[-1]["seq"] if calls else calls_after,
        "skipped_calls": new_calls - len(calls),
        "deployments": [_deployment(changed_at, record, secrets) for changed_at, record in changes.records],
        "deployments_cursor": changes.revision,
        "deployments_replace": changes.replaces,
        "skipped_deployments": changes.left_out,
    }


def _cursor(asked: dict[str, list[str]], name: str) -> int:
    try:
        return max(int(asked.get(name, ["0"])[0]), 0)
    except ValueError:
        return 0


def _call(entry: dict) -> dict[str, Any]:
    """One journal entry (already redacted when recorded), as the page shows it; it reads the entry, never changes it."""
    body = entry["body"] if isinstance(entry.get("body"), dict) else {}
    fields = {name: body[name] for name in KNOWN_FIELDS if isinstance(body.get(name), str)}
    agent = (entry.get("headers") or {}).get("User-Agent")
    entry_point, by_guard = describe_agent(agent)
    return {
        "seq": entry["seq"],
        "at": _epoch_ms(entry["time"]),
        "method": shown(entry["method"]),
        "path": shown(entry["path"]),
        "action": entry["action"],
        "status": entry["status"],
        "outcome": entry["outcome"],
        "processed_status": entry["processed_status"],
        "verdict": _verdict(entry),
        "fault": shown(describe_fault_spec(entry["fault"])) or None,
        "agent": shown(agent),
        "entry_point": shown(entry_point),
        "orphan_guard": by_guard,
        "key_fingerprint": entry["key_fingerprint"],
        "fields": {name: shown(value) for name, value in fields.items()},
        "message": shown(_message(entry)),
        "warnings": [shown(warning) for warning in entry["warnings"][:SHOWN_WARNINGS]],
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


def _deployment(revision: int, record: dict, secrets: list[str]) -> dict[str, Any]:
    """One deployment record, redacted, with the latest HISTORY_TAIL steps of its history and who sent each."""
    steps = record["history"]
    tail = steps[-HISTORY_TAIL:]
    history = []
    for step in tail:
        agent = redact(step.get("agent"), secrets)
        entry_point, by_guard = describe_agent(agent)
        history.append({"action": step["action"], "at": _epoch_ms(step["time"]), "one_shot": bool(step.get("one_shot")),
                        "agent": shown(agent), "entry_point": shown(entry_point), "orphan_guard": by_guard})
    # The id from the whole redacted fields, as a call's id is: the calls naming a deployment show on its card.
    fields = redact({name: record.get(name) for name in KNOWN_FIELDS}, secrets)
    return {"id": _deployment_id(record["key_fingerprint"], fields), "revision": revision, "key_fingerprint": record["key_fingerprint"],
            "state": record["state"], "fields": {name: shown(value) for name, value in fields.items()}, "history": history,
            "earlier_steps": len(steps) - len(tail)}


def _deployment_id(fingerprint: str | None, fields: dict[str, Any]) -> str | None:
    """The same id for a deployment record and for every call that names it (account, app, environment, version).

    Computed from the redacted values, whole (before `shown` cuts them), on both sides.
    """
    identity = [fingerprint] + [fields.get(name) for name in ("AppName", "EnvironmentName", "Version")]
    if not all(isinstance(part, str) and part for part in identity):
        return None
    return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()[:16]


def shown(text: str | None) -> str | None:
    """``text`` as the page's data carries it: at most SHOWN_CHARS characters (then ``…(N more)``), control and format
    characters as escapes (``\\u202e``), at most COMBINING_KEPT combining marks on one character (then ``[+N marks]``)."""
    if text is None:
        return None
    cut, more = text[:SHOWN_CHARS], max(len(text) - SHOWN_CHARS, 0)
    if not (cut.isascii() and cut.isprintable()):
        cut = _visible(cut)
    return f"{cut}…({more} more)" if more else cut


# Control (Cc), format (Cf: bidi overrides, zero-width characters), surrogate (Cs), line and paragraph separators.
_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def _visible(text: str) -> str:
    out, marks = [], 0
    for char in text:
        category = unicodedata.category(char)
        if category in ("Mn", "Me"):
            marks += 1
            if marks <= COMBINING_KEPT:
                out.append(char)
            continue
        _close_marks(out, marks)
        marks = 0
        if category in _INVISIBLE:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    _close_marks(out, marks)
    return "".join(out)


def _close_marks(out: list[str], marks: int) -> None:
    if marks > COMBINING_KEPT:
        out.append(f"[+{marks - COMBINING_KEPT} marks]")


def _epoch_ms(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time).timestamp() * 1000
