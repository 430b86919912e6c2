"""Fabric conventions and hygiene, with the real ``fab`` over loopback sshd and the emulator; fail-open ``fab deploy``;
single calls around a changing tree."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from retrace_emulator.accounts import DEMO_API_KEY
from test_fabric_interrupts import Running


def _own_fabfile(project, source: str) -> None:
    (project.directory / "fabfile.py").unlink()
    (project.directory / "fabfile.py").write_text(source)


def _runtime(project, **run) -> None:
    runtime = yaml.safe_load(project.runtime_config.read_text())
    runtime["run"].update(run)
    project.runtime_config.write_text(yaml.safe_dump(runtime))


# --- 6. the key never reaches a step -------------------------------------------------------------

def test_local_and_remote_steps_never_see_the_key(ssh_project, sshd):
    dump = ssh_project.directory / "env"
    ssh_project.fabric_yaml({"steps": [f"env >> {dump}"]})

    local = ssh_project.run("deploy", "--version", "6.0.1", env={"STACKIFY_API_KEY": DEMO_API_KEY})
    remote = ssh_project.run("-H", sshd.host_strings[0], "deploy", "--version", "6.0.2")

    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    text = dump.read_text()
    assert text.count("RETRACE_VERSION=6.0.") == 2 and DEMO_API_KEY not in text


def test_what_fab_can_and_cannot_take_out_of_its_own_environment(project):
    """docs/fabric.md, "The API key": the key leaves fab's environment, which steps inherit; /proc/<fab pid>/environ,
    the environment fab was started with, keeps it (the kernel shows that block as it was at exec), readable by
    this user and root only."""
    step_environment, fab_environment = project.directory / "step-env", project.directory / "fab-env"
    project.fabric_yaml({"steps": [f"env > {step_environment}; tr '\\0' '\\n' < /proc/$PPID/environ > {fab_environment}"]})

    result = project.run("deploy", "--version", "6.1.0")

    assert result.returncode == 0, result.stderr
    assert DEMO_API_KEY not in step_environment.read_text() and "RETRACE_VERSION=6.1.0" in step_environment.read_text()
    assert f"RETRACE_API_KEY={DEMO_API_KEY}" in fab_environment.read_text().splitlines()


# --- 7. --dry sends nothing ------------------------------------------------------------------------

def test_a_dry_run_records_nothing(project):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"touch {marker}"]})

    result = project.run("--dry", "deploy", "--version", "7.0.0")
    single = project.run("--dry", "retrace.start", "--version", "7.0.0")

    assert result.returncode == 0 and single.returncode == 0, result.stderr + single.stderr
    assert project.emulator.journal() == [] and not marker.exists()
    assert "would send" in result.stdout and "would send" in single.stdout
    # each step is shown once (fab's own --dry echo would repeat it), and the summary says nothing ran
    assert result.stdout.count(f"touch {marker}") == 1, result.stdout
    assert "dry run" in result.stdout and "1 step(s) printed, none run (--dry)" in result.stdout
    assert " ok " not in result.stdout.split("Deployment summary:")[1]


def test_a_serial_dry_run_shows_every_host(ssh_project, sshd):
    ssh_project.fabric_yaml({"steps": ["true"], "parallel": False})

    result = ssh_project.run("--dry", "-H", ",".join(sshd.host_strings[:2]), "deploy", "--version", "7.0.2")

    assert result.returncode == 0, result.stderr
    summary = result.stdout.split("Deployment summary:")[1]
    assert summary.count("dry run") == 2 and "skipped" not in summary, result.stdout


def test_a_step_is_echoed_once_under_fab_echo(project):
    project.fabric_yaml({"steps": ["echo shown-once"]})

    result = project.run("--echo", "deploy", "--version", "7.0.1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("$ echo shown-once") == 1 and result.stdout.count("echo shown-once") == 1, result.stdout


# --- 8 / 9. booleans from any source; Fabric-only settings in any fabfile, no configure() ---------

@pytest.mark.parametrize("source", ["FABRIC_RETRACE_STRICT", "RETRACE_STRICT", "fabric.yaml"])
def test_strict_false_in_words_means_false(project, source):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"touch {marker}"], "deadline": 1, **({"strict": "no"} if source == "fabric.yaml" else {})})
    project.emulator.stop()

    result = project.run("deploy", "--version", "8.0.0", env={} if source == "fabric.yaml" else {source: "false"})

    assert result.returncode == 0, result.stderr
    assert marker.exists() and "NOT recorded: start failed" in result.stderr


def test_validate_certs_accepts_the_same_words_as_strict(project):
    project.fabric_yaml({"validate_certs": "no", "strict": "yes"})
    assert project.run("retrace.start", "--version", "8.0.1").returncode == 0


ADDED_TASK_FABFILE = '''
from invoke import Collection, task
import retrace_fabric

@task
def release(c):
    with retrace_fabric.tracked(c):
        c.run("touch ran-in-root-task")

ns = Collection(release)
ns.add_task(retrace_fabric.deploy)
'''


@pytest.mark.parametrize("task", ["deploy", "release"])
def test_fabric_only_variables_work_in_your_own_fabfile(project, task):
    _own_fabfile(project, ADDED_TASK_FABFILE)
    project.fabric_yaml({"version": "9.0.0", "steps": ["touch ran-in-deploy"]})
    project.emulator.inject("start", [{"hang": 30}] * 6)

    began = time.monotonic()
    result = project.run(task, env={"FABRIC_RETRACE_STRICT": "yes", "FABRIC_RETRACE_TIMEOUT": "0.5", "FABRIC_RETRACE_DEADLINE": "1"})

    assert time.monotonic() - began < 20, "FABRIC_RETRACE_DEADLINE=1 was ignored"  # the start hangs 30 s a try
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unreachable" in result.stderr
    assert not list(project.directory.glob("ran-in-*")), "strict was ignored: the work ran"


# --- 10 / 11. a section that is not a mapping; an empty host list ---------------------------------

def test_a_retrace_section_that_is_not_a_mapping_is_named(project):
    (project.directory / "fabric.yaml").write_text("retrace: FooApp\n")
    result = project.run("deploy", "--version", "10.0.0")
    assert result.returncode == 2 and "retrace: must be a mapping" in result.stderr and "Traceback" not in result.stderr


def test_misspelt_steps_are_named_and_leave_nothing_to_deploy(project):
    project.fabric_yaml({"stpes": ["true"]})
    section = yaml.safe_load((project.directory / "fabric.yaml").read_text())
    del section["retrace"]["steps"]
    (project.directory / "fabric.yaml").write_text(yaml.safe_dump(section))
    result = project.run("deploy", "--version", "10.0.1")
    assert result.returncode == 2 and "did you mean steps" in result.stderr and "steps: must be a non-empty list" in result.stderr
    assert project.emulator.journal() == []


def test_an_empty_host_list_deploys_nowhere(project):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"touch {marker}"]})

    result = project.run("-H", "", "deploy", "--version", "11.0.0")

    assert result.returncode == 2 and "-H / --hosts was given but is empty" in result.stderr
    assert project.emulator.journal() == [] and not marker.exists()


def test_deploy_to_an_empty_list_is_an_invalid_setting(project):
    _own_fabfile(project, "from invoke import task\nimport retrace_fabric\n\n@task\ndef go(c):\n"
                          "    retrace_fabric.deploy_to([], c.config)\n")
    result = project.run("go")
    assert result.returncode == 2 and "no hosts to deploy to" in result.stderr and "Traceback" not in result.stderr
    assert project.emulator.journal() == []


# --- 12. a tracked task's own version argument ----------------------------------------------------

def test_track_records_the_tasks_own_version(project):
    _own_fabfile(project, "from invoke import task\nimport retrace_fabric\n\n@task\n@retrace_fabric.track\n"
                          "def release(c, version=None):\n    c.run('true')\n")
    result = project.run("release", "--version", "12.3.4")
    assert result.returncode == 0, result.stderr
    assert [entry["body"]["Version"] for entry in project.emulator.requests()] == ["12.3.4", "12.3.4"]


# --- 13. step output as it comes; -e, --hide and run.env apply ------------------------------------

def test_step_output_streams_line_by_line(project):
    project.fabric_yaml({"steps": ["echo first; sleep 2; echo second"]})
    fab = Running(project, "deploy", "--version", "13.0.0")
    fab.wait_for(lambda: "[local] first" in fab.stdout_path.read_text(), "the first line", timeout=10)

    assert "[local] second" not in fab.stdout_path.read_text(), "output was held back until the step ended"
    assert fab.process.wait(timeout=20) == 0


def test_fabric_echo_hide_and_run_env_apply_to_steps(project):
    _runtime(project, env={"FROM_RUN_ENV": "yes-it-is"})
    project.fabric_yaml({"steps": ["echo value=$FROM_RUN_ENV", "echo to-stderr >&2"]})

    shown = project.run("-e", "deploy", "--version", "13.0.1")
    hidden = project.run("--hide", "both", "deploy", "--version", "13.0.2")

    assert shown.returncode == 0 and hidden.returncode == 0
    assert "[local] value=yes-it-is" in shown.stdout and "[local] to-stderr" in shown.stderr
    assert "echo value=$FROM_RUN_ENV" in shown.stdout.replace("\x1b[1;37m", "").replace("\x1b[0m", "")
    assert "value=yes-it-is" not in hidden.stdout and "to-stderr" not in hidden.stderr


# --- 14. serial runs stop at the first failure (fail_fast, default true) --------------------------

@pytest.mark.parametrize("fail_fast, others", [(None, "not run"), (False, "ok")])
def test_serial_runs_stop_at_the_first_failure_unless_told(ssh_project, sshd, fail_fast, others):
    first = sshd.ports[0]
    ssh_project.fabric_yaml({"parallel": False, "steps": [f'test "${{SSH_CONNECTION##* }}" != {first}'],
                             **({} if fail_fast is None else {"fail_fast": fail_fast})})

    result = ssh_project.run("-H", ",".join(sshd.host_strings), "deploy", "--version", "14.0.0")

    assert result.returncode == 1
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("  ")]
    assert [row[1] if row[1] != "not" else "not run" for row in rows] == ["failed", others, others]
    assert ssh_project.actions() == [("start", 202), ("cancel", 202)]


# --- 15. hosts are shown as typed -----------------------------------------------------------------

def test_two_ssh_config_aliases_of_one_host_are_two_rows_named_as_typed(ssh_project, sshd):
    ssh_config = ssh_project.home / ".ssh" / "config"  # Fabric reads ~/.ssh/config when load_ssh_configs is on
    ssh_config.parent.mkdir()
    ssh_config.write_text("".join(f"Host {alias}\n  HostName 127.0.0.1\n  Port {sshd.ports[0]}\n  User {sshd.user}\n"
                                  for alias in ("alpha", "beta")))
    runtime = yaml.safe_load(ssh_project.runtime_config.read_text())
    runtime["load_ssh_configs"] = True
    ssh_project.runtime_config.write_text(yaml.safe_dump(runtime))

    result = ssh_project.run("-H", "alpha,beta", "deploy", "--version", "15.0.0")

    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert rows == ["alpha", "beta"]
    assert "[alpha] $ true" in result.stdout and "[beta] $ true" in result.stdout


# --- 16. pip install leaves the checkout as it was; the wheel ships only the core Fabric uses -----

#: ``import retrace_fabric`` in a fresh interpreter: where the package and each core module it imported come from
IMPORTED = """
import json, sys
import retrace_fabric
core = sorted(name for name in sys.modules if name.startswith("retrace_fabric.core."))
print(json.dumps({"package": retrace_fabric.__file__, "core": list(retrace_fabric.core.__path__),
                  "modules": {name: sys.modules[name].__file__ for name in core}}))
"""


def test_the_wheel_holds_the_core_fabric_imports_and_nothing_of_ansible(tmp_path):
    repository = pathlib.Path(__file__).resolve().parents[3]
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    listed = subprocess.run(["git", "-C", str(repository), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (repository / name).is_file():  # the work tree as it is: a file deleted but still in the index is not copied
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repository / name, checkout / name)
    before = sorted(str(path.relative_to(checkout)) for path in checkout.rglob("*"))
    pip = pathlib.Path(sys.executable).with_name("pip")

    built = subprocess.run([str(pip), "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheels"), str(checkout)],
                           capture_output=True, text=True, timeout=300, check=False)

    assert built.returncode == 0, built.stderr
    assert sorted(str(path.relative_to(checkout)) for path in checkout.rglob("*")) == before
    wheel = next((tmp_path / "wheels").glob("*.whl"))
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True, check=True).stdout
    shipped = sorted(line.split()[0].rsplit("/", 1)[1][:-3] for line in names.splitlines() if line.startswith("retrace_fabric/core/"))
    assert "_ansible_options" not in names and "_ansible_task" not in names and "_ansible_transport" not in names
    # A fresh virtual environment with the wheel alone; fabric and invoke from this one (no index needed)
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    subprocess.run([str(pip), "--python", str(fresh / "bin" / "python"), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=120)
    site = next(fresh.glob("lib/python*/site-packages"))
    (site / "dependencies.pth").write_text(next(pathlib.Path(sys.executable).parent.parent.glob("lib/python*/site-packages")).as_posix())
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    imported = subprocess.run([str(fresh / "bin" / "python"), "-c", IMPORTED], capture_output=True, text=True, cwd=tmp_path,
                              env=environ, check=False)

    assert imported.returncode == 0, imported.stderr
    found = json.loads(imported.stdout)
    assert found["package"] == str(site / "retrace_fabric" / "__init__.py")
    assert found["core"] == [str(site / "retrace_fabric" / "core")]
    # tracking.py: the core's public Python wrapper (docs/core.md), shipped for scripts though Fabric does not import it
    assert sorted(name.rsplit(".", 1)[1] for name in found["modules"]) == [name for name in shipped if name not in ("__init__", "tracking")], \
        "the wheel ships exactly the core modules that import retrace_fabric imports, and the public tracking wrapper"
    assert all(path.startswith(str(site / "retrace_fabric" / "core")) for path in found["modules"].values())


# --- fail-open deploy, single calls around a changing tree ------------------------------

def test_deploy_goes_on_when_retrace_is_down_with_one_warning(project):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"touch {marker}"], "deadline": 1})
    project.emulator.stop()

    result = project.run("deploy", "--version", "9.6.0")

    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert result.stderr.count("WARNING") == 1 and "NOT recorded" in result.stderr


def test_complete_names_the_version_start_sent_even_after_the_tree_changed(project):
    def git(*args):
        subprocess.run(["git", "-C", str(project.directory), *args], check=True, capture_output=True,
                       env={"HOME": str(project.home), "PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"})
    git("init", "-q", "-b", "main")
    git("add", "fabric.yaml")
    git("commit", "-q", "-m", "first")
    git("tag", "v1.4.2")

    started = project.run("retrace.start")
    (project.directory / "fabric.yaml").write_text((project.directory / "fabric.yaml").read_text() + "# rewritten by a build step\n")
    completed = project.run("retrace.complete")
    again = project.run("retrace.start")

    assert started.returncode == completed.returncode == again.returncode == 0, completed.stderr
    versions = [(entry["action"], entry["body"]["Version"], entry["status"]) for entry in project.emulator.requests()]
    assert versions == [("start", "v1.4.2", 202), ("complete", "v1.4.2", 202), ("start", "v1.4.2-dirty", 202)]
    assert "the one retrace.start sent from this directory" in completed.stdout
    state = project.home / ".local" / "state" / "stackify-retrace" / "started.json"
    assert oct(state.stat().st_mode & 0o777) == "0o600" and DEMO_API_KEY not in state.read_text()


def test_complete_never_uses_a_record_another_user_could_have_swapped(project):
    """A state directory others can write (0777, or another user's) is refused: its record could name any version."""
    def git(*args):
        subprocess.run(["git", "-C", str(project.directory), *args], check=True, capture_output=True,
                       env={"HOME": str(project.home), "PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"})
    git("init", "-q", "-b", "main")
    git("add", "fabric.yaml")
    git("commit", "-q", "-m", "first")
    git("tag", "v2.0.0")
    assert project.run("retrace.start").returncode == 0
    state = project.home / ".local" / "state" / "stackify-retrace"
    record = json.loads((state / "started.json").read_text())
    (state / "started.json").write_text(json.dumps({key: dict(entry, version="attacker-chosen") for key, entry in record.items()}))
    state.chmod(0o777)

    completed = project.run("retrace.complete")

    assert completed.returncode == 0, completed.stderr
    versions = [(entry["action"], entry["body"]["Version"]) for entry in project.emulator.requests()]
    assert versions == [("start", "v2.0.0"), ("complete", "v2.0.0")]  # from git describe, not from the record
    assert completed.stderr.count("WARNING") == 1, completed.stderr
    assert f"the versions earlier starts recorded are not used: {state} can be written by other users (mode 0777)" in completed.stderr


@pytest.mark.parametrize("stale_start, expected", [
    (None, ["start 202", "start 409", "cancel 202", "start 202", "complete 202"]),
    ("fail", ["start 202", "start 409"]),
])
def test_a_deployment_left_in_progress_is_recovered_once_unless_told_to_fail(project, stale_start, expected):
    left_behind = project.run("retrace.start", "--version", "9.9.1")  # a run that died beyond any guard
    project.fabric_yaml({"steps": ["true"], **({"stale_start": stale_start} if stale_start else {})})

    result = project.run("deploy", "--version", "9.9.1", env={"FABRIC_RETRACE_STRICT": "yes" if stale_start else None})

    assert left_behind.returncode == 0
    assert [f"{action} {status}" for action, status in project.actions()] == expected
    assert result.returncode == (1 if stale_start else 0), result.stdout + result.stderr
    if not stale_start:
        assert result.stderr.count("was left in progress by a run that ended without closing it") == 1


# --- one environment, one outcome: nothing about tracking stops fab deploy unless strict ----------

def _git(directory, *args):
    subprocess.run(["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@e", *args], check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(directory)})


def _warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("retrace: WARNING: ")]


# (fabric.yaml overrides, environment, fragments of the one warning)
NOT_RECORDED = {
    "no key": ({}, {"RETRACE_API_KEY": None}, ("NOT recorded", "api_key", "RETRACE_API_KEY")),
    "no version": ({}, {}, ("NOT recorded", "version", "RETRACE_VERSION", "--version")),
    "invalid deadline": ({"deadline": "abc"}, {}, ("NOT recorded", "deadline: must be a number of seconds")),
    "invalid stale_start": ({"stale_start": "never"}, {}, ("NOT recorded", "stale_start: must be one of recover, fail")),
    "key refused": ({}, {"RETRACE_API_KEY": "wrong-key-0123456789"}, ("NOT recorded", "api_key")),
    "retrace down": ({"api_url": "http://127.0.0.1:9", "deadline": 1}, {}, ("NOT recorded", "unreachable")),
}


@pytest.mark.parametrize("settings, env, fragments", NOT_RECORDED.values(), ids=NOT_RECORDED.keys())
def test_without_strict_a_tracking_problem_never_stops_a_deploy(project, settings, env, fragments):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"echo $RETRACE_APP_NAME > {marker}"], **settings})
    version = () if "version" in fragments else ("--version", "16.0.0")

    result = project.run("deploy", *version, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.read_text() == "DemoApp\n", "the step ran, with the deployment's variables"
    (warning,) = _warnings(result)
    assert all(fragment in warning for fragment in fragments), warning
    assert [action for action, status in project.actions() if status == 202] == []


@pytest.mark.parametrize("settings, env, fragments, code", [
    value + (1 if key in ("key refused", "retrace down") else 2,) for key, value in NOT_RECORDED.items()],
    ids=NOT_RECORDED.keys())
def test_with_strict_a_tracking_problem_stops_a_deploy_before_any_step(project, settings, env, fragments, code):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"touch {marker}"], **settings})
    version = () if "version" in fragments else ("--version", "16.1.0")

    result = project.run("deploy", *version, env={"RETRACE_STRICT": "true", **env})

    assert result.returncode == code, result.stdout + result.stderr
    assert not marker.exists()
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("retrace: ERROR: ")]
    assert all(fragment in error for fragment in fragments), error
    assert _warnings(result) == []


def test_an_invalid_strict_value_counts_as_strict_and_is_named(project):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"touch {marker}"], "strict": "ture"})

    result = project.run("deploy", "--version", "16.2.0")

    assert result.returncode == 2 and not marker.exists()
    assert "strict: must be true or false, got 'ture'" in result.stderr
    assert project.emulator.journal() == []


@pytest.mark.parametrize("strict", [None, "true"])
def test_a_misspelt_setting_is_named_and_the_deploy_recorded(project, strict):
    project.fabric_yaml({"stirct": True})

    result = project.run("deploy", "--version", "16.3.0", env={"RETRACE_STRICT": strict})

    assert result.returncode == 0, result.stderr
    (warning,) = _warnings(result)
    assert "unknown setting 'stirct'" in warning and "did you mean strict" in warning
    assert project.actions() == [("start", 202), ("complete", 202)]
    assert "retrace: deployment 16.3.0 of DemoApp to Production started" in result.stdout
    assert "retrace: deployment 16.3.0 of DemoApp to Production completed" in result.stdout


def test_a_misspelt_fabric_variable_is_named_and_the_deploy_recorded(project):
    result = project.run("deploy", "--version", "16.3.1", env={"FABRIC_RETRACE_STIRCT": "1", "FABRIC_RETRACE_VERSION": "x"})

    assert result.returncode == 0, result.stderr
    (warning,) = _warnings(result)
    assert "unknown setting 'FABRIC_RETRACE_STIRCT' in the environment (did you mean FABRIC_RETRACE_STRICT?)" in warning
    assert project.actions() == [("start", 202), ("complete", 202)]


def test_a_retrace_section_that_is_not_a_mapping_is_not_recorded_by_a_single_call(project):
    (project.directory / "fabric.yaml").write_text("retrace: FooApp\n")
    result = project.run("retrace.start", "--version", "16.4.0", env={"RETRACE_APP_NAME": "DemoApp"})
    assert result.returncode == 0, result.stderr
    (warning,) = _warnings(result)
    assert "NOT recorded: retrace: must be a mapping" in warning


@pytest.mark.skipif(os.geteuid() != 0, reason="a repository owned by another user needs root to make")
@pytest.mark.parametrize("version", [None, "16.5.0"])
def test_git_refusing_the_checkout_is_said_with_the_fix(project, version):
    marker = project.directory / "ran"
    project.fabric_yaml({"steps": [f"touch {marker}"]})
    _git(project.directory, "init", "-q", "-b", "main")
    _git(project.directory, "add", "fabric.yaml")
    _git(project.directory, "commit", "-q", "-m", "first")
    subprocess.run(["chown", "-R", "65534:65534", str(project.directory / ".git")], check=True)

    result = project.run("deploy", *(("--version", version) if version else ()))

    assert result.returncode == 0 and marker.exists(), result.stdout + result.stderr
    (warning,) = _warnings(result)
    assert "git refused" in warning and "dubious ownership" in warning
    assert f"git config --global --add safe.directory {project.directory}" in warning
    if version:  # recorded, without the branch and commit git would not give
        assert "branch and commit are not sent" in warning
        assert project.actions() == [("start", 202), ("complete", 202)]
    else:
        assert "NOT recorded: version: is not set" in warning and "--version" in warning
        assert project.emulator.journal() == []
