"""The credential's key goes only to the credential's URL: an extra var ``retrace_api_url`` (a launch prompt, a survey
field), which whoever launches the template may set without being allowed to read its credentials, cannot send the
key elsewhere (_resolve.key_destination_problem), from the callback, a module task or the role."""

from __future__ import annotations

import dataclasses

import pytest

from ansible_collections.stackify.retrace.tests.integration.awx.controller import OK_PLAYBOOK, SECRET_KEY, Job
from ansible_collections.stackify.retrace.tests.integration.awx.test_awx_job_context import ROLE_PLAYBOOK

#: a playbook passing the extra var on to the module, as the role does
MODULE_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Start
      stackify.retrace.deployment:
        state: started
        api_url: "{{ retrace_api_url | default(omit) }}"
        api_key_file: "{{ retrace_api_key_file | default(omit) }}"
      run_once: true
"""
STEPS = "- name: Deploy\n  ansible.builtin.debug:\n    msg: deploying\n"


@dataclasses.dataclass
class LaunchedWith(Job):
    """A job launched with extra vars of the launcher's (prompt on launch): AWX writes them beside the job's own
    variables, tagged !unsafe (they are not the template's extra vars)."""

    launch_vars: dict = dataclasses.field(default_factory=dict)

    def meta_vars(self) -> dict:
        return {**self.launch_vars, **super().meta_vars()}


@pytest.fixture
def elsewhere():
    from retrace_emulator.server import RetraceEmulator
    with RetraceEmulator(accounts={"anything": {"apps": ["*"], "environments": ["*"]}}) as emulator:
        yield emulator


def fingerprints(emulator):
    return [entry.get("key_fingerprint") for entry in emulator.requests()]


@pytest.mark.parametrize("entry_point", ["callback", "module", "role"])
def test_a_launch_time_api_url_does_not_get_the_credentials_key(controller, elsewhere, entry_point):
    controller.project_files = {"steps.yml": STEPS}
    playbook = {"callback": OK_PLAYBOOK, "module": MODULE_PLAYBOOK, "role": ROLE_PLAYBOOK}[entry_point]
    env = {} if entry_point == "callback" else {"RETRACE_APP_NAME": "Shop", "RETRACE_ENVIRONMENT_NAME": "Production"}
    result = controller.launch(LaunchedWith(launch_vars={"retrace_api_url": elsewhere.url}), playbook,
                               extra_env=env, callback=entry_point == "callback")
    text = " ".join(result.stdout.split())
    assert elsewhere.requests() == [] and controller.emulator.requests() == [], text
    assert f"api_url: {elsewhere.url} (from " in text and "is refused: Ansible variables can be set by whoever launches" in text
    assert f"the API key (from the environment) is only sent to the URL from the environment ({controller.emulator.url})" in text
    assert "Set the URL beside the key: RETRACE_API_URL (in AWX, the credential's API URL)" in text
    assert SECRET_KEY not in result.stdout
    # Tracking never fails the job unless strict, from any entry point: one warning, the playbook ran.
    assert result.status == "successful" and "NOT recorded: api_url:" in text


@pytest.mark.parametrize("entry_point", ["callback", "module", "role"])
def test_a_launch_time_key_file_with_the_credentials_key_stays_with_the_credentials_url(controller, elsewhere, entry_point):
    """A launcher who knows where a copy of the key lives (a fixed path on a runner, a mounted secret) names it as
    retrace_api_key_file, with retrace_api_url: the key is still the credential's, so the URL is refused."""
    controller.project_files = {"steps.yml": STEPS}
    known = controller.workdir / "known.key"
    known.write_text(SECRET_KEY + "\n")
    playbook = {"callback": OK_PLAYBOOK, "module": MODULE_PLAYBOOK, "role": ROLE_PLAYBOOK}[entry_point]
    env = {} if entry_point == "callback" else {"RETRACE_APP_NAME": "Shop", "RETRACE_ENVIRONMENT_NAME": "Production"}
    launch_vars = {"retrace_api_url": elsewhere.url, "retrace_api_key_file": str(known)}
    result = controller.launch(LaunchedWith(launch_vars=launch_vars), playbook, extra_env=env,
                               callback=entry_point == "callback")
    text = " ".join(result.stdout.split())
    assert elsewhere.requests() == [] and controller.emulator.requests() == [], text
    assert f"api_url: {elsewhere.url} (from " in text and "is refused: Ansible variables can be set by whoever launches" in text
    assert SECRET_KEY not in result.stdout


@pytest.mark.parametrize("entry_point", ["callback", "role"])
def test_the_credentials_url_given_again_as_an_extra_var_is_fine(controller, entry_point):
    """The same URL spelled otherwise (host in capitals, trailing slash) is the same destination."""
    controller.project_files = {"steps.yml": STEPS}
    same = controller.emulator.url.upper() + "/"  # HTTP://127.0.0.1:<port>/
    playbook = {"callback": OK_PLAYBOOK, "role": ROLE_PLAYBOOK}[entry_point]
    env = {} if entry_point == "callback" else {"RETRACE_APP_NAME": "Shop", "RETRACE_ENVIRONMENT_NAME": "Production"}
    result = controller.launch(LaunchedWith(launch_vars={"retrace_api_url": same}), playbook, extra_env=env,
                               callback=entry_point == "callback")
    assert result.status == "successful", result.stdout
    assert [entry["action"] for entry in controller.emulator.requests()] == ["start", "complete"], result.stdout


def test_a_key_given_with_the_url_goes_to_that_url(controller, elsewhere):
    """Whoever gives the key may say where it goes: the launcher's own key and URL, no credential."""
    result = controller.launch(LaunchedWith(launch_vars={"retrace_api_url": elsewhere.url, "retrace_api_key": "anything"}),
                               OK_PLAYBOOK, credential=False)
    assert result.status == "successful", result.stdout
    assert [entry["action"] for entry in elsewhere.requests()] == ["start", "complete"], result.stdout
    assert controller.emulator.requests() == []
