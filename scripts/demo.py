"""The README's demo: an emulated Retrace, every entry point tracking deployments, then the timeline.

Run with ``make demo``.  Nothing leaves this machine: the Retrace API is the emulator on loopback.  The emulator's
web page (its address is printed first) shows the deployments live while the demo runs; ``--keep-serving``
(``make demo DEMO_ARGS=--keep-serving``) keeps it serving after the demo, until Ctrl-C.
"""

import argparse
import importlib
import pathlib
import signal
import sys
import tempfile
import time

from collection_path import use_checkout_as_collection

use_checkout_as_collection()

from demo_steps.callback import TWO_APPS  # noqa: E402
from retrace_emulator import DEMO_API_KEY, DEMO_APP, DEMO_ENVIRONMENTS, RetraceEmulator, format_timeline  # noqa: E402  (needs the path set above)

#: demo steps in story order, one module each in scripts/demo_steps/
STEPS = ("core", "callback", "module_and_role", "lifecycle", "fabric")
#: the demo's Retrace account: DemoApp, and the two apps of the callback's two-app run, in both environments
APPS = (DEMO_APP, *TWO_APPS)


def run_steps(emulator: RetraceEmulator, workdir: pathlib.Path) -> None:
    """Every demo step against ``emulator``, printing what each did."""
    for step in STEPS:
        module = importlib.import_module(f"demo_steps.{step}")
        step_dir = workdir / step
        step_dir.mkdir()
        for line in module.run(emulator.url, DEMO_API_KEY, step_dir):
            print(f"- {line}", flush=True)


class DemoStopped(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, as KeyboardInterrupt is: no step's ``except Exception`` swallows it,
    and every ``with`` on the way out still stops the emulator and removes the demo's temporary directory."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-serving", action="store_true", help="after the demo, keep the emulator and its page serving until Ctrl-C")
    parser.add_argument("--port", type=int, default=0, help="port of the emulator and its page (default: any free port)")
    args = parser.parse_args(argv)
    _stop_on_signals()
    emulator = RetraceEmulator({DEMO_API_KEY: {"apps": APPS, "environments": DEMO_ENVIRONMENTS}}, port=args.port)
    try:
        try:
            emulator.start()
        except OSError as error:
            parser.exit(1, f"cannot listen on {emulator.host}:{args.port}: {error.strerror}\n")  # as python -m retrace_emulator says it
        return _demo(emulator, args.keep_serving)
    except DemoStopped as stopped:
        # Exit as a program stopped by the signal does (128 + its number), with one line instead of a traceback.
        print(f"\nThe demo was stopped ({signal.Signals(stopped.signum).name}).", file=sys.stderr, flush=True)
        return 128 + stopped.signum
    finally:
        emulator.stop()


def _demo(emulator: RetraceEmulator, keep_serving: bool) -> int:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="retrace-demo-") as tmp:
        print(f"Retrace API emulator listening on {emulator.url} (demo account: apps {', '.join(APPS)}; environments "
              f"{' and '.join(DEMO_ENVIRONMENTS)})")
        print(f"Watch what it receives, live: open {emulator.url}/ in a browser\n", flush=True)
        run_steps(emulator, pathlib.Path(tmp))
        print("\nWhat the emulated Retrace received:\n")
        print(format_timeline(emulator.journal()))
        print(f"\nDemo finished in {time.monotonic() - began:.1f} s.", flush=True)
        if keep_serving:
            print(f"The emulator keeps serving: its page is {emulator.url}/ (Ctrl-C stops it).", flush=True)
            _wait_for_ctrl_c()
    return 0


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise DemoStopped, once: a second signal while the demo cleans up is ignored, so that the
    clean-up finishes. SIGINT is caught even when a shell started the demo in the background (it ignores SIGINT then)."""

    def stop(signum, _frame):
        for ignored in (signal.SIGINT, signal.SIGTERM):
            signal.signal(ignored, signal.SIG_IGN)
        raise DemoStopped(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _wait_for_ctrl_c() -> None:
    """After the demo, a signal is the expected way to end: "Stopped.", exit status 0."""
    try:
        while True:
            signal.pause()
    except DemoStopped:
        print("\nStopped.")


if __name__ == "__main__":
    sys.exit(main())
