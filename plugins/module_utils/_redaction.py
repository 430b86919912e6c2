# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keeping the API key out of every message, repr and log line.

The key travels inside :class:`ApiKey`, whose ``str`` and ``repr`` never show it, so
it cannot leak through an f-string or a debug dump by accident.  Text that came from
elsewhere (a server's error body, an exception from a transport) goes through
:func:`redact` before it reaches a user.
"""

from __future__ import annotations

import base64
import functools
import re

REDACTED = "********"
#: secrets shorter than this are only redacted as written: their other forms would match ordinary text
MIN_LENGTH_FOR_FORMS = 8
#: what may stand between two characters of a secret a server split: whitespace, or its JSON escape
_SEPARATOR = r"(?:\s|\\[nrt])*"
#: base64 characters next to the part only the secret decides: they hold its first and last bits (and a few of the
#: text around it, redacted too)
_BASE64_EDGE = r"[A-Za-z0-9+/_-]{0,3}"


class ApiKey:
    """The Retrace API key; only :meth:`reveal` returns the secret (for the header)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str):
        self._secret = secret

    def reveal(self) -> str:
        return self._secret

    def redact(self, text: str) -> str:
        return redact(text, self._secret)

    def redact_cut(self, text: str) -> str:
        return redact_cut(text, self._secret)

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
    """Return ``text`` with every form of every non-empty secret a server may echo replaced by a fixed marker.

    The forms (for secrets of :data:`MIN_LENGTH_FOR_FORMS` characters or more; shorter ones as written only):

    * the secret in any letter case (``K3Y-...`` for ``k3y-...``);
    * the secret split by whitespace or line breaks, or by their JSON escapes (``\\n``), between any two characters;
    * its base64, standard or URL-safe, padded or not, alone or inside a longer base64 text (``ApiKey <key>``, a
      whole header), at any of the three byte alignments, also when split by line breaks (MIME wraps base64 at 76
      characters): every character the secret's bytes take part in is replaced, with up to three of the text
      around it.

    Not covered: other encodings (hex, URL-encoding of characters a key never holds), or a key cut in two by
    something other than whitespace.
    """
    for secret in secrets:
        if secret:
            text = _forms(secret).sub(REDACTED, text)
    return text


#: what ends a text that was cut off (see :func:`redact_cut`)
CUT_MARK = "\u2026"


def redact_cut(text: str, *secrets: str | None) -> str:
    """:func:`redact` for a text cut off at its end (an answer's body read no further than a limit, or broken off).

    A cut can fall inside a secret: what is left of it at the end is no whole form, so :func:`redact` cannot see
    it.  Here a text that *ends* with the first part of any form of a secret (one character of it or more: the
    secret in any case or split by whitespace, or its base64) has that end replaced as well, and
    :data:`CUT_MARK` says the text was cut.
    """
    text = redact(text, *secrets)
    for secret in secrets:
        if secret:
            text = _first_parts(secret).sub(REDACTED, text)
    return text + CUT_MARK


@functools.lru_cache(maxsize=8)
def _first_parts(secret: str) -> "re.Pattern[str]":
    """Any non-empty first part of any form of ``secret`` (as :func:`_forms` knows them) at the very end of a text."""
    if len(secret) < MIN_LENGTH_FOR_FORMS:
        return re.compile("(?:" + _first_part_of(secret, "") + r")\Z")
    forms = ["(?i:" + _first_part_of(secret, _SEPARATOR) + ")"]
    forms += [_BASE64_EDGE + _first_part_of(core, _SEPARATOR) for core in _base64_cores(secret.encode("utf-8"))]
    return re.compile("(?:" + "|".join(forms) + ")" + _SEPARATOR + r"\Z")


def _first_part_of(text: str, separator: str) -> str:
    """A pattern for the first character of ``text``, then optionally the next (``separator`` before it), and so on."""
    pattern = ""
    for character in reversed(text):
        pattern = re.escape(character) + (f"(?:{separator}{pattern})?" if pattern else "")
    return pattern


@functools.lru_cache(maxsize=8)
def _forms(secret: str) -> "re.Pattern[str]":
    if len(secret) < MIN_LENGTH_FOR_FORMS:
        return re.compile(re.escape(secret))
    forms = ["(?i:" + _split_anywhere(secret) + ")"]
    forms += [_BASE64_EDGE + _split_anywhere(core) + _BASE64_EDGE for core in _base64_cores(secret.encode("utf-8"))]
    return re.compile("|".join(forms))


def _split_anywhere(text: str) -> str:
    return _SEPARATOR.join(re.escape(character) for character in text)


def _base64_cores(secret: bytes) -> list[str]:
    """The base64 characters only ``secret``'s bytes decide, for each alignment of it in a longer text, in both alphabets."""
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).decode("ascii")
        first_group = -(-offset // 3)  # the groups that hold no filler byte...
        last_group = (offset + len(secret)) // 3  # ...and no byte of whatever follows the secret
        core = encoded[first_group * 4:last_group * 4]
        if core:
            cores += [core, core.translate(str.maketrans("+/", "-_"))]
    return list(dict.fromkeys(cores))
