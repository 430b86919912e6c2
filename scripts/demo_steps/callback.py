"""Demo step: the callback turns plain ansible-playbook runs into Retrace deployments.

demo/callback/ansible.cfg enables it and names the app and environment; the playbook knows
nothing about Retrace.  One run completes, the next fails on one host and is cancelled.  Then one
run deploys two apps: demo/callback/two-apps/ puts the web servers in Shop.Web and the API servers
in Shop.Api (group_vars); it fails on one API server, so Shop.Web completes and Shop.Api is cancelled.
"""

import os
import pathlib
import subprocess
import sys

DEMO_DIR = pathlib.Path(__file__).resolve().parents[2] / "demo" / "callback"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
#: the apps of demo/callback/two-apps/ (its group_vars name them); the demo's emulator account must hold them
TWO_APPS = ("Shop.Web", "Shop.Api")
#: (arguments before the playbook, version, arguments after it)
RUNS = (
    ((), "2.0.0", ()),
    ((), "2.0.1", ("-e", "break_on=web2")),
    (("-i", "two-apps/inventory.ini"), "2.1.0", ("-e", "break_on=api2")),
)


def run(emulator_url: str, api_key: str, workdir: pathlib.Path) -> list[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RETRACE_", "STACKIFY_"))}
    env.update(ANSIBLE_CONFIG=str(DEMO_DIR / "ansible.cfg"), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"), ANSIBLE_NOCOLOR="1",
               RETRACE_API_URL=emulator_url, RETRACE_API_KEY=api_key)
    lines = []
    for inventory, version, extra in RUNS:
        arguments = [*inventory, "deploy.yml", "-e", f"retrace_version={version}", *extra]
        completed = subprocess.run([str(ANSIBLE_PLAYBOOK), *arguments], cwd=DEMO_DIR, env=env, capture_output=True, text=True,
                                   check=False, timeout=60)
        # The callback writes its lines to stderr: stdout belongs to the stdout callback.
        said = [line.removeprefix("Retrace: ") for line in completed.stderr.splitlines() if line.startswith("Retrace: ")]
        ends = [line for line in said if not line.endswith(" started")]  # one per deployment of the run
        lines.append(f"callback: ansible-playbook {' '.join(arguments)} -> exit {completed.returncode}; "
                     + (" / ".join(ends) or "no Retrace line: " + completed.stderr.strip()[-200:]))
    return lines
