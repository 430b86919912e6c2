"""Stackify Retrace deployment API emulator: a real loopback HTTP server for tests and demos.

    from retrace_emulator import RetraceEmulator, DEMO_API_KEY

    with RetraceEmulator() as retrace:
        retrace.inject("start", [{"status": 503, "retry_after": "1"}])
        ...  # point the client at retrace.url with DEMO_API_KEY
        print(format_timeline(retrace.journal()))

See docs/emulator.md.
"""

from retrace_emulator.accounts import DEMO_API_KEY, DEMO_APP, DEMO_ENVIRONMENTS, Account, key_fingerprint, parse_account_spec
from retrace_emulator.faults import Fault
from retrace_emulator.journal import format_timeline
from retrace_emulator.server import RetraceEmulator

__all__ = [
    "DEMO_API_KEY",
    "DEMO_APP",
    "DEMO_ENVIRONMENTS",
    "Account",
    "Fault",
    "RetraceEmulator",
    "format_timeline",
    "key_fingerprint",
    "parse_account_spec",
]
