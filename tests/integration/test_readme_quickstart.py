"""The README's install and quick-start commands, run as written in fresh directories against the Retrace emulator.

A fenced block of README.md preceded by ``<!-- tested: readme-quickstart GROUP [file=NAME] -->`` belongs to GROUP: a
``file=`` block is written to NAME, the group's ``sh`` blocks are run, in order, as one bash script. Each group runs
in a directory of its own, as a user trying one entry point would; all share one fresh home directory (HOME), into
which the ``install`` group installs the collection. No ANSIBLE_* variable of the test process reaches them.

Changed from what the README says, only where this machine cannot reach the real thing:
- Galaxy is not reachable: ``ansible-galaxy collection install stackify.retrace`` installs the tarball that
  ``ansible-galaxy collection build`` makes of this checkout instead (the one substitution in a command);
- Retrace is the emulator: the environment holds ``RETRACE_API_URL`` pointing at it (the README leaves the URL at
  its default), and the emulator's account has the README's key, app and environment.
The user's own files that the README refers to but does not show (``site.yml``, ``deploy-steps.yml``) are
written by the test.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.stackify.retrace.plugins.plugin_utils._source import CI_PROVIDERS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
GALAXY_NAME = "stackify.retrace"
MARKER = re.compile(r"<!-- tested: readme-quickstart (?P<group>[\w-]+)(?: file=(?P<file>[\w.-]+))? -->\n"
                    r"```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)
README_KEY = "your-license-key"
ACCOUNT = {README_KEY: {"apps": ["Shop"], "environments": ["Production"]}}
#: the user's own files, which the README names without showing them
USER_FILES = {
    "callback": {"site.yml": "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                             "    - ansible.builtin.command: 'true'\n      changed_when: true\n"},
    "role": {"deploy-steps.yml": "- name: Install the release\n  ansible.builtin.command: 'true'\n"
                                 "  changed_when: true\n"},
}
#: ansible-core's own warnings for a playbook run without an inventory, as the README's are
NO_INVENTORY_WARNINGS = ("[WARNING]: No inventory was parsed, only implicit localhost is available",
                         "[WARNING]: provided hosts list is empty, only localhost is available.")
CI_MARKERS = {marker for _provider, marker, _reader in CI_PROVIDERS}
TIMEOUT = 120


def readme_groups() -> dict[str, dict[str, list]]:
    """GROUP -> {"files": [(name, text)], "scripts": [sh text]} from the marked blocks, in README order."""
    groups: dict[str, dict[str, list]] = {}
    for match in MARKER.finditer((REPO_ROOT / "README.md").read_text(encoding="utf-8")):
        group = groups.setdefault(match["group"], {"files": [], "scripts": []})
        if match["file"]:
            group["files"].append((match["file"], match["body"]))
        else:
            assert match["lang"] == "sh", f"a tested block without file= must be sh: {match['lang']}"
            group["scripts"].append(match["body"])
    return groups


GROUPS = readme_groups()


def fresh_environment(home: pathlib.Path, api_url: str) -> dict:
    """A user's shell: no Ansible, Retrace or CI settings from the test process; the emulator as RETRACE_API_URL."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ANSIBLE_", "RETRACE_", "STACKIFY_")) and name not in CI_MARKERS}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RETRACE_API_URL=api_url)
    return env


def run_group(name: str, directory: pathlib.Path, env: dict, substitute=lambda script: script) -> str:
    directory.mkdir()
    group = GROUPS[name]
    for file_name, text in [*USER_FILES.get(name, {}).items(), *group["files"]]:
        (directory / file_name).write_text(text, encoding="utf-8")
    script = "set -euo pipefail\n" + "\n".join(substitute(block) for block in group["scripts"])
    result = subprocess.run(["bash", "-c", script], cwd=directory, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, f"README quick start '{name}' exited {result.returncode}:\n{result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO_ROOT)],
                   check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)
    return next(out.glob("stackify-retrace-*.tar.gz"))


def test_readme_marks_every_entry_point():
    assert set(GROUPS) == {"install", "requirements", "callback", "role", "module"}


def test_requirements_snippet_selects_this_release():
    """Galaxy cannot be asked here: the snippet names this collection with a range that holds its version."""
    from ansible.galaxy.dependency_resolution.versioning import meets_requirements

    (name, text), = GROUPS["requirements"]["files"]
    assert name == "requirements.yml"
    entry, = yaml.safe_load(text)["collections"]
    version = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text(encoding="utf-8"))["version"]
    assert entry["name"] == GALAXY_NAME
    assert meets_requirements(version, entry["version"])


@pytest.mark.retrace_emulator(accounts=ACCOUNT)
def test_readme_install_and_quick_starts(tmp_path, tarball, retrace_emulator):
    home = tmp_path / "home"
    home.mkdir()
    env = fresh_environment(home, retrace_emulator.url)

    def from_tarball(script: str) -> str:
        command = f"ansible-galaxy collection install {GALAXY_NAME}"
        assert command in script
        return script.replace(command, f"ansible-galaxy collection install {tarball}")

    run_group("install", tmp_path / "install", env, from_tarball)
    assert (home / ".ansible/collections/ansible_collections/stackify/retrace/MANIFEST.json").is_file()

    outputs = {name: run_group(name, tmp_path / name, env) for name in ("callback", "role", "module")}

    recorded = [(entry["action"], entry["body"]["Version"], entry["status"]) for entry in retrace_emulator.requests()]
    assert recorded == [
        ("start", "2.0.1", 202), ("complete", "2.0.1", 202),   # callback: the run
        ("start", "2.0.2", 202), ("complete", "2.0.2", 202),   # role: around deploy-steps.yml
        ("complete", "2.0.3", 202),                            # module: a one-shot deployment
    ], outputs
    for name, output in outputs.items():
        warnings = [line for line in output.splitlines()
                    if "WARNING" in line and not line.startswith(NO_INVENTORY_WARNINGS)]
        assert not warnings and "NOT recorded" not in output, f"{name}:\n{output}"
        assert README_KEY not in output, f"{name} printed the key:\n{output}"
