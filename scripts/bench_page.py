"""The emulator's page as `make bench` keeps it open: a separate process that asks what the page asks.

    .venv/bin/python scripts/bench_page.py http://127.0.0.1:40123     (stops when its standard input closes)

It loads the page and its files once, then asks GET /_emulator/updates with the page's cursors every second on one
kept-alive connection, as the page's script does in a browser. A process of its own, so that its JSON decoding
does not share the load generator's interpreter; the browser's own drawing is not counted, only what the page
costs the emulator. It prints "open" once its first answer came (the page is open: the load may start), and on
exit one JSON line: polls, the calls and deployments they carried, seconds spent.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.parse

#: what the page's script waits between two answers (page.js POLL_MS)
POLL_INTERVAL = 1.0
PAGE_FILES = ("/", "/_emulator/page/page.js", "/_emulator/page/page.css")


def follow(url: str, stop: threading.Event) -> dict:
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    stats = {"polls": 0, "calls": 0, "deployments": 0, "seconds": 0.0}
    cursors = {"generation": "", "calls": 0, "deployments": 0}
    try:
        for path in PAGE_FILES:
            _get(connection, path)
        while not stop.is_set():
            began = time.perf_counter()
            update = json.loads(_get(connection, "/_emulator/updates?" + urllib.parse.urlencode(cursors)))
            cursors = {"generation": update["generation"], "calls": update["calls_cursor"], "deployments": update["deployments_cursor"]}
            stats["polls"] += 1
            stats["calls"] += len(update["calls"])
            stats["deployments"] += len(update["deployments"])
            stats["seconds"] += time.perf_counter() - began
            if stats["polls"] == 1:
                print("open", flush=True)
            stop.wait(POLL_INTERVAL)
    finally:
        connection.close()
    return stats


def _get(connection: http.client.HTTPConnection, path: str) -> bytes:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"bench_page: GET {path} answered {response.status}")
    return body


def main() -> int:
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(json.dumps(follow(sys.argv[1], stop)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
