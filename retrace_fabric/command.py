# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``retrace-deploy start|complete|cancel|deploy``: the fab tasks as a command of their own, no fabfile needed.

An Invoke ``Program`` with a bundled namespace, as Fabric's own ``fab`` is: the same task functions as
``fab retrace.start`` ..., Fabric's config (``fabric.yaml`` in the current directory, ``~/.fabric.yaml``,
``/etc/fabric.yaml``, ``-f FILE``), the same flags, settings, lines and exit codes (docs/fabric.md).

``retrace-deploy deploy -- ./deploy.sh --fast`` is ``fab deploy`` on this machine with that command as its one
step: start, run it (with ``RETRACE_VERSION`` ... in its environment), complete when it exits 0, cancel when it
fails (exit 1) or on SIGINT / SIGTERM / SIGHUP (exit 128 + N, the command stopped first).  Without ``--``, the
steps come from ``retrace.steps`` as for ``fab deploy``.
"""

from __future__ import annotations

import os
import shlex

from fabric import Config
from invoke import Collection, Program, task

from .core.errors import InvalidInput
from .core.settings import VERSION
from .deploy import FLAG_HELP, deploy_to, invalid
from .settings import FABRIC_ENV_PREFIX, SECTION, environment
from .tasks import cancel, complete, start
from .tracking import LOADED_AT

NAME = "retrace-deploy"
#: what ``fab`` needs instead, said where a user may be looking for it
FABFILE_HINT = ("With fab instead: a fabfile.py holding `from retrace_fabric import collection; ns = collection()` "
                "gives fab deploy and fab retrace.start|complete|cancel.")
STEPS_VARIABLE = FABRIC_ENV_PREFIX + "STEPS"


@task(name="deploy", help=FLAG_HELP, auto_shortflags=False)
def deploy_here(c, app_name=None, environment_name=None, version=None, name=None, branch=None, commit=None, uri=None, api_url=None):
    """Run the command after -- (or retrace.steps) on this machine, tracked in Retrace as one deployment.

    retrace-deploy deploy --version 1.4.2 -- ./deploy.sh: one start, then the command, then complete when
    it exits 0, cancel when it fails (exit 1) or on SIGINT, SIGTERM or SIGHUP (exit 128 + N).  The command
    sees RETRACE_VERSION, RETRACE_APP_NAME, RETRACE_ENVIRONMENT_NAME ... in its environment, never the key.
    Without --, the steps come from retrace.steps (fabric.yaml, FABRIC_RETRACE_STEPS), as for fab deploy.
    """
    flags = {"app_name": app_name, "environment_name": environment_name, "version": version, "name": name,
             "branch": branch, "commit": commit, "uri": uri, "api_url": api_url}
    command = PROGRAM.command
    if command is not None:
        if environment().get(STEPS_VARIABLE):
            raise invalid(InvalidInput("steps", f"both a command after -- and {STEPS_VARIABLE} are given: give one of them"))
        _set_steps(c.config, [command])
    elif not _steps_given(c.config):
        raise invalid(InvalidInput("steps", f"nothing to run: give the command after -- ({NAME} deploy -- ./deploy.sh) "
                                            "or list retrace.steps in fabric.yaml"))
    deploy_to([c], c.config, flags, budget_from=LOADED_AT)


def _steps_given(config) -> bool:
    section = config.get(SECTION)
    return bool(environment().get(STEPS_VARIABLE)) or (hasattr(section, "keys") and section.get("steps") is not None)


def _set_steps(config, steps: list[str]) -> None:
    """The command as ``retrace.steps``, above every config file; a section that is not a mapping is left as it is,
    for ``deploy_to`` to name."""
    section = config.get(SECTION)
    if section is None:
        config[SECTION] = {"steps": steps}
    elif hasattr(section, "keys"):
        section["steps"] = steps


class RetraceDeploy(Program):
    """``fab``'s machinery with a bundled namespace; ``fabric.yaml`` is read from the current directory."""

    command: str | None = None

    def parse_core(self, argv) -> None:
        super().parse_core(argv)
        # The words after -- as typed, quoted back into one shell command (Invoke keeps them joined by spaces).
        if "--" in self.argv:
            words = self.argv[self.argv.index("--") + 1:]
            self.command = shlex.join(words) if words else None

    def parse_collection(self) -> None:
        super().parse_collection()
        # No fabfile gives Invoke a project location: the current directory is this command's project.
        self.config.set_project_location(os.getcwd())
        self.config.load_project()

    def print_help(self) -> None:
        super().print_help()
        print(FABFILE_HINT)


PROGRAM = RetraceDeploy(name=NAME, binary=NAME, version=VERSION, config_class=Config,
                        namespace=Collection(start, complete, cancel, deploy_here))


def main() -> None:
    """The ``retrace-deploy`` console script."""
    PROGRAM.run()
