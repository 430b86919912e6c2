"""The API key never leaves the process that sends it: not in stdout, stderr, logs, the emulator's journal
or any file the run writes -- at the highest verbosity, on success and on every kind of failure.

The key is a distinct value the emulator accepts, handed over in the environment only, so any file
or stream that contains it afterwards is a leak.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from ansible_run import DEMO, play, run_playbook, task, write_playbook
from reliability_helpers import CALLBACK

SECRET = "s3cr3t-Hygiene-Key-91c4e7"
WRONG = "wr0ng-Hygiene-Key-2b8f16"
ACCOUNT = pytest.mark.retrace_emulator(accounts={SECRET: {"apps": ["DemoApp"], "environments": ["Production"]}})
TWO_HOSTS = "web1 ansible_connection=local\nweb2 ansible_connection=local\n"


def assert_nowhere(*texts: str, emulator, directory: pathlib.Path) -> None:
    """Neither key in the given output, the journal, or any file under ``directory``."""
    places = {f"output {index}": text for index, text in enumerate(texts)}
    places["emulator journal"] = json.dumps(emulator.journal())
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            places[str(path.relative_to(directory))] = path.read_bytes().decode("utf-8", "replace")
    for key in (SECRET, WRONG):
        leaks = [place for place, text in places.items() if key in text]
        assert not leaks, f"the key leaked into: {leaks}"


def hygiene_env(env: dict, tmp_path: pathlib.Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return dict(env, RETRACE_API_KEY=SECRET, WRONG_KEY=WRONG, HOME=str(home), ANSIBLE_LOG_PATH=str(tmp_path / "ansible.log"))


@ACCOUNT
def test_module_key_hygiene(tmp_path, ansible_env, retrace_emulator, closed_port):
    # RETRACE_STRICT: each failure fails its task (and shows its error there); the one task with strict false
    # shows the same kind of error as a warning instead (fail-open, the default).
    ignore = {"ignore_errors": True}
    wrong_key = "{{ lookup('env', 'WRONG_KEY') }}"
    playbook = write_playbook(tmp_path, [play(
        task("started", version="1.0", **DEMO),
        task("completed", version="1.0", **DEMO),
        task("cancelled", version="0.9", **DEMO, keywords=ignore),                                            # 409: never started
        task("started", version="1.1", **DEMO, api_key=wrong_key, keywords=ignore),                           # 401
        task("started", version="1.1", **DEMO, api_key=wrong_key, strict=False),                              # 401, warned
        task("started", version="1.2", app_name="NoSuchApp", environment_name="Production", keywords=ignore),  # 400
        task("started", version="v" * 300, **DEMO, keywords=ignore),                                          # invalid input
        task("started", version="1.3", **DEMO, deadline=1, api_url=f"http://127.0.0.1:{closed_port}", keywords=ignore),
        task("cancelled", version="1.4", **DEMO),                                                              # 409 fails the play
    )])
    run = run_playbook(playbook, "-vvvv", env=dict(hygiene_env(ansible_env, tmp_path), RETRACE_STRICT="true"))
    assert run.returncode == 2, run.stdout
    assert [entry["status"] for entry in retrace_emulator.requests()] == [202, 202, 409, 401, 401, 400, 409]
    assert (tmp_path / "ansible.log").stat().st_size > 0
    assert_nowhere(run.stdout, emulator=retrace_emulator, directory=tmp_path)


@ACCOUNT
def test_role_key_hygiene(tmp_path, ansible_env, retrace_emulator):
    (tmp_path / "steps.yml").write_text(json.dumps([
        {"name": "Deployment step", "ansible.builtin.fail": {"msg": "broken"}, "when": "inventory_hostname in failing_hosts"}]))
    retrace_emulator.inject("cancel", [{"status": 503, "retry_after": "0"}])

    def role_play(version, failing):
        return {"name": f"Deploy {version}", "hosts": "all", "gather_facts": False, "tasks": [
            {"name": "Deploy", "ansible.builtin.include_role": {"name": "stackify.retrace.tracked_deployment"},
             "vars": {"tracked_deployment_tasks": "steps.yml", "retrace_app_name": "DemoApp", "failing_hosts": failing,
                      "retrace_environment_name": "Production", "retrace_version": version}}]}

    playbook = write_playbook(tmp_path, [role_play("1.0", []), role_play("1.1", ["web2"])])
    run = run_playbook(playbook, "-vvvv", env=hygiene_env(ansible_env, tmp_path), inventory=TWO_HOSTS)
    assert run.returncode == 2, run.stdout
    assert [(entry["action"], entry["status"]) for entry in retrace_emulator.requests()] == [
        ("start", 202), ("complete", 202), ("start", 202), ("cancel", 503), ("cancel", 202)]
    assert_nowhere(run.stdout, emulator=retrace_emulator, directory=tmp_path)


# (tasks, extra environment, faults, journal statuses)
CALLBACK_RUNS = {
    "success": ([{"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}}], {}, {}, [202, 202]),
    "task-failure": ([{"name": "Break", "ansible.builtin.fail": {"msg": "broken"}}], {}, {"cancel": [{"status": 503, "retry_after": "0"}]},
                     [202, 503, 202]),
    "wrong-key": ([{"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}}], {"RETRACE_API_KEY": WRONG}, {}, [401]),
    "invalid-input": ([{"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}}], {"RETRACE_VERSION": "v" * 300}, {}, []),
}


@ACCOUNT
@pytest.mark.parametrize("case", CALLBACK_RUNS)
def test_callback_key_hygiene(tmp_path, callback_env, retrace_emulator, case):
    tasks, extra, faults, statuses = CALLBACK_RUNS[case]
    for action, queue in faults.items():
        retrace_emulator.inject(action, queue)
    playbook = write_playbook(tmp_path, [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    env = dict(hygiene_env(callback_env, tmp_path), ANSIBLE_CALLBACKS_ENABLED=CALLBACK, **extra)
    run = run_playbook(playbook, "-vvvv", env=env)
    assert run.returncode == (2 if case == "task-failure" else 0), run.stdout
    assert [entry["status"] for entry in retrace_emulator.requests()] == statuses
    assert (tmp_path / "ansible.log").stat().st_size > 0
    assert_nowhere(run.stdout, emulator=retrace_emulator, directory=tmp_path)


@pytest.mark.fabric
@ACCOUNT
def test_fabric_key_hygiene(fab, retrace_emulator, closed_port):
    # RETRACE_STRICT: each failure exits 1 with its error; one call without it warns instead (fail-open).
    env = {"RETRACE_API_KEY": SECRET, "RETRACE_STRICT": "true"}
    outputs = []

    def fab_run(*args, expect, extra=None):
        result = fab.run("-d", *args, env={**env, **(extra or {})})
        assert result.returncode == expect, result.stderr
        outputs.extend((result.stdout, result.stderr))

    fab.settings({"steps": ["echo deployed"]})
    fab_run("deploy", "--version", "1.0", expect=0)                                     # success
    fab.settings({"steps": ["false"]})
    retrace_emulator.inject("cancel", [{"status": 503, "retry_after": "0"}])
    fab_run("deploy", "--version", "1.1", expect=1)                                     # step fails, cancel retried
    fab_run("retrace.cancel", "--version", "1.1", expect=1)                             # 409
    fab_run("retrace.start", "--version", "1.2", expect=1, extra={"RETRACE_API_KEY": WRONG})  # 401
    fab_run("retrace.start", "--version", "1.2", expect=0, extra={"RETRACE_API_KEY": WRONG, "RETRACE_STRICT": "false"})
    fab_run("retrace.start", "--version", "1.3", "--app-name", "NoSuchApp", expect=1)   # 400
    fab_run("retrace.start", "--version", "v" * 300, expect=2)                          # invalid input
    fab.settings({"api_url": f"http://127.0.0.1:{closed_port}", "deadline": 1})
    fab_run("retrace.start", "--version", "1.4", expect=1)                              # unreachable
    assert [entry["status"] for entry in retrace_emulator.requests()] == [202, 202, 202, 503, 202, 409, 401, 401, 400]
    assert_nowhere(*outputs, emulator=retrace_emulator, directory=fab.directory)
