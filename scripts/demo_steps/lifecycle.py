"""Demo step: every started deployment ends, and tracking never takes a deployment down.

Three stories with the role of demo/module_and_role/, read back from the emulator's journal:
a job killed midway as AWX / ansible-runner kill it (SIGKILL to the whole process group, no handler
runs: the orphan guard sends the cancel), Retrace down at the start (the deployment goes on, one
warning), and a one-shot complete with no start, as Stackify's own Jenkins plugin sends it.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

from demo_steps.module_and_role import ANSIBLE_PLAYBOOK, DEMO_DIR, _journal

ANSIBLE = pathlib.Path(sys.executable).parent / "ansible"
GUARD_WAIT = 15.0


def run(emulator_url: str, api_key: str, workdir: pathlib.Path) -> list[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RETRACE_", "STACKIFY_"))}
    env.update(ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"), ANSIBLE_NOCOLOR="1",
               RETRACE_API_URL=emulator_url, RETRACE_API_KEY=api_key)
    return [_killed_midway(emulator_url, env, workdir), _retrace_down(env), _one_shot(emulator_url, env)]


def _killed_midway(emulator_url: str, env: dict, workdir: pathlib.Path) -> str:
    marker = workdir / "deploying"
    before = len(_journal(emulator_url))
    process = subprocess.Popen([str(ANSIBLE_PLAYBOOK), "-i", "inventory.ini", "role.yml", "-e", "demo_version=4.0.0",
                                "-e", "demo_pause=60", "-e", f"demo_marker={marker}"], cwd=DEMO_DIR, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    while not marker.exists() and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # what ansible-runner's cancel and job_timeout do
    killed_at = time.monotonic()
    process.wait()
    sent = []
    while time.monotonic() - killed_at < GUARD_WAIT and len(sent) < 2:
        sent = [f"{entry['action']} {entry['status']}" for entry in _journal(emulator_url)[before:] if entry["action"]]
        time.sleep(0.02)
    return (f"lifecycle: role run killed midway with SIGKILL to its process group (an AWX cancel) -> Retrace got "
            f"{', '.join(sent) or 'nothing'}; the cancel came from the orphan guard {time.monotonic() - killed_at:.2f} s after the kill")


def _retrace_down(env: dict) -> str:
    down = {**env, "RETRACE_API_URL": "http://127.0.0.1:9"}  # nothing listens on the discard port
    completed = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "inventory.ini", "role.yml", "-e", "demo_version=4.1.0",
                                "-e", "retrace_deadline=1"], cwd=DEMO_DIR, env=down, capture_output=True, text=True,
                               check=False, timeout=120)
    installed = completed.stdout.count("installing 4.1.0 on")
    warning = next((line.split("[WARNING]: ", 1)[1] for line in completed.stderr.splitlines() if "NOT recorded" in line), "")
    return (f"lifecycle: role.yml -e demo_version=4.1.0 with Retrace unreachable -> exit {completed.returncode}, "
            f"deployed on {installed} hosts anyway; warning: {warning[:110]}...")


def _one_shot(emulator_url: str, env: dict) -> str:
    before = len(_journal(emulator_url))
    completed = subprocess.run([str(ANSIBLE), "localhost", "-m", "stackify.retrace.deployment", "-a",
                                "state=completed app_name=DemoApp environment_name=Production version=4.2.0 "
                                "branch=main commit=9f2c1ab uri=https://ci.example.com/builds/42"],
                               cwd=DEMO_DIR, env=env, capture_output=True, text=True, check=False, timeout=60)
    sent = [f"{entry['action']} {entry['status']}" for entry in _journal(emulator_url)[before:] if entry["action"]]
    return (f"lifecycle: ansible localhost -m stackify.retrace.deployment -a 'state=completed ...' with no start (a one-shot "
            f"deployment, as Stackify's Jenkins plugin sends) -> exit {completed.returncode}; Retrace got {', '.join(sent)}")
