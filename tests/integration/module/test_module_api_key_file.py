"""api_key_file for the module: the key read from a file on the controller, from the option or RETRACE_API_KEY_FILE."""

import pytest

from ansible_run import DEMO, calls, play, run_playbook, task, write_playbook

FILE_KEY = "f1le-Retrace-Key-3c9b1e"
ACCOUNTS = {FILE_KEY: {"apps": ["DemoApp"], "environments": ["Production"]}}
DEPLOY_STEP = {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}}


def _key_file(directory):
    path = directory / "retrace.key"
    path.write_text(f"{FILE_KEY}\n")
    path.chmod(0o600)
    return path


@pytest.mark.retrace_emulator(accounts=ACCOUNTS)
def test_the_option_and_the_environment_variable_give_the_key(tmp_path, ansible_env, retrace_emulator):
    key_file = _key_file(tmp_path)
    env = dict(ansible_env, RETRACE_STRICT="true")
    del env["RETRACE_API_KEY"]  # the emulator knows only FILE_KEY: an accepted call proves the file was read
    playbook = write_playbook(tmp_path, [play(task("started", version="1.0", api_key_file=str(key_file), **DEMO),
                                              task("completed", version="1.0", **DEMO))])
    run = run_playbook(playbook, "-vvvv", env=dict(env, RETRACE_API_KEY_FILE=str(key_file)))
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]
    assert FILE_KEY not in run.stdout


@pytest.mark.retrace_emulator(accounts=ACCOUNTS)
@pytest.mark.parametrize("strict", [False, True], ids=["fail-open", "strict"])
def test_a_key_and_a_key_file_from_the_environment_send_nothing(tmp_path, ansible_env, retrace_emulator, strict):
    key_file = _key_file(tmp_path)
    playbook = write_playbook(tmp_path, [play(task("started", version="1.0", **DEMO, strict=strict), DEPLOY_STEP)])
    run = run_playbook(playbook, env=dict(ansible_env, RETRACE_API_KEY_FILE=str(key_file)))  # and RETRACE_API_KEY
    assert run.returncode == (2 if strict else 0), run.stdout
    assert "NOT recorded: api_key, api_key_file: both are set: set api_key or api_key_file, not both" in run.stdout
    assert ("deploying" in run.stdout) is not strict
    assert calls(retrace_emulator) == []


@pytest.mark.retrace_emulator(accounts=ACCOUNTS)
@pytest.mark.parametrize("strict", [False, True], ids=["fail-open", "strict"])
def test_a_missing_key_file_is_named(tmp_path, ansible_env, retrace_emulator, strict):
    env = dict(ansible_env)
    del env["RETRACE_API_KEY"]
    missing = tmp_path / "absent.key"
    playbook = write_playbook(tmp_path, [play(task("started", version="1.0", api_key_file=str(missing), **DEMO, strict=strict),
                                              DEPLOY_STEP)])
    run = run_playbook(playbook, env=env)
    assert run.returncode == (2 if strict else 0), run.stdout
    assert f"api_key_file: cannot read '{missing}'" in run.stdout
    assert ("deploying" in run.stdout) is not strict
    assert calls(retrace_emulator) == []
