"""Test doubles for the core: a scripted transport and a clock that only moves when told."""

from ansible_collections.stackify.retrace.plugins.module_utils.transport import Response


class FakeClock:
    """Monotonic time that advances only through ``sleep`` (and explicit ``advance``)."""

    def __init__(self, start=1000.0):
        self.now = start
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds):
        self.now += seconds


class ScriptedTransport:
    """Answers each POST with the next scripted item: a Response, or an exception to raise."""

    def __init__(self, *script, clock=None, cost=0.0):
        self.script = list(script)
        self.calls = []
        self.clock = clock
        self.cost = cost

    def post(self, url, body, headers, timeout):
        self.calls.append({"url": url, "body": body, "headers": dict(headers), "timeout": timeout})
        if self.clock is not None:
            self.clock.advance(self.cost)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def answer(status, body=b'{"Message": "Accepted"}', **headers):
    return Response(status, {name.replace("_", "-").lower(): value for name, value in headers.items()}, body)
