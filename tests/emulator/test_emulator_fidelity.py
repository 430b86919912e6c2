"""Stackify's own published samples must be accepted as they are, byte for byte.

Source: Stackify's "Deployment Tracking: API Code Samples" (docs/retrace-api.md, [S2]).
The samples are curl commands, for example::

    curl -X POST \\
        https://api.stackify.net/api/v1/deployments/start \\
        -H 'authorization: ApiKey GwsN94G6zUmH1x7f8qPCBYlnMUdN6YRay4bYWTBjIm' \\
        -H 'content-type: application/json' \\
        -d '{
            "Name": "BourneAgain",
            ...
            "EnvironmentName": "Prod"
    }'

The bodies below are the text between the quotes of ``-d '...'``: curl sends literal -d data unchanged,
newlines included. The stored copy of the page lost the URL line (a link) and the closing ``}'``
line; those come from a public copy of the same samples. Header names are sent in the samples'
lower case, with the User-Agent and Accept that curl adds.
"""

import http.client

import pytest

from retrace_emulator import RetraceEmulator

START_KEY = "GwsN94G6zUmH1x7f8qPCBYlnMUdN6YRay4bYWTBjIm"
COMPLETE_KEY = "cb9pHw629iE8RSc5lom5AXvZWdRLwkunPy4WdqbAMZ"
CANCEL_KEY = "3hxOisvOpzFUaYKN3h9nzsVXXLrjehUi1IlsacP3TZ"

START_BODY = """{
        "Name": "BourneAgain",
        "Uri": "localhost",
        "Branch": "master",
        "Commit": "rOapzPyAtzUR9s7yDJYlGz2vUYbcl0P6gMVglrygJ2",
        "Version": "v1.0",
        "AppName": "FooApp",
        "EnvironmentName": "Prod"
}"""

COMPLETE_BODY = """{
        "Version": "v1.0",
        "AppName": "FooApp",
        "EnvironmentName": "Prod"
}"""

CANCEL_BODY = COMPLETE_BODY  # the samples' cancel body is the same text as complete's


@pytest.fixture
def docs_emulator():
    # Each sample uses its own (example) key; the account behind each holds FooApp in Prod.
    accounts = {key: {"apps": ["FooApp"], "environments": ["Prod"]} for key in (START_KEY, COMPLETE_KEY, CANCEL_KEY)}
    with RetraceEmulator(accounts) as emulator:
        yield emulator


def curl_post(port: int, action: str, key: str, body: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    data = body.encode("utf-8")
    connection.putrequest("POST", f"/api/v1/deployments/{action}", skip_accept_encoding=True)
    connection.putheader("User-Agent", "curl/7.88.1")
    connection.putheader("Accept", "*/*")
    connection.putheader("authorization", f"ApiKey {key}")
    connection.putheader("content-type", "application/json")
    connection.putheader("Content-Length", str(len(data)))
    connection.endheaders(data)
    status = connection.getresponse().status
    connection.close()
    return status


def test_start_sample_is_accepted(docs_emulator):
    assert curl_post(docs_emulator.port, "start", START_KEY, START_BODY) == 202
    [entry] = docs_emulator.journal()
    assert entry["body_raw"] == START_BODY
    assert entry["warnings"] == []
    assert docs_emulator.deployments()[0]["Name"] == "BourneAgain"


@pytest.mark.parametrize("action, key, body", [("complete", COMPLETE_KEY, COMPLETE_BODY), ("cancel", CANCEL_KEY, CANCEL_BODY)])
def test_complete_and_cancel_samples_are_accepted_after_a_start(docs_emulator, action, key, body):
    assert curl_post(docs_emulator.port, "start", key, START_BODY) == 202
    assert curl_post(docs_emulator.port, action, key, body) == 202
    entry = docs_emulator.requests(action)[0]
    assert entry["body_raw"] == body
    assert entry["warnings"] == []


def test_samples_in_order_with_one_key(docs_emulator):
    """The samples read as one story for one account: start, then complete; a cancel after that is refused."""
    assert curl_post(docs_emulator.port, "start", START_KEY, START_BODY) == 202
    assert curl_post(docs_emulator.port, "complete", START_KEY, COMPLETE_BODY) == 202
    assert curl_post(docs_emulator.port, "cancel", START_KEY, CANCEL_BODY) == 409
