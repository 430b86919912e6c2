"""Run each entry point for real -- ``ansible-playbook`` with the callback, ``ansible-playbook`` with a module task,
``fab retrace.start`` -- against a given API URL, timed, with the peak memory of its processes.

Every entry point is given ``timeout: 2`` and ``deadline: 3`` (the callback also ``time_budget: 3``) unless told
otherwise, the way a user gives them: the callback in ``ansible.cfg`` (``[callback_retrace]``), the module as its task's
arguments, ``fab`` in its configuration file.  (No entry point reads them from the environment.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

from retrace_emulator.accounts import DEMO_API_KEY

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
RUN_TIMEOUT = 120
#: runs the command given after it, then writes the largest peak RSS (KiB) of the processes it waited for
#: (ansible-playbook, its workers, fab: RUSAGE_CHILDREN is the maximum over every waited-for descendant)
PEAK_MEMORY = ("import json, resource, subprocess, sys\n"
               "code = subprocess.call(sys.argv[2:])\n"
               "open(sys.argv[1], 'w').write(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
               "sys.exit(code)\n")


@dataclasses.dataclass
class Run:
    returncode: int
    output: str
    seconds: float
    #: time.monotonic() when the run ended (the servers of a test run in its process: their clocks compare)
    ended: float
    #: the largest peak resident set of any process of the run, in MiB
    peak_mib: float


def environment(home: pathlib.Path, url: str, extra: dict) -> dict:
    """A clean environment for a run against ``url``: nothing of the test runner's RETRACE_*, ANSIBLE_* or proxies."""
    keep = ("PATH", "LANG", "ANSIBLE_COLLECTIONS_PATH")
    environ = {name: os.environ[name] for name in keep if name in os.environ}
    environ.update(HOME=str(home), PYTHONPATH=str(REPO_ROOT), RETRACE_API_KEY=DEMO_API_KEY, RETRACE_API_URL=url,
                   RETRACE_APP_NAME="DemoApp", RETRACE_ENVIRONMENT_NAME="Production",
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
                   ANSIBLE_HOME=str(home / "ansible"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_RETRY_FILES_ENABLED="false",
                   GIT_CEILING_DIRECTORIES=str(home.parent))
    environ.update(extra)
    return environ


def run(command: list[str], directory: pathlib.Path, environ: dict) -> Run:
    peak_file = directory / "peak-memory.json"
    began = time.monotonic()
    completed = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(peak_file), *command], cwd=directory, env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT,
                               stdin=subprocess.DEVNULL, check=False)
    ended = time.monotonic()
    return Run(completed.returncode, completed.stdout, ended - began, ended, json.loads(peak_file.read_text()) / 1024)


def run_callback(directory: pathlib.Path, environ: dict, version: str, timeout: float = 2, deadline: float = 3) -> Run:
    playbook = directory / "callback.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                     "tasks": [{"ansible.builtin.command": "true"}]}]))
    # ./ansible.cfg, read from the directory ansible-playbook runs in; the time budget is the deadline
    (directory / "ansible.cfg").write_text(f"[callback_retrace]\ntimeout = {timeout}\ndeadline = {deadline}\n"
                                           f"time_budget = {deadline}\n")
    environ = {**environ, "ANSIBLE_CALLBACKS_ENABLED": "stackify.retrace.deployment", "RETRACE_VERSION": version}
    return run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)], directory, environ)


def run_module(directory: pathlib.Path, environ: dict, version: str, timeout: float = 2, deadline: float = 3) -> Run:
    playbook = directory / "module.yml"
    task = {"stackify.retrace.deployment": {"state": "started", "version": version, "timeout": timeout, "deadline": deadline}}
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
    return run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)], directory, environ)


def run_fab(directory: pathlib.Path, environ: dict, version: str, timeout: float = 2, deadline: float = 3) -> Run:
    (directory / "fabfile.py").symlink_to(REPO_ROOT / "fabfile.py")
    (directory / "runtime.yaml").write_text(f"run: {{in_stream: false}}\nretrace: {{timeout: {timeout}, deadline: {deadline}}}\n")
    return run([str(BIN / "fab"), "-f", "runtime.yaml", "retrace.start", "--version", version], directory, environ)


ENTRY_POINTS = {"callback": run_callback, "module": run_module, "fab": run_fab}
