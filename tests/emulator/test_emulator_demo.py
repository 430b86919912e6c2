"""scripts/demo.py (`make demo`) as a user runs it: a subprocess, its page's address, and how it ends.

The demo's own steps run real playbooks and have tests of their own: here they are left out, or replaced by one step
that waits for a signal, so each test is about the demo's frame only.
"""

import http.client
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# The demo with its steps replaced by STEPS given on the command line: "none", or "waiting" (it prints its work
# directory, then waits for a signal, as a long step of the real demo does).
DEMO = textwrap.dedent("""\
    import signal, sys, types
    sys.path.insert(0, "scripts")
    import demo

    def run(api_url, api_key, workdir):
        yield f"working in {workdir}"
        signal.pause()

    waiting = types.ModuleType("demo_steps.waiting")
    waiting.run = run
    sys.modules["demo_steps.waiting"] = waiting
    demo.STEPS = () if sys.argv[1] == "none" else ("waiting",)
    sys.exit(demo.main(sys.argv[2:]))
""")


def _demo(steps: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DEMO, steps, *args], cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def _get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path)
    text = connection.getresponse().read().decode()
    connection.close()
    return text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_the_demo_prints_the_page_and_keeps_serving_it_when_asked(signum):
    """--keep-serving: the page's address, then serving until a signal, which ends it normally (status 0)."""
    with _demo("none", "--keep-serving") as demo:
        try:
            lines = [demo.stdout.readline() for _line in range(2)]
            page_url = re.search(r"open (http://127\.0\.0\.1:\d+/) in a browser", lines[1]).group(1)
            while "keeps serving" not in (line := demo.stdout.readline()):
                assert line, "the demo ended instead of serving on"
            assert page_url in line
            assert "<title>Retrace API emulator</title>" in _get(int(page_url.rsplit(":", 1)[1].strip("/")), "/")
            demo.send_signal(signum)
            out, err = demo.communicate(timeout=30)
        finally:
            demo.kill()
    assert demo.returncode == 0, err
    assert "Stopped." in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_demo_stopped_during_its_steps_says_so_in_one_line_and_leaves_nothing_behind(signum):
    with _demo("waiting") as demo:
        try:
            while not (line := demo.stdout.readline()).startswith("- working in "):
                assert line, "the demo ended before its step"
            workdir = pathlib.Path(line.removeprefix("- working in ").strip())
            assert workdir.is_dir() and workdir.parent.name.startswith("retrace-demo-")
            demo.send_signal(signum)
            _out, err = demo.communicate(timeout=30)
        finally:
            demo.kill()
    assert demo.returncode == 128 + signum, err
    assert err.strip().splitlines() == [f"The demo was stopped ({signal.Signals(signum).name})."]
    assert not workdir.parent.exists(), "the demo's temporary directory was left behind"


def test_a_busy_port_is_one_line_as_the_emulator_says_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with _demo("none", "--port", str(port)) as demo:
            out, err = demo.communicate(timeout=30)
    assert demo.returncode == 1
    assert (out, err) == ("", f"cannot listen on 127.0.0.1:{port}: Address already in use\n")
