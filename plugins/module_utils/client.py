# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one client of the Retrace Deployment Tracking API.

All HTTP decisions live here: headers, body encoding, status interpretation, retries with
jittered exponential backoff and ``Retry-After``, one overall deadline, and the translation
of every failure into the exception tree of :mod:`.errors`.  Time, sleeping and randomness
are injected so the retry logic is tested without waiting.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import random
import re
import sys
import time
import typing as t

from .deployment import CANCEL, COMPLETE, START, Deployment
from .errors import ApiUnreachable, AuthenticationRejected, BadTransition, RequestRejected, UnknownAppOrEnvironment
from .settings import DEPLOYMENT_OPTIONS, VERSION, ApiSettings
from .transport import NotLoopback, ProxyUnusable, TimedOut, TlsFailed, Transport, TransportError

_PYTHON_VERSION = "{}.{}.{}".format(*sys.version_info[:3])  # platform.python_version() costs a 3 ms import
RETRYABLE_STATUSES = frozenset((408, 429, 500, 502, 503, 504))
#: retryable answers that say the request was not processed (RFC 9110 15.5.9, 15.6.4; RFC 6585 4).  A proxy that
#: answers 503 after its upstream reset mid-request breaks that promise; docs/core.md says what follows then.
NOT_PROCESSED_STATUSES = frozenset((408, 429, 503))
SERVER_MESSAGE_LIMIT = 300
#: seconds an attempt gets at least, even when the deadline is (nearly) spent
MIN_ATTEMPT_TIMEOUT = 0.05
_UNKNOWN_APP_WORDING = re.compile(r"unknown|not found|does not exist|doesn't exist|no such|not match|must match", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts: ``base * 2**(n-1)`` capped, half of it jittered."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 8.0

    def backoff(self, failed_attempts: int, draw: float) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (failed_attempts - 1))
        return ceiling / 2 + ceiling / 2 * draw


@dataclasses.dataclass(frozen=True)
class CallResult:
    """What one accepted call looked like; returned by :meth:`DeploymentClient.send`."""

    action: str
    status: int
    attempts: int
    elapsed: float
    payload: dict
    server_message: str | None = None
    #: a retry got 409 after an earlier attempt of the same call got no answer (so it may have landed)
    recovered_from_conflict: bool = False


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying.

    ``may_have_landed``: Retrace may have processed the request anyway (no answer came, or a gateway's 5xx);
    False when the answer says it was not (429 Too Many Requests, 503 Service Unavailable, 408 Request Timeout).
    """

    def __init__(self, problem: str, retry_after: float | None = None, may_have_landed: bool = True):
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after
        self.may_have_landed = may_have_landed


class DeploymentClient:
    """Sends start / complete / cancel for :class:`Deployment` objects."""

    def __init__(self, settings: ApiSettings, transport: Transport, *, entry_point: str = "python",
                 retry: RetryPolicy = RetryPolicy(), log: t.Callable[[str], None] | None = None,
                 clock: t.Callable[[], float] = time.monotonic, wall_clock: t.Callable[[], float] = time.time,
                 sleep: t.Callable[[float], None] = time.sleep, draw: t.Callable[[], float] = random.random):
        self.settings = settings
        self.transport = transport
        self.retry = retry
        self.user_agent = f"stackify-retrace/{VERSION} ({entry_point}; python {_PYTHON_VERSION})"
        self._log = log or (lambda message: None)
        self._clock, self._wall_clock, self._sleep, self._draw = clock, wall_clock, sleep, draw

    def replace(self, *, settings: ApiSettings | None = None, transport: Transport | None = None,
                log: t.Callable[[str], None] | None = None) -> "DeploymentClient":
        """A copy of this client with other settings (a shorter deadline...), transport or log (None: silent)."""
        copy = DeploymentClient.__new__(DeploymentClient)
        copy.__dict__.update(self.__dict__)
        copy.settings = settings or self.settings
        copy.transport = transport or self.transport
        copy._log = log or (lambda message: None)
        return copy

    def start(self, deployment: Deployment) -> CallResult:
        return self.send(START, deployment)

    def complete(self, deployment: Deployment) -> CallResult:
        return self.send(COMPLETE, deployment)

    def cancel(self, deployment: Deployment) -> CallResult:
        return self.send(CANCEL, deployment)

    def request(self, action: str, deployment: Deployment) -> dict:
        """What would be sent, without the key: used for check mode and verbose output."""
        return {"method": "POST", "url": self.settings.endpoint(action), "payload": deployment.payload(action)}

    def send(self, action: str, deployment: Deployment) -> CallResult:
        """Send ``action`` with retries; return on acceptance, raise a RetraceError otherwise."""
        payload = deployment.payload(action)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        started = self._clock()
        deadline_at = started + self.settings.deadline
        attempt = 0
        earlier_may_have_landed = False
        while True:
            attempt += 1
            # Never 0 or less: a loaded machine can overshoot a backoff sleep past the deadline, and a socket timeout
            # of 0 means non-blocking, a negative one ValueError.  The attempt then gets MIN_ATTEMPT_TIMEOUT, and the
            # deadline check after it reports the API unreachable as usual.
            timeout = max(MIN_ATTEMPT_TIMEOUT, min(self.settings.timeout, deadline_at - self._clock()))
            try:
                status, message = self._attempt(action, deployment, body, timeout, attempt, earlier_may_have_landed)
            except _Retry as retry:
                earlier_may_have_landed = earlier_may_have_landed or retry.may_have_landed
                delay = self._delay_before_next(retry, attempt, deadline_at, action, started, earlier_may_have_landed)
                self._log(f"Retrace {action}: attempt {attempt} failed ({retry.problem}); retrying in {delay:.1f} s")
                self._sleep(delay)
                continue
            return CallResult(action, status, attempt, self._clock() - started, payload, message,
                              recovered_from_conflict=status == 409)

    def _attempt(self, action: str, deployment: Deployment, body: bytes, timeout: float, attempt: int,
                 earlier_may_have_landed: bool = False):
        try:
            response = self.transport.post(self.settings.endpoint(action), body, self._headers(), timeout)
        except TlsFailed as error:
            raise ApiUnreachable(f"Retrace API at {self.settings.api_url} failed the TLS check: {self._clean(str(error))}. "
                                 "Fix the certificate or its CA bundle; disable validate_certs only for testing.",
                                 action=action, attempts=attempt) from None
        except (ProxyUnusable, NotLoopback) as error:
            raise ApiUnreachable(f"Retrace API at {self.settings.api_url} not tried: {self._clean(str(error))}.",
                                 action=action, attempts=attempt, may_have_landed=False) from None
        except TransportError as error:
            # The transport says how far the attempt got ("no answer within 3.0 s", "connection refused") and whether
            # the request may have reached the server (``sent``): refused or unresolvable, never; no answer, maybe.
            problem = self._clean(str(error)) or (f"no answer within {timeout:.1f} s" if isinstance(error, TimedOut)
                                                  else type(error).__name__)
            raise _Retry(problem, may_have_landed=error.sent) from None
        except Exception as error:  # pylint: disable=broad-exception-caught
            # A transport of someone else's that raised what it should have turned into a TransportError (a
            # ValueError, a UnicodeError, an HTTPException): one line, like any other problem, and nothing but a
            # RetraceError leaves the client.  Nothing says whether the request went out: it may have landed.
            problem = self._clean(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
            raise _Retry(problem, may_have_landed=getattr(error, "sent", True)) from None
        status = response.status
        cut = getattr(response, "cut", "")
        message = self._server_message(response.body, cut=bool(cut))
        if cut:
            self._log(f"Retrace {action}: HTTP {status}, {cut}: cut there (the status is the answer)")
        if 200 <= status < 300:
            return status, message
        # docs/retrace-api.md: a 409 on a retried call means an earlier attempt landed and its answer was lost.  Only an
        # attempt that got no answer (or a gateway's 5xx) can have landed: after answered 503s, the 409 is about
        # someone else's call (a sibling job's start) and is refused like a first attempt's.
        if status == 409 and attempt > 1 and earlier_may_have_landed:
            self._log(f"Retrace {action}: 409 on attempt {attempt}; an earlier attempt got no answer and landed, counting it as done")
            return status, message
        if status in RETRYABLE_STATUSES:
            raise _Retry(f"HTTP {status}" + (f": {message}" if message else ""), self._retry_after(response.headers),
                         may_have_landed=status not in NOT_PROCESSED_STATUSES)
        raise self._rejection(action, deployment, status, message, attempt)

    def _delay_before_next(self, retry: _Retry, attempt: int, deadline_at: float, action: str, started: float,
                           may_have_landed: bool) -> float:
        remaining = deadline_at - self._clock()
        delay = retry.retry_after if retry.retry_after is not None else self.retry.backoff(attempt, self._draw())
        if attempt >= self.retry.max_attempts or remaining <= 0 or delay >= remaining:
            elapsed = self._clock() - started
            why = f"the server asked to wait {delay:.0f} s, past the deadline; " if retry.retry_after is not None and delay >= remaining else ""
            raise ApiUnreachable(
                f"Retrace API at {self.settings.api_url} unreachable: {action} failed after {attempt} attempt(s) over "
                f"{elapsed:.1f} s ({why}last problem: {retry.problem}).",
                action=action, attempts=attempt, elapsed=elapsed, last_problem=retry.problem, may_have_landed=may_have_landed)
        return delay

    def _headers(self) -> dict:
        return {
            "Authorization": f"ApiKey {self.settings.api_key.reveal()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }

    def _rejection(self, action: str, deployment: Deployment, status: int, message: str | None, attempts: int):
        said = f" Retrace said: {message}" if message else ""
        context = {"action": action, "status": status, "attempts": attempts}
        if status == 401:
            return AuthenticationRejected(
                f"Retrace rejected the API key (HTTP 401) on {action}: check {self.settings.key_source} holds your Stackify license key.", **context)
        if status == 409:
            return BadTransition(
                f"Retrace refused to {action} deployment {deployment.version} of {deployment.app_name} in {deployment.environment_name} "
                f"(HTTP 409): {_transition_hint(action)}.{said}", server_message=message, **context)
        if status == 400 and message and _UNKNOWN_APP_WORDING.search(message):
            return UnknownAppOrEnvironment(
                f"Retrace does not know app '{deployment.app_name}' or environment '{deployment.environment_name}' for this account: "
                f"create them in Retrace or correct app_name / environment_name.{said}", server_message=message, **context)
        return RequestRejected(f"Retrace rejected the {action} request (HTTP {status}).{said}", server_message=message, **context)

    def _server_message(self, body: bytes, cut: bool = False) -> str | None:
        text = body.decode("utf-8", "replace").strip()
        if not text:
            return None
        if cut:
            # A body cut off (at the limit, by the attempt's time, or broken) may end in the first part of an echoed
            # key, no whole form of it: that end is redacted too, before whitespace is collapsed (its JSON is broken).
            return self._clean(self.settings.api_key.redact_cut(text))[:SERVER_MESSAGE_LIMIT] or None
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            text = str(next((decoded[k] for k in ("Message", "message", "error", "Error") if decoded.get(k)), text))
        return self._clean(text)[:SERVER_MESSAGE_LIMIT] or None

    def _retry_after(self, headers: t.Mapping[str, str]) -> float | None:
        value = (headers.get("retry-after") or "").strip()
        if not value:
            return None
        if value.isascii() and value.isdigit():  # "²" (b"\xb2" as http.client decodes headers) is a digit to isdigit()
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return max(0.0, when.timestamp() - self._wall_clock())

    def _clean(self, text: str) -> str:
        """Redact the key (servers may echo it) and keep one line."""
        return " ".join(self.settings.api_key.redact(text).split())


def _transition_hint(action: str) -> str:
    if action == START:
        return "this deployment is already in progress; complete or cancel it first, or use a new version"
    return "this deployment is not in progress (never started, or already completed or cancelled)"


API_OPTIONS = ("api_key", "api_key_file", "api_url", "validate_certs", "timeout", "deadline")


def create_client(options: t.Mapping[str, t.Any], transport: Transport, *, entry_point: str,
                  log: t.Callable[[str], None] | None = None) -> tuple[DeploymentClient, Deployment]:
    """Validate every option and return a ready client and deployment; nothing is sent.

    ``options`` uses the shared option names (``api_key``, ``app_name``...); None means unset.
    Raises :class:`~.errors.InvalidInput` naming the first bad option.
    """
    deployment = Deployment.create(**{name: options.get(name) for name in DEPLOYMENT_OPTIONS})
    settings = ApiSettings.create(**{name: options[name] for name in API_OPTIONS if options.get(name) is not None})
    return DeploymentClient(settings, transport, entry_point=entry_point, log=log), deployment
