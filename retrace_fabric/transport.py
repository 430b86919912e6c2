# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core's :class:`Transport` protocol implemented with ``requests``.

Only the transport lives here: status handling, retries and error wording stay in the core's
client.  ``requests`` brings proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``) and
its CA bundle; certificates are verified unless the user turns that off.
"""

from __future__ import annotations

import re
import typing as t

import requests

from .core.transport import ConnectionFailed, Response, TimedOut, TlsFailed, lowercase_headers, transport_error_for


class RequestsTransport:
    """One ``requests.Session`` reused for every call of a run (keeps the connection alive)."""

    def __init__(self, validate_certs: bool = True, ca_path: str | None = None, session: requests.Session | None = None,
                 verify_override: bool | str | None = None):
        self.session = session or requests.Session()
        # ca_path replaces the bundle; False turns verification off (for testing only).
        self.verify: bool | str = (ca_path or True) if validate_certs else False
        if verify_override is not None:
            self.verify = verify_override

    def post(self, url: str, body: bytes, headers: t.Mapping[str, str], timeout: float) -> Response:
        try:
            # A redirect could carry the Authorization header elsewhere: report it instead of following.
            answer = self.session.post(url, data=body, headers=dict(headers), timeout=timeout,
                                       verify=self.verify, allow_redirects=False)
        except requests.exceptions.SSLError as error:
            raise TlsFailed(f"TLS verification failed: {_reason(error)}") from None
        except requests.exceptions.Timeout:
            raise TimedOut("no answer before the timeout") from None
        except requests.exceptions.RequestException as error:
            raise ConnectionFailed(_reason(error)) from None
        return Response(answer.status_code, lowercase_headers(answer.headers), answer.content)

    def for_new_process(self) -> "RequestsTransport":
        """A transport with its own session, for the orphan guard's forked watcher (see core.guard)."""
        return RequestsTransport(verify_override=self.verify)

    def close(self) -> None:
        self.session.close()


def _reason(error: requests.exceptions.RequestException) -> str:
    """The innermost cause in one line (requests nests urllib3's errors several levels deep)."""
    cause: BaseException = error
    for _depth in range(10):
        inner = _inner(cause)
        if inner is None:
            break
        cause = inner
    if isinstance(cause, (ConnectionRefusedError, ConnectionResetError)):
        return str(transport_error_for(cause))  # the core's wording, as with the other transports
    text = " ".join(str(cause).split())
    # urllib3 prefixes its messages with the object that raised them: keep only the explanation.
    text = re.sub(r"^<[^>]*>: ", "", text)
    return text or type(cause).__name__


def _inner(error: BaseException) -> BaseException | None:
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    nested = next((arg for arg in error.args if isinstance(arg, BaseException)), None)
    return nested or error.__cause__
