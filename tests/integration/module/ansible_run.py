"""Run ansible-playbook (and molecule) for real, as a user would, against a Retrace emulator.

Shared by tests/integration/module/ and tests/integration/role/.  The child environment is
built from scratch for Retrace settings (no RETRACE_* leaking in from the developer's shell)
and points Ansible at this checkout (tests/conftest.py sets ANSIBLE_COLLECTIONS_PATH).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from ansible_collections.stackify.retrace.plugins.plugin_utils._source import CI_PROVIDERS

BIN = pathlib.Path(sys.executable).parent
REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
RETRACE_VARIABLES = ("RETRACE_", "STACKIFY_")
#: variables by which a CI system is recognised: a test's playbook is not a build of this checkout, whose branch and
#: commit the module would otherwise detect and send
CI_MARKERS = tuple(marker for _provider, marker, _reader in CI_PROVIDERS)
PLAYBOOK_TIMEOUT = 120
DEMO_KEY = "emulator-demo-key"
#: the emulator's demo account holds this app and environment
DEMO = {"app_name": "DemoApp", "environment_name": "Production"}


def child_environment(home: pathlib.Path, **extra: str) -> dict:
    """os.environ without Retrace settings or CI markers, with quiet, colourless, local-only Ansible."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(RETRACE_VARIABLES) and name not in CI_MARKERS}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_COLLECTIONS_PATH=os.environ["ANSIBLE_COLLECTIONS_PATH"],
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        NO_COLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_LOCAL_TEMP=str(home / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "ansible-remote-tmp"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(home / "cp"),
    )
    env.update(extra)
    return env


def write_playbook(directory: pathlib.Path, plays: list, name: str = "playbook.yml") -> pathlib.Path:
    """Write plays (Python data) as a playbook; JSON is valid YAML and needs no quoting rules."""
    path = directory / name
    path.write_text(json.dumps(plays, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def run_playbook(playbook: pathlib.Path, *args: str, env: dict, inventory: str | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook PLAYBOOK ARGS; stdout and stderr captured together, as a user sees them."""
    command = [str(BIN / "ansible-playbook"), str(playbook), *args]
    if inventory is not None:
        inventory_file = playbook.parent / "inventory.ini"
        inventory_file.write_text(inventory, encoding="utf-8")
        command += ["-i", str(inventory_file)]
    return subprocess.run(command, env=env, cwd=playbook.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=PLAYBOOK_TIMEOUT, check=False)


def task(state: str, **options) -> dict:
    """One stackify.retrace.deployment task; options may include task keywords via keywords=."""
    keywords = options.pop("keywords", {})
    return {"name": f"Retrace {state}", "stackify.retrace.deployment": {"state": state, **options}, **keywords}


def play(*tasks: dict, hosts: str = "localhost", **keywords) -> dict:
    return {"name": "Retrace module test", "hosts": hosts, "gather_facts": False, **keywords, "tasks": list(tasks)}


def calls(emulator) -> list[tuple[str, int | None]]:
    """(action, status) of every deployment API request the emulator received, in order."""
    return [(entry["action"], entry["status"]) for entry in emulator.requests()]


def wait_for_calls(emulator, expected: list, seconds: float = 15.0) -> list[tuple[str, int | None]]:
    """calls(emulator) once they equal ``expected`` (or after ``seconds``), for calls that land after the run:
    the orphan guard cancels a start the run left live a moment after ansible-playbook exits."""
    deadline = time.monotonic() + seconds
    while calls(emulator) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return calls(emulator)


def stop_run(process, signum, exits_within=30.0):
    """Send ``signum`` to ansible-playbook and wait for it to exit; returns its output.

    ansible-core 2.19 and later stop at once on SIGINT, SIGTERM and SIGHUP (they do not wait for the running
    task), so a run still there ``exits_within`` seconds later is a failure, not something to kill quietly.
    A task's worker left behind by a killed ansible-playbook is killed afterwards.
    """
    os.kill(process.pid, signum)
    try:
        process.wait(timeout=exits_within)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        raise AssertionError(f"ansible-playbook still running {exits_within:.0f} s after {signal.Signals(signum).name}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return process.output.read_text(errors="replace")
