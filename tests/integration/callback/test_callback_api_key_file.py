"""api_key_file for the callback: RETRACE_API_KEY_FILE, -e retrace_api_key_file, [callback_retrace] api_key_file."""

from __future__ import annotations

import pytest

from retrace_emulator import DEMO_API_KEY

OK_TASK = """
- name: Say hello
  ansible.builtin.debug:
    msg: hello
"""


@pytest.fixture
def key_file(runner):
    """The emulator's demo key, in a file, with a newline as editors leave it."""
    path = runner.workdir / "retrace.key"
    path.write_text(f"{DEMO_API_KEY}\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("source", ["environment", "extra_var", "ansible_cfg"])
def test_the_key_comes_from_the_file(runner, key_file, source):
    playbook = runner.playbook("site.yml", OK_TASK)
    args, env = ["-vvvv", str(playbook)], {}
    if source == "environment":
        env["RETRACE_API_KEY_FILE"] = str(key_file)
    elif source == "extra_var":
        args += ["-e", f"retrace_api_key_file={key_file}"]
    else:
        runner.write("ansible.cfg", f"[callback_retrace]\napi_key_file = {key_file}\n")
    # no RETRACE_API_KEY: without the file there is no key, and the run is not tracked
    run = runner.run(*args, env=env, unset=("RETRACE_API_KEY",))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)], run.output
    assert DEMO_API_KEY not in run.output


def test_a_key_and_a_key_file_is_one_warning_and_nothing_sent(runner, key_file):
    """RETRACE_API_KEY (kept from the base environment) and RETRACE_API_KEY_FILE: which one was meant is unknowable."""
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)), env={"RETRACE_API_KEY_FILE": str(key_file)})
    assert run.returncode == 0, run.output
    assert "set api_key or api_key_file, not both" in run.output
    assert runner.actions() == []


def test_a_missing_key_file_with_strict_fails_the_run_naming_it(runner):
    missing = runner.workdir / "absent.key"
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)), env={"RETRACE_API_KEY_FILE": str(missing), "RETRACE_STRICT": "true"},
                     unset=("RETRACE_API_KEY",))
    assert run.returncode != 0, run.output
    assert f"api_key_file: cannot read '{missing}'" in run.output
    assert runner.actions() == []
