"""One environment, one outcome: run one deploy step through any entry point, and read what became of it.

A :class:`Project` is a throw-away project directory set up the way a user of that entry point sets one up:
the key and the API URL exported (``RETRACE_API_KEY``, ``RETRACE_API_URL``), the rest where that entry point's
users keep it:

- ``callback``: ``ansible.cfg`` ``[callback_retrace]`` (app and environment), ``-e retrace_version=...``, and a
  playbook whose one task is the deploy step; the callback enabled with ``ANSIBLE_CALLBACKS_ENABLED``;
- ``role``: a playbook including ``stackify.retrace.tracked_deployment`` with role vars, its
  ``tracked_deployment_tasks`` a tasks file holding the deploy step;
- ``module``: a module-tracked playbook, the shape docs/module.md shows: ``state: started`` (``run_once``), a block
  with the deploy step whose rescue sends ``state: cancelled`` and fails, then ``state: completed``; the settings
  are the tasks' literal arguments;
- ``fab-deploy``: ``fab deploy`` run locally (no ``-H``) with ``retrace.steps`` in ``fabric.yaml`` and ``--version``;
- ``fab-start``: ``fab retrace.start`` with the same ``fabric.yaml``: a single call, no deploy step.

The deploy step leaves a marker file (an ``ansible.builtin.file`` task with ``state: touch`` on localhost over
``connection: local``; a ``touch`` step for Fabric), so whether it ran is a fact, not a guess from the output.
The :class:`Outcome` of one run holds everything a test asserts: the deploy step ran or not, the exit status,
the calls the emulator received (its journal), and the output as lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import json
import os
import pathlib
import re
import select
import socket
import ssl
import subprocess
import sys
import threading

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
DEMO_KEY = "emulator-demo-key"
APP, ENVIRONMENT, VERSION = "DemoApp", "Production", "1.0.0"
CALLBACK = "stackify.retrace.deployment"
ROLE = "stackify.retrace.tracked_deployment"
MODULE = "stackify.retrace.deployment"
#: ansible.posix, unpacked from PyPI's ``ansible`` wheel by scripts/bootstrap (its json / jsonl stdout callbacks)
POSIX_COLLECTIONS = REPO_ROOT / "build" / "collections"
ANSIBLE_ENTRY_POINTS = ("callback", "role", "module")
FABRIC_ENTRY_POINTS = ("fab-deploy", "fab-start")
ENTRY_POINTS = ANSIBLE_ENTRY_POINTS + FABRIC_ENTRY_POINTS
RUN_TIMEOUT = 120
#: the spec's strict exit statuses: ansible-playbook 2 on every Ansible entry point; fab 2 for a missing or invalid
#: setting (nothing sent), 1 when Retrace refused or could not be reached
ANSIBLE_STRICT_EXIT = 2
FAB_INVALID_EXIT, FAB_REFUSED_EXIT = 2, 1
#: lines of Ansible's error excerpts ("Origin: file:line", numbered source lines, "^ column N"): they quote the
#: playbook, so a setting's name found there says nothing about what the run said
_EXCERPT = re.compile(r"^(Origin: |\d+\s|\s*\^ column )")
_STARTS_A_MESSAGE = ("[WARNING]", "[ERROR]", "[DEPRECATION WARNING]")
_ENDS_A_MESSAGE = ("[", "PLAY", "TASK", "RUNNING HANDLER", "ok:", "changed:", "fatal:", "skipping:", "included:", "Origin:")


def deployment_line(action: str, version: str = VERSION, environment: str = ENVIRONMENT) -> tuple[str]:
    """The spec's success / failure line fragment: ``deployment <version> of <app> to <environment> <action>``."""
    return (f"deployment {version} of {APP} to {environment} {action}",)


@dataclasses.dataclass(frozen=True)
class Expect:
    """What one run must come to.  ``deployed`` None: the entry point runs no deploy step (single calls)."""

    deployed: bool | None
    returncode: int
    calls: tuple = ()  # (action, HTTP status) of every request the emulator received, in order
    lines: tuple = ()  # groups of fragments: each group must be found within one line (one message) of the output
    quiet: bool = False  # no warning or error about Retrace at all
    identity: tuple = (APP, ENVIRONMENT, VERSION)  # (app, environment, version) of every accepted call


@dataclasses.dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    deployed: bool
    journal: list

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def calls(self) -> list[tuple[str, int | None]]:
        return [(entry["action"], entry["status"]) for entry in self.journal if entry["action"]]

    @property
    def identities(self) -> list[tuple]:
        """(app, environment, version) of every call Retrace accepted."""
        return [((entry["body"] or {}).get("AppName"), (entry["body"] or {}).get("EnvironmentName"),
                 (entry["body"] or {}).get("Version")) for entry in self.journal if entry["action"] and entry["status"] == 202]

    def messages(self) -> list[str]:
        """Every line of stdout and stderr, an Ansible [WARNING] / [ERROR] with its continuation lines joined into one,
        Ansible's quoted source excerpts left out."""
        found: list[str] = []
        for stream in (self.stdout, self.stderr):
            joining = False
            for line in stream.splitlines():
                if _EXCERPT.match(line):
                    joining = False
                    continue
                if joining and line.strip() and not line.startswith(_ENDS_A_MESSAGE):
                    found[-1] += " " + line.strip()
                    continue
                joining = line.startswith(_STARTS_A_MESSAGE)
                if line.strip():
                    found.append(line.strip())
        return found

    def problems(self) -> list[str]:
        """Warnings and errors about Retrace (Ansible's ``[WARNING]: Retrace: ...``, Fabric's ``retrace: WARNING: ...``)."""
        return [message for message in self.messages()
                if ("WARNING" in message or "ERROR" in message or "FAILED" in message) and "retrace" in message.lower()]

    def mismatches(self, expect: Expect) -> list[str]:
        """Each way this outcome differs from ``expect``, in words (empty: it is the expected outcome)."""
        found = []
        if expect.deployed is not None and self.deployed is not expect.deployed:
            found.append("the deploy step " + ("did NOT run" if expect.deployed else "RAN although it must not"))
        if self.returncode != expect.returncode:
            found.append(f"exit status {self.returncode}, expected {expect.returncode}")
        if self.calls != list(expect.calls):
            found.append(f"Retrace (the emulator) received {self.calls}, expected {list(expect.calls)}")
        wrong = [identity for identity in self.identities if identity != expect.identity]
        if wrong:
            found.append(f"recorded as (app, environment, version) {wrong}, expected {expect.identity}")
        messages = self.messages()
        for group in expect.lines:
            if not any(all(fragment in message for fragment in group) for message in messages):
                found.append(f"no line says all of {list(group)}")
        if expect.quiet and self.problems():
            found.append(f"warned although nothing was wrong: {self.problems()}")
        return found

    def describe(self) -> str:
        return f"exit status {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def assert_outcome(outcome: Outcome, expect: Expect, more: tuple = ()) -> None:
    """All four (deploy step, exit status, recorded, line) checked from the one run, and the ``more`` mismatches the
    test found itself; every mismatch reported at once, so that one failure shows all that is left to do."""
    mismatches = list(more) + outcome.mismatches(expect)
    assert not mismatches, "\n".join(["outcome differs from the one-outcome contract (docs/lifecycle.md):"]
                                     + [f"  - {mismatch}" for mismatch in mismatches] + [outcome.describe()])


class Project:
    """A project directory for one entry point, settings given the way that entry point's users give them."""

    def __init__(self, root: pathlib.Path, emulator, entry: str):
        if entry not in ENTRY_POINTS:
            raise ValueError(f"unknown entry point {entry!r}")
        self.root, self.emulator, self.entry = root, emulator, entry
        self.directory = root / "project"
        self.directory.mkdir()
        self.home = root / "home"
        self.home.mkdir()
        self.marker = root / "deployed"  # outside the project, which a test may hand to another user
        # Exported, as in a CI job: the key and the URL beside it.  None: unset.
        self.env: dict[str, str | None] = {"RETRACE_API_KEY": DEMO_KEY, "RETRACE_API_URL": emulator.url}
        self.extra_vars: dict[str, str] = {}  # -e name=value
        self.ini: dict[str, object] = {}  # ansible.cfg [callback_retrace]
        self.play_vars: dict[str, object] = {}
        self.group_vars: dict[str, object] = {}  # inventory/group_vars/all.yml
        self.group_vars_yaml = ""  # more of it, as YAML text (an inline !vault value)
        self.role_vars: dict[str, object] = {}
        self.module_args: dict[str, object] = {}  # every module task's arguments
        self.fabric: dict[str, object] = {}  # fabric.yaml retrace:
        self.flags: list[str] = []  # fab task flags
        self.hosts = ("localhost",)
        self.serial: int | None = None
        self.failing_step = False
        self.args: list[str] = []  # more ansible-playbook arguments
        self.setting("app_name", APP)
        self.setting("environment_name", ENVIRONMENT)
        self.give_version(VERSION)

    @property
    def ansible(self) -> bool:
        return self.entry in ANSIBLE_ENTRY_POINTS

    # --- settings, the entry point's own way --------------------------------------------------------------------

    def setting(self, name: str, value) -> None:
        """A setting where this entry point's users write it: ansible.cfg, role vars, the module tasks' arguments,
        fabric.yaml."""
        if self.entry == "callback":
            self.ini[name] = value
        elif self.entry == "role":
            self.role_vars[f"retrace_{name}"] = value
        elif self.entry == "module":
            self.module_args[name] = value
        else:
            self.fabric[name] = value

    def forget(self, name: str) -> None:
        """No ``name`` anywhere this project gives it."""
        for where in (self.ini, self.role_vars, self.module_args, self.fabric, self.extra_vars):
            where.pop(name, None)
            where.pop(f"retrace_{name}", None)
        if name == "version":
            self.flags = []

    def give_version(self, version: str) -> None:
        """The version the way it is given per run: an extra var, a role var, the tasks' argument, ``--version``."""
        if self.entry == "callback":
            self.extra_vars["retrace_version"] = version
        elif self.entry in FABRIC_ENTRY_POINTS:
            self.flags = ["--version", version]
        else:
            self.setting("version", version)

    def strict(self) -> None:
        """strict: true, the entry point's own way (fab retrace.start: RETRACE_STRICT, as a CI job sets it)."""
        if self.entry == "fab-start":
            self.env["RETRACE_STRICT"] = "true"
        else:
            self.setting("strict", True)

    def fast_failure(self) -> None:
        """Give up on an unreachable API within a second (timeout and deadline, the entry point's own way)."""
        self.setting("timeout", 1)
        self.setting("deadline", 1)

    # --- the run ------------------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        command, env = self._ansible() if self.ansible else self._fab()
        completed = subprocess.run(command, cwd=self.directory, env=env, capture_output=True, text=True,
                                   timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
        return Outcome(completed.returncode, completed.stdout, completed.stderr, self.marker.exists(),
                       self.emulator.journal())

    def _environment(self) -> dict[str, str]:
        """Built from nothing: no RETRACE_*, ANSIBLE_*, FABRIC_*, CI, proxy or AWX variable of the test runner leaks
        in (a CI tag would give a version), git confined to the project and blind to system and global config."""
        environ = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", "LANG": "C.UTF-8",
                   "HOME": str(self.home), "GIT_CEILING_DIRECTORIES": str(self.root), "GIT_CONFIG_NOSYSTEM": "1",
                   **self.env}
        return {name: value for name, value in environ.items() if value is not None}

    def _deploy_tasks(self) -> list[dict]:
        tasks = [{"name": "Deploy step", "ansible.builtin.file": {"path": str(self.marker), "state": "touch"}}]
        if self.failing_step:
            tasks.append({"name": "Deploy step that fails", "ansible.builtin.fail": {"msg": "the deploy step failed"}})
        return tasks

    def _module_task(self, state: str) -> dict:
        return {"name": f"Retrace {state}", MODULE: {"state": state, **self.module_args}, "run_once": True}

    def _plays(self) -> list[dict]:
        play = {"name": "Deploy", "hosts": "all", "gather_facts": False, **({"serial": self.serial} if self.serial else {}),
                **({"vars": self.play_vars} if self.play_vars else {})}
        if self.entry == "callback":
            return [dict(play, tasks=self._deploy_tasks())]
        if self.entry == "role":
            (self.directory / "deploy-steps.yml").write_text(json.dumps(self._deploy_tasks(), indent=2), encoding="utf-8")
            include = {"name": "Deploy, tracked", "ansible.builtin.include_role": {"name": ROLE},
                       "vars": {"tracked_deployment_tasks": "deploy-steps.yml", **self.role_vars}}
            return [dict(play, tasks=[include])]
        tracked = [self._module_task("started"),
                   {"name": "Deploy", "block": self._deploy_tasks(),
                    "rescue": [self._module_task("cancelled"),
                               {"name": "Fail the play", "ansible.builtin.fail": {"msg": "the deployment failed"}}]}]
        if self.serial:  # the start in the serial play, the end in a later play
            return [dict(play, tasks=tracked), {"name": "Finish", "hosts": "all", "gather_facts": False,
                                                **({"vars": self.play_vars} if self.play_vars else {}),
                                                "tasks": [self._module_task("completed")]}]
        return [dict(play, tasks=tracked + [self._module_task("completed")])]

    def _ansible(self) -> tuple[list[str], dict]:
        inventory = self.directory / "inventory"
        (inventory / "group_vars").mkdir(parents=True)
        (inventory / "hosts").write_text("".join(f"{host} ansible_connection=local\n" for host in self.hosts), encoding="utf-8")
        if self.group_vars or self.group_vars_yaml:
            text = (yaml.safe_dump(self.group_vars) if self.group_vars else "") + self.group_vars_yaml
            (inventory / "group_vars" / "all.yml").write_text(text, encoding="utf-8")
        ini = "".join(f"{name} = {str(value).lower() if isinstance(value, bool) else value}\n" for name, value in self.ini.items())
        (self.directory / "ansible.cfg").write_text(f"[defaults]\nretry_files_enabled = false\n\n[callback_retrace]\n{ini}",
                                                    encoding="utf-8")
        (self.directory / "playbook.yml").write_text(json.dumps(self._plays(), indent=2), encoding="utf-8")
        env = self._environment()
        env.update(ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(filter(None, (os.environ.get("ANSIBLE_COLLECTIONS_PATH"),
                                                                          env.get("ANSIBLE_COLLECTIONS_PATH")))),
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_LOCAL_TEMP=str(self.root / "ansible-tmp"), ANSIBLE_HOME=str(self.home / ".ansible"),
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_HOST_KEY_CHECKING="false")
        if self.entry == "callback":
            env["ANSIBLE_CALLBACKS_ENABLED"] = CALLBACK
        command = [str(BIN / "ansible-playbook"), "-i", "inventory", "playbook.yml", *self.args]
        for name, value in self.extra_vars.items():
            command += ["-e", f"{name}={value}"]
        return command, env

    def _fab(self) -> tuple[list[str], dict]:
        (self.directory / "fabfile.py").symlink_to(REPO_ROOT / "fabfile.py")
        steps = [f"touch {self.marker}"] + (["false"] if self.failing_step else [])
        (self.directory / "fabric.yaml").write_text(yaml.safe_dump({"retrace": {**self.fabric, "steps": steps}}), encoding="utf-8")
        runtime = self.root / "runtime.yaml"  # under pytest fab must not read stdin
        runtime.write_text(yaml.safe_dump({"run": {"in_stream": False}}), encoding="utf-8")
        env = dict(self._environment(), PYTHONPATH=str(REPO_ROOT))
        task = "deploy" if self.entry == "fab-deploy" else "retrace.start"
        return [str(BIN / "fab"), "-f", str(runtime), task, *self.flags], env


def use_posix_collection(project: Project) -> None:
    """Put the ansible.posix that scripts/bootstrap unpacked on the project's collections path."""
    project.env["ANSIBLE_COLLECTIONS_PATH"] = str(POSIX_COLLECTIONS)


def posix_collection_missing() -> str | None:
    """Why ansible.posix cannot be used, or None."""
    if (POSIX_COLLECTIONS / "ansible_collections" / "ansible" / "posix" / "plugins" / "callback" / "json.py").is_file():
        return None
    return f"ansible.posix is not in {POSIX_COLLECTIONS}: run scripts/bootstrap (it unpacks it from the ansible wheel)"


def git(directory: pathlib.Path, *args: str) -> None:
    """git ``args`` in ``directory``, as a throw-away identity, reading no system or global configuration."""
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main", *args],
                   cwd=directory, check=True, capture_output=True, env=environ)


def hand_to_another_user(project: Project, tag: str = "v3.0.0") -> None:
    """Make the project a git checkout with a tag (git describe would say ``tag``), owned by another uid (65534):
    git then refuses it with "detected dubious ownership" unless safe.directory allows it."""
    git(project.directory, "init", "-q")
    (project.directory / "README").write_text("release\n", encoding="utf-8")
    git(project.directory, "add", "README")
    git(project.directory, "commit", "-q", "-m", "release")
    git(project.directory, "tag", tag)
    for path in [project.directory, *project.directory.rglob("*")]:
        os.chown(path, 65534, 65534, follow_symlinks=False)


# --- a throw-away CA and a TLS front for the emulator (the dead-proxy row needs an https API) -----------------------

def certificate_authority_for_loopback(directory: pathlib.Path) -> tuple[str, ssl.SSLContext]:
    """(CA file, server context whose certificate for 127.0.0.1 that CA signed), valid for an hour."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "One-outcome test CA")])
    valid = {"not_valid_before": now - datetime.timedelta(minutes=1), "not_valid_after": now + datetime.timedelta(hours=1)}
    ca = (x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name, public_key=ca_key.public_key(),
                                  serial_number=x509.random_serial_number(), **valid)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder(subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                                      issuer_name=ca_name, public_key=server_key.public_key(),
                                      serial_number=x509.random_serial_number(), **valid)
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return str(ca_file), context


@contextlib.contextmanager
def tls_front(context: ssl.SSLContext, port: int):
    """The https URL of a loopback TLS front relaying each connection to 127.0.0.1:``port``, while in the block."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=_accept_tls, args=(listener, context, ("127.0.0.1", port)), daemon=True).start()
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"


def _accept_tls(listener: socket.socket, context: ssl.SSLContext, upstream: tuple) -> None:
    while True:
        try:
            client, _address = listener.accept()
        except OSError:  # the listener was closed: the test is over
            return
        threading.Thread(target=_relay, args=(client, context, upstream), daemon=True).start()


def _relay(client: socket.socket, context: ssl.SSLContext, upstream: tuple) -> None:
    try:
        with context.wrap_socket(client, server_side=True) as secure, socket.create_connection(upstream) as server:
            while True:
                readable = select.select([secure, server], [], [], 10)[0]
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (server if source is secure else secure).sendall(data)
    except (OSError, ssl.SSLError):
        pass  # a client that gave up, or refused the certificate
    finally:
        client.close()
