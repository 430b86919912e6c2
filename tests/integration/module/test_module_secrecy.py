"""The API key never appears in ansible-playbook's output or log, at -vvvv, on success or failure.

The key comes from an Ansible Vault file, as in the module's EXAMPLES, and is a value the
emulator accepts, so every path (accepted, refused, invalid input, unreachable) really runs.
"""

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_run import DEMO, play, run_playbook, task, wait_for_calls, write_playbook

SECRET_KEY = "s3cr3t-Retrace-Key-7f2a9c"
WRONG_KEY = "wr0ng-Retrace-Key-55d1e0"
VAULT_PASSWORD = "vault-password-for-tests"


def _vault_file(directory):
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))])
    secrets = directory / "secrets.yml"
    secrets.write_bytes(vault.encrypt(f"vault_retrace_api_key: {SECRET_KEY}\nvault_wrong_key: {WRONG_KEY}\n"))
    password_file = directory / "vault-password"
    password_file.write_text(VAULT_PASSWORD)
    return secrets, password_file


@pytest.mark.retrace_emulator(accounts={SECRET_KEY: {"apps": ["DemoApp"], "environments": ["Production"]}})
def test_key_stays_secret_at_every_verbosity_and_outcome(tmp_path, ansible_env, retrace_emulator, unused_port):
    secrets, password_file = _vault_file(tmp_path)
    key = {"api_key": "{{ vault_retrace_api_key }}"}
    ignore = {"ignore_errors": True}
    playbook = write_playbook(tmp_path, [play(
        task("started", version="1.0", **DEMO, **key),
        task("completed", version="1.0", **DEMO, **key),
        task("cancelled", version="0.9", **DEMO, **key, keywords=ignore),                          # 409: never started
        task("started", version="1.1", **DEMO, api_key="{{ vault_wrong_key }}", keywords=ignore),  # 401
        task("started", version="v" * 300, **DEMO, **key, keywords=ignore),                        # invalid input
        task("started", version="1.2", **DEMO, **key, deadline=1, keywords=ignore,
             api_url=f"http://127.0.0.1:{unused_port}"),                                           # unreachable
        task("cancelled", version="1.4", **DEMO, **key),                                           # fails the play
        vars_files=[str(secrets)],
    )])
    log_file = tmp_path / "ansible.log"
    env = dict(ansible_env, ANSIBLE_LOG_PATH=str(log_file), RETRACE_STRICT="true")
    del env["RETRACE_API_KEY"]
    run = run_playbook(playbook, "-vvvv", "--vault-password-file", str(password_file), env=env)
    assert run.returncode == 2, run.stdout
    assert [entry["status"] for entry in retrace_emulator.requests()] == [202, 202, 409, 401, 409]
    for text in (run.stdout, log_file.read_text()):
        assert SECRET_KEY not in text
        assert WRONG_KEY not in text
    assert "Retrace rejected the API key (HTTP 401)" in run.stdout


@pytest.mark.retrace_emulator(accounts={SECRET_KEY: {"apps": ["DemoApp"], "environments": ["Production"]}})
def test_key_from_the_environment_stays_secret(tmp_path, ansible_env, retrace_emulator):
    env = dict(ansible_env, RETRACE_API_KEY=SECRET_KEY, RETRACE_STRICT="true")
    playbook = write_playbook(tmp_path, [play(task("started", version="2.0", **DEMO), task("cancelled", version="2.1", **DEMO))])
    run = run_playbook(playbook, "-vvvv", env=env)
    assert run.returncode == 2
    # The strict failure leaves 2.0 in progress: the orphan guard cancels it once the run is over.
    expected = [("start", 202), ("cancel", 409), ("cancel", 202)]
    assert wait_for_calls(retrace_emulator, expected) == expected
    assert SECRET_KEY not in run.stdout
