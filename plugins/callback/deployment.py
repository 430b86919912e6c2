# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback plugin: every ansible-playbook run becomes one Retrace deployment."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deployment
type: notification
short_description: Record every ansible-playbook run as one Stackify Retrace deployment
version_added: 1.0.0
description:
  - Sends C(start) to the Retrace Deployment Tracking API when the first task of an C(ansible-playbook) run starts
    (before it runs on any host), then C(complete) when the run ends with no failed and no unreachable host, or
    C(cancel) otherwise (task failures, unreachable hosts, Ctrl-C, SIGTERM, SIGHUP, SIGKILL, or an error that aborts
    the run after the start).
  - One invocation is one deployment, however many playbook files, plays, hosts, forks or serial batches it has.
  - Failures that were rescued or ignored (C(ignore_errors), C(failed_when)) do not cancel the deployment.
  - By default tracking never changes the result of the playbook or the exit code of C(ansible-playbook). A missing
    setting, a refused key or an API that is down or hanging produces one warning line, and the time the
    callback can add to a run is bounded by O(time_budget). Set O(strict) to make such failures fail the run.
  - Nothing is sent in C(--check) mode unless O(track_check_mode) is set, nor for ad-hoc commands unless
    O(track_ad_hoc) is set. C(--syntax-check) and the C(--list-*) modes never load callbacks.
  - The start is sent when the first task (or handler) of the run starts, so a run in which no task runs on any host
    (C(--limit) matching no host, plays with no hosts) sends nothing and says so in one line.
  - Once the start is accepted, an orphan guard (O(orphan_guard)) cancels the deployment if C(ansible-playbook) is
    killed outright (SIGKILL of its process group by ansible-runner or AWX, the OOM killer); SIGHUP and SIGTERM
    send the cancel before the process ends.
  - Boolean settings are checked strictly wherever they come from - V(true)/V(false), V(yes)/V(no), V(on)/V(off),
    V(1)/V(0), V(t)/V(f), V(y)/V(n); any other word is refused with one warning instead of being read as false.
  - "Settings are read, from highest to lowest precedence, from extra vars (C(-e retrace_<option>=...)),
    environment variables, the C([callback_retrace]) section of C(ansible.cfg), then the defaults.
    Extra vars are used as given: they are not templated."
  - When O(branch), O(commit) or O(uri) are not set, they are detected from the CI system's environment
    (GitHub Actions, GitLab CI, Jenkins, Azure DevOps and others), then branch and commit from git in the
    directory of the first playbook file.
  - In an AWX / Automation Platform job (recognised by the C(awx_job_id) extra var, or E(JOB_ID) with E(AWX_HOST)),
    the job comes first - O(uri) is the job's page in the controller (from E(AWX_HOST)), O(commit) and O(version)
    the project revision, O(branch) the project's or the job's branch - and O(name_format) can name the launching
    user and the job template. A 409 on start in a job launched by a workflow (job slices are one) is taken for a
    sibling's start and is never recovered (a deployment left in progress by an earlier run stays so until a run
    outside a workflow recovers it or it is cancelled); see the AWX guide (docs/awx.md).
  - The API key is never displayed, at any verbosity.
requirements:
  - Enable the callback with C(callbacks_enabled = stackify.retrace.deployment) in the C([defaults]) section of
    C(ansible.cfg), or with the E(ANSIBLE_CALLBACKS_ENABLED) environment variable.
author:
  - Stackify Retrace collection maintainers (@stackify)
extends_documentation_fragment:
  - stackify.retrace.api
  - stackify.retrace.api.deployment
  - stackify.retrace.api.lifecycle
  - stackify.retrace.api.plugin_environment
options:
  api_key:
    ini:
      - section: callback_retrace
        key: api_key
    vars:
      - name: retrace_api_key
  api_key_file:
    ini:
      - section: callback_retrace
        key: api_key_file
    vars:
      - name: retrace_api_key_file
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
      - When not set, the E(RETRACE_VERSION) environment variable is used, then in an AWX job the project
        revision, then C(git describe --tags --always --dirty) of the directory of the first playbook file, then the
        playbook file name followed by the start time in UTC (for example V(site-20260512T101500Z); in an AWX job
        V(site-awx-job-<id>), or V(site-awx-workflow-<id>) in a workflow, so that job slices agree).
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
  name_format:
    ini:
      - section: callback_retrace
        key: name_format
    vars:
      - name: retrace_name_format
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
  track_ad_hoc:
    description:
      - Also record ad-hoc commands (C(ansible web -m ansible.builtin.ping)) when callbacks are loaded for them
        (E(ANSIBLE_LOAD_CALLBACK_PLUGINS), which ansible-runner and AWX set for ad-hoc jobs). Off by default, as an
        ad-hoc command deploys nothing.
      - When on, the version is O(version), E(RETRACE_VERSION), C(git describe) of the current directory, or
        C(ansible-<module>-<UTC time>) (for example V(ansible-ping-20260512T101500Z)); never the host pattern.
    type: bool
    default: false
    env:
      - name: RETRACE_TRACK_AD_HOC
    ini:
      - section: callback_retrace
        key: track_ad_hoc
    vars:
      - name: retrace_track_ad_hoc
  strict:
    description:
      - What a tracking failure does to the run. With V(false) (the default), a start or end that Retrace refuses
        or cannot receive (unreachable, time budget spent, HTTP 401/400/409) is one warning line saying what was not
        recorded, and the playbook goes on with its own result and exit code.
      - With V(true), V(true) means - a start that fails stops C(ansible-playbook) before its first task
        runs, with one error line and exit code 1; a complete that fails turns a successful run's exit code into 1
        (a cancel that fails leaves the failed run's own exit code). Invalid or missing settings stop the run too,
        before anything is sent.
      - "How: ansible-core turns any C(Exception) raised by a callback into a warning, so the callback raises
        C(SystemExit(1)). It passes Ansible's clean-ups (workers stopped, temporary files removed) and becomes the
        exit code; callbacks listed after this one get no C(v2_playbook_on_stats) then."
    ini:
      - section: callback_retrace
        key: strict
    vars:
      - name: retrace_strict
  stale_start:
    ini:
      - section: callback_retrace
        key: stale_start
    vars:
      - name: retrace_stale_start
  orphan_guard:
    ini:
      - section: callback_retrace
        key: orphan_guard
    vars:
      - name: retrace_orphan_guard
notes:
  - The outcome is read from the play recap (failed and unreachable counts), so a host failure that a C(rescue) block
    handled does not cancel the deployment.
  - On Ctrl-C and on an error that aborts the run, the cancel is sent as C(ansible-playbook) exits; on SIGTERM
    (how CI systems stop a job) and SIGHUP (the terminal or SSH session closed) it is sent before the process ends;
    on SIGKILL (how ansible-runner and AWX cancel a job or end it past its timeout) the orphan guard sends it
    within seconds.
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
import importlib.util
import os
import signal
import sys
import time


from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.utils.vars import load_extra_vars

# The collection's own modules are imported where they are used, after _install_bytecode_cache().
# pylint: disable=import-outside-toplevel

ENTRY_POINT = "ansible-callback"
REQUIRED_OPTIONS = ("api_key", "app_name", "environment_name")
CORE_OPTIONS = ("api_key", "api_key_file", "api_url", "app_name", "environment_name", "version", "name", "name_format", "branch", "commit",
                "uri", "validate_certs", "timeout", "deadline")
#: share of the budget the start may use, so that the end keeps some
START_SHARE = 2 / 3
#: below this many seconds left, a call is not worth attempting
MINIMUM_CALL_TIME = 0.05
HOSTS_SHOWN = 5
BOOLEAN_OPTIONS = ("validate_certs", "use_proxy", "track_check_mode", "track_ad_hoc", "strict", "orphan_guard")
LISTING_MODES = ("syntax", "listhosts", "listtasks", "listtags")
INI_SECTION = "callback_retrace"
#: exit code of a run stopped by a tracking failure with strict set (ansible-core's ExitCode.GENERIC_ERROR)
STRICT_EXIT_CODE = 1
NO_TASK_RAN = "Retrace: no task ran on any host: no deployment recorded"
# The words of module_utils.deployment (START, COMPLETE, CANCEL), which is imported only once a run is tracked.
START = "start"
COMPLETE = "complete"
CANCEL = "cancel"


class CallbackModule(CallbackBase):
    """Start a deployment before the first task that runs; complete or cancel it when the run ends."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "stackify.retrace.deployment"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        _install_bytecode_cache()
        self._pending = None  # a _TrackedRun ready to start at the first task
        self._tracking = None  # the _TrackedRun once its start was accepted
        self._playbooks_seen = 0
        self._stopped_by = None  # set by our signal handlers
        self._last_recap = None  # (failed hosts, unreachable hosts) of the latest play recap
        self._api_key = None  # kept only to redact it from unexpected error messages
        self._strict = False

    # --- Ansible hooks: each is one call guarded so that tracking can never break the run -------------

    def v2_playbook_on_start(self, playbook):
        self._playbooks_seen += 1
        if self._playbooks_seen == 1:
            self._guarded(self._prepare, playbook)

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self._pending is not None:
            self._guarded(self._open)

    def v2_playbook_on_handler_task_start(self, task):
        if self._pending is not None:
            self._guarded(self._open)

    def v2_playbook_on_stats(self, stats):
        self._last_recap = _recap(stats)
        if self._playbooks_seen >= _playbook_count():
            if self._pending is not None:
                self._pending = None
                self._display.display(NO_TASK_RAN)
            self._guarded(self._finish, *self._outcome())

    # --- before the first task: settings read and checked, nothing sent ------------------------------

    def _prepare(self, playbook):
        if any(context.CLIARGS.get(mode) for mode in LISTING_MODES):
            return
        from ansible_collections.stackify.retrace.plugins.module_utils._ansible_options import check_text_types
        from ansible_collections.stackify.retrace.plugins.module_utils.settings import Lifecycle
        extra_vars = load_extra_vars(playbook._loader)
        self.set_options(var_options=extra_vars)
        # Strictness first, so that every later problem knows whether it fails the run.
        self._strict = self._boolean("strict", extra_vars)
        # -e '{"retrace_version": 1.10}' arrives as the float 1.1: refuse it, as the module does.
        check_text_types({name: extra_vars.get(f"retrace_{name}") for name in CORE_OPTIONS})
        if extra_vars.get("retrace_version") == "":
            # -e retrace_version=$APP_VERSION with the variable unset: a made-up version would be worse.
            from ansible_collections.stackify.retrace.plugins.module_utils.errors import InvalidInput
            raise InvalidInput("version", "is empty (-e retrace_version=): give the version, or leave the extra var out "
                                          "to use git describe")
        flags = {name: self._boolean(name, extra_vars) for name in BOOLEAN_OPTIONS}
        lifecycle = Lifecycle.create(strict=flags["strict"], stale_start=self.get_option("stale_start"),
                                     orphan_guard=flags["orphan_guard"])
        options = {name: self._text_option(name) for name in CORE_OPTIONS}
        options["validate_certs"] = flags["validate_certs"]
        self._api_key = options["api_key"]
        self._check_key_destination(options)
        if _is_ad_hoc() and not flags["track_ad_hoc"]:
            self._display.v("Retrace: ad-hoc command, no deployment recorded (set track_ad_hoc to record it)")
            return
        if context.CLIARGS.get("check") and not flags["track_check_mode"]:
            self._display.v("Retrace: check mode, no deployment recorded (set track_check_mode to record it)")
            return
        # The key may come from api_key_file instead: the core reads it, and refuses both.
        missing = [name for name in REQUIRED_OPTIONS if not options[name] and not (name == "api_key" and options["api_key_file"])]
        if missing:
            raise _NotTracked(_missing_settings(missing))
        budget = _Budget(self.get_option("time_budget"))
        with budget.charge():
            # Imported here, not at the top: runs that track nothing (listings, check mode, ad-hoc)
            # never pay for compiling the client (ansible's collection loader keeps no bytecode).
            from ansible_collections.stackify.retrace.plugins.module_utils.client import create_client
            from ansible_collections.stackify.retrace.plugins.module_utils.transport import UrllibTransport
            job = _fill_from_source(options, _source_directory(playbook), extra_vars)
            transport = UrllibTransport(options["validate_certs"], self.get_option("ca_path"), flags["use_proxy"])
            client, deployment = create_client(options, transport, entry_point=ENTRY_POINT, log=self._display.v)
        self._api_key = client.settings.api_key.reveal()  # the key api_key_file held, if it came from there
        self._pending = _TrackedRun(client, deployment, budget, lifecycle, self._display,
                                    workflow_job_id=job.workflow_job_id if job is not None else None)

    def _text_option(self, option):
        """``option``, an empty environment variable counting as unset, as the module and Fabric count it.

        Ansible's configuration takes ``RETRACE_API_URL=`` as the value "" (2.21 ``ConfigManager``), and an
        AWX credential renders an input left empty as exactly that (``CredentialType.inject_credential``):
        the ``ansible.cfg`` value or the default applies instead.
        """
        value = self.get_option(option)
        origin = getattr(self, "_origins", {}).get(option) or ""
        if value == "" and origin.startswith("env: "):
            from ansible import constants
            value = _ini_value(constants.config.get_config_value("CONFIG_FILE"), option)
        return value

    def _check_key_destination(self, options):
        """A key from the environment goes only to the URL from the environment (settings.check_key_destination).

        Extra vars (an AWX launch prompt or survey) outrank ``RETRACE_API_URL``; whoever sets them must not be able
        to send a credential's key to a host of their choosing.
        """
        from ansible_collections.stackify.retrace.plugins.module_utils.settings import check_key_destination
        origins = getattr(self, "_origins", {})

        def from_environment(option):
            origin = origins.get(option) or ""
            return origin.startswith("env: ") and bool(os.environ.get(origin[len("env: "):]))

        key_set = [name for name in ("api_key", "api_key_file") if options[name]]
        # Only a variable (an extra var) is checked: ansible.cfg is a file of the project, trusted like its playbooks,
        # which run with the key anyway.  An empty RETRACE_API_URL gives way to ansible.cfg (_text_option).
        url_from_variable = (origins.get("api_url") or "").startswith("var: ")
        check_key_destination(options["api_url"], key_from_environment=bool(key_set) and all(map(from_environment, key_set)),
                              url_from_environment=not url_from_variable, environ=os.environ,
                              api_key_file=options["api_key_file"])

    def _boolean(self, option, extra_vars):
        """``option`` as a bool, refusing what Ansible's own ``bool`` type would quietly read as false."""
        from ansible_collections.stackify.retrace.plugins.module_utils.settings import parse_boolean
        value = self.get_option(option)
        raw = _raw_setting(option, getattr(self, "_origins", {}).get(option), extra_vars)
        return parse_boolean(value if raw is None else raw, option)

    # --- the first task: start ----------------------------------------------------------------------

    def _open(self):
        from ansible_collections.stackify.retrace.plugins.module_utils.errors import RetraceError
        run, self._pending = self._pending, None
        try:
            run.open()
        except RetraceError as error:
            run.arm_guard_if_start_may_have_landed(error)
            self._fail_or_warn(f"Retrace: start of {run.label} failed, the deployment is NOT recorded: {error}")
            return
        self._tracking = run
        self._watch_for_early_exit()

    # --- end ---------------------------------------------------------------------------------------

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

    def _finish(self, action, reason, exit_on_failure=True):
        from ansible_collections.stackify.retrace.plugins.module_utils.errors import RetraceError
        run, self._tracking = self._tracking, None
        if run is None:
            return
        try:
            run.close(action, reason)
        except RetraceError as error:
            message = f"Retrace: {action} of {run.label} failed: {error}"
            # A cancel means the run fails already; only a complete that did not land changes the exit code.
            if action == COMPLETE and exit_on_failure:
                self._fail_or_warn(message)
            else:
                self._display.warning(message)

    def _finish_at_exit(self):
        # Only the process that sent the start ends it: forked workers inherit handlers and atexit entries.
        if self._tracking is not None and os.getpid() == self._tracking.main_pid:
            self._guarded(self._finish, *self._outcome(run_finished=False), False)

    def _watch_for_early_exit(self):
        # Ctrl-C and aborting errors skip the recap but run atexit; SIGTERM and SIGHUP skip both.
        atexit.register(self._finish_at_exit)
        _chain_signal_handler(signal.SIGINT, self._on_sigint)
        _chain_signal_handler(signal.SIGTERM, self._on_fatal_signal)
        _chain_signal_handler(signal.SIGHUP, self._on_fatal_signal)

    def _on_sigint(self, signum):
        self._stopped_by = self._stopped_by or "Ctrl-C (SIGINT)"

    def _on_fatal_signal(self, signum):
        self._stopped_by = self._stopped_by or signal.Signals(signum).name
        self._finish_at_exit()

    def _guarded(self, step, *args):
        # The one place where any error becomes a warning (or, with strict, a failed run): tracking
        # must never break a playbook unless the user asked for that.
        from ansible_collections.stackify.retrace.plugins.module_utils.errors import RetraceError
        try:
            step(*args)
        except (RetraceError, _NotTracked) as error:
            self._fail_or_warn(f"Retrace deployment tracking is off for this run: {error}")
        except Exception as error:  # pylint: disable=broad-exception-caught
            message = _redact(_one_line(str(error)), self._api_key)
            self._fail_or_warn(f"Retrace deployment tracking failed ({type(error).__name__}): {message}")

    def _fail_or_warn(self, message):
        if not self._strict:
            self._display.warning(message)
            return
        # ansible-core 2.19 turns any Exception a callback raises into a warning
        # (TaskQueueManager.send_callback); SystemExit is not an Exception, so it leaves through
        # the strategy's and PlaybookExecutor's `finally` clean-ups (workers stopped, temporary files
        # removed), passes CLI.cli_executor, which catches only Exception and KeyboardInterrupt,
        # and becomes the exit code of ansible-playbook.
        self._display.error(f"{message} (strict: stopping the run)")
        raise SystemExit(STRICT_EXIT_CODE)


class _BytecodeCachingFinder:
    """Loads this collection's module_utils and plugin_utils through Python's own source loader, which keeps bytecode.

    Why: ansible-core's collection loader compiles every collection module from source on every
    run and writes no ``.pyc`` (2.19: ``_AnsibleCollectionPkgLoader.get_code``).  For the callback's
    module_utils that is about 25 ms of CPU per ``ansible-playbook`` run, most of what tracking costs.
    Only submodules of our own module_utils and plugin_utils packages are served (the parent package still comes from
    Ansible's loader, so ``__path__`` and relative imports are Ansible's); where ``__pycache__`` cannot
    be written, Python simply compiles, as Ansible would.
    """

    PACKAGES = frozenset(f"ansible_collections.stackify.retrace.plugins.{name}" for name in ("module_utils", "plugin_utils"))

    def find_spec(self, fullname, path=None, target=None):
        package, _dot, leaf = fullname.rpartition(".")
        if package not in self.PACKAGES or not path:
            return None
        for directory in path:
            source = os.path.join(directory, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None

    def invalidate_caches(self):
        pass


def _install_bytecode_cache():
    """Put :class:`_BytecodeCachingFinder` first on ``sys.meta_path``, once per process.

    Done when Ansible instantiates the callback, not at import (ansible-test's import sanity test
    forbids import-time changes to ``sys.meta_path``); the collection's modules are imported after it.
    """
    if not any(type(finder).__name__ == _BytecodeCachingFinder.__name__ for finder in sys.meta_path):
        sys.meta_path.insert(0, _BytecodeCachingFinder())


class _NotTracked(Exception):
    """Tracking cannot happen for this run (a required setting is missing)."""


class _Budget:
    """The time tracking may still add to this run: only the callback's own work is charged, not the playbook's."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.spent = 0.0
        self._began = None

    def remaining(self):
        return self.seconds - self.spent

    def charge(self):
        return self

    def __enter__(self):
        self._began = time.monotonic()

    def __exit__(self, *exc_info):
        self.spent += time.monotonic() - self._began


class _TrackedRun:
    """One deployment: sends the calls within the budget and says what happened, in one line each."""

    def __init__(self, client, deployment, budget, lifecycle, display, workflow_job_id=None):
        self.client = client
        self.deployment = deployment
        self.budget = budget
        self.lifecycle = lifecycle
        self.display = display
        self.main_pid = os.getpid()
        self.guard = None
        #: the controller workflow this job belongs to (a sliced job is one): its sibling jobs may start the
        #: same deployment at the same moment, on other machines
        self.workflow_job_id = workflow_job_id
        #: True when a sibling job started the deployment and this job takes part in it (see :meth:`open`)
        self.joined = False

    @property
    def label(self):
        from ansible_collections.stackify.retrace.plugins.module_utils.tracking import describe
        return describe(self.deployment)

    def open(self):
        """Send start (recovering a stale one); arm the orphan guard once Retrace accepted it.  Raises RetraceError."""
        from ansible_collections.stackify.retrace.plugins.module_utils.errors import BadTransition
        from ansible_collections.stackify.retrace.plugins.module_utils.tracking import open_deployment
        # In a workflow (job slices), a 409 is a sibling job's start, maybe on another machine where no
        # guard can be asked: never "recover" it, which would cancel a live sibling's deployment.
        stale_start = "fail" if self.workflow_job_id else self.lifecycle.stale_start
        try:
            with self.budget.charge():
                self._log_request(START)
                # Stale-start recovery may take three calls (start, cancel, start): they share the start's share.
                open_deployment(self._client_within(self.budget.remaining() * START_SHARE), self.deployment,
                                stale_start=stale_start, warn=lambda message: self.display.warning(f"Retrace: {message}"))
        except BadTransition:
            if not self.workflow_job_id:
                raise
            self.joined = True
            # Joining is what slices do: one quiet line.  It cannot tell a live sibling from a deployment left by an
            # earlier run (docs/awx.md, Workflows, says how to clear that one).
            from ansible_collections.stackify.retrace.plugins.module_utils.tracking import joined_message
            self.display.display(joined_message(self.deployment, self.workflow_job_id))
            return
        self.display.display(f"Retrace: {self.label} started")
        if self.lifecycle.orphan_guard:
            from ansible_collections.stackify.retrace.plugins.module_utils._guard import arm_orphan_guard
            with self.budget.charge():
                # Not armed means a SIGKILL would leave the deployment in progress: worth one warning line.
                self.guard = arm_orphan_guard(self.client, self.deployment,
                                              log=lambda message: self.display.warning(f"Retrace: {message}"))

    def arm_guard_if_start_may_have_landed(self, error):
        """No answer to the start: it may land after all, so a guard, never released, cancels it after the run."""
        from ansible_collections.stackify.retrace.plugins.module_utils.tracking import start_may_have_landed
        if self.lifecycle.orphan_guard and start_may_have_landed(error):
            from ansible_collections.stackify.retrace.plugins.module_utils._guard import arm_orphan_guard
            arm_orphan_guard(self.client, self.deployment, log=lambda message: self.display.warning(f"Retrace: {message}"))

    def close(self, action, reason=None):
        """Send complete or cancel within what is left of the budget; raises RetraceError if it did not land.

        The orphan guard stands down once Retrace answered.  A cancel that could not be delivered
        (budget spent, API unreachable) leaves it armed: it tries once more after this process exits,
        outside the run's time.
        """
        from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable, RetraceError
        if self.joined:
            self._close_joined(action, reason)
            return
        delivered = False
        try:
            with self.budget.charge():
                if self.guard is not None and action == COMPLETE:
                    self.guard.completing()  # killed mid-call, the guard then sends complete too, never a cancel
                self._log_request(action)
                self._client_within(self.budget.remaining()).send(action, self.deployment)
            delivered = True
        except ApiUnreachable:
            raise
        except RetraceError:
            delivered = True  # refused: Retrace answered, the guard has nothing left to do
            raise
        finally:
            if self.guard is not None and (delivered or action == COMPLETE):
                with self.budget.charge():
                    self.guard.release()
                self.guard = None
        self.display.display(f"Retrace: {self.label} {_PAST_TENSE[action]}" + (f": {reason}" if reason else ""))

    def _close_joined(self, action, reason):
        """End this job's part of a sibling's deployment: nothing is sent, the job that started it ends it.

        A cancel from here would end a live sibling's deployment, and could not even make a failure stick: the
        starter's complete after it is a one-shot "completed" deployment for Retrace.  So a failed part is said
        here and shows in the controller (the workflow fails), not in Retrace.
        """
        if action == COMPLETE:
            self.display.display(f"Retrace: this job's part of {self.label} succeeded; the job that started it ends it")
        else:
            self.display.display(f"Retrace: this job's part of {self.label} failed ({reason}); the job that started it "
                                 "ends the deployment, so this failure is not recorded in Retrace")

    def _log_request(self, action):
        if self.display.verbosity >= 1:
            import json
            self.display.v(f"Retrace {action}: " + json.dumps(self.client.request(action, self.deployment), ensure_ascii=False))

    def _client_within(self, seconds):
        return _ClientWithin(self.client, seconds, self.display.v)


class _ClientWithin:
    """The run's client, with every call it sends (retries included) ending within ``seconds`` from now, together.

    Offers what :func:`open_deployment` uses of a DeploymentClient: ``settings``, ``start``, ``cancel``.
    """

    def __init__(self, client, seconds, log):
        self.settings = client.settings
        self._client = client
        self._until = time.monotonic() + seconds
        self._log = log

    def send(self, action, deployment):
        from ansible_collections.stackify.retrace.plugins.module_utils.errors import ApiUnreachable
        left = self._until - time.monotonic()
        if left < MINIMUM_CALL_TIME:
            raise ApiUnreachable("not sent: the time budget is spent", action=action)
        deadline = min(self.settings.deadline, left)
        settings = _replace(self.settings, deadline=deadline, timeout=min(self.settings.timeout, deadline))
        return self._client.replace(settings=settings, log=self._log).send(action, deployment)

    def start(self, deployment):
        return self.send(START, deployment)

    def complete(self, deployment):
        return self.send(COMPLETE, deployment)

    def cancel(self, deployment):
        return self.send(CANCEL, deployment)


_PAST_TENSE = {START: "started", COMPLETE: "completed", CANCEL: "cancelled"}


def _replace(settings, **changes):
    import dataclasses
    return dataclasses.replace(settings, **changes)


def _is_ad_hoc():
    """True in the ``ansible`` ad-hoc command: its CLI arguments name a module, and ``args`` is the host pattern."""
    return "module_name" in context.CLIARGS or isinstance(context.CLIARGS.get("args"), str)


def _playbook_count():
    return 1 if _is_ad_hoc() else len(context.CLIARGS.get("args") or ())


def _source_directory(playbook):
    """Where git is asked for version, branch and commit: the first playbook's directory (ad-hoc: the current one)."""
    if _is_ad_hoc():
        return os.getcwd()
    return os.path.dirname(os.path.realpath(playbook._file_name))


def _fill_from_source(options, directory, extra_vars):
    """Version, branch, commit, uri and name the user left unset: from the controller job, CI, then git."""
    from ansible_collections.stackify.retrace.plugins.module_utils.settings import deployment_name
    from ansible_collections.stackify.retrace.plugins.plugin_utils._source import detect_controller_job, detect_source, git_describe
    job = detect_controller_job(os.environ, extra_vars)
    # Outside a git checkout, asking git costs a process start (a fork of this large process) for nothing.
    checkout = directory if _inside_git_checkout(directory) else None
    if not options["version"]:
        options["version"] = ((job.revision if job else None) or (git_describe(checkout) if checkout else None)
                              or _fallback_version(job))
    source = detect_source(os.environ, checkout, options["branch"], options["commit"], options["uri"], job=job)
    options.update(branch=source.branch, commit=source.commit, uri=source.uri)
    options["name"] = deployment_name(options, job.name_fields() if job else None)
    return job


def _inside_git_checkout(directory):
    """True when git could find a repository for ``directory``: GIT_DIR is set, or a ``.git`` is found upwards."""
    if os.environ.get("GIT_DIR"):
        return True
    current = os.path.abspath(directory)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def _fallback_version(job=None):
    """``site-20260512T101500Z`` (first playbook's name), or ``ansible-ping-...`` for an ad-hoc command.

    In a controller job, ``site-awx-job-<id>`` (``site-awx-workflow-<id>`` in a workflow): every slice of a
    sliced job names the same deployment, whatever its clock says.
    """
    if _is_ad_hoc():
        stem = "ansible-" + (context.CLIARGS.get("module_name") or "ad-hoc").rsplit(".", 1)[-1]
    else:
        playbooks = context.CLIARGS.get("args") or ()
        stem = os.path.splitext(os.path.basename(playbooks[0]))[0] if playbooks else "ansible"
    if job is not None:
        return f"{stem}-awx-workflow-{job.workflow_job_id}" if job.in_workflow else f"{stem}-awx-job-{job.job_id}"
    return f"{stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def _raw_setting(option, origin, extra_vars):
    """The text a boolean setting was given as, before Ansible's lenient ``bool`` conversion; None for defaults.

    ansible-core (2.19 ``ConfigManager.get_config_value_and_origin``) converts ``type: bool`` settings
    with ``boolean(strict=False)``: ``RETRACE_STRICT=ture`` would silently be false.  ``origin`` is
    ``var: <name>``, ``env: <NAME>``, the path of an ini file, or ``default``.
    """
    if not origin or origin == "default":
        return None
    if origin.startswith("var: "):
        return extra_vars.get(origin[5:])
    if origin.startswith("env: "):
        return os.environ.get(origin[5:])
    return _ini_value(origin, option)


def _ini_value(path, option):
    """``option`` in the ``[callback_retrace]`` section of the ini file ``path``; None if absent."""
    if not path or not os.path.isfile(path):
        return None
    import configparser
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser.get(INI_SECTION, option, fallback=None) or None


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
    key_file = " (or the key's file in RETRACE_API_KEY_FILE)" if "api_key" in missing else ""
    return f"{', '.join(missing)} not set (use {variables}{key_file}, {extra_vars}, or ansible.cfg [callback_retrace])"


def _redact(text, api_key):
    from ansible_collections.stackify.retrace.plugins.module_utils._redaction import redact
    return redact(text, api_key)


def _one_line(text):
    return " ".join(text.split())


def _chain_signal_handler(signum, hook):
    """Run ``hook(signum)`` on ``signum``, then whatever handled it before (Ansible's own handler, or the default)."""
    previous = signal.getsignal(signum)

    def handler(received, frame):
        hook(received)
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(received, signal.SIG_DFL)
            os.kill(os.getpid(), received)

    signal.signal(signum, handler)
