"""The README's install and quick-start commands, run as written in fresh directories against the Retrace emulator.

A fenced block of README.md preceded by ``<!-- tested: readme-quickstart GROUP [file=NAME] -->`` belongs to GROUP: a
``file=`` block is written to NAME, the group's ``sh`` blocks are run, in order, as one bash script. Each group runs
in a directory of its own, as a user trying one entry point would; all share one fresh home directory (HOME), into
which the ``install`` group installs the collection. No ANSIBLE_* variable of the test process reaches them.

The ``fabric`` group runs in an environment of its own: a fresh venv holding the pip package, and a HOME whose
``~/.ssh/config`` makes ``web1`` and ``web2`` two ports of a loopback sshd (each host logs in to a directory of its
own, where the user's ``release.sh`` lies).

Changed from what the README says, only where this machine cannot reach the real thing:
- Galaxy is not reachable: ``ansible-galaxy collection install stackify.retrace`` installs the tarball that
  ``ansible-galaxy collection build`` makes of this checkout instead (the one substitution in a command);
- PyPI is not reachable: ``pip install stackify-retrace-fabric`` is pip installing the wheel built from this checkout
  into a fresh venv (tests/integration/fabric/fabric_distribution.py), whose dependencies (Fabric, Invoke,
  Paramiko) come from the test's environment; so the test writes Fabric's ``fab`` script into the venv, as pip
  writes it when it installs Fabric;
- Retrace is the emulator: the environment holds ``RETRACE_API_URL`` pointing at it (the README leaves the URL at
  its default), and the emulator's account has the README's key, app and environment.
The user's own files that the README refers to but does not show (``site.yml``, ``deploy-steps.yml``, the hosts'
``release.sh``, ``deploy.sh``) are written by the test.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from ansible_collections.stackify.retrace.plugins.plugin_utils._source import CI_PROVIDERS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration" / "fabric"))
# pylint: disable=wrong-import-position
import fabric_distribution  # noqa: E402
from fabric_sshd import LoopbackSshd, sshd_available  # noqa: E402

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
    "fabric": {"deploy.sh": "#!/bin/sh\necho \"$RETRACE_VERSION\" > deployed\n"},
}
#: the user's script on each host (the README's step ``./release.sh $RETRACE_VERSION``): argument and environment
RELEASE_SH = '#!/bin/sh\necho "$1 $RETRACE_VERSION" > released\n'
FABRIC_HOSTS = ("web1", "web2")
PIP_INSTALL_FABRIC = "pip install stackify-retrace-fabric"
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
        if text.startswith("#!"):
            (directory / file_name).chmod(0o755)
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
    assert set(GROUPS) == {"install", "requirements", "callback", "role", "module", "fabric"}


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


class HostsSshd(LoopbackSshd):
    """The loopback sshd, each port a host that logs in to a directory of its own (its ``HOST/`` under ``hosts``)."""

    def __init__(self, directory: pathlib.Path, hosts: pathlib.Path):
        super().__init__(directory, hosts=len(FABRIC_HOSTS))
        self.logins = {name: hosts / name for name in FABRIC_HOSTS}

    def _config(self, host_key: pathlib.Path) -> str:
        # sshd starts commands in the user's home from passwd, the same for every port: a step's relative path
        # (./release.sh) must find each host's own copy, and nothing may be written to this machine's home
        blocks = [f"Match LocalPort {port}\n"
                  f"    ForceCommand cd {shlex.quote(str(login))} && eval \"$SSH_ORIGINAL_COMMAND\"\n"
                  for port, login in zip(self.ports, self.logins.values())]
        return super()._config(host_key) + "".join(blocks)

    def ssh_config(self) -> str:
        """``~/.ssh/config`` naming the hosts as the README's ``-H web1,web2`` does."""
        return "".join(f"Host {name}\n    HostName 127.0.0.1\n    Port {port}\n    User {self.user}\n"
                       f"    IdentityFile {self.client_key}\n    IdentitiesOnly yes\n"
                       for name, port in zip(self.logins, self.ports))

    def known_hosts(self) -> str:
        host_key = (self.directory / "host_ed25519.pub").read_text(encoding="utf-8").split()[:2]
        return "".join(f"[127.0.0.1]:{port} {' '.join(host_key)}\n" for port in self.ports)


@pytest.fixture
def hosts_sshd(tmp_path):
    if not sshd_available():
        pytest.fail("sshd is not installed: run scripts/bootstrap (apt-get install openssh-server)")
    with HostsSshd(tmp_path / "sshd", tmp_path / "hosts") as server:
        for login in server.logins.values():
            login.mkdir(parents=True)
            (login / "release.sh").write_text(RELEASE_SH, encoding="utf-8")
            (login / "release.sh").chmod(0o755)
        yield server


def fabric_venv(directory: pathlib.Path) -> pathlib.Path:
    """``pip install stackify-retrace-fabric``, from this checkout's wheel; ``fab`` as pip writes Fabric's script."""
    venv = fabric_distribution.build(directory).venv
    fab, = [entry for entry in importlib.metadata.distribution("fabric").entry_points if entry.name == "fab"]
    module, attribute = fab.value.split(":", 1)
    (venv / "bin" / "fab").write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {attribute.split('.')[0]}\n"
        f"sys.exit({attribute}())\n", encoding="utf-8")
    (venv / "bin" / "fab").chmod(0o755)
    return venv


@pytest.mark.fabric
@pytest.mark.retrace_emulator(accounts=ACCOUNT)
def test_readme_fabric_quick_start(tmp_path, hosts_sshd, retrace_emulator):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"`{PIP_INSTALL_FABRIC}`" in readme
    venv = fabric_venv(tmp_path / "pip")
    assert (venv / "bin" / "retrace-deploy").is_file()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(hosts_sshd.ssh_config(), encoding="utf-8")
    (home / ".ssh" / "known_hosts").write_text(hosts_sshd.known_hosts(), encoding="utf-8")
    env = fresh_environment(home, retrace_emulator.url)
    env.pop("PYTHONPATH", None)  # the installed wheel, not the checkout
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", GIT_CEILING_DIRECTORIES=str(tmp_path))

    output = run_group("fabric", tmp_path / "fabric", env)

    for name, login in hosts_sshd.logins.items():
        assert (login / "released").read_text(encoding="utf-8") == "1.4.2 1.4.2\n", f"{name}:\n{output}"
    assert (tmp_path / "fabric" / "deployed").read_text(encoding="utf-8") == "1.4.2\n", output
    recorded = [(entry["action"], entry["body"]["Version"], entry["status"]) for entry in retrace_emulator.requests()]
    assert recorded == [
        ("start", "1.4.2", 202), ("complete", "1.4.2", 202),   # fab -H web1,web2 deploy: around both hosts' steps
        ("start", "1.4.2", 202), ("complete", "1.4.2", 202),   # retrace-deploy deploy: around ./deploy.sh (a redeploy)
        ("start", "1.4.2", 202),                               # retrace-deploy start: one call
    ], output
    assert "WARNING" not in output and "NOT recorded" not in output, output
    assert README_KEY not in output, f"the Fabric quick start printed the key:\n{output}"
