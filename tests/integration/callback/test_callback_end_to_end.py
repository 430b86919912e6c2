"""The callback end to end: real ansible-playbook processes, real HTTP to the emulator, the journal checked.

Every test uses its own emulator and directory, so the module runs under pytest-xdist.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import ansible_runner
import pytest
from ansible.release import __version__ as ansible_version

from ansible_collections.stackify.retrace.tests.integration.callback.conftest import wait_for_actions
from ansible_collections.stackify.retrace.tests.reliability.reliability_helpers import retrace_warnings
from retrace_emulator import DEMO_API_KEY

# Before 2.19 ansible-playbook has no SIGTERM handler of its own: the main process dies (after our
# cancel), but its forked worker finishes the running task and holds the output open until then.
ANSIBLE_STOPS_WORKERS_ON_SIGTERM = tuple(int(part) for part in ansible_version.split(".")[:2]) >= (2, 19)

OK_TASK = """
- name: Say hello
  ansible.builtin.debug:
    msg: hello
"""
FAILING_TASK = """
- name: Break
  ansible.builtin.fail:
    msg: broken on purpose
"""
PING_TASK = """
- name: Reach the host
  ansible.builtin.ping:
"""
STARTED = "Retrace: deployment 1.0.0 of DemoApp to Production started"
COMPLETED = "Retrace: deployment 1.0.0 of DemoApp to Production completed"
CANCELLED = "Retrace: deployment 1.0.0 of DemoApp to Production cancelled"


def only_warning(run) -> str:
    warnings = retrace_warnings(run.output)
    assert len(warnings) == 1, run.output
    return warnings[0]


# --- how the run ends ------------------------------------------------------------------------------

def test_successful_run_is_one_started_and_completed_deployment(runner):
    playbook = runner.playbook("site.yml", OK_TASK)
    run = runner.run(str(playbook), merged=True)
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)]
    assert run.retrace_lines() == [STARTED, COMPLETED]
    start = runner.emulator.requests("start")[0]
    assert start["body"]["Version"] == "1.0.0" and start["headers"]["User-Agent"].startswith("stackify-retrace/")
    # The start is sent when the first task starts (after its banner), before it runs on any host.
    assert run.stdout.index("TASK [Say hello]") < run.stdout.index(STARTED) < run.stdout.index("ok: [localhost]")


def test_the_callbacks_lines_go_to_stderr_so_stdout_stays_the_stdout_callbacks(runner):
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert "Retrace" not in run.stdout
    assert [line for line in run.stderr.splitlines() if line.startswith("Retrace")] == [STARTED, COMPLETED]


def test_task_failure_cancels_and_names_the_host(runner):
    run = runner.run(str(runner.playbook("site.yml", FAILING_TASK)))
    assert run.returncode == 2
    assert runner.actions() == [("start", 202), ("cancel", 202)]
    assert run.retrace_lines()[-1] == f"{CANCELLED}: failed on localhost"


def test_rescued_failure_completes(runner):
    run = runner.run(str(runner.playbook("site.yml", """
        - name: Guarded
          block:
            - name: Break
              ansible.builtin.fail:
                msg: broken on purpose
          rescue:
            - name: Recover
              ansible.builtin.debug:
                msg: recovered
    """)))
    assert run.returncode == 0, run.output
    assert "rescued=1" in run.stdout
    assert runner.actions() == [("start", 202), ("complete", 202)]


def test_ignored_failures_complete(runner):
    run = runner.run(str(runner.playbook("site.yml", """
        - name: Ignored
          ansible.builtin.fail:
            msg: ignored
          ignore_errors: true
        - name: Never failing
          ansible.builtin.command: "false"
          failed_when: false
          changed_when: false
    """)))
    assert run.returncode == 0, run.output
    assert "ignored=1" in run.stdout
    assert runner.actions() == [("start", 202), ("complete", 202)]


def test_unreachable_host_cancels(runner):
    # Nothing listens on port 1 of loopback: ssh fails at once and the host is unreachable.
    inventory = runner.write("hosts.ini", """
        [web]
        localhost ansible_connection=local
        down ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_ssh_args="-o ConnectTimeout=3"
    """)
    run = runner.run("-i", str(inventory), str(runner.playbook("site.yml", PING_TASK, hosts="web")))
    assert run.returncode == 4, run.output
    assert runner.actions() == [("start", 202), ("cancel", 202)]
    assert run.retrace_lines()[-1] == f"{CANCELLED}: unreachable: down"


@pytest.mark.parametrize("signal_name, whole_group, expected_returncode", [
    ("SIGINT", False, 99),
    ("SIGINT", True, 99),  # Ctrl-C in a terminal reaches the workers too
    ("SIGTERM", False, -signal.SIGTERM),
])
def test_signal_mid_run_cancels(runner, sleeper, signal_name, whole_group, expected_returncode):
    playbook, marker = sleeper
    run = runner.run_and_signal(getattr(signal, signal_name), marker, str(playbook), whole_group=whole_group)
    assert run.returncode == expected_returncode, run.output
    assert runner.actions() == [("start", 202), ("cancel", 202)]
    assert run.retrace_lines()[-1].startswith(f"{CANCELLED}: the run was stopped by")
    assert signal_name in run.retrace_lines()[-1]
    if signal_name == "SIGINT" or ANSIBLE_STOPS_WORKERS_ON_SIGTERM:
        assert run.seconds < 40  # the 60 s task was really interrupted


def test_error_after_start_cancels(runner):
    playbook = runner.write("site.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: First play works
              ansible.builtin.debug:
                msg: fine
        - hosts: "{{ group_that_is_not_defined }}"
          gather_facts: false
          tasks: []
    """)
    run = runner.run(str(playbook))
    assert run.returncode != 0
    assert "group_that_is_not_defined" in run.output
    assert runner.actions() == [("start", 202), ("cancel", 202)]
    assert "an error aborted it" in run.retrace_lines()[-1]


def test_unparsable_second_playbook_file_cancels(runner):
    first = runner.playbook("first.yml", OK_TASK)
    broken = runner.write("broken.yml", "- hosts: localhost\n  tasks: [\n")
    run = runner.run(str(first), str(broken))
    assert run.returncode != 0
    assert runner.actions() == [("start", 202), ("cancel", 202)]
    assert "an error aborted it" in run.retrace_lines()[-1]


def test_two_playbook_files_are_one_deployment(runner):
    first = runner.playbook("first.yml", OK_TASK)
    second = runner.playbook("second.yml", OK_TASK)
    run = runner.run(str(first), str(second))
    assert run.returncode == 0, run.output
    assert run.stdout.count("PLAY RECAP") == 2
    assert runner.actions() == [("start", 202), ("complete", 202)]
    assert run.retrace_lines() == [STARTED, COMPLETED]


@pytest.mark.parametrize("failing", ["first", "second"])
def test_two_playbook_files_one_failing_cancel_once(runner, failing):
    tasks = {"first": OK_TASK, "second": OK_TASK, failing: FAILING_TASK}
    run = runner.run(str(runner.playbook("first.yml", tasks["first"])), str(runner.playbook("second.yml", tasks["second"])))
    assert run.returncode == 2
    assert runner.actions() == [("start", 202), ("cancel", 202)]
    assert run.retrace_lines()[-1] == f"{CANCELLED}: failed on localhost"


def test_many_hosts_forks_and_serial_batches_are_one_deployment(runner):
    inventory = runner.write("hosts.ini", "[fleet]\n" + "".join(f"node{n:02d} ansible_connection=local\n" for n in range(12)))
    playbook = runner.playbook("site.yml", OK_TASK, hosts="fleet", extra="serial: 5")
    run = runner.run("-i", str(inventory), "--forks", "4", str(playbook))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)]


# --- modes in which nothing is sent --------------------------------------------------------------

@pytest.mark.parametrize("mode", ["--syntax-check", "--list-tasks", "--list-hosts", "--list-tags"])
def test_syntax_and_list_modes_send_nothing(runner, mode):
    run = runner.run(mode, str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    assert run.retrace_lines() == []


def test_check_mode_sends_nothing_and_shows_what_it_would_send(runner):
    run = runner.run("--check", str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    lines = run.retrace_lines()
    assert len(lines) == 2 and all("(check mode: nothing sent)" in line for line in lines), lines
    assert "would send start" in lines[0] and "would send complete" in lines[1]


@pytest.mark.parametrize("strict", [False, True])
def test_check_mode_checks_the_settings_as_the_module_does(runner, strict):
    run = runner.run("--check", *(["-e", "retrace_strict=true"] if strict else []), str(runner.playbook("site.yml", OK_TASK)),
                     unset=("RETRACE_API_KEY",))
    assert run.returncode == (2 if strict else 0), run.output
    assert ('"msg": "hello"' in run.stdout) is not strict
    assert runner.actions() == []
    assert "NOT recorded: api_key: is not set" in " ".join(run.output.split())


def test_check_mode_is_tracked_when_enabled(runner):
    run = runner.run("--check", "-e", "retrace_track_check_mode=true", str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)]


# --- settings ------------------------------------------------------------------------------------

def test_missing_settings_warn_once_and_send_nothing(runner):
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)), unset=("RETRACE_API_KEY", "RETRACE_APP_NAME"))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    warning = only_warning(run)
    assert "NOT recorded: app_name: is not set" in warning and "api_key: is not set" in warning
    assert "RETRACE_API_KEY" in warning and "RETRACE_APP_NAME" in warning and "environment_name" not in warning
    assert "-e retrace_api_key" not in warning  # a key on the command line shows in the process list


def test_numeric_extra_var_is_refused_not_silently_rounded(runner):
    run = runner.run("-e", '{"retrace_version": 1.10}', str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    assert "version: must be a string, got the number 1.1" in only_warning(run)


def test_extra_vars_beat_environment_beat_ansible_cfg(runner):
    runner.write("ansible.cfg", """
        [defaults]
        callbacks_enabled = stackify.retrace.deployment

        [callback_retrace]
        app_name = DemoApp
        environment_name = Staging
        version = from-ini
        branch = from-ini
    """)
    playbook = runner.playbook("site.yml", OK_TASK)
    run = runner.run("-e", "retrace_version=from-extra-vars", str(playbook),
                     env={"RETRACE_BRANCH": "from-env"},
                     unset=("ANSIBLE_CALLBACKS_ENABLED", "RETRACE_APP_NAME", "RETRACE_ENVIRONMENT_NAME", "RETRACE_VERSION"))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)]
    body = runner.emulator.requests("start")[0]["body"]
    assert body["EnvironmentName"] == "Staging"  # ini
    assert body["Branch"] == "from-env"  # env over ini
    assert body["Version"] == "from-extra-vars"  # extra vars over env and ini


def test_version_branch_and_commit_come_from_git(runner):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=runner.workdir,
                              check=True, capture_output=True, text=True).stdout.strip()
    playbook = runner.playbook("site.yml", OK_TASK)
    git("init", "-q", "-b", "release")
    git("add", "site.yml")
    git("commit", "-q", "-m", "site")
    git("tag", "v2.3.4")
    run = runner.run(str(playbook), unset=("RETRACE_VERSION",))
    assert run.returncode == 0, run.output
    body = runner.emulator.requests("start")[0]["body"]
    assert body["Version"] == "v2.3.4"
    assert body["Branch"] == "release" and body["Commit"] == git("rev-parse", "HEAD")
    assert runner.emulator.requests("complete")[0]["body"]["Version"] == "v2.3.4"


def test_settings_in_group_vars_and_play_vars_are_used_as_the_role_uses_them(runner):
    inventory = runner.workdir / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.ini").write_text("[staging]\nweb1 ansible_connection=local\n")
    (inventory / "group_vars" / "staging.yml").write_text("retrace_environment_name: Staging\nretrace_version: '{{ app_version }}'\n")
    playbook = runner.playbook("site.yml", OK_TASK, hosts="staging", extra="vars:\n  app_version: 3.1.0")
    run = runner.run("-i", str(inventory / "hosts.ini"), str(playbook), unset=("RETRACE_ENVIRONMENT_NAME", "RETRACE_VERSION"))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)]
    body = runner.emulator.requests("start")[0]["body"]
    assert (body["EnvironmentName"], body["Version"]) == ("Staging", "3.1.0")
    assert retrace_warnings(run.output) == []


def test_the_settings_of_the_deploy_play_after_a_build_play_on_localhost_are_used(runner):
    """The first task runs in a build play on localhost; the web play after it sets the environment in group_vars."""
    inventory = runner.workdir / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.ini").write_text("[web]\nweb1 ansible_connection=local\n")
    (inventory / "group_vars" / "web.yml").write_text("retrace_environment_name: Staging\n")
    runner.write("site.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - ansible.builtin.debug: {msg: build}
        - hosts: web
          gather_facts: false
          tasks:
            - ansible.builtin.debug: {msg: deploy}
    """)
    run = runner.run("-i", str(inventory / "hosts.ini"), str(runner.workdir / "site.yml"), unset=("RETRACE_ENVIRONMENT_NAME",))
    assert run.returncode == 0, run.output
    assert [entry["body"]["EnvironmentName"] for entry in runner.emulator.requests()] == ["Staging", "Staging"]


def test_an_api_url_templated_in_group_vars_from_extra_vars_never_gets_the_key(runner):
    inventory = runner.workdir / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.ini").write_text("[web]\nweb1 ansible_connection=local\n")
    (inventory / "group_vars" / "web.yml").write_text("retrace_api_url: '{{ target_url }}'\n")
    run = runner.run("-i", str(inventory / "hosts.ini"), "-e", f"target_url={runner.emulator.url}",
                     str(runner.playbook("site.yml", OK_TASK, hosts="web")), unset=("RETRACE_API_URL",))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    assert "NOT recorded: api_url:" in only_warning(run) and "(from the play's variables) is refused: Ansible variables can be set" in only_warning(run)


def test_a_setting_templated_from_facts_says_it_is_read_before_them(runner):
    """The callback reads its settings as the run starts, before facts are gathered: the line says so and how to give
    the value instead (the role and the module read them when their task runs)."""
    inventory = runner.workdir / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.ini").write_text("[web]\nweb1 ansible_connection=local\n")
    (inventory / "group_vars" / "web.yml").write_text("retrace_version: \"build-{{ ansible_facts['system'] }}\"\n")
    run = runner.run("-i", str(inventory / "hosts.ini"), str(runner.playbook("site.yml", OK_TASK, hosts="web")),
                     unset=("RETRACE_VERSION",))
    assert run.returncode == 0 and "hello" in run.stdout, run.output
    assert runner.actions() == []
    warning = only_warning(run)
    assert "NOT recorded: version: cannot be templated" in warning and "(from the play's variables)" in warning
    assert "read as the run starts, before facts and set_fact: give it with -e retrace_version=..." in warning


def test_a_misspelt_setting_is_named_and_the_run_is_tracked(runner):
    runner.write("ansible.cfg", "[callback_retrace]\nstirct = true\n")
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 202), ("complete", 202)]
    assert "unknown setting 'stirct' in [callback_retrace]" in only_warning(run) and "(did you mean strict?)" in only_warning(run)


def test_git_refusing_the_checkout_is_said_with_the_fix(runner):
    """A checkout owned by another user (containers, execution environments): git refuses it until safe.directory."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (CI does): it hands the checkout to another user")

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=runner.workdir, check=True,
                       capture_output=True)
    playbook = runner.playbook("site.yml", OK_TASK)
    git("init", "-q")
    git("add", "site.yml")
    git("commit", "-q", "-m", "site")
    git("tag", "v5.0.0")
    subprocess.run(["chown", "-R", "65534:65534", str(runner.workdir / ".git")], check=True)
    home = runner.workdir / "home"
    home.mkdir()
    run = runner.run(str(playbook), env={"HOME": str(home)}, unset=("RETRACE_VERSION",))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    warning = only_warning(run)
    assert "NOT recorded: version: is not set (git refused" in warning and "dubious ownership" in warning
    assert "git config --global --add safe.directory" in warning
    # Given a version, the run is tracked; git's refusal is still said, since branch and commit are missing.
    run = runner.run(str(playbook), env={"HOME": str(home), "RETRACE_VERSION": "5.0.0"})
    assert runner.actions() == [("start", 202), ("complete", 202)]
    assert "safe.directory" in only_warning(run) and "branch and commit are not sent" in only_warning(run)


def test_no_version_outside_git_records_nothing_and_says_how_to_set_it(runner):
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)), unset=("RETRACE_VERSION",))
    assert run.returncode == 0, run.output
    assert runner.actions() == []
    warning = only_warning(run)
    assert "NOT recorded: version: is not set" in warning and "-e retrace_version=" in warning and "RETRACE_VERSION" in warning


# --- the API misbehaving never harms the playbook ------------------------------------------------

def test_rejected_key_warns_once_and_sends_no_end(runner):
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)), env={"RETRACE_API_KEY": "not-the-key"})
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 401)]
    assert "rejected the API key" in only_warning(run)
    assert "not-the-key" not in run.output


def test_rejected_request_warns_and_keeps_the_failure_exit_code(runner):
    run = runner.run(str(runner.playbook("site.yml", FAILING_TASK)), env={"RETRACE_APP_NAME": "NoSuchApp"})
    assert run.returncode == 2
    assert runner.actions() == [("start", 400)]
    assert "NoSuchApp" in only_warning(run)


def test_overloaded_api_is_retried(runner):
    runner.emulator.inject("start", [{"status": 503, "retry_after": "1"}])
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert runner.actions() == [("start", 503), ("start", 202), ("complete", 202)]
    assert run.retrace_lines() == [STARTED, COMPLETED]


def test_hanging_start_is_bounded_by_the_budget(runner):
    runner.emulator.inject("start", [{"hang": True}])
    run = runner.run("-e", "retrace_time_budget=2", str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert [entry["outcome"] for entry in runner.emulator.requests()][:1] == ["hung"]
    assert "unreachable" in only_warning(run)
    # The start got no answer, so it may still land: the guard armed anyway sends a cancel once the run is over.
    deadline = time.monotonic() + 15
    while len(runner.emulator.requests()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # (a 409, as the start never landed: the guard sends it again until the start can no longer land)
    assert [(entry["action"], entry["outcome"]) for entry in runner.emulator.requests()][:2] == [("start", "hung"), ("cancel", "answered")]
    # A generous bound: ansible-playbook itself takes ~1.5 s, the budget 2 s; without it the call would hang.
    assert run.seconds < 12


def test_hanging_end_is_bounded_by_the_budget(runner):
    runner.emulator.inject("complete", [{"hang": True}])
    run = runner.run("-e", "retrace_time_budget=2", str(runner.playbook("site.yml", OK_TASK)))
    assert run.returncode == 0, run.output
    assert runner.emulator.requests("complete")[0]["outcome"] == "hung"
    assert "deployment 1.0.0 of DemoApp to Production: the complete was NOT recorded" in only_warning(run)
    assert "the orphan guard sends it again once this run is over" in only_warning(run)
    assert run.seconds < 12
    # The guard, told the run was completing, sends the complete again once ansible-playbook has exited.
    assert wait_for_actions(runner.emulator, 3)[1:] == [("complete", None), ("complete", 202)]


def test_api_down_never_changes_the_exit_code(runner):
    run = runner.run("-e", "retrace_time_budget=1", str(runner.playbook("site.yml", FAILING_TASK)),
                     env={"RETRACE_API_URL": "http://127.0.0.1:1"})
    assert run.returncode == 2
    assert "unreachable" in only_warning(run)


# --- secrets and verbosity -----------------------------------------------------------------------

@pytest.mark.parametrize("tasks", [OK_TASK, FAILING_TASK])
def test_key_never_printed_at_vvvv_but_payload_is(runner, tasks):
    run = runner.run("-vvvv", str(runner.playbook("site.yml", tasks)))
    assert DEMO_API_KEY not in run.output
    assert 'Retrace start: sent {"Name": "1.0.0", "Version": "1.0.0", "AppName": "DemoApp"' in run.stdout
    assert json.dumps(runner.emulator.requests("start")[0]["body"]) in run.stdout


def test_payload_hidden_without_verbosity(runner):
    run = runner.run(str(runner.playbook("site.yml", OK_TASK)))
    assert '"payload"' not in run.output


# --- ansible-runner (the engine of AWX) -----------------------------------------------------------

def test_under_ansible_runner(runner, monkeypatch):
    project = runner.workdir / "runner" / "project"
    project.mkdir(parents=True)
    (project / "site.yml").write_text(runner.playbook("site.yml", OK_TASK).read_text())
    env = {name: value for name, value in runner.env.items() if name.startswith(("ANSIBLE_", "RETRACE_"))}
    env.pop("ANSIBLE_CONFIG")
    monkeypatch.setenv("PATH", runner.env["PATH"])  # ansible-runner looks ansible-playbook up in its own PATH
    result = ansible_runner.run(private_data_dir=str(runner.workdir / "runner"), playbook="site.yml", inventory="localhost",
                                envvars={**env, "ANSIBLE_CONNECTION": "local"}, quiet=True)
    assert result.rc == 0 and result.status == "successful", result.stdout.read()
    assert runner.actions() == [("start", 202), ("complete", 202)]
