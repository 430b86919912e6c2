"""Command line: run the emulator until SIGINT or SIGTERM.

    python -m retrace_emulator [--host 127.0.0.1] [--port 0] [--account KEY=App1,App2:Env1,Env2 ...]
                               [--allow-any-app] [--journal PATH] [--timeline] [--quiet]
                               [--idle-timeout 30] [--request-timeout 30] [--max-connections 256]

The first line printed is the URL, e.g. "Retrace API emulator listening on http://127.0.0.1:40123",
so scripts can start it with --port 0 and read where it listens; the second names its web page (the same URL, /). Accounts may also come from the
RETRACE_EMULATOR_ACCOUNTS variable (specs separated by ';'), which keeps keys out of the process list.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading

from retrace_emulator.accounts import ACCOUNT_SPEC_HELP, DEMO_API_KEY, DEMO_APP, DEMO_ENVIRONMENTS, parse_account_specs, split_env_specs
from retrace_emulator.journal import format_timeline
from retrace_emulator.server import IDLE_TIMEOUT, MAX_CONNECTIONS, REQUEST_TIMEOUT, RetraceEmulator

ACCOUNTS_ENV = "RETRACE_EMULATOR_ACCOUNTS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retrace_emulator",
        description="Emulate Stackify Retrace's deployment API on a local port, for tests and demos.",
        epilog=f"Without --account or ${ACCOUNTS_ENV}, the demo account is used: key {DEMO_API_KEY}, "
               f"app {DEMO_APP}, environments {', '.join(DEMO_ENVIRONMENTS)}. For loopback testing only: "
               "the control endpoints under /_emulator/ need no key.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--account", action="append", default=[], metavar="SPEC",
                        help=f"an account as {ACCOUNT_SPEC_HELP}; repeatable; a bare KEY accepts any app")
    parser.add_argument("--allow-any-app", action="store_true", help="accept any AppName and EnvironmentName for every key")
    parser.add_argument("--journal", metavar="PATH", help="append every request to PATH as JSON lines")
    parser.add_argument("--timeline", action="store_true", help="print the request timeline on exit")
    parser.add_argument("--quiet", action="store_true", help="do not log one line per request on stderr")
    parser.add_argument("--idle-timeout", type=_seconds, default=IDLE_TIMEOUT, metavar="SECONDS",
                        help=f"close a connection that sends nothing for this long (default {IDLE_TIMEOUT:g})")
    parser.add_argument("--request-timeout", type=_seconds, default=REQUEST_TIMEOUT, metavar="SECONDS",
                        help=f"close a connection whose request (line, headers and body) takes longer than this to arrive, "
                             f"however slowly it trickles (default {REQUEST_TIMEOUT:g})")
    parser.add_argument("--max-connections", type=_count, default=MAX_CONNECTIONS, metavar="N",
                        help=f"connections served at once, a thread each; the next ones are answered 503 with Retry-After "
                             f"(default {MAX_CONNECTIONS})")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds above 0, not {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        accounts = parse_account_specs(split_env_specs(os.environ.get(ACCOUNTS_ENV, "")) + args.account)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # Handlers first: a script may signal as soon as it has read the URL line.
    stop_requested = _install_stop_handlers()
    emulator = RetraceEmulator(accounts or None, host=args.host, port=args.port, journal_path=args.journal, allow_any_app=args.allow_any_app,
                               idle_timeout=args.idle_timeout, request_timeout=args.request_timeout, max_connections=args.max_connections)
    try:
        emulator.start()
    except OSError as error:
        parser.exit(1, f"cannot listen on {args.host}:{args.port}: {error.strerror}\n")
    print(f"Retrace API emulator listening on {emulator.url}", flush=True)
    print(f"What it receives, live: open {emulator.url}/ in a browser", flush=True)
    # A timed wait lets the main thread run the Python-level signal handlers.
    while not stop_requested.wait(0.2):
        pass
    emulator.stop()
    if args.timeline:
        print(format_timeline(emulator.journal()), flush=True)
    return 0


def _install_stop_handlers() -> threading.Event:
    """SIGINT and SIGTERM both set the returned event: the emulator then stops cleanly, exit status 0."""
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())
    return stop_requested


if __name__ == "__main__":
    sys.exit(main())
