"""Where a module task's settings come from, through ansible-playbook: its arguments, then retrace_* variables (the
inventory's group_vars, play vars, extra vars), then RETRACE_*; the version found as the callback finds it; the key
sent only where the project says; and one run's own start recognised across serial batches."""

import os
import subprocess
import time

import pytest

from ansible_run import DEMO, DEMO_KEY, calls, play, run_playbook, task, wait_for_calls, write_playbook

DEPLOY_STEP = {"name": "Deployment step", "ansible.builtin.debug": {"msg": "deploying"}}


def retrace_warnings(run) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("[WARNING]: Retrace: ")]


def test_group_vars_feed_a_plain_module_task_below_its_own_arguments(tmp_path, ansible_env, retrace_emulator):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("retrace_app_name: DemoApp\nretrace_environment_name: Staging\n"
                                                     "retrace_version: '8.0'\nretrace_deployment_name: ignored\n")
    playbook = write_playbook(tmp_path, [play(task("started", environment_name="Production", keywords={"run_once": True}),
                                              DEPLOY_STEP, task("completed", environment_name="Production"), hosts="all")])
    run = run_playbook(playbook, env=ansible_env, inventory="web1 ansible_connection=local\n")
    assert run.returncode == 0, run.stdout
    assert [(entry["action"], entry["body"]["Version"], entry["body"]["EnvironmentName"]) for entry in retrace_emulator.requests()] == [
        ("start", "8.0", "Production"), ("complete", "8.0", "Production")]
    # retrace_deployment_name is no setting (RETRACE_DEPLOYMENT_NAME's variable is retrace_name): said once
    [warning] = retrace_warnings(run)
    assert "unknown setting 'retrace_deployment_name' in the play's variables and extra vars" in warning


def test_an_api_url_written_in_the_task_takes_the_key_from_the_environment(tmp_path, ansible_env, retrace_emulator):
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_API_URL"}
    playbook = write_playbook(tmp_path, [play(task("started", version="8.1", api_url=retrace_emulator.url, **DEMO),
                                              task("completed", version="8.1", api_url=retrace_emulator.url, **DEMO))])
    run = run_playbook(playbook, env=env)
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)] and retrace_warnings(run) == []


@pytest.mark.parametrize("how", ["retrace_api_url", "templated argument"])
def test_an_api_url_from_extra_vars_never_gets_the_key_from_the_environment(tmp_path, ansible_env, retrace_emulator, how):
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_API_URL"}
    arguments = {"version": "8.2", **DEMO}
    if how == "templated argument":
        arguments["api_url"] = "{{ target_url }}"
    playbook = write_playbook(tmp_path, [play(task("started", **arguments), DEPLOY_STEP)])
    extra = f"retrace_api_url={retrace_emulator.url}" if how == "retrace_api_url" else f"target_url={retrace_emulator.url}"
    run = run_playbook(playbook, "-e", extra, env=env)
    assert run.returncode == 0 and "deploying" in run.stdout, run.stdout
    [warning] = retrace_warnings(run)
    assert "NOT recorded: api_url:" in warning and "is refused" in warning and "RETRACE_API_URL" in warning
    assert calls(retrace_emulator) == []


def test_the_key_given_with_the_url_goes_with_it(tmp_path, ansible_env, retrace_emulator):
    env = {name: value for name, value in ansible_env.items() if name not in ("RETRACE_API_URL", "RETRACE_API_KEY")}
    playbook = write_playbook(tmp_path, [play(task("started", version="8.3", **DEMO), task("completed", version="8.3", **DEMO))])
    run = run_playbook(playbook, "-e", f"retrace_api_url={retrace_emulator.url}", "-e", f"retrace_api_key={DEMO_KEY}", env=env)
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202)]


def _git(directory, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=directory, check=True, capture_output=True)


def test_the_version_is_git_describe_of_the_playbook_s_directory_and_the_end_reuses_it(tmp_path, ansible_env, retrace_emulator):
    # The deployment step changes a tracked file: by the end, git describe says v9.1.0-dirty; the end task still
    # names the deployment the start did.
    change = {"name": "Deployment step", "ansible.builtin.shell": "echo changed >> RELEASE"}
    playbook = write_playbook(tmp_path, [play(task("started", **DEMO), change, task("completed", **DEMO))])
    (tmp_path / "RELEASE").write_text("9.1.0\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", playbook.name, "RELEASE")
    _git(tmp_path, "commit", "-q", "-m", "site")
    _git(tmp_path, "tag", "v9.1.0")
    run = run_playbook(playbook, "-v", env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert "version v9.1.0, the version this run started" in run.stdout
    sent = retrace_emulator.requests()
    assert [(entry["action"], entry["body"]["Version"]) for entry in sent] == [("start", "v9.1.0"), ("complete", "v9.1.0")]
    assert sent[0]["body"]["Branch"] and len(sent[0]["body"]["Commit"]) == 40


def test_no_version_outside_git_records_nothing_and_says_how_to_set_it(tmp_path, ansible_env, retrace_emulator):
    playbook = write_playbook(tmp_path, [play(task("started", **DEMO), DEPLOY_STEP, task("completed", **DEMO))])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 0 and "deploying" in run.stdout, run.stdout
    [warning] = retrace_warnings(run)  # the start's and the end's identical line, shown once
    assert "NOT recorded: version: is not set" in warning
    assert "-e retrace_version=..." in warning and "RETRACE_VERSION" in warning
    assert calls(retrace_emulator) == []


def test_git_refusing_the_checkout_is_said_with_the_fix(tmp_path, ansible_env, retrace_emulator):
    """A checkout owned by another user (containers, execution environments): git refuses it until safe.directory."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (CI does): it hands the checkout to another user")
    playbook = write_playbook(tmp_path, [play(task("started", **DEMO), DEPLOY_STEP)])
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", playbook.name)
    _git(tmp_path, "commit", "-q", "-m", "site")
    subprocess.run(["chown", "-R", "65534:65534", str(tmp_path / ".git")], check=True)
    home = tmp_path / "home"
    home.mkdir()
    run = run_playbook(playbook, env={**ansible_env, "HOME": str(home)})
    assert run.returncode == 0 and "deploying" in run.stdout, run.stdout
    [warning] = retrace_warnings(run)
    assert "NOT recorded: version: is not set (git refused" in warning and "safe.directory" in warning
    assert calls(retrace_emulator) == []


def test_a_run_once_start_in_a_serial_play_is_one_start(tmp_path, ansible_env, retrace_emulator):
    """Each serial batch runs the start task again: the second one meets this run's own deployment, not a conflict."""
    playbook = write_playbook(tmp_path, [
        play(task("started", version="8.4", **DEMO, keywords={"run_once": True}), DEPLOY_STEP, hosts="all", serial=1),
        play(task("completed", **DEMO, keywords={"run_once": True}), hosts="all"),
    ])
    run = run_playbook(playbook, env=ansible_env, inventory="web1 ansible_connection=local\nweb2 ansible_connection=local\n")
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("deploying") == 2 and retrace_warnings(run) == []
    accepted = [(entry["action"], entry["body"]["Version"]) for entry in retrace_emulator.requests() if entry["status"] == 202]
    assert accepted == [("start", "8.4"), ("complete", "8.4")]
    assert retrace_emulator.deployments()[0]["state"] == "completed"


def test_an_api_url_templated_in_group_vars_from_extra_vars_never_gets_the_key(tmp_path, ansible_env, retrace_emulator):
    """retrace_api_url: "{{ target_url }}" in the project's group_vars, with -e target_url=...: the extra vars chose it."""
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_API_URL"}
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("retrace_api_url: '{{ target_url }}'\n")
    playbook = write_playbook(tmp_path, [play(task("started", version="8.5", **DEMO, keywords={"run_once": True}), DEPLOY_STEP,
                                              hosts="all")])
    run = run_playbook(playbook, "-e", f"target_url={retrace_emulator.url}", env=env, inventory="web1 ansible_connection=local\n")
    assert run.returncode == 0 and "deploying" in run.stdout, run.stdout
    [warning] = retrace_warnings(run)
    assert "NOT recorded: api_url:" in warning and "(from the play's variables) is refused: Ansible variables can be set" in warning
    assert calls(retrace_emulator) == []


def test_start_and_end_tasks_without_run_once_send_one_start_and_one_end(tmp_path, ansible_env, retrace_emulator):
    """Each of two hosts runs the start and the end: one start accepted, the other host's is this run's own; one
    complete, the other host's finds it sent; no cancel from the guard afterwards."""
    playbook = write_playbook(tmp_path, [play(task("started", version="8.6", **DEMO), DEPLOY_STEP,
                                              task("completed", version="8.6", **DEMO), hosts="all")])
    run = run_playbook(playbook, env=ansible_env, inventory="web1 ansible_connection=local\nweb2 ansible_connection=local\n")
    assert run.returncode == 0, run.stdout
    sent = [(action, status) for action, status in wait_for_calls(retrace_emulator, [("start", 202), ("complete", 202)])
            if status == 202]
    assert sent == [("start", 202), ("complete", 202)], run.stdout
    assert any("add 'run_once: true'" in warning for warning in retrace_warnings(run)), run.stdout
    assert retrace_emulator.deployments()[0]["state"] == "completed"


def test_the_end_of_a_start_that_got_no_answer_is_left_to_the_guard(tmp_path, ansible_env, retrace_emulator):
    """As every entry point sends no end for a start it did not record: the complete task sends nothing, and the
    orphan guard (never released) cancels the start once the run is over, since it landed unanswered."""
    retrace_emulator.inject("start", [{"process": True, "hang": 5}] * 6)
    playbook = write_playbook(tmp_path, [play(task("started", version="8.7", deadline=2, timeout=1, **DEMO), DEPLOY_STEP,
                                              task("completed", version="8.7", **DEMO))])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert "no complete sent: its start got no answer" in run.stdout
    deadline = time.monotonic() + 15
    while ("cancel", 202) not in calls(retrace_emulator) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {action for action, _status in calls(retrace_emulator)} == {"start", "cancel"}, calls(retrace_emulator)
    assert ("cancel", 202) in calls(retrace_emulator)


def test_the_end_names_the_version_the_start_sent_when_the_home_is_read_only(tmp_path, ansible_env, retrace_emulator):
    """The run's record of its start lives beside the orphan guard, not in a home that may be read-only (containers)."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    playbook = write_playbook(tmp_path, [play(task("started", **DEMO), {"name": "Change a tracked file", "ansible.builtin.copy": {
        "dest": str(tmp_path / "tracked.txt"), "content": "changed\n"}}, task("completed", **DEMO))])
    (tmp_path / "tracked.txt").write_text("original\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "release")
    git("tag", "v9.0")
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_VERSION"}
    run = run_playbook(playbook, env={**env, "XDG_STATE_HOME": "/proc/nowhere", "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert run.returncode == 0, run.stdout
    assert [(entry["action"], entry["body"]["Version"]) for entry in retrace_emulator.requests()] == [("start", "v9.0"),
                                                                                                      ("complete", "v9.0")]
    assert retrace_warnings(run) == []


@pytest.mark.parametrize("how", ["set_fact", "vars lookup", "key in group_vars", "key file named at launch"])
def test_no_variable_can_send_the_key_to_a_url_of_its_own(tmp_path, ansible_env, retrace_emulator, how):
    """Whoever launches the run reaches every variable: a fact set from an extra var, ``vars['x']``, a key the project
    keeps (Vault, group_vars), a key file they name -- the key never goes to a URL variables give."""
    env = {name: value for name, value in ansible_env.items() if name != "RETRACE_API_URL"}
    steps, extra, arguments = [], [], {"version": "8.8", **DEMO}
    if how == "set_fact":
        steps.append({"name": "A fact from an extra var", "ansible.builtin.set_fact": {"endpoint": "{{ x }}"}})
        arguments["api_url"] = "{{ endpoint }}"
        extra = ["-e", f"x={retrace_emulator.url}"]
    elif how == "vars lookup":
        arguments["api_url"] = "{{ vars['x'] }}"
        extra = ["-e", f"x={retrace_emulator.url}"]
    elif how == "key in group_vars":
        env.pop("RETRACE_API_KEY")
        (tmp_path / "group_vars").mkdir()
        (tmp_path / "group_vars" / "all.yml").write_text(f"retrace_api_key: {DEMO_KEY}\n")
        extra = ["-e", f"retrace_api_url={retrace_emulator.url}"]
    else:
        env.pop("RETRACE_API_KEY")
        secret = tmp_path / "some-controller-secret"
        secret.write_text(DEMO_KEY)
        extra = ["-e", f"retrace_api_key_file={secret}", "-e", f"retrace_api_url={retrace_emulator.url}"]
    playbook = write_playbook(tmp_path, [play(*steps, task("started", **arguments, keywords={"run_once": True}), DEPLOY_STEP,
                                              hosts="all")])
    run = run_playbook(playbook, *extra, env=env, inventory="web1 ansible_connection=local\n")
    assert run.returncode == 0 and "deploying" in run.stdout, run.stdout
    assert calls(retrace_emulator) == []
    assert any("NOT recorded: api_url:" in warning and "is refused" in warning for warning in retrace_warnings(run)), run.stdout
