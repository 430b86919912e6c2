import base64
import copy
import pickle
import textwrap

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import settings
from ansible_collections.stackify.retrace.plugins.module_utils._resolve import environment_source
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
from ansible_collections.stackify.retrace.plugins.module_utils._redaction import REDACTED, ApiKey, redact, redact_cut

KEY = "s3cr3t-LICENSE-key"


def test_api_key_never_shows_itself():
    key = ApiKey(KEY)
    for text in (str(key), repr(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert KEY not in text and REDACTED in text
    assert key.reveal() == KEY


def test_api_key_equality_copy_and_pickle():
    key = ApiKey(KEY)
    assert key == ApiKey(KEY) and key != ApiKey("other") and key != KEY
    assert hash(key) == hash(ApiKey(KEY))
    assert copy.copy(key) is key and copy.deepcopy({"k": key})["k"] is key
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_redact_replaces_every_occurrence_and_ignores_empty_secrets():
    assert redact(f"a {KEY} b {KEY}", KEY) == f"a {REDACTED} b {REDACTED}"
    assert redact("nothing here", None, "") == "nothing here"
    assert ApiKey(KEY).redact(f"echo {KEY}") == f"echo {REDACTED}"


def _base64_forms(text: str) -> list[str]:
    data = text.encode()
    standard, urlsafe = base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()
    return [standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")]


#: what a server may echo back: the key as sent, in another case, split, or base64-encoded alone or in a longer text
ECHOES = {
    "upper case": KEY.upper(),
    "lower case": KEY.lower(),
    "split by a newline": KEY[:7] + "\n" + KEY[7:],
    "split by spaces and a CRLF": " ".join(KEY[:5]) + "\r\n" + KEY[5:],
    "split by a JSON escape": KEY[:9] + "\\n" + KEY[9:],
    **{f"base64 of the key ({index})": form for index, form in enumerate(_base64_forms(KEY))},
    **{f"base64 of 'ApiKey <key>' ({index})": form for index, form in enumerate(_base64_forms(f"ApiKey {KEY}"))},
    **{f"base64 of the header at offset {offset}": _base64_forms("x" * offset + f"Authorization: ApiKey {KEY}")[0]
       for offset in range(3)},
    "base64 wrapped at 76 characters": "\n".join(textwrap.wrap(base64.b64encode(b"z" * 40 + f"ApiKey {KEY}".encode()).decode(), 76)),
}


@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
def test_redact_covers_the_forms_a_server_echoes_back(echo):
    redacted = redact(f"Retrace said: bad key {echo}!", KEY)
    assert REDACTED in redacted and redacted.startswith("Retrace said: bad key ") and redacted.endswith("!")
    for form in ECHOES.values():  # not even a shorter part of one form may remain
        assert form not in redacted
    for start in range(len(redacted)):  # no run of what is left decodes to 4 bytes of the key, at any alignment
        chunk = redacted[start:start + 8].replace("-", "+").replace("_", "/")
        try:
            decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        except ValueError:
            continue
        assert not any(KEY.encode()[i:i + 4] in decoded for i in range(len(KEY) - 3)), (chunk, redacted)


def test_redact_leaves_other_text_alone_and_short_secrets_as_written():
    text = "Retrace rejected the start request (HTTP 400). Retrace said: AppName Shop is unknown"
    assert redact(text, KEY) == text
    assert redact("abc ABC a b c YWJj", "abc") == f"{REDACTED} ABC a b c YWJj"


@pytest.mark.parametrize("tail, kept", [
    (KEY[:1], ""), (KEY[:2], ""), (KEY[:12], ""), (KEY[:-1], ""), (KEY[:12].upper(), ""), (" ".join(KEY[:9]), ""),
    (KEY[:4] + "\\n" + KEY[4:10] + " \r\n ", ""), (base64.b64encode(KEY.encode()).decode()[:11], ""),
    # base64 of "ApiKey <key>" cut in the key: the characters only "ApiKey" decides stay
    (base64.b64encode(f"ApiKey {KEY}".encode()).decode()[:-3], "QXBpS2V5I"),
])
def test_redact_cut_drops_what_at_the_cut_could_be_the_start_of_the_key(tail, kept):
    head = f"bad key {KEY} again: and more words" + " " * 40
    cut = redact_cut(head + tail, KEY)
    # what the cut left of the key is redacted like the key; all the rest is kept
    assert " ".join(cut.split()) == f"bad key {REDACTED} again: and more words {kept}{REDACTED}\u2026", cut


def test_redact_cut_keeps_a_text_that_ends_with_no_part_of_the_key_and_marks_the_cut():
    text = "Version is required; AppName is unknown; EnvironmentName is unknown"
    assert redact_cut(text, KEY) == text + "\u2026"
    assert redact_cut(text) == text + "\u2026"


def test_settings_repr_hides_key():
    created = settings.ApiSettings.create(api_key=KEY)
    assert KEY not in repr(created)
    assert created.api_url == "https://api.stackify.net"
    assert (created.timeout, created.deadline, created.validate_certs) == (10.0, 30.0, True)


def test_api_key_object_is_accepted():
    assert settings.ApiSettings.create(api_key=ApiKey(KEY)).api_key.reveal() == KEY


@pytest.mark.parametrize("value, problem", [
    (None, "is required"), ("", "is required"), (123, "must be a string, got int"),
    (KEY + "\n", "must not contain spaces, newlines or control characters"),
    ("ab cd", "must not contain spaces"), ("ab\tcd", "must not contain spaces"), ("ab\x00cd", "control characters"),
    ("ab\u200bcd", "control characters"), ("clé-de-licence", "must contain only ASCII characters"),
])
def test_bad_keys_are_refused_without_echoing_them(value, problem):
    with pytest.raises(InvalidInput) as caught:
        settings.ApiSettings.create(api_key=value)
    assert caught.value.option == "api_key" and problem in str(caught.value)
    if isinstance(value, str) and value:
        assert value.strip() not in str(caught.value)


@pytest.mark.parametrize("url, expected", [
    ("https://api.stackify.net/", "https://api.stackify.net"),
    ("https://proxy.example.com/retrace///", "https://proxy.example.com/retrace"),
    (" http://127.0.0.1:8080/ ", "http://127.0.0.1:8080"),
    ("http://localhost:1", "http://localhost:1"),
    ("http://127.5.6.7", "http://127.5.6.7"),
    ("http://[::1]:9000", "http://[::1]:9000"),
    ("https://api.stackify.net.", "https://api.stackify.net."),
    ("https://B\u00fccher.example", "https://b\u00fccher.example"),
    ("https://under_score.example.com", "https://under_score.example.com"),
])
def test_api_url_is_normalised(url, expected):
    assert settings.ApiSettings.create(api_key=KEY, api_url=url).api_url == expected


@pytest.mark.parametrize("url, problem", [
    ("", "must be a non-empty URL"), (5, "must be a non-empty URL"), ("api.stackify.net", "must be an absolute https:// URL"),
    ("ftp://api.stackify.net", "must be an absolute https:// URL"),
    ("http://api.stackify.net", "plain http:// would send the API key unencrypted to api.stackify.net"),
    ("http://10.0.0.5:8080", "plain http://"), ("http://localhost.evil.com", "plain http://"),
    ("https://user:pw@api.stackify.net", "must not carry credentials"), ("https://api.stackify.net/?x=1", "a query"),
    # hosts no resolver takes (socket would raise UnicodeError deep in the first call): refused here, as a setting
    ("https://api..example.com", "host 'api..example.com' has an empty label"),
    ("https://.example.com", "has an empty label"),
    ("https://" + "a" * 64 + ".example.com", "has a label longer than 63 characters"),
    ("https://" + ".".join(["abcdefgh"] * 29) + ".com", "is longer than 253 characters"),
    ("https://exa mple.com", "is not a valid host name"), ("https://exa%6Dple.com", "is not a valid host name"),
    ("https://a\ufffdb.example", "is not a valid host name"), ("https://a\u3000b.example", "is not a valid host name"),
    ("http://[::1", "is not a valid URL"), ("https://[fe80::1", "is not a valid URL"),
    # plain http: "localhost" and loopback addresses only, as written
    ("http://LOCALHOST..:8080", "has an empty label"),
    ("http://localhost.:8080", "plain http:// would send the API key unencrypted to localhost."),
    ("http://localhost.localdomain", "plain http://"), ("http://ip6-localhost", "plain http://"),
])
def test_bad_api_urls_are_refused(url, problem):
    with pytest.raises(InvalidInput) as caught:
        settings.ApiSettings.create(api_key=KEY, api_url=url)
    assert caught.value.option == "api_url" and problem in str(caught.value)


@pytest.mark.parametrize("option", ["timeout", "deadline"])
@pytest.mark.parametrize("value, problem", [
    (0, "more than 0"), (-1, "more than 0"), (3601, "at most 3600"), ("5", "number of seconds, got str"), (True, "got bool")])
def test_bad_durations_are_refused(option, value, problem):
    with pytest.raises(InvalidInput) as caught:
        settings.ApiSettings.create(api_key=KEY, **{option: value})
    assert caught.value.option == option and problem in str(caught.value)


def test_validate_certs_must_be_a_boolean():
    with pytest.raises(InvalidInput, match="^validate_certs: must be true or false, got str$"):
        settings.ApiSettings.create(api_key=KEY, validate_certs="no")


def test_endpoint_per_action():
    assert settings.ApiSettings.create(api_key=KEY, api_url="http://127.0.0.1:1/").endpoint("cancel") == "http://127.0.0.1:1/api/v1/deployments/cancel"


def test_environment_variables_first_set_wins_and_empty_is_unset():
    env = {"RETRACE_API_KEY": "", "STACKIFY_API_KEY": "from-stackify", "RETRACE_APP_NAME": "Shop", "RETRACE_DEPLOYMENT_NAME": "R1", "UNRELATED": "x"}
    assert environment_source(env).values == {"api_key": "from-stackify", "app_name": "Shop", "name": "R1"}
    assert environment_source({"RETRACE_API_KEY": "a", "STACKIFY_API_KEY": "b"}).values == {"api_key": "a"}


def test_is_loopback_host():
    assert settings.is_loopback_host("LOCALHOST") and settings.is_loopback_host("127.0.0.1") and settings.is_loopback_host("::1")
    assert not settings.is_loopback_host("example.com") and not settings.is_loopback_host("192.168.1.1")
    # "localhost." is an absolute name: it misses /etc/hosts and goes to DNS, which may answer with any address
    assert not settings.is_loopback_host("localhost.") and not settings.is_loopback_host("localhost..")
    assert not settings.is_loopback_host("localhost.localdomain") and not settings.is_loopback_host("127.1")
