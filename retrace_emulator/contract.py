"""The Retrace deployment API contract (docs/retrace-api.md), free of any socket or HTTP code.

`RetraceContract.evaluate` takes what arrived (action, Authorization header, Content-Type, raw body) and
returns a `Verdict`: the status and JSON body to answer, plus warnings about things the real service
would probably accept but a well-behaved client should not send. Keeping this apart from the server
lets the fault injection decide independently whether a request is processed at all.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from retrace_emulator.accounts import Account, key_fingerprint

ACTIONS = ("start", "complete", "cancel")
REQUIRED_FIELDS = ("Version", "AppName", "EnvironmentName")
OPTIONAL_FIELDS = ("Name", "Uri", "Branch", "Commit")
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
# Our contract: the public record states no limits, so we pick ones a real database column would have.
DEFAULT_MAX_LENGTH = 255
MAX_LENGTH = {"Uri": 2048}

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
CANCELLED = "cancelled"
STATE_AFTER = {"start": IN_PROGRESS, "complete": COMPLETED, "cancel": CANCELLED}


@dataclass
class Verdict:
    """What the emulator answers to one API request."""

    status: int
    body: dict
    warnings: list[str] = field(default_factory=list)
    key_fingerprint: str | None = None


class Rejection(Exception):
    """A request that breaks the contract; becomes a non-2xx answer with {"Message": ...}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_authorization(header: str | None) -> str:
    """Return the key from ``Authorization: ApiKey <key>``.

    The scheme is matched case-insensitively (RFC 9110), and extra spaces are tolerated: Stackify's
    own samples have been published with two spaces after ``ApiKey``.
    """
    if not header:
        raise Rejection(401, "Missing Authorization header: send 'Authorization: ApiKey <your Stackify API key>'")
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "apikey":
        raise Rejection(401, "Malformed Authorization header: expected 'ApiKey <your Stackify API key>'")
    return parts[1]


def decode_json_body(raw: bytes) -> tuple[Any, str | None]:
    """Decode a body as UTF-8 JSON; return (value, None) or (None, reason it is not JSON)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"Request body is not valid UTF-8 (byte {error.start})"
    if not text.strip():
        return None, "Request body is empty: expected a JSON object"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as error:
        return None, f"Request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"


@dataclass
class Changes:
    """What changed in the book after a revision, as `DeploymentBook.changed_after` answers it.

    records: (revision of its latest change, the record), oldest change first. A record is shared, never copied:
    the book never changes a stored record (each change stores a new one), so it may be read after the lock is
    released, but must not be changed.
    """

    records: list[tuple[int, dict]]
    #: True when ``records`` is not every change since the revision but the book's picture now: the newest changed
    #: deployments and every one in progress (the newest ``limit`` of each); anything else a reader holds is older
    replaces: bool
    #: deployments of the book not in ``records`` when it ``replaces`` (0 otherwise)
    left_out: int
    #: the book's revision now: the next reader asks after it
    revision: int


class DeploymentBook:
    """Deployment state keyed by (account, AppName, EnvironmentName, Version); thread-safe.

    Every change gets the next revision number, so that a reader can ask only for what changed since it last asked.
    A stored record is never changed: each change stores a new one, so readers copy outside the lock.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._deployments: dict[tuple[str, str, str, str], dict] = {}
        self._revisions: OrderedDict[tuple[str, str, str, str], int] = OrderedDict()  # least recently changed first
        self._running: OrderedDict[tuple[str, str, str, str], int] = OrderedDict()  # in progress, least recently started first
        self._revision = 0

    def apply(self, fingerprint: str, action: str, fields: dict[str, str], agent: str | None = None) -> str | None:
        """Apply a transition sent by ``agent`` (its User-Agent); return None when it is allowed, else the reason it is not (a 409)."""
        ident = (fingerprint, fields["AppName"], fields["EnvironmentName"], fields["Version"])
        with self._lock:
            current = self._deployments.get(ident)
            refusal = _refuse_transition(action, current, fields)
            if refusal is None:
                self._deployments[ident] = _next_record(current, fingerprint, action, fields, agent)
                self._revision += 1
                self._revisions[ident] = self._revision
                self._revisions.move_to_end(ident)
                if STATE_AFTER[action] == IN_PROGRESS:
                    self._running[ident] = self._revision
                    self._running.move_to_end(ident)
                else:
                    self._running.pop(ident, None)
            return refusal

    def snapshot(self) -> list[dict]:
        with self._lock:
            records = list(self._deployments.values())
        return json.loads(json.dumps(records))

    def changed_after(self, revision: int, limit: int) -> Changes:
        """The deployments changed after ``revision``: all of them when there are at most ``limit``.

        When more changed (a reader that fell behind, or a first look at a busy book), the answer ``replaces`` what the
        reader holds instead: the ``limit`` most recently changed deployments plus the ``limit`` most recently started of
        those in progress. Anything the reader holds beyond that ended before the newest ``limit`` changes: a reader
        that shows the newest ``limit`` and every deployment in progress never shows it. So the reader is right after
        one answer of bounded size, and the revision it asks after next may skip every change it was not sent.
        The lock is held for O(``limit``) steps: no record is copied under it.
        """
        limit = max(limit, 1)
        with self._lock:
            newest: list[tuple[int, tuple]] = []
            for ident, changed_at in reversed(self._revisions.items()):
                if changed_at <= revision or len(newest) > limit:
                    break
                newest.append((changed_at, ident))
            if len(newest) <= limit:
                return Changes([(changed_at, self._deployments[ident]) for changed_at, ident in reversed(newest)], False, 0, self._revision)
            chosen = dict((ident, changed_at) for changed_at, ident in newest[:limit])
            for count, (ident, started_at) in enumerate(reversed(self._running.items())):
                if count >= limit:
                    break
                chosen.setdefault(ident, started_at)
            records = sorted(((changed_at, self._deployments[ident]) for ident, changed_at in chosen.items()), key=lambda item: item[0])
            return Changes(records, True, len(self._deployments) - len(records), self._revision)

    def clear(self) -> None:
        """Forget every deployment; revisions keep counting up, so a reader's last revision never names a later change."""
        with self._lock:
            self._deployments.clear()
            self._revisions.clear()
            self._running.clear()


def _describe(fields: dict[str, str]) -> str:
    return f"deployment '{fields['Version']}' of {fields['AppName']} / {fields['EnvironmentName']}"


def _refuse_transition(action: str, current: dict | None, fields: dict[str, str]) -> str | None:
    state = current["state"] if current else None
    if action == "start":
        if state == IN_PROGRESS:
            return f"Cannot start {_describe(fields)}: it is already in progress (complete or cancel it first)"
        return None
    if action == "complete" and state != IN_PROGRESS:
        # A one-shot deployment: Stackify's own Jenkins plugin only ever posts complete, so Retrace records a
        # complete with no start (docs/retrace-api.md, [S3]).
        return None
    if state is None:
        return f"Cannot {action} {_describe(fields)}: it was never started"
    if state != IN_PROGRESS:
        return f"Cannot {action} {_describe(fields)}: it is already {state} (start it again to redeploy)"
    return None


def _next_record(current: dict | None, fingerprint: str, action: str, fields: dict[str, str], agent: str | None) -> dict:
    record = dict(current) if current else {
        "key_fingerprint": fingerprint,
        "AppName": fields["AppName"],
        "EnvironmentName": fields["EnvironmentName"],
        "Version": fields["Version"],
        "history": [],
    }
    record["state"] = STATE_AFTER[action]
    # start and complete may carry the descriptive fields; a later call refines what an earlier one said.
    record.update({name: fields[name] for name in OPTIONAL_FIELDS if name in fields})
    step = {"action": action, "time": datetime.now(timezone.utc).isoformat(), "agent": agent}
    if action == "complete" and (current is None or current["state"] != IN_PROGRESS):
        step["one_shot"] = True  # completed with no start before it
    record["history"] = record["history"] + [step]
    return record


class RetraceContract:
    """Validates requests against the accounts and applies them to the deployment book."""

    def __init__(self, accounts: dict[str, Account], allow_any_app: bool = False):
        self.accounts = accounts
        self.allow_any_app = allow_any_app
        self.book = DeploymentBook()

    def evaluate(self, action: str, authorization: str | None, content_type: str | None, raw: bytes, user_agent: str | None = None) -> Verdict:
        """The answer to one request; ``user_agent`` is kept in the deployment's history (who sent each step)."""
        verdict = Verdict(status=202, body={})
        try:
            fields = self._validate(action, authorization, content_type, raw, verdict)
            refusal = self.book.apply(verdict.key_fingerprint, action, fields, user_agent)
        except Rejection as rejection:
            verdict.status = rejection.status
            verdict.body = {"Message": rejection.message}
            return verdict
        if refusal is not None:
            verdict.status = 409
            verdict.body = {"Message": refusal}
            return verdict
        verdict.body = {"Message": "Accepted", "Action": action, **fields}
        return verdict

    def _validate(self, action: str, authorization: str | None, content_type: str | None, raw: bytes, verdict: Verdict) -> dict[str, str]:
        """Run every check in the order a real service would (auth first); return the accepted fields."""
        api_key = parse_authorization(authorization)
        verdict.key_fingerprint = key_fingerprint(api_key)
        account = self.accounts.get(api_key)
        if account is None:
            raise Rejection(401, "API key rejected: no account has this key")
        verdict.warnings.extend(_content_type_warnings(content_type))
        body, reason = decode_json_body(raw)
        if reason is not None:
            raise Rejection(400, reason)
        if not isinstance(body, dict):
            raise Rejection(400, f"Request body must be a JSON object, not a JSON {type(body).__name__}")
        verdict.warnings.extend(_field_warnings(action, body))
        fields = _accepted_fields(action, body)
        if not (self.allow_any_app or account.knows(fields["AppName"], fields["EnvironmentName"])):
            raise Rejection(400, f"Unknown AppName '{fields['AppName']}' or EnvironmentName '{fields['EnvironmentName']}' for this account: "
                                 "create the app and environment in Retrace first")
        return fields


def _content_type_warnings(content_type: str | None) -> list[str]:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "application/json":
        return []
    return [f"Content-Type is {content_type!r}; the contract says application/json"]


def _field_warnings(action: str, body: dict) -> list[str]:
    warnings = []
    unknown = [name for name in body if name not in KNOWN_FIELDS]
    if unknown:
        hints = [f"{name} (did you mean {_case_match(name)}?)" if _case_match(name) else name for name in unknown]
        warnings.append(f"unknown field(s) ignored: {', '.join(hints)}; field names are case-sensitive")
    extras = [name for name in OPTIONAL_FIELDS if name in body]
    if action == "cancel" and extras:
        warnings.append(f"cancel carried {', '.join(extras)}; the contract says cancel carries only {', '.join(REQUIRED_FIELDS)}")
    nulls = [name for name in OPTIONAL_FIELDS if name in body and body[name] is None]
    if nulls:
        warnings.append(f"null value(s) for {', '.join(nulls)}; omit optional fields instead of sending null")
    return warnings


def _case_match(name: str) -> str | None:
    return next((known for known in KNOWN_FIELDS if known.lower() == name.lower()), None)


def _accepted_fields(action: str, body: dict) -> dict[str, str]:
    """Check types, presence and lengths; return the contract fields the action carries."""
    carried = REQUIRED_FIELDS if action == "cancel" else KNOWN_FIELDS
    present = {name: body[name] for name in KNOWN_FIELDS if body.get(name) is not None}
    not_strings = [name for name, value in present.items() if not isinstance(value, str)]
    if not_strings:
        raise Rejection(400, f"Field(s) must be JSON strings: {', '.join(not_strings)}")
    missing = [name for name in REQUIRED_FIELDS if not present.get(name, "").strip()]
    if missing:
        raise Rejection(400, f"Missing or empty required field(s): {', '.join(missing)}")
    too_long = [f"{name} (max {_max_length(name)})" for name, value in present.items() if len(value) > _max_length(name)]
    if too_long:
        raise Rejection(400, f"Field(s) too long: {', '.join(too_long)}")
    fields = {name: value for name, value in present.items() if name in carried}
    if action != "cancel" and not fields.get("Name"):
        fields["Name"] = fields["Version"]
    return fields


def _max_length(name: str) -> int:
    return MAX_LENGTH.get(name, DEFAULT_MAX_LENGTH)
