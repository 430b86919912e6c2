# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception tree of stackify.retrace.

The core raises these and nothing else; every entry point translates them exactly
once (module -> fail_json, callback -> one warning, Fabric -> ``Exit``).  Each message
is a sentence a user can act on and never contains the API key: messages built from
server answers are redacted before the exception is created.
"""

from __future__ import annotations


class RetraceError(Exception):
    """Base class: something stopped a deployment from being recorded in Retrace."""

    #: short machine-readable kind, returned by the module and shown by the demo
    kind = "error"

    def __init__(self, message: str, *, action: str | None = None, status: int | None = None, attempts: int = 0,
                 server_message: str | None = None):
        super().__init__(message)
        self.message = message
        self.action = action
        self.status = status
        self.attempts = attempts
        #: what Retrace said, redacted and on one line, when it answered at all
        self.server_message = server_message

    def __str__(self) -> str:
        return self.message


class InvalidInput(RetraceError):
    """A setting is missing or malformed; raised before anything is sent."""

    kind = "invalid_input"

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


class AuthenticationRejected(RetraceError):
    """Retrace answered 401: the API key is missing, malformed or unknown."""

    kind = "authentication_rejected"


class RequestRejected(RetraceError):
    """Retrace refused the request (400 or another 4xx); the server's message is kept."""

    kind = "request_rejected"


class UnknownAppOrEnvironment(RequestRejected):
    """Retrace does not know the AppName / EnvironmentName for this account."""

    kind = "unknown_app_or_environment"


class BadTransition(RetraceError):
    """Retrace answered 409: the deployment is not in a state that allows this action."""

    kind = "bad_transition"


class ApiUnreachable(RetraceError):
    """Every attempt failed with a retryable problem, or the overall deadline ran out."""

    kind = "api_unreachable"

    def __init__(self, message: str, *, elapsed: float = 0.0, last_problem: str | None = None,
                 may_have_landed: bool | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.elapsed = elapsed
        self.last_problem = last_problem
        #: some attempt was sent and got no answer (or a gateway's 5xx): Retrace may have processed it; None: unknown
        self.may_have_landed = may_have_landed
