"""stackify.retrace.deployment driven by ansible-playbook against the emulator: states, check mode, task keywords."""

import time

from ansible_collections.stackify.retrace.plugins.module_utils.settings import VERSION
from ansible_run import DEMO, calls, play, run_playbook, task, write_playbook


def test_each_state_is_sent_once_with_its_fields(tmp_path, ansible_env, retrace_emulator):
    descriptive = {"name": "Release 1.0", "branch": "main", "commit": "3f2c1ab", "uri": "https://ci.example.com/b/7"}
    playbook = write_playbook(tmp_path, [play(
        task("started", version="1.0", **DEMO, **descriptive, keywords={"register": "started"}),
        task("completed", version="1.0", **DEMO, **descriptive, keywords={"register": "completed"}),
        task("started", version="1.1", **DEMO, keywords={"register": "restarted"}),
        task("cancelled", version="1.1", **DEMO, branch="main", keywords={"register": "cancelled"}),
        {"name": "Check the results", "ansible.builtin.assert": {"that": [
            "started is changed and started.status == 202 and started.attempts == 1 and started.state == 'started'",
            f"started.api_url == '{retrace_emulator.url}'",
            "started.deployment == {'Name': 'Release 1.0', 'Uri': 'https://ci.example.com/b/7', 'Branch': 'main',"
            " 'Commit': '3f2c1ab', 'Version': '1.0', 'AppName': 'DemoApp', 'EnvironmentName': 'Production'}",
            "completed is changed and completed.status == 202",
            "restarted.deployment.Name == '1.1'",
            "cancelled.deployment == {'Version': '1.1', 'AppName': 'DemoApp', 'EnvironmentName': 'Production'}",
            "'api_key' not in started and 'api_key' not in started.deployment",
        ]}},
    )])
    run = run_playbook(playbook, env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert calls(retrace_emulator) == [("start", 202), ("complete", 202), ("start", 202), ("cancel", 202)]
    cancel_body = retrace_emulator.requests("cancel")[0]["body"]
    assert cancel_body == {"Version": "1.1", "AppName": "DemoApp", "EnvironmentName": "Production"}
    user_agent = retrace_emulator.requests("start")[0]["headers"]["User-Agent"]
    assert user_agent.startswith(f"stackify-retrace/{VERSION} (ansible-module; ansible-core 2.")


def test_check_mode_sends_nothing_and_returns_the_request(tmp_path, ansible_env, retrace_emulator):
    playbook = write_playbook(tmp_path, [play(
        task("started", version="2.0", **DEMO, keywords={"register": "would"}),
        {"name": "Check the result", "ansible.builtin.assert": {"that": [
            "would is changed and would.attempts == 0 and 'status' not in would",
            "would.deployment == {'Name': '2.0', 'Version': '2.0', 'AppName': 'DemoApp', 'EnvironmentName': 'Production'}",
            "'check mode' in would.msg",
        ]}},
    )])
    run = run_playbook(playbook, "--check", env=ansible_env)
    assert run.returncode == 0, run.stdout
    assert retrace_emulator.requests() == []


def test_settings_come_from_the_controller_environment(tmp_path, ansible_env, retrace_emulator):
    env = dict(ansible_env, RETRACE_API_KEY="", STACKIFY_API_KEY="emulator-demo-key", RETRACE_APP_NAME="DemoApp",
               RETRACE_ENVIRONMENT_NAME="Staging", RETRACE_VERSION="3.0", RETRACE_DEPLOYMENT_NAME="Env release")
    playbook = write_playbook(tmp_path, [play(task("started"))])
    run = run_playbook(playbook, env=env)
    assert run.returncode == 0, run.stdout
    assert retrace_emulator.requests()[0]["body"] == {
        "Name": "Env release", "Version": "3.0", "AppName": "DemoApp", "EnvironmentName": "Staging"}


def test_hosts_are_never_contacted_whatever_they_are(tmp_path, ansible_env, retrace_emulator):
    """Windows, network and unreachable hosts alike: no connection, no Python; run_once, loops, tags, delegate_to work."""
    inventory = "\n".join((
        "win1 ansible_connection=winrm ansible_shell_type=powershell ansible_host=127.0.0.1 ansible_port=1",
        "switch1 ansible_connection=ssh ansible_network_os=ios ansible_host=127.0.0.1 ansible_port=1",
        "linux1 ansible_host=127.0.0.1 ansible_port=1 ansible_python_interpreter=/nonexistent/python",
    ))
    playbook = write_playbook(tmp_path, [play(
        task("started", version="{{ item }}", **DEMO, keywords={"run_once": True, "loop": ["4.0", "4.1"]}),
        task("completed", version="4.0", **DEMO, keywords={"run_once": True, "delegate_to": "switch1", "no_log": True}),
        task("cancelled", version="4.1", **DEMO, keywords={"run_once": True, "tags": ["never_selected"]}),
        task("cancelled", version="4.1", **DEMO, keywords={"run_once": True, "tags": ["cancel"]}),
        hosts="all",
    )])
    run = run_playbook(playbook, "-v", "--skip-tags", "never_selected", env=ansible_env, inventory=inventory)
    assert run.returncode == 0, run.stdout
    assert "UNREACHABLE" not in run.stdout
    assert "the output has been hidden due to the fact that 'no_log: true'" in run.stdout
    assert "Retrace: deployment 4.0 of DemoApp to Production started" in run.stdout  # the engine's line, on stderr
    assert "Retrace: deployment 4.0 of DemoApp to Production completed" not in run.stdout  # no_log: not shown
    assert [(entry["action"], entry["body"]["Version"]) for entry in retrace_emulator.requests()] == [
        ("start", "4.0"), ("start", "4.1"), ("complete", "4.0"), ("cancel", "4.1")]


def test_start_from_several_hosts_hints_at_run_once(tmp_path, ansible_env, retrace_emulator):
    """Each host runs the start: one is sent, the other host's is this run's own (strict or not: nothing failed);
    the playbook sends no end, so the orphan guard cancels it once the run is over."""
    playbook = write_playbook(tmp_path, [play(task("started", version="5.0", **DEMO), hosts="all")])
    run = run_playbook(playbook, env={**ansible_env, "RETRACE_STRICT": "1"},
                       inventory="web1 ansible_connection=local\nweb2 ansible_connection=local\n")
    assert run.returncode == 0, run.stdout
    assert "this task ran for 2 hosts, and each would send its own start: add 'run_once: true'" in run.stdout
    deadline = time.monotonic() + 15
    while ("cancel", 202) not in calls(retrace_emulator) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls(retrace_emulator).count(("start", 202)) == 1 and calls(retrace_emulator)[-1] == ("cancel", 202)
