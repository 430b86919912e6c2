"""The forms a client or a server may echo an API key in, and a check, independent of the emulator's code, of whether
a text still gives the key away (the emulator's journal, deployment and page tests share them)."""

from __future__ import annotations

import base64
import re

#: a key whose base64 holds "+" and "/" (so that the URL-safe alphabet differs) at every alignment
FORMS_KEY = "retrace-key?>~~~-0042"
FORMS_ACCOUNTS = {FORMS_KEY: {"apps": ["Shop"], "environments": ["Prod"]}}


def b64(text: str, urlsafe: bool = False, padded: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


KEY_FORMS = {
    "upper case": FORMS_KEY.upper(),
    "mixed case": "Retrace-KEY?>~~~-0042",
    "split by a space": "retrace -key?>~~~-0042",
    "split by spaces everywhere": " ".join(FORMS_KEY),
    "split by a line break": "retrace-key?>\n~~~-0042",
    "split by CRLF and an indent": "RETRACE-\r\n    KEY?>~~~-0042",
    "split by an escaped line break": "retrace-key\\n?>~~~-0042",
    "base64": b64(FORMS_KEY),
    "base64 without padding": b64(FORMS_KEY, padded=False),
    "URL-safe base64": b64(FORMS_KEY, urlsafe=True),
    "base64 of ApiKey <key>": b64(f"ApiKey {FORMS_KEY}"),
    "base64 of ApiKey <key> without padding": b64(f"ApiKey {FORMS_KEY}", padded=False),
    "URL-safe base64 of ApiKey <key>": b64(f"ApiKey {FORMS_KEY}", urlsafe=True),
    "URL-safe base64 of ApiKey  <key> without padding": b64(f"ApiKey  {FORMS_KEY}", urlsafe=True, padded=False),
    "base64 of a header, wrapped at 76": base64.encodebytes(f"Authorization: ApiKey {'x' * 33}{FORMS_KEY}".encode()).decode(),
}


def flat(form: str) -> str:
    """The form as a header value can carry it: line breaks become tabs (a header has no line break)."""
    return form.replace("\r", "").replace("\n", "\t")


def exposes(text: str, key: str = FORMS_KEY) -> bool:
    """Whether a reader can get ``key`` back from ``text``: in any case, split by whitespace or (escaped) line breaks,
    or by decoding base64 (either alphabet, any alignment) found in it."""
    squeezed = re.sub(r"\s|\\[nrtf]|\\u00(?:0[9a-d]|1[c-f])", "", text)
    if key.lower() in squeezed.lower():
        return True
    for run in re.findall(r"[A-Za-z0-9+/_-]{8,}", squeezed):
        run = run.translate(str.maketrans("-_", "+/"))
        for start in range(4):
            part = run[start:]
            if len(part) % 4 == 1:
                part = part[:-1]  # a last group of one character decodes to nothing
            if key.encode() in base64.b64decode(part + "=" * (-len(part) % 4)):
                return True
    return False
