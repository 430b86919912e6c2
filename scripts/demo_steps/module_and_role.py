"""Demo step: the module tracks chosen steps; the role wraps deploy tasks on two hosts (complete, then cancel).

Assets: demo/module_and_role/ (an inventory of two local hosts, two playbooks, the deploy steps).
What each run sent is read back from the emulator's journal.
"""

import json
import os
import pathlib
import subprocess
import sys
import urllib.request

DEMO_DIR = pathlib.Path(__file__).resolve().parents[2] / "demo" / "module_and_role"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
RUNS = (
    ("module.yml", "3.0.0", ()),
    ("role.yml", "3.1.0", ()),
    ("role.yml", "3.1.1", ("-e", "break_on=web2")),
)


def run(emulator_url: str, api_key: str, workdir: pathlib.Path) -> list[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RETRACE_", "STACKIFY_"))}
    env.update(ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"), ANSIBLE_NOCOLOR="1",
               RETRACE_API_URL=emulator_url, RETRACE_API_KEY=api_key)
    return [_run_one(emulator_url, playbook, version, extra, env) for playbook, version, extra in RUNS]


def _run_one(emulator_url: str, playbook: str, version: str, extra: tuple, env: dict) -> str:
    before = len(_journal(emulator_url))
    completed = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "inventory.ini", playbook, "-e", f"demo_version={version}", *extra],
                               cwd=DEMO_DIR, env=env, capture_output=True, text=True, check=False, timeout=60)
    sent = [f"{entry['action']} {entry['status']}" for entry in _journal(emulator_url)[before:] if entry["action"]]
    failure = next((line.split('"msg": "', 1)[1].rstrip('"}') for line in completed.stdout.splitlines()
                    if line.startswith("fatal:") and "Deployment failed on" in line), "")
    command = " ".join((playbook, "-e", f"demo_version={version}", *extra))
    return (f"module/role: ansible-playbook {command} -> exit {completed.returncode}; Retrace got {', '.join(sent) or 'nothing'}"
            + (f"; {failure}" if failure else ""))


def _journal(emulator_url: str) -> list:
    with urllib.request.urlopen(f"{emulator_url}/_emulator/journal", timeout=5) as answer:
        return json.load(answer)
