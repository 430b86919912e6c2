"""The picture of the emulator's page in docs/emulator.md: the demo's runs, then the page in headless Chromium.

    .venv/bin/python scripts/screenshot_emulator.py [--output docs/images/emulator-page.png] [--full-page]

Needs Debian's chromium and chromium-driver (scripts/bootstrap installs them as root) and selenium (requirements-dev.txt).
"""

import argparse
import pathlib
import sys
import tempfile
import time

SCRIPTS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent / "tests" / "emulator"))

# pylint: disable=wrong-import-position
import demo  # noqa: E402  (sets up the collection path, like make demo)
import headless_chromium  # noqa: E402

from retrace_emulator import RetraceEmulator  # noqa: E402

SHOWN_WITHIN = 60.0
CARDS = "return document.querySelectorAll('#deployments .deployment').length"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(SCRIPTS.parent / "docs" / "images" / "emulator-page.png"), help="PNG to write")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the first screen of it")
    args = parser.parse_args()
    problem = headless_chromium.missing()
    if problem:
        raise SystemExit(f"screenshot_emulator: {problem}")
    with RetraceEmulator() as emulator, tempfile.TemporaryDirectory(prefix="retrace-screenshot-") as tmp:
        print(f"running the demo's steps against {emulator.url} ...", flush=True)
        demo.run_steps(emulator, pathlib.Path(tmp))
        expected = len(emulator.deployments())
        with headless_chromium.Chromium(width=1400, height=1150) as browser:
            browser.driver.get(f"{emulator.url}/")
            deadline = time.monotonic() + SHOWN_WITHIN
            while browser.driver.execute_script(CARDS) < expected:
                if time.monotonic() > deadline:
                    raise SystemExit(f"screenshot_emulator: the page did not show the {expected} deployments")
                time.sleep(0.1)
            output = pathlib.Path(args.output)
            output.parent.mkdir(parents=True, exist_ok=True)
            if args.full_page:
                browser.full_page_screenshot(output)
            else:
                browser.driver.save_screenshot(str(output))
    print(f"wrote {output} ({output.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
