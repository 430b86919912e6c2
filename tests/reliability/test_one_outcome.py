"""One environment, one outcome: the same situation gives the same result on every entry point.

Each test runs one situation through one entry point (the callback, the role, a module-tracked playbook,
``fab deploy``, ``fab retrace.start``), with ``strict`` unset and, where the contract says it changes the
outcome, with ``strict`` set. From that one run it asserts the four things the contract names
(docs/lifecycle.md):

(a) the deploy step ran or not (a marker file it creates);
(b) the exit status;
(c) recorded in Retrace or not (every request the emulator received, and what it accepted);
(d) the line that says what happened and how to fix it (fragments, found in one line of stdout + stderr).

Without strict nothing about tracking stops a deployment: the step runs, the exit status is the step's, one
warning says what was NOT recorded. With strict each problem fails the run before the step: ansible-playbook
exits 2, fab 2 for a missing or invalid setting and 1 when Retrace refused or could not be reached.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest

from outcome_helpers import (ANSIBLE_STRICT_EXIT, BIN, DEMO_KEY, FAB_INVALID_EXIT, FAB_REFUSED_EXIT, Expect, Project, assert_outcome,
                             certificate_authority_for_loopback, deployment_line, hand_to_another_user, posix_collection_missing,
                             tls_front, use_posix_collection)

ALL = ("callback", "role", "module", "fab-deploy", "fab-start")
DEPLOYING = ("callback", "role", "module", "fab-deploy")  # fab retrace.start runs no deploy step
ANSIBLE = ("callback", "role", "module")
STARTED, COMPLETED, CANCELLED = ("start", 202), ("complete", 202), ("cancel", 202)


def _param(entry: str, strict: bool):
    marks = [pytest.mark.fabric] if entry.startswith("fab") else []  # the other cells of the support matrix deselect these
    return pytest.param(entry, strict, id=f"{entry}-strict" if strict else entry, marks=marks)


def unset(*entries: str) -> list:
    """(entry point, strict) params: strict unset."""
    return [_param(entry, False) for entry in entries]


def unset_and_set(*entries: str) -> list:
    """(entry point, strict) params: strict unset, then set."""
    return [_param(entry, strict) for entry in entries for strict in (False, True)]


def set_only(*entries: str) -> list:
    """(entry point, strict) params: strict set."""
    return [_param(entry, True) for entry in entries]


@pytest.fixture(scope="module")
def certificate_authority(tmp_path_factory):
    """(CA file, server context for 127.0.0.1): a throw-away CA, for the dead-proxy row."""
    return certificate_authority_for_loopback(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_emulator(certificate_authority, retrace_emulator):
    """(CA file, https URL): this test's emulator behind a TLS front on loopback."""
    ca_file, context = certificate_authority
    with tls_front(context, retrace_emulator.port) as url:
        yield ca_file, url


@pytest.fixture
def project_for(tmp_path, retrace_emulator):
    """project_for(entry point, strict) -> a Project talking to this test's emulator; strict set the entry point's way."""
    def make(entry: str, strict: bool) -> Project:
        project = Project(tmp_path, retrace_emulator, entry)
        if strict:
            project.strict()
        return project
    return make


def tracked(entry: str, end=COMPLETED, version: str = "1.0.0", environment: str = "Production", batches: int = 1,
            returncode: int = 0) -> Expect:
    """A deployment recorded from start to end: ``end`` is COMPLETED or CANCELLED (single calls: the start only)."""
    identity = ("DemoApp", environment, version)
    if entry == "fab-start":
        return Expect(None, 0, (STARTED,), (deployment_line("started", version, environment),), quiet=True, identity=identity)
    word = "completed" if end == COMPLETED else "cancelled"
    return Expect(True, returncode, (STARTED, end) * batches,
                  (deployment_line("started", version, environment), deployment_line(word, version, environment)),
                  quiet=end == COMPLETED, identity=identity)


def not_recorded(entry: str, strict: bool, *fragments: str, fab_strict_exit: int = FAB_INVALID_EXIT, calls=()) -> Expect:
    """Nothing recorded, one line with ``fragments``. Strict unset: the deploy step runs, exit 0. Strict set: the run
    fails before the deploy step, ansible-playbook exits 2 and fab ``fab_strict_exit``."""
    deploys = None if entry == "fab-start" else not strict
    if not strict:
        return Expect(deploys, 0, calls, (fragments,))
    return Expect(deploys, fab_strict_exit if entry.startswith("fab") else ANSIBLE_STRICT_EXIT, calls, (fragments,))


# --- baselines ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, strict", unset(*ALL))
def test_success_is_recorded_from_start_to_complete(project_for, entry, strict):
    assert_outcome(project_for(entry, strict).run(), tracked(entry))


@pytest.mark.parametrize("entry, strict", unset(*DEPLOYING))
def test_a_failed_deploy_step_is_cancelled(project_for, entry, strict):
    project = project_for(entry, strict)
    project.failing_step = True
    assert_outcome(project.run(), tracked(entry, CANCELLED, returncode=1 if entry == "fab-deploy" else 2))


# --- a setting missing, or refused by Retrace -----------------------------------------------------------------------

@pytest.mark.parametrize("entry, strict", unset_and_set(*ALL))
def test_no_api_key_anywhere(project_for, entry, strict):
    """A CI job whose secret is not available (a fork's pull request): no key in any source."""
    project = project_for(entry, strict)
    project.env["RETRACE_API_KEY"] = None
    assert_outcome(project.run(), not_recorded(entry, strict, "NOT recorded", "api_key", "RETRACE_API_KEY"))


@pytest.mark.parametrize("entry, strict", unset_and_set(*ALL))
def test_no_version_outside_any_git_checkout(project_for, entry, strict):
    """No version given, no CI tag, no controller job, no git checkout: nothing is recorded (no made-up version), and
    the line says how to give one."""
    project = project_for(entry, strict)
    project.forget("version")
    how = "--version" if entry.startswith("fab") else "retrace_version"
    assert_outcome(project.run(), not_recorded(entry, strict, "NOT recorded", "version", "RETRACE_VERSION", how))


@pytest.mark.parametrize("entry, strict", unset_and_set(*ALL))
def test_git_refuses_a_checkout_owned_by_another_user(project_for, entry, strict):
    """The project is a git checkout with a tag, owned by uid 65534 (containers, execution environments): git refuses
    it ("dubious ownership"). The output says so with the safe.directory fix, and as nothing else gives a version,
    nothing is recorded."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to hand the checkout to another uid (CI and this project's test machines run as root)")
    project = project_for(entry, strict)
    project.forget("version")
    hand_to_another_user(project)
    expected = not_recorded(entry, strict)
    assert_outcome(project.run(), dataclasses.replace(expected, lines=(("safe.directory",), ("NOT recorded",))))


@pytest.mark.parametrize("entry, strict", unset(*ALL))
def test_a_key_retrace_refuses(project_for, entry, strict):
    """RETRACE_API_KEY holds a key Retrace does not know: the start is answered 401, nothing is recorded, and no end
    follows (the module-tracked playbook's completed task included)."""
    project = project_for(entry, strict)
    project.env["RETRACE_API_KEY"] = "not-a-known-key"
    assert_outcome(project.run(), not_recorded(entry, strict, "NOT recorded", "api_key", calls=(("start", 401),)))


# --- where settings are written -------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, strict", unset(*ANSIBLE))
def test_per_environment_settings_in_the_inventory_group_vars(project_for, entry, strict):
    """retrace_environment_name and retrace_version in group_vars/all.yml, where Ansible users keep per-environment
    settings: every Ansible entry point records with them (the module's tasks name them as variables)."""
    project = project_for(entry, strict)
    project.forget("environment_name")
    project.forget("version")
    project.group_vars.update(retrace_environment_name="Staging", retrace_version="3.1.0")
    if entry == "module":
        project.module_args.update(environment_name="{{ retrace_environment_name }}", version="{{ retrace_version }}")
    assert_outcome(project.run(), tracked(entry, version="3.1.0", environment="Staging"))


@pytest.mark.parametrize("entry, strict", unset_and_set(*ANSIBLE))
def test_an_api_key_vaulted_inline_in_group_vars(project_for, entry, strict):
    """No key exported; ``retrace_api_key: !vault |`` in group_vars/all.yml, the run given the vault password file:
    every Ansible entry point decrypts it and records, strict or not."""
    project = project_for(entry, strict)
    project.env["RETRACE_API_KEY"] = None
    password_file = project.root / "vault-password"
    password_file.write_text("correct horse battery staple\n", encoding="utf-8")
    project.group_vars_yaml = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password_file), "--name",
         "retrace_api_key", DEMO_KEY], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL).stdout
    project.args += ["--vault-password-file", str(password_file)]
    assert_outcome(project.run(), tracked(entry))


@pytest.mark.parametrize("entry, strict", unset(*ALL))
def test_a_misspelt_setting_is_named_and_the_deployment_is_tracked(project_for, entry, strict):
    """``stirct: true`` (ansible.cfg, a role var, a module argument, fabric.yaml): one warning names it and suggests
    strict, spelt as that source spells it (``retrace_strict`` for a variable); an unknown setting is never an error,
    so the run is tracked with the other settings."""
    project = project_for(entry, strict)
    project.setting("stirct", True)
    expected = tracked(entry)
    assert_outcome(project.run(), dataclasses.replace(expected, lines=expected.lines + (("stirct", "did you mean", "strict?)"),),
                                                      quiet=False))


@pytest.mark.parametrize("entry, strict", unset("callback", "module", "fab-deploy", "fab-start"))
def test_api_url_written_in_the_project_is_trusted_with_a_key_from_the_environment(project_for, retrace_emulator, entry, strict):
    """The key exported, the URL written in the project's own files: ansible.cfg, the module task's literal argument,
    fabric.yaml, ``fab --api-url``. Accepted and recorded, no warning. (The role takes its settings from variables
    only: a URL there is a variable's, below.)"""
    project = project_for(entry, strict)
    project.env["RETRACE_API_URL"] = None
    if entry == "fab-start":
        project.flags += ["--api-url", retrace_emulator.url]
    else:
        project.setting("api_url", retrace_emulator.url)
    assert_outcome(project.run(), tracked(entry))


@pytest.mark.parametrize("entry, strict", unset(*ANSIBLE))
def test_api_url_from_play_variables_never_gets_a_key_from_the_environment(project_for, retrace_emulator, entry, strict):
    """The key and RETRACE_API_URL exported; play vars ``retrace_api_url`` name the same emulator by another host name:
    a variable's URL may have been chosen by whoever launches the run (extra vars outrank it, templates read them), so
    the environment's key is not sent there."""
    project = project_for(entry, strict)
    project.play_vars["retrace_api_url"] = retrace_emulator.url.replace("127.0.0.1", "localhost")
    if entry == "module":
        project.module_args["api_url"] = "{{ retrace_api_url | default(omit) }}"
    assert_outcome(project.run(), not_recorded(entry, strict, "NOT recorded", "api_url", "RETRACE_API_URL"))


@pytest.mark.parametrize("entry, strict", unset(*ANSIBLE))
def test_api_url_from_extra_vars_never_gets_a_key_from_the_environment(project_for, retrace_emulator, entry, strict):
    """The key and RETRACE_API_URL exported; ``-e retrace_api_url=`` names the same emulator by another host name
    (localhost, which would reach it): extra vars (a survey, a launch prompt) never receive the environment's key, so
    nothing is sent. The module's tasks take the URL from the variable, as the role's tasks do."""
    project = project_for(entry, strict)
    project.extra_vars["retrace_api_url"] = retrace_emulator.url.replace("127.0.0.1", "localhost")
    if entry == "module":
        project.module_args["api_url"] = "{{ retrace_api_url | default(omit) }}"
    assert_outcome(project.run(), not_recorded(entry, strict, "NOT recorded", "api_url", "RETRACE_API_URL"))


# --- serial batches -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, strict", unset(*ANSIBLE))
def test_serial_batches(project_for, entry, strict):
    """``serial: 1`` over two hosts. Module: the run_once start in the serial play runs once per batch, the complete
    in a later play: the second batch's start is this run's own open deployment (one start, one complete, no
    warning). Callback: one deployment for the run. Role: one deployment per batch (docs/role.md)."""
    project = project_for(entry, strict)
    project.hosts = ("web1", "web2")
    project.serial = 1
    assert_outcome(project.run(), tracked(entry, batches=2 if entry == "role" else 1))


# --- Retrace unreachable --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, strict", unset_and_set(*ALL))
def test_api_down(project_for, closed_port, entry, strict):
    """RETRACE_API_URL names a port that refuses connections (bound, not listening)."""
    project = project_for(entry, strict)
    project.env["RETRACE_API_URL"] = f"http://127.0.0.1:{closed_port}"
    project.fast_failure()
    assert_outcome(project.run(), not_recorded(entry, strict, "NOT recorded", "unreachable", fab_strict_exit=FAB_REFUSED_EXIT))


@pytest.mark.parametrize("entry, strict", unset(*ALL))
def test_a_dead_proxy_is_named(project_for, tls_emulator, closed_port, entry, strict):
    """An https API (the emulator behind TLS, its CA trusted) and HTTPS_PROXY pointing at a closed port: the line names
    the proxy, the thing to fix. Without the proxy the API would have been reached and the start recorded."""
    project = project_for(entry, strict)
    ca_file, url = tls_emulator
    project.env.update(RETRACE_API_URL=url, HTTPS_PROXY=f"http://127.0.0.1:{closed_port}",
                       SSL_CERT_FILE=ca_file, REQUESTS_CA_BUNDLE=ca_file, CURL_CA_BUNDLE=ca_file)
    project.fast_failure()
    assert_outcome(project.run(), not_recorded(entry, strict, "NOT recorded", "proxy", f"127.0.0.1:{closed_port}"))


# --- strict, and settings that are invalid --------------------------------------------------------------------------

@pytest.mark.parametrize("entry, strict", set_only(*ALL))
def test_an_invalid_setting_with_strict_fails_before_the_deploy_step(project_for, entry, strict):
    """``deadline: abc`` where strict is set too: the run fails before any deploy step, naming the
    setting; nothing is sent."""
    project = project_for(entry, strict)
    project.setting("deadline", "abc")
    assert_outcome(project.run(), not_recorded(entry, strict, "deadline"))


@pytest.mark.parametrize("entry, strict", unset(*ALL))
def test_an_invalid_strict_value_counts_as_strict_and_is_named(project_for, entry, strict):
    """``strict: ture`` (ansible.cfg, a role var, a module argument, fabric.yaml; RETRACE_STRICT for the single call):
    whoever wrote it meant strict, so the run fails before the deploy step, naming the setting and the value."""
    project = project_for(entry, strict)
    if entry == "fab-start":
        project.env["RETRACE_STRICT"] = "ture"
    else:
        project.setting("strict", "ture")
    assert_outcome(project.run(), not_recorded(entry, True, "strict", "ture"))


# --- machine-readable output ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, strict", unset(*ANSIBLE))
def test_a_json_stdout_callback_keeps_stdout_parseable(project_for, entry, strict):
    """ANSIBLE_STDOUT_CALLBACK=ansible.posix.json: stdout is one JSON document, and the deployment is recorded.
    ansible.posix comes from scripts/bootstrap; in CI a missing copy fails the test instead of skipping it."""
    missing = posix_collection_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    project = project_for(entry, strict)
    use_posix_collection(project)
    project.env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    outcome = project.run()
    try:
        document = json.loads(outcome.stdout)
        unparsed = () if "plays" in document and "stats" in document else ("stdout is JSON, but not ansible.posix.json's document",)
    except ValueError as error:
        unparsed = (f"stdout is not one JSON document ({error})",)
    assert_outcome(outcome, tracked(entry), more=unparsed)
