# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback plugin: every ansible-playbook run becomes one Retrace deployment."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deployment
type: notification
short_description: Record every ansible-playbook run as one Stackify Retrace deployment
version_added: 0.1.0
description:
  - Sends C(start) to the Retrace Deployment Tracking API before the first task of an C(ansible-playbook)
    run, then C(complete) when the run ends with no failed and no unreachable host, or C(cancel) otherwise
    (task failures, unreachable hosts, Ctrl-C, SIGTERM, or an error that aborts the run after the start).
  - One invocation is one deployment, however many playbook files, plays, hosts, forks or serial batches it has.
  - Failures that were rescued or ignored (C(ignore_errors), C(failed_when)) do not cancel the deployment.
  - Tracking never changes the result of the playbook or the exit code of C(ansible-playbook). A missing
    setting, a refused key or an API that is down or hanging produces one warning line, and the time the
    callback can add to a run is bounded by O(time_budget).
  - Nothing is sent in C(--check) mode unless O(track_check_mode) is set. C(--syntax-check) and the
    C(--list-*) modes never load callbacks.
  - "Settings are read, from highest to lowest precedence, from extra vars (C(-e retrace_<option>=...)),
    environment variables, the C([callback_retrace]) section of C(ansible.cfg), then the defaults.
    Extra vars are used as given: they are not templated."
  - When O(branch), O(commit) or O(uri) are not set, they are detected from the CI system's environment
    (GitHub Actions, GitLab CI, Jenkins, Azure DevOps and others), then branch and commit from git in the
    directory of the first playbook file.
  - The API key is never displayed, at any verbosity.
requirements:
  - Enable the callback with C(callbacks_enabled = stackify.retrace.deployment) in the C([defaults]) section of
    C(ansible.cfg), or with the E(ANSIBLE_CALLBACKS_ENABLED) environment variable.
author:
  - Stackify Retrace collection maintainers (@stackify)
extends_documentation_fragment:
  - stackify.retrace.api
  - stackify.retrace.api.deployment
  - stackify.retrace.api.plugin_environment
options:
  api_key:
    ini:
      - section: callback_retrace
        key: api_key
    vars:
      - name: retrace_api_key
  api_url:
    ini:
      - section: callback_retrace
        key: api_url
    vars:
      - name: retrace_api_url
  app_name:
    ini:
      - section: callback_retrace
        key: app_name
    vars:
      - name: retrace_app_name
  environment_name:
    ini:
      - section: callback_retrace
        key: environment_name
    vars:
      - name: retrace_environment_name
  version:
    description:
      - The version being deployed; with the app and environment it identifies the deployment.
      - When not set, the E(RETRACE_VERSION) environment variable is used, then
        C(git describe --tags --always --dirty) of the directory of the first playbook file, then the
        playbook file name followed by the start time in UTC (for example V(site-20260512T101500Z)).
    ini:
      - section: callback_retrace
        key: version
    vars:
      - name: retrace_version
  name:
    ini:
      - section: callback_retrace
        key: name
    vars:
      - name: retrace_name
  branch:
    ini:
      - section: callback_retrace
        key: branch
    vars:
      - name: retrace_branch
  commit:
    ini:
      - section: callback_retrace
        key: commit
    vars:
      - name: retrace_commit
  uri:
    ini:
      - section: callback_retrace
        key: uri
    vars:
      - name: retrace_uri
  validate_certs:
    ini:
      - section: callback_retrace
        key: validate_certs
    vars:
      - name: retrace_validate_certs
  ca_path:
    ini:
      - section: callback_retrace
        key: ca_path
    vars:
      - name: retrace_ca_path
  use_proxy:
    ini:
      - section: callback_retrace
        key: use_proxy
    vars:
      - name: retrace_use_proxy
  timeout:
    ini:
      - section: callback_retrace
        key: timeout
    vars:
      - name: retrace_timeout
  deadline:
    description:
      - Seconds all attempts of one call may take together, retries included; never more than what is
        left of O(time_budget).
    ini:
      - section: callback_retrace
        key: deadline
    vars:
      - name: retrace_deadline
  time_budget:
    description:
      - The most time, in seconds, that tracking may add to one C(ansible-playbook) run, retries included.
        Only the callback's own work counts, not the playbook's.
      - The start may use up to two thirds of what is left, so that the end always keeps some. When the budget
        is spent, the callback gives up with a warning and the playbook carries on.
    type: float
    default: 10
    env:
      - name: RETRACE_TIME_BUDGET
    ini:
      - section: callback_retrace
        key: time_budget
    vars:
      - name: retrace_time_budget
  track_check_mode:
    description:
      - Also record runs made with C(--check). Off by default, as a dry run deploys nothing.
    type: bool
    default: false
    env:
      - name: RETRACE_TRACK_CHECK_MODE
    ini:
      - section: callback_retrace
        key: track_check_mode
    vars:
      - name: retrace_track_check_mode
notes:
  - The outcome is read from the play recap (failed and unreachable counts), so a host failure that a C(rescue) block
    handled does not cancel the deployment.
  - On Ctrl-C and on an error that aborts the run, the cancel is sent as C(ansible-playbook) exits; on SIGTERM
    (how AWX and CI systems stop a job) it is sent before the process ends.
  - With several playbook files in one command, the deployment ends after the last one, or after the one that stopped
    the run.
seealso:
  - name: Retrace deployment tracking
    description: Stackify's documentation of the deployment API.
    link: https://docs.stackify.com/docs/deployment-tracking
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = stackify.retrace.deployment
#
# [callback_retrace]
# app_name = Shop
# environment_name = Production

# The key from the environment, the version per run from the CI job:
#   export RETRACE_API_KEY=...   (or STACKIFY_API_KEY)
#   ansible-playbook site.yml -e retrace_version="$CI_COMMIT_TAG"

# Without touching ansible.cfg:
#   ANSIBLE_CALLBACKS_ENABLED=stackify.retrace.deployment RETRACE_APP_NAME=Shop \
#   RETRACE_ENVIRONMENT_NAME=Staging ansible-playbook site.yml
"""

import atexit
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import time

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.utils.vars import load_extra_vars

from ansible_collections.stackify.retrace.plugins.module_utils.ansible_options import check_text_types
from ansible_collections.stackify.retrace.plugins.module_utils.client import DeploymentClient, create_client
from ansible_collections.stackify.retrace.plugins.module_utils.deployment import CANCEL, COMPLETE, START
from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput, RetraceError
from ansible_collections.stackify.retrace.plugins.module_utils.redaction import redact
from ansible_collections.stackify.retrace.plugins.module_utils.source import detect_source, git_describe
from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport

ENTRY_POINT = "ansible-callback"
REQUIRED_OPTIONS = ("api_key", "app_name", "environment_name")
CORE_OPTIONS = ("api_key", "api_url", "app_name", "environment_name", "version", "name", "branch", "commit", "uri",
                "validate_certs", "timeout", "deadline")
#: share of the budget the start may use, so that the end keeps some
START_SHARE = 2 / 3
#: below this many seconds left, a call is not worth attempting
MINIMUM_CALL_TIME = 0.05
HOSTS_SHOWN = 5
BOOLEAN_OPTIONS = ("validate_certs", "use_proxy", "track_check_mode")
LISTING_MODES = ("syntax", "listhosts", "listtasks", "listtags")


class CallbackModule(CallbackBase):
    """Start a deployment before the first task; complete or cancel it when the run ends."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "stackify.retrace.deployment"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._tracking = None  # a _TrackedRun once the start was accepted
        self._playbooks_seen = 0
        self._stopped_by = None  # set by our signal handlers
        self._last_recap = None  # (failed hosts, unreachable hosts) of the latest play recap
        self._api_key = None  # kept only to redact it from unexpected error messages

    # --- Ansible hooks: each is one call guarded so that tracking can never break the run -------------

    def v2_playbook_on_start(self, playbook):
        self._playbooks_seen += 1
        if self._playbooks_seen == 1:
            self._guarded(self._begin, playbook)

    def v2_playbook_on_stats(self, stats):
        self._last_recap = _recap(stats)
        if self._playbooks_seen >= len(context.CLIARGS.get("args") or ()):
            self._guarded(self._finish, *self._outcome())

    # --- start -------------------------------------------------------------------------------------------

    def _begin(self, playbook):
        if any(context.CLIARGS.get(mode) for mode in LISTING_MODES):
            return
        extra_vars = load_extra_vars(playbook._loader)
        # -e '{"retrace_version": 1.10}' arrives as the float 1.1: refuse it, as the module does.
        check_text_types({name: extra_vars.get(f"retrace_{name}") for name in CORE_OPTIONS})
        _check_booleans(extra_vars)
        self.set_options(var_options=extra_vars)
        options = {name: self.get_option(name) for name in CORE_OPTIONS}
        self._api_key = options["api_key"]
        if context.CLIARGS.get("check") and not self.get_option("track_check_mode"):
            self._display.v("Retrace: check mode, no deployment recorded (set track_check_mode to record it)")
            return
        missing = [name for name in REQUIRED_OPTIONS if not options[name]]
        if missing:
            self._display.warning(f"Retrace deployment tracking is off for this run: {_missing_settings(missing)}")
            return
        budget = _Budget(self.get_option("time_budget"))
        with budget.charge():
            self._fill_from_source(options, pathlib.Path(playbook._file_name).resolve().parent)
            transport = UrllibTransport(options["validate_certs"], self.get_option("ca_path"), self.get_option("use_proxy"))
            client, deployment = create_client(options, transport, entry_point=ENTRY_POINT, log=self._display.v)
        run = _TrackedRun(client, deployment, budget, self._display)
        if run.send(START, budget.remaining() * START_SHARE):
            self._tracking = run
            self._watch_for_early_exit()

    def _fill_from_source(self, options, directory):
        if not options["version"]:
            options["version"] = git_describe(str(directory)) or _fallback_version(context.CLIARGS.get("args"))
        source = detect_source(os.environ, str(directory), options["branch"], options["commit"], options["uri"])
        options.update(branch=source.branch, commit=source.commit, uri=source.uri)

    # --- end ---------------------------------------------------------------------------------------------

    def _outcome(self, run_finished=True):
        """(action, reason) for the end of the run, from the latest recap and any signal received."""
        failed, unreachable = self._last_recap or ((), ())
        if self._stopped_by:
            return CANCEL, f"the run was stopped by {self._stopped_by}"
        if failed or unreachable:
            return CANCEL, _failure_reason(failed, unreachable)
        if not run_finished:
            return CANCEL, "ansible-playbook stopped before the end of the run (an error aborted it)"
        return COMPLETE, None

    def _finish(self, action, reason):
        run, self._tracking = self._tracking, None
        if run is not None:
            run.send(action, run.budget.remaining(), reason)

    def _finish_at_exit(self):
        # Only the process that sent the start ends it: forked workers inherit handlers and atexit entries.
        if self._tracking is not None and os.getpid() == self._tracking.main_pid:
            self._guarded(self._finish, *self._outcome(run_finished=False))

    def _watch_for_early_exit(self):
        # Ctrl-C and aborting errors skip the recap but run atexit; SIGTERM skips both, so it gets a handler.
        atexit.register(self._finish_at_exit)
        _chain_signal_handler(signal.SIGINT, self._on_sigint)
        _chain_signal_handler(signal.SIGTERM, self._on_sigterm)

    def _on_sigint(self):
        self._stopped_by = self._stopped_by or "Ctrl-C (SIGINT)"

    def _on_sigterm(self):
        self._stopped_by = self._stopped_by or "SIGTERM"
        self._finish_at_exit()

    def _guarded(self, step, *args):
        # The one place where any error becomes a warning: tracking must never break a playbook.
        try:
            step(*args)
        except RetraceError as error:
            self._display.warning(f"Retrace deployment tracking is off for this run: {error}")
        except Exception as error:  # pylint: disable=broad-exception-caught
            message = redact(_one_line(str(error)), self._api_key)
            self._display.warning(f"Retrace deployment tracking failed ({type(error).__name__}): {message}")


class _Budget:
    """The time tracking may still add to this run: only the callback's own work is charged, not the playbook's."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.spent = 0.0

    def remaining(self):
        return self.seconds - self.spent

    @contextlib.contextmanager
    def charge(self):
        began = time.monotonic()
        try:
            yield
        finally:
            self.spent += time.monotonic() - began


class _TrackedRun:
    """A started deployment: sends the calls within the budget and says what happened, in one line each."""

    def __init__(self, client, deployment, budget, display):
        self.client = client
        self.deployment = deployment
        self.budget = budget
        self.display = display
        self.main_pid = os.getpid()

    def send(self, action, seconds, reason=None):
        """Send ``action`` within ``seconds``; return True when Retrace accepted it (failures are warned)."""
        label = f"deployment {self.deployment.version} of {self.deployment.app_name} to {self.deployment.environment_name}"
        if seconds < MINIMUM_CALL_TIME:
            self.display.warning(f"Retrace: {action} of {label} not sent: the time budget is spent")
            return False
        self.display.v(f"Retrace {action}: " + json.dumps(self.client.request(action, self.deployment), ensure_ascii=False))
        try:
            with self.budget.charge():
                self._client_within(seconds).send(action, self.deployment)
        except RetraceError as error:
            self.display.warning(f"Retrace: {action} of {label} failed: {error}")
            return False
        self.display.display(f"Retrace: {label} {_PAST_TENSE[action]}" + (f": {reason}" if reason else ""))
        return True

    def _client_within(self, seconds):
        # The client's deadline covers retries and its timeout one attempt: both must fit in what is left.
        deadline = min(self.client.settings.deadline, seconds)
        settings = dataclasses.replace(self.client.settings, deadline=deadline, timeout=min(self.client.settings.timeout, deadline))
        return DeploymentClient(settings, self.client.transport, entry_point=ENTRY_POINT, retry=self.client.retry,
                                log=self.display.v)


_PAST_TENSE = {START: "started", COMPLETE: "completed", CANCEL: "cancelled"}


def _check_booleans(extra_vars):
    """Refuse -e retrace_validate_certs=perhaps: Ansible would quietly read it as false and turn TLS checks off."""
    for option in BOOLEAN_OPTIONS:
        value = extra_vars.get(f"retrace_{option}")
        if value is None:
            continue
        try:
            boolean(value, strict=True)
        except TypeError:
            raise InvalidInput(option, f"must be true or false, got {value!r}") from None


def _recap(stats):
    failed = sorted(host for host, count in stats.failures.items() if count)
    unreachable = sorted(host for host, count in stats.dark.items() if count)
    return failed, unreachable


def _failure_reason(failed, unreachable):
    parts = []
    if failed:
        parts.append(f"failed on {_hosts(failed)}")
    if unreachable:
        parts.append(f"unreachable: {_hosts(unreachable)}")
    return "; ".join(parts)


def _hosts(names):
    shown = ", ".join(names[:HOSTS_SHOWN])
    return shown + (f" and {len(names) - HOSTS_SHOWN} more" if len(names) > HOSTS_SHOWN else "")


def _missing_settings(missing):
    variables = ", ".join(f"RETRACE_{name.upper()}" for name in missing)
    extra_vars = " ".join(f"-e retrace_{name}=..." for name in missing)
    return f"{', '.join(missing)} not set (use {variables}, {extra_vars}, or ansible.cfg [callback_retrace])"


def _fallback_version(playbooks):
    stem = pathlib.Path(playbooks[0]).stem if playbooks else "ansible"
    return f"{stem}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}"


def _one_line(text):
    return " ".join(text.split())


def _chain_signal_handler(signum, hook):
    """Run ``hook`` on ``signum``, then whatever handled it before (Ansible's own handler)."""
    previous = signal.getsignal(signum)

    def handler(received, frame):
        hook()
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(received, signal.SIG_DFL)
            os.kill(os.getpid(), received)

    signal.signal(signum, handler)
