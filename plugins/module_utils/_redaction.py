# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keeping the API key out of every message, repr and log line.

The key travels inside :class:`ApiKey`, whose ``str`` and ``repr`` never show it, so
it cannot leak through an f-string or a debug dump by accident.  Text that came from
elsewhere (a server's error body, an exception from a transport) goes through
:func:`redact` before it reaches a user.
"""

from __future__ import annotations

REDACTED = "********"


class ApiKey:
    """The Retrace API key; only :meth:`reveal` returns the secret (for the header)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str):
        self._secret = secret

    def reveal(self) -> str:
        return self._secret

    def redact(self, text: str) -> str:
        return redact(text, self._secret)

    def __repr__(self) -> str:
        return f"ApiKey({REDACTED!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash(self._secret)

    def __copy__(self) -> "ApiKey":
        return self

    def __deepcopy__(self, memo: dict) -> "ApiKey":
        return self

    def __reduce__(self):
        # Pickling would write the key into a file or a pipe in clear: refuse.
        raise TypeError("ApiKey cannot be pickled")


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with every non-empty secret replaced by a fixed marker."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
