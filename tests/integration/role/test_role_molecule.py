"""The molecule scenarios of stackify.retrace.tracked_deployment (extensions/molecule/), each against a fresh emulator.

Whatever happens on the hosts, Retrace must see exactly one start and exactly one end:
complete when every host deployed, cancel when one failed or became unreachable, and then
the play must still fail.
"""

import re
import subprocess

import pytest

from ansible_run import BIN, REPO_ROOT

MOLECULE_TIMEOUT = 180


# molecule installs the collection into ~/.ansible/collections on every run: two scenarios at once on two
# xdist workers race there (seen once in CI: a converge whose Ansible output was missing).  One worker runs them all.
pytestmark = pytest.mark.xdist_group("molecule")


def molecule(command: str, scenario: str, env: dict) -> subprocess.CompletedProcess:
    run = subprocess.run([str(BIN / "molecule"), command, "-s", scenario], cwd=REPO_ROOT, env=env, text=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=MOLECULE_TIMEOUT, check=False)
    # molecule logs CRITICAL for a scenario it cannot find, even one it only looks for and then goes on without
    # (26.x: `default`, before any scenario).  The one CRITICAL a run may print is a failed playbook's return code.
    critical = [line for line in run.stdout.splitlines() if "CRITICAL" in line]
    failed_playbook = [line for line in critical if run.returncode and line.startswith("CRITICAL Ansible return code was ")]
    assert critical == failed_playbook, run.stdout
    return run


def actions(emulator) -> list[tuple[str, int]]:
    return [(entry["action"], entry["status"]) for entry in emulator.requests()]


def test_default_scenario_checks_the_converge_syntax_and_sends_nothing(role_env, retrace_emulator):
    run = molecule("test", "default", role_env)
    assert run.returncode == 0, run.stdout
    assert "[default > syntax] Executed: Successful" in run.stdout
    assert f"playbook: {REPO_ROOT / 'extensions' / 'molecule' / 'shared' / 'converge.yml'}" in run.stdout
    assert actions(retrace_emulator) == []


def test_all_hosts_succeed_one_start_one_complete(role_env, retrace_emulator):
    run = molecule("test", "role_all_succeed", role_env)
    assert run.returncode == 0, run.stdout
    assert actions(retrace_emulator) == [("start", 202), ("complete", 202)]
    # Ansible lists the hosts of one include in the order their results arrived: web2 can come first.
    included = re.findall(r"^included: /.+ for (.+)$", run.stdout, flags=re.MULTILINE)
    assert [sorted(hosts.split(", ")) for hosts in included] == [["web1", "web2"]], run.stdout


@pytest.mark.parametrize("scenario, failed_host, original_error, run_verify", [
    ("role_one_host_fails", "web2", "Deployment failed on web2: Fail where the scenario says so: simulated deployment failure", True),
    ("role_host_unreachable", "web3", "UNREACHABLE", False),  # the same verify.yml already ran for the scenario above
])
def test_a_failed_host_means_one_start_one_cancel_and_a_failed_play(role_env, retrace_emulator, scenario, failed_host,
                                                                    original_error, run_verify):
    converge = molecule("converge", scenario, role_env)
    assert converge.returncode != 0, converge.stdout
    assert original_error in converge.stdout
    recap = converge.stdout.split("PLAY RECAP")[-1]
    assert any(line.split()[0] == failed_host and ("failed=1" in line or "unreachable=1" in line)
               for line in recap.splitlines() if line.strip())
    assert actions(retrace_emulator) == [("start", 202), ("cancel", 202)]
    if run_verify:
        verify = molecule("verify", scenario, role_env)  # the scenario's own check of the journal
        assert verify.returncode == 0, verify.stdout
        assert "All assertions passed" in verify.stdout
