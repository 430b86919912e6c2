"""The README's demo: an emulated Retrace, every entry point tracking deployments, then the timeline.

Run with ``make demo``.  Nothing leaves this machine: the Retrace API is the emulator on loopback.
"""

import importlib
import pathlib
import sys
import tempfile
import time

from collection_path import use_checkout_as_collection

use_checkout_as_collection()

from retrace_emulator import DEMO_API_KEY, RetraceEmulator, format_timeline  # noqa: E402  (needs the path set above)

#: demo steps in story order, one module each in scripts/demo_steps/
STEPS = ("core", "callback", "module_and_role", "lifecycle", "fabric")


def main() -> int:
    began = time.monotonic()
    with RetraceEmulator() as emulator, tempfile.TemporaryDirectory(prefix="retrace-demo-") as tmp:
        print(f"Retrace API emulator listening on {emulator.url} (demo account: app DemoApp, environments Production and Staging)\n")
        for step in STEPS:
            module = importlib.import_module(f"demo_steps.{step}")
            workdir = pathlib.Path(tmp) / step
            workdir.mkdir()
            for line in module.run(emulator.url, DEMO_API_KEY, workdir):
                print(f"- {line}")
        print("\nWhat the emulated Retrace received:\n")
        print(format_timeline(emulator.journal()))
    print(f"\nDemo finished in {time.monotonic() - began:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
