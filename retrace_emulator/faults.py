"""Programmable faults: per-action queues, one fault consumed per matching request.

A fault is given as a plain mapping (from Python or JSON over HTTP), for example::

    {"status": 503, "retry_after": "2"}      answer 503 with Retry-After, do not process
    {"delay": 0.5}                           wait, then process normally
    {"drop": True}                           close the connection without an answer
    {"reset": True}                          abort the connection with a TCP RST
    {"hang": True} / {"hang": 5.0}           answer nothing until stop() / for 5 s, then close
    {"process": True, "drop": True}          process (state changes), then drop the answer

``delay`` combines with any other fault. Faults are applied before authentication, like a proxy or
load balancer in front of the real service would.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from retrace_emulator.contract import ACTIONS

ANY_ACTION = "*"
FAULT_ACTIONS = ACTIONS + (ANY_ACTION,)
FAULT_KEYS = ("status", "retry_after", "body", "delay", "drop", "reset", "hang", "process")


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour. Build it with `Fault.from_spec` so it is validated."""

    status: int | None = None
    retry_after: str | None = None
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    reset: bool = False
    hang: float | None = None  # seconds; math.inf means until the emulator stops
    process: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping | Fault) -> Fault:
        if isinstance(spec, Fault):
            return spec
        if not isinstance(spec, Mapping):
            raise ValueError(f"a fault must be a JSON object, not {type(spec).__name__}")
        unknown = sorted(set(spec) - set(FAULT_KEYS))
        if unknown:
            raise ValueError(f"unknown fault key(s) {', '.join(unknown)}; known: {', '.join(FAULT_KEYS)}")
        fault = cls(
            status=_status(spec.get("status")),
            retry_after=_retry_after(spec.get("retry_after")),
            body=spec.get("body"),
            delay=_seconds("delay", spec.get("delay", 0.0)),
            drop=_flag("drop", spec.get("drop", False)),
            reset=_flag("reset", spec.get("reset", False)),
            hang=_hang(spec.get("hang")),
            process=_flag("process", spec.get("process", False)),
        )
        fault.check_combination()
        return fault

    @property
    def cuts_connection(self) -> bool:
        """True when the client gets no HTTP answer at all."""
        return self.drop or self.reset or self.hang is not None

    @property
    def connection_effect(self) -> str | None:
        """What happens to the connection: "drop", "reset", "hang" or None."""
        return next((name for name, on in (("drop", self.drop), ("reset", self.reset), ("hang", self.hang is not None)) if on), None)

    def check_combination(self) -> None:
        kinds = [name for name, on in (("status", self.status is not None), ("drop", self.drop), ("reset", self.reset),
                                       ("hang", self.hang is not None)) if on]
        if len(kinds) > 1:
            raise ValueError(f"a fault can do only one of status, drop, reset, hang; got {', '.join(kinds)}")
        if self.process and not self.cuts_connection:
            raise ValueError("'process' only combines with drop, reset or hang: it means the answer is lost")
        if (self.retry_after is not None or self.body is not None) and self.status is None:
            raise ValueError("'retry_after' and 'body' need a 'status'")
        if not kinds and not self.delay:
            raise ValueError("a fault needs one of status, delay, drop, reset, hang")

    def to_spec(self) -> dict:
        """The JSON-ready mapping this fault was built from (hang until stop is shown as true)."""
        spec = {"status": self.status, "retry_after": self.retry_after, "body": self.body, "delay": self.delay or None,
                "drop": self.drop or None, "reset": self.reset or None, "process": self.process or None,
                "hang": True if self.hang == math.inf else self.hang}
        return {key: value for key, value in spec.items() if value is not None}

    def describe(self) -> str:
        """A short human description for logs and the timeline, e.g. "503 Retry-After: 2"."""
        parts = [f"delay {self.delay:g}s"] if self.delay else []
        if self.status is not None:
            parts.append(f"status {self.status}" + (f" Retry-After: {self.retry_after}" if self.retry_after else ""))
        if self.hang is not None:
            parts.append("hang" if self.hang == math.inf else f"hang {self.hang:g}s")
        elif self.cuts_connection:
            parts.append(self.connection_effect)
        if self.process:
            parts[-1] = f"process+{parts[-1]}"
        return ", ".join(parts)


def describe_fault_spec(spec: Mapping | None) -> str:
    """Describe a fault as recorded in the journal (a spec mapping), or "" for none."""
    return Fault.from_spec(spec).describe() if spec else ""


class FaultQueue:
    """Per-action FIFO queues of faults; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {action: deque() for action in FAULT_ACTIONS}

    def push(self, action: str, faults: Iterable[Mapping | Fault]) -> int:
        """Validate and queue faults for an action ("start", "complete", "cancel" or "*"); return how many."""
        if action not in FAULT_ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(FAULT_ACTIONS)}")
        if isinstance(faults, (Mapping, Fault)):
            raise ValueError("faults must be a list of faults")
        parsed = [Fault.from_spec(spec) for spec in faults]  # all valid or none queued
        with self._lock:
            self._queues[action].extend(parsed)
        return len(parsed)

    def pop(self, action: str) -> Fault | None:
        """Take the next fault for this action: the action's own queue first, then the "*" queue."""
        with self._lock:
            for queue_name in (action, ANY_ACTION):
                queue = self._queues.get(queue_name)
                if queue:
                    return queue.popleft()
        return None

    def pending(self) -> dict[str, list[dict]]:
        with self._lock:
            return {action: [fault.to_spec() for fault in queue] for action, queue in self._queues.items()}

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()


def _status(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"'status' must be an HTTP status code (100-599), not {value!r}")
    return value


def _retry_after(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return f"{value:g}"
    raise ValueError(f"'retry_after' must be seconds or an HTTP-date string, not {value!r}")


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name!r} must be a number of seconds, not {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name!r} must be true or false, not {value!r}")
    return value


def _hang(value: Any) -> float | None:
    if value is None or value is False:
        return None
    if value is True:
        return math.inf
    return _seconds("hang", value)


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Injected fault"
