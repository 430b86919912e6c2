"""Run a playbook the way AWX / Automation Platform runs a job: ansible-runner, with the controller's job
variables, environment, credential injection and runner settings.

What is reproduced, and where AWX does it (ansible/awx 24.6.1, 94e5795; devel e21dd0a, Oct 2024 -- the same
in both for everything below; docs/awx.md has the table):

- extra vars ``awx_*`` and ``tower_*``: ``UnifiedJob.awx_meta_vars`` (awx/main/models/unified_jobs.py) and
  ``Job.awx_meta_vars`` (awx/main/models/jobs.py), written with the template's extra vars to
  ``env/extravars`` (``RunJob.build_extra_vars_file``, awx/main/tasks/jobs.py; strings other than the
  template's own extra vars tagged ``!unsafe`` by awx/main/utils/safe_yaml.py), which ansible-runner passes
  as ``-e @env/extravars``;
- environment ``JOB_ID``, ``INVENTORY_ID``, ``PROJECT_REVISION``, ``AWX_HOST``, ``ANSIBLE_RETRY_FILES_ENABLED``,
  ``MAX_EVENT_RES``, ``AWX_PRIVATE_DATA_DIR`` (``BaseTask.build_env`` / ``RunJob.build_env``), handed to
  ansible-runner in memory (``envvars`` with ``suppress_env_files=True``: AWX_RUNNER_OMIT_ENV_FILES);
- custom credential injection: each ``injectors.file`` template rendered in a Jinja sandbox with the
  credential's non-empty inputs into a ``tempfile.mkstemp`` file of the private data directory's ``env/``,
  chmod 0600, its path as the job sees it in ``{{ tower.filename }}`` (``template``) or
  ``{{ tower.filename.<name> }}`` (``template.<name>``); then each ``injectors.env`` template rendered the
  same way (``CredentialType.inject_credential``, awx/main/models/credential.py); the job's recorded
  environment gets secret inputs as ``**********``;
- the inventory as an executable script printing JSON (``BaseTask.write_inventory_file``);
- ``env/settings``: ``job_timeout``, ``suppress_ansible_output``, ``suppress_output_file``
  (``BaseTask.run``); output is taken from the job events, as AWX's event handler does;
- cancel: receptor's ``work cancel`` sends SIGINT to ``ansible-runner worker`` (receptor
  pkg/workceptor/command.go ``commandUnit.Cancel``), whose signal handler becomes the cancel callback
  (ansible_runner.interface.init_runner -> utils.signal_handler), and ansible-runner kills the job's process
  group with SIGKILL (``Runner.handle_termination``).  Here the test's ``cancel_callback`` plays that part.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
import typing as t

import ansible_runner
import yaml
from jinja2 import sandbox

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
CREDENTIAL_TYPE_FILE = REPO_ROOT / "extensions" / "awx" / "credential_type.yml"
ANSIBLE_BIN = pathlib.Path(sys.executable).parent
REVISION = "3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
CONTROLLER_URL = "https://awx.example.com"
#: a key no test prints: any trace of it in output or artifacts is a leak
SECRET_KEY = "rtk-AWX-7f3e9c1d5b2a-do-not-log"
APP, ENVIRONMENT = "Shop", "Production"
ACCOUNTS = {SECRET_KEY: {"apps": [APP], "environments": [ENVIRONMENT]}}
#: the test process's own variables that would change what a job sees
FOREIGN_PREFIXES = ("RETRACE_", "STACKIFY_", "ANSIBLE_", "AWX_", "TOWER_")
FOREIGN_NAMES = ("JOB_ID", "PROJECT_REVISION", "INVENTORY_ID", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TF_BUILD",
                 "APPVEYOR", "TEAMCITY_VERSION", "bamboo_buildKey", "CODEBUILD_BUILD_ID", "JENKINS_URL")


@dataclasses.dataclass
class Job:
    """One controller job: what AWX knows about it when it launches it."""

    job_id: int = 4711
    job_template_id: int = 12
    job_template: str = "Deploy shop"
    user: str | None = "alice"
    project_revision: str = REVISION
    project_branch: str = "main"
    launch_type: str = "manual"
    workflow_job_id: int | None = None
    workflow_job_name: str | None = None
    inventory_id: int = 2
    controller_url: str = CONTROLLER_URL

    def meta_vars(self) -> dict:
        """``awx_meta_vars()``: every name under both prefixes (awx/main/constants.py JOB_VARIABLE_PREFIXES)."""
        values: dict[str, t.Any] = {"job_id": self.job_id, "job_launch_type": self.launch_type}
        if self.workflow_job_id is not None:
            values.update(workflow_job_id=self.workflow_job_id, workflow_job_name=self.workflow_job_name,
                          workflow_job_launch_type="manual")
        if self.user:
            values.update(user_id=3, user_name=self.user, user_email=f"{self.user}@example.com", user_first_name="",
                          user_last_name="")
        values.update(inventory_id=self.inventory_id, inventory_name="prod",
                      project_revision=self.project_revision, project_scm_branch=self.project_branch,
                      job_template_id=self.job_template_id, job_template_name=self.job_template,
                      execution_node="awx-task-0")
        return {f"{prefix}_{name}": value for prefix in ("awx", "tower") for name, value in values.items()}

    def environment(self, private_data_dir: pathlib.Path) -> dict:
        """``RunJob.build_env`` (the parts that do not depend on the AWX settings file)."""
        return {"JOB_ID": str(self.job_id), "INVENTORY_ID": str(self.inventory_id), "PROJECT_REVISION": self.project_revision,
                "ANSIBLE_RETRY_FILES_ENABLED": "False", "MAX_EVENT_RES": "700000", "AWX_HOST": self.controller_url,
                "AWX_PRIVATE_DATA_DIR": str(private_data_dir)}


class _UnsafeStringDumper(yaml.SafeDumper):
    """awx/main/utils/safe_yaml.py ``SafeStringDumper``: every string, keys included, tagged ``!unsafe``."""

    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def awx_safe_dump(extra_vars: dict, safe_dict: dict) -> str:
    """``safe_dump`` of awx/main/utils/safe_yaml.py: entries of ``safe_dict`` (the template's own extra vars, with
    the default ALLOW_JINJA_IN_EXTRA_VARS = "template") as plain YAML, every other one ``!unsafe``."""
    return "".join(yaml.dump_all([{key: value}], None, default_flow_style=False,
                                 Dumper=yaml.SafeDumper if safe_dict.get(key, object()) == value else _UnsafeStringDumper)
                   for key, value in extra_vars.items())


def load_credential_type() -> dict:
    return yaml.safe_load(CREDENTIAL_TYPE_FILE.read_text())


class TowerNamespace(types.SimpleNamespace):
    """The ``tower`` template namespace (awx/main/models/credential.py ``TowerNamespace``)."""


def inject_credential(credential_type: dict, inputs: dict, private_data_dir: pathlib.Path,
                      job_root: pathlib.Path | None = None) -> tuple[dict, dict, list[str]]:
    """(env, safe_env, files) as ``CredentialType.inject_credential`` builds them, ``file`` injectors written.

    ``files``: the paths written, relative to ``private_data_dir`` (``env/tmpXXXXXXXX``).

    Each ``injectors.file`` template goes to a ``mkstemp`` file in ``private_data_dir/env``, mode 0600; the path
    the job sees is that file's under ``job_root`` (AWX: ``get_incontainer_path``, the private data directory
    mounted at /runner in the EE; here the directory ansible-runner runs the job in), default
    ``private_data_dir``.
    """
    secret = {field["id"] for field in credential_type["inputs"]["fields"] if field.get("secret")}
    namespace = {name: value for name, value in inputs.items() if len(value)}
    safe_namespace = {name: "**********" if name in secret else value for name, value in namespace.items()}
    jinja = sandbox.ImmutableSandboxedEnvironment()
    tower = TowerNamespace()
    files = []
    namespace["tower"] = safe_namespace["tower"] = tower
    for label, template in credential_type["injectors"].get("file", {}).items():
        data = jinja.from_string(template).render(**namespace)
        descriptor, path = tempfile.mkstemp(dir=private_data_dir / "env")
        os.close(descriptor)
        with open(path, "w") as file:
            file.write(data)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        files.append(str(pathlib.Path(path).relative_to(private_data_dir)))
        seen_as = str((job_root or private_data_dir) / files[-1])
        if "." not in label:
            tower.filename = seen_as
        else:
            if not hasattr(tower, "filename"):
                tower.filename = TowerNamespace()
            setattr(tower.filename, label.split(".")[1], seen_as)
    env, safe_env = {}, {}
    for variable, template in credential_type["injectors"].get("env", {}).items():
        env[variable] = jinja.from_string(template).render(**namespace)
        safe_env[variable] = jinja.from_string(template).render(**safe_namespace)
    return env, safe_env, files


@dataclasses.dataclass
class JobResult:
    status: str
    rc: int
    stdout: str
    private_data_dir: pathlib.Path
    safe_env: dict

    def retrace_lines(self) -> list[str]:
        return [line.strip() for line in self.stdout.splitlines() if "Retrace" in line]


class Controller:
    """Launches jobs into private data directories under ``workdir``, against ``emulator``."""

    def __init__(self, emulator, workdir: pathlib.Path, monkeypatch):
        self.emulator = emulator
        self.workdir = workdir
        for name in list(os.environ):
            if name.startswith(FOREIGN_PREFIXES) or name in FOREIGN_NAMES:
                monkeypatch.delenv(name)
        # ansible-runner looks ansible-playbook up in its own PATH (AWX: the EE's PATH)
        monkeypatch.setenv("PATH", f"{ANSIBLE_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        self.collections_path = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or str(REPO_ROOT / "build" / "pytest-collections")
        self.credential_inputs = {"api_key": SECRET_KEY, "api_url": emulator.url}
        self.callback_settings = {"app_name": APP, "environment_name": ENVIRONMENT}
        #: the latest job's credential files, relative to its private data directory (``inject_credential``)
        self.credential_files: list[str] = []
        #: more files for the project directory (name -> text)
        self.project_files: dict[str, str] = {}

    def private_data_dir(self, job: Job, playbook: str, hosts: t.Sequence[str], callback: bool = True) -> pathlib.Path:
        """The job's private data directory as AWX prepares it before calling ansible-runner."""
        private = self.workdir / f"job-{job.job_id}"
        (private / "project").mkdir(parents=True)
        (private / "env").mkdir(mode=0o700)
        (private / "inventory").mkdir()
        (private / "project" / "site.yml").write_text(textwrap.dedent(playbook))
        for name, text in self.project_files.items():
            (private / "project" / name).write_text(text)
        settings = "".join(f"{name} = {value}\n" for name, value in self.callback_settings.items())
        # Enabling the callback in the project's ansible.cfg: one of the two ways docs/awx.md gives.
        enabled = "callbacks_enabled = stackify.retrace.deployment\n" if callback else ""
        (private / "project" / "ansible.cfg").write_text(f"[defaults]\n{enabled}\n[callback_retrace]\n{settings}")
        inventory = {"all": {"hosts": list(hosts)},
                     "_meta": {"hostvars": {host: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                                            for host in hosts}}}
        script = private / "inventory" / "hosts"
        script.write_text("#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(inventory))
        script.chmod(0o700)
        return private

    def launch(self, job: Job, playbook: str, *, hosts: t.Sequence[str] = ("localhost",), template_extra_vars: dict | None = None,
               extra_env: dict | None = None, job_timeout: int = 0, cancel_callback=None, credential: bool = True,
               callback: bool = True) -> JobResult:
        """Run ``playbook`` as ``job`` on ``hosts`` (local connection) and wait for the end; nothing is raised for its status."""
        private, env, safe_env = self.prepare(job, playbook, hosts=hosts, template_extra_vars=template_extra_vars,
                                              extra_env=extra_env, job_timeout=job_timeout, credential=credential,
                                              callback=callback)
        events = []
        result = ansible_runner.run(ident=str(job.job_id), private_data_dir=str(private), playbook="site.yml",
                                    inventory=str(private / "inventory" / "hosts"), suppress_env_files=True, envvars=env,
                                    event_handler=lambda event: events.append(event) or True, cancel_callback=cancel_callback,
                                    quiet=True)
        stdout = "\n".join(event.get("stdout", "") for event in events if event.get("stdout"))
        return JobResult(result.status, result.rc, stdout, private, safe_env)

    def prepare(self, job: Job, playbook: str, *, hosts: t.Sequence[str] = ("localhost",), template_extra_vars: dict | None = None,
                extra_env: dict | None = None, job_timeout: int = 0, credential: bool = True,
                callback: bool = True, job_root: pathlib.Path | None = None) -> tuple[pathlib.Path, dict, dict]:
        """(private data dir, job environment, what the controller records of it), as AWX prepares them.

        ``job_root``: where the job sees the private data directory (an execution node's copy), for the paths
        of credential files.
        """
        private = self.private_data_dir(job, playbook, hosts, callback)
        extra_vars = {**(template_extra_vars or {}), **job.meta_vars()}
        (private / "env" / "extravars").write_text(awx_safe_dump(extra_vars, safe_dict=template_extra_vars or {}))
        (private / "env" / "settings").write_text(json.dumps(
            {"job_timeout": job_timeout, "suppress_ansible_output": True, "suppress_output_file": True}))
        env = {**job.environment(private), "ANSIBLE_COLLECTIONS_PATH": self.collections_path,
               "ANSIBLE_LOCAL_TEMP": str(private / "tmp"), "ANSIBLE_HOME": str(private / "ansible-home"),
               "ANSIBLE_NOCOLOR": "1", **(extra_env or {})}
        safe_env = dict(env)
        if credential:
            injected, safe_injected, self.credential_files = inject_credential(
                load_credential_type(), self.credential_inputs, private, job_root)
            env.update(injected)
            safe_env.update(safe_injected)
        return private, env, safe_env


class RemoteJob:
    """A job run the way AWX runs it on an execution node: ``transmit`` here, ``ansible-runner worker`` as its own
    process (what receptor starts, awx/main/tasks/receptor.py ``AWXReceptorJob``), ``process`` here.

    The payload, key included, travels through a pipe only (AWX: a socketpair into receptor), never a file.
    :meth:`cancel` does what receptor's ``work cancel`` does: SIGINT to the worker process.
    """

    def __init__(self, controller: "Controller", job: Job, playbook: str, **options):
        self.worker_dir = controller.workdir / f"worker-{job.job_id}"
        self.private, self.env, self.safe_env = controller.prepare(job, playbook, job_root=self.worker_dir, **options)
        self.job = job
        self.events: list[dict] = []
        self.worker = subprocess.Popen([str(ANSIBLE_BIN / "ansible-runner"), "worker", f"--private-data-dir={self.worker_dir}"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._transmitter = threading.Thread(target=self._transmit, daemon=True)
        self._processor = threading.Thread(target=self._process, daemon=True)
        self.result = None
        self._transmitter.start()
        self._processor.start()

    def _transmit(self):
        try:
            ansible_runner.run(streamer="transmit", _output=self.worker.stdin, ident=str(self.job.job_id),
                               private_data_dir=str(self.private), playbook="site.yml",
                               inventory=str(self.private / "inventory" / "hosts"), suppress_env_files=True,
                               envvars=self.env, quiet=True)
        finally:
            self.worker.stdin.close()

    def _process(self):
        self.result = ansible_runner.run(streamer="process", _input=self.worker.stdout, ident=str(self.job.job_id),
                                         private_data_dir=str(self.private), quiet=True,
                                         event_handler=lambda event: self.events.append(event) or True)

    def cancel(self):
        self.worker.send_signal(signal.SIGINT)

    def wait(self, timeout: float = 90) -> "JobResult":
        self._processor.join(timeout)
        self.worker.wait(timeout=10)
        assert self.result is not None, "ansible-runner process never finished"
        stdout = "\n".join(event["stdout"] for event in self.events if event.get("stdout"))
        return JobResult(self.result.status, self.result.rc, stdout, self.private, self.safe_env)


#: a job's playbook with one quick step: the callback records the deployment around it
OK_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Deploy
      ansible.builtin.debug:
        msg: deploying
"""


def waiting_playbook(workdir: pathlib.Path, name: str) -> tuple[str, pathlib.Path, pathlib.Path]:
    """A playbook whose one step touches ``workdir/<name>-running``, then waits until ``workdir/<name>-may-finish``
    exists: (playbook text, the file saying it runs, the file the test creates to let it finish)."""
    started, release = workdir / f"{name}-running", workdir / f"{name}-may-finish"
    playbook = f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: Slow deployment step
      ansible.builtin.shell: touch {started} && while [ ! -e {release} ]; do sleep 0.1; done
"""
    return playbook, started, release


def wait_for_file(path: pathlib.Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def files_containing(directory: pathlib.Path, secret: str) -> list[str]:
    """Paths (relative to ``directory``) of every file whose bytes contain ``secret``."""
    needle = secret.encode()
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file() and needle in path.read_bytes())
