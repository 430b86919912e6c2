"""Helpers for the emulator's own tests: real HTTP over loopback with http.client, no mocks."""

import http.client
import json

import pytest

from retrace_emulator import DEMO_API_KEY

# The retrace_emulator fixtures and marker come from retrace_emulator.pytest_plugin, enabled in tests/conftest.py.

DEMO_BODY = {"Version": "1.0.0", "AppName": "DemoApp", "EnvironmentName": "Production"}


class Reply:
    """Status, headers and decoded body of one answer."""

    def __init__(self, response: http.client.HTTPResponse):
        self.status = response.status
        self.headers = response.headers
        self.raw = response.read()
        self.json = json.loads(self.raw) if self.raw and "json" in (response.getheader("Content-Type") or "") else None

    @property
    def message(self) -> str:
        return self.json["Message"]


class ApiCaller:
    """Sends requests to one emulator; a new connection per call unless one is given."""

    def __init__(self, emulator):
        self.emulator = emulator

    def connect(self, timeout: float = 5.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.emulator.port, timeout=timeout)

    def send(self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None, timeout: float = 5.0) -> Reply:
        connection = self.connect(timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            return Reply(connection.getresponse())
        finally:
            connection.close()

    def post(self, action: str, body=None, key: str | None = DEMO_API_KEY, headers: dict | None = None, timeout: float = 5.0, **fields) -> Reply:
        """POST a deployment action; body defaults to DEMO_BODY updated with fields (None removes one)."""
        if body is None:
            body = {name: value for name, value in {**DEMO_BODY, **fields}.items() if value is not None}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        all_headers = {"Content-Type": "application/json"}
        if key is not None:
            all_headers["Authorization"] = f"ApiKey {key}"
        all_headers.update(headers or {})
        return self.send("POST", f"/api/v1/deployments/{action}", data, all_headers, timeout)

    def control(self, method: str, name: str, body=None) -> Reply:
        data = None if body is None else json.dumps(body)
        return self.send(method, f"/_emulator/{name}", data, {"Content-Type": "application/json"})


@pytest.fixture
def api(retrace_emulator):
    return ApiCaller(retrace_emulator)
