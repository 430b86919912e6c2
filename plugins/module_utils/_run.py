# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  The run engine: every decision about a tracked run, made once.

An entry point (the callback, the action plugin, Fabric) reads its host program's events and settings, then:

* :meth:`DeploymentRun.target` -- one deployment of the run, from its resolved settings (:mod:`._resolve`);
  a deployment that cannot be described or sent (a setting missing or invalid) is a target that will not be
  recorded, with the reason;
* :meth:`DeploymentRun.open` -- start it: stale-start recovery, joins in controller workflows, this run's own
  earlier start (serial batches), the orphan guard, the time budget, strict and fail-open;
* :meth:`DeploymentRun.target_for` -- the deployment of one host of the run: hosts whose settings describe the same
  deployment (API, AppName, EnvironmentName, Version) share one target, so that a run deploying several apps or
  environments records one deployment each;
* :meth:`DeploymentRun.close` -- complete or cancel it; :meth:`DeploymentRun.close_each` to end each target by what
  happened on its own hosts; :meth:`DeploymentRun.close_all` for the way a run ends that ends every open deployment
  (a signal, an aborting error); :meth:`DeploymentRun.resume` where start and end are separate tasks (the module's
  ``completed`` / ``cancelled``).

Each returns a :class:`Step`, and the one line to show goes to the entry point's :class:`Reporter`, which only
chooses where lines go (Ansible's display, a task's ``warnings``, Fabric's stderr).  A run holds any number of
targets: one per deployment it records.  States of a target::

    pending -> starting -> started | joined | not recorded
    started -> completing | cancelling -> completed | cancelled | end failed
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
import typing as t

from . import _guard, _ledger
from .client import CallResult, DeploymentClient
from .deployment import CANCEL, COMPLETE, START, Deployment
from .errors import ApiUnreachable, BadTransition, InvalidInput, RetraceError
from .settings import DEFAULT_API_URL, DEPLOYMENT_OPTIONS, ApiSettings, TrackingPolicy, deployment_name
from .transport import Transport

from ._resolve import RECORDED, Source

if t.TYPE_CHECKING:  # pragma: no cover
    from ._resolve import Fallback, Resolved

#: share of what is left of a time budget that a start may use, so that the end always keeps some
START_SHARE = 2 / 3
#: below this many seconds left, a call is not worth attempting
MINIMUM_CALL_TIME = 0.05
#: the words a transport or client uses for an attempt that was sent and got no answer (client.NO_ANSWER_PROBLEMS)
PENDING, STARTING, STARTED, JOINED, NOT_RECORDED = "pending", "starting", "started", "joined", "not recorded"
#: a resumed target (an end sent on its own, from the place that sent its start) that must send nothing: its start was
#: refused, or never answered (the orphan guard cancels it), or another process of the place ended it already
START_REFUSED, START_UNANSWERED, ENDED_HERE = "start refused", "start unanswered", "ended here"
COMPLETING, CANCELLING, COMPLETED, CANCELLED, END_FAILED = "completing", "cancelling", "completed", "cancelled", "end failed"
#: states in which the deployment is open in Retrace (or may be) and this run owes it an end
OPEN_STATES = (STARTING, STARTED, COMPLETING, CANCELLING)
PAST_TENSE = {START: "started", COMPLETE: "completed", CANCEL: "cancelled"}
REQUIRED_OPTIONS = ("app_name", "environment_name", "version")
STRICT_SUFFIX = " (strict: the run stops)"
#: what happened on a host that ends its target with a cancel (:meth:`DeploymentRun.close_each`)
HOST_FAILED, HOST_UNREACHABLE, HOST_STOPPED = "failed", "unreachable", "stopped"
#: how many hosts a line names before "and N more"
HOSTS_SHOWN = 5
FAIL_OPEN_SUFFIX = " (strict is off: the deployment goes on)"


class Reporter(t.Protocol):
    """Where an entry point shows the engine's lines; each method gets one line, without any prefix."""

    def info(self, line: str) -> None:
        """What happened to a deployment: started, completed, cancelled, joined."""

    def detail(self, line: str) -> None:
        """Each call sent and Retrace's answer (Fabric prints these; Ansible at -v)."""

    def warning(self, line: str) -> None:
        """Something was NOT recorded, or needs the user's attention, and the run goes on."""

    def error(self, line: str) -> None:
        """A tracking failure that stops the run (strict)."""

    def debug(self, line: str) -> None:
        """The client's progress: what is about to be sent, retries."""


def describe(deployment: Deployment) -> str:
    """``deployment 1.4.2 of Shop to Production``: how every line names a deployment."""
    return f"deployment {deployment.version} of {deployment.app_name} to {deployment.environment_name}"


def describe_options(options: t.Mapping[str, t.Any]) -> str:
    """What can be said of a deployment whose settings are incomplete: ``deployment of Shop``, or ``deployment``."""
    version, app, environment = (options.get(name) for name in ("version", "app_name", "environment_name"))
    text = "deployment" + (f" {version}" if isinstance(version, str) and version else "")
    text += f" of {app}" if isinstance(app, str) and app else ""
    return text + (f" to {environment}" if isinstance(environment, str) and environment else "")


def call_line(client: DeploymentClient, result: CallResult) -> str:
    """One line: what was sent (never the key) and what Retrace answered."""
    sent = json.dumps(result.payload, ensure_ascii=False, separators=(", ", ": "))
    answer = f"HTTP {result.status}" + (f" {result.server_message}" if result.server_message else "")
    if result.recovered_from_conflict:
        answer += " (an earlier attempt had already been accepted)"
    attempts = "1 attempt" if result.attempts == 1 else f"{result.attempts} attempts"
    return f"{result.action}: sent {sent} to {client.settings.endpoint(result.action)} -> {answer} ({attempts}, {result.elapsed:.2f} s)"


def start_may_have_landed(error: RetraceError) -> bool:
    """True when a failed start may still have reached Retrace: some attempt got no answer, or a gateway's
    500/502/504 (:attr:`ApiUnreachable.may_have_landed`).  Refusals, TLS failures and refused connections had an
    answer or sent nothing."""
    return isinstance(error, ApiUnreachable) and bool(error.may_have_landed)


@dataclasses.dataclass
class Step:
    """What one engine call did: the target's new state, the line shown, and whether the run must stop."""

    state: str
    line: str | None = None
    fails_run: bool = False
    error: RetraceError | None = None
    call: CallResult | None = None


class Target:
    """One deployment of a run, and what this run did with it."""

    def __init__(self, deployment: Deployment | None, client: DeploymentClient | None, label: str,
                 problems: t.Sequence[RetraceError] = (), place: str | None = None, policy: TrackingPolicy | None = None):
        self.deployment = deployment
        self.client = client
        self.label = label
        #: why it cannot be recorded (settings missing or invalid): said at open, nothing is sent
        self.problems = list(problems)
        self.place = place
        #: its own strict, stale_start and orphan_guard (the settings of its hosts); None: the run's
        self.policy = policy
        #: the hosts this deployment covers, in the order they joined it (:meth:`DeploymentRun.target_for`)
        self.hosts: list[str] = []
        self.state = PENDING
        self.guard = _guard.OrphanGuard(None)
        #: True while its start is held to this process (:meth:`DeploymentRun.open`, a run's hosts one after another)
        self.serialized = False
        #: the actions Retrace accepted, in order
        self.sent: list[str] = []
        #: what happened besides, in words (for :meth:`told_retrace`)
        self.notes: list[str] = []

    @property
    def recordable(self) -> bool:
        return not self.problems

    def told_retrace(self, dry_run: bool = False) -> str:
        """What Retrace was told, in words, for the last line of a run that did not succeed."""
        if dry_run:
            return "nothing was sent to Retrace (dry run)"
        if self.state == JOINED:
            return "this run joined a deployment another run started, and sent no end"
        if self.notes and not self.sent:
            return f"Retrace was not told ({self.notes[-1]})"
        if not self.sent:
            return "Retrace was not told (the start was not accepted)"
        if self.sent[-1] == CANCEL:
            return "the deployment was cancelled in Retrace"
        if self.sent[-1] == COMPLETE:
            return "the deployment was completed in Retrace"
        if self.notes:
            return f"the deployment is left to Retrace as it is ({self.notes[-1]})"
        if self.guard.armed:
            return "the cancel did not get through: the orphan guard sends it once this process has exited"
        return "the cancel did not get through (see the warning above): the deployment is still in progress in Retrace"


class _Redacting:
    """The entry point's reporter, with every key of the run taken out of every line (a key given as an app name by
    mistake would be printed in ``deployment 1 of <key> to ...``)."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.keys: list = []

    def _redacted(self, line: str) -> str:
        for key in self.keys:
            line = key.redact(line)
        return line

    def info(self, line: str) -> None:
        self.reporter.info(self._redacted(line))

    def detail(self, line: str) -> None:
        self.reporter.detail(self._redacted(line))

    def warning(self, line: str) -> None:
        self.reporter.warning(self._redacted(line))

    def error(self, line: str) -> None:
        self.reporter.error(self._redacted(line))

    def debug(self, line: str) -> None:
        self.reporter.debug(self._redacted(line))


class Budget:
    """The time tracking may still add to a run: only the engine's own work is charged, not the deployment's."""

    def __init__(self, seconds: float | None, clock: t.Callable[[], float]):
        self.seconds = seconds
        self.spent = 0.0
        self._clock = clock

    def remaining(self) -> float | None:
        return None if self.seconds is None else self.seconds - self.spent

    @contextlib.contextmanager
    def charge(self) -> t.Iterator[None]:
        began = self._clock()
        try:
            yield
        finally:
            self.spent += self._clock() - began


class _CallsWithin:
    """A client whose calls (retries included) all end within ``seconds`` from now, together (None: no limit).

    Offers what the engine uses of a :class:`DeploymentClient`: ``settings`` and ``send``.
    """

    def __init__(self, client: DeploymentClient, seconds: float | None, clock: t.Callable[[], float], log):
        self.settings = client.settings
        self._client = client.replace(log=log)
        self._log = log
        self._until = None if seconds is None else clock() + seconds
        self._clock = clock

    def send(self, action: str, deployment: Deployment) -> CallResult:
        if self._until is None:
            return self._client.send(action, deployment)
        left = self._until - self._clock()
        if left < MINIMUM_CALL_TIME:
            raise ApiUnreachable("not sent: the time budget is spent", action=action, may_have_landed=False)
        deadline = min(self.settings.deadline, left)
        settings = dataclasses.replace(self.settings, deadline=deadline, timeout=min(self.settings.timeout, deadline))
        return self._client.replace(settings=settings, log=self._log).send(action, deployment)


class DeploymentRun:
    """The deployments of one run, opened and closed by the rules of :class:`TrackingPolicy`.

    ``owner_pid``: the process whose death the orphan guard watches (``ansible-playbook``, ``fab``); None for a
    single call (``fab retrace.start``, an ad-hoc module call), whose deployment is meant to outlive it: no guard.
    ``hosts_in_task``: how many hosts send this very start at once (a module task without ``run_once``): a 409 is
    then a sibling host's start.  ``workflow_job_id`` / ``job_id``: the controller (AWX) workflow and job this run
    is, whose sibling jobs (job slices) may start the same deployment on other machines.  ``place``: where this
    run is, for the ledger of what it started (a directory for single calls; this run for the module's tasks);
    None records nothing.  ``calls_are_tasks``: each call is the entry point's whole task (the module, single
    calls), so that with ``strict`` a failed cancel fails it too.  ``dry_run``: the reason nothing is sent
    (``"check mode"``, ``"--dry"``), or None.
    """

    def __init__(self, policy: TrackingPolicy, reporter: Reporter, *, owner_pid: int | None = None, hosts_in_task: int = 1,
                 workflow_job_id: str | None = None, job_id: str | None = None, place: str | None = None,
                 calls_are_tasks: bool = False, dry_run: str | None = None, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep):
        self.policy = policy
        #: the entry point's own reporter; the engine speaks through :attr:`reporter`, which redacts the run's keys
        self.lines = reporter
        self.reporter = _Redacting(reporter)
        self.owner_pid = owner_pid
        self.hosts_in_task = hosts_in_task
        self.workflow_job_id = workflow_job_id
        self.job_key = f"{workflow_job_id}-{job_id}" if workflow_job_id and job_id else None
        self.place = place
        self.calls_are_tasks = calls_are_tasks
        self.dry_run = dry_run
        self.clock = clock
        self.sleep = sleep
        self.budget = Budget(policy.time_budget, clock)
        self.targets: list[Target] = []
        self._by_identity: dict[tuple, Target] = {}
        #: the targets in the order they were opened: they end in the same order
        self._opened: list[Target] = []
        self._said: set[str] = set()

    # --- targets ---------------------------------------------------------------------------------------

    def target(self, resolved: "Resolved", transport: Transport, *, entry_point: str,
               name_fields: t.Mapping[str, t.Any] | None = None) -> Target:
        """The deployment ``resolved`` describes, with a client to send it; its problems if it cannot be sent.

        Unknown settings are said here, once per run.  Nothing is sent.
        """
        for unknown in resolved.unknown:
            self._say_once(self.reporter.warning, unknown.line())
        options = resolved.as_dict()
        problems: list[RetraceError] = list(resolved.problems)
        named = {problem.option for problem in problems if isinstance(problem, InvalidInput)}
        for option in REQUIRED_OPTIONS:
            if options.get(option) is None and option not in named:
                problems.append(resolved.missing(option))
        if not options.get("api_key") and not options.get("api_key_file") and not named & {"api_key", "api_key_file"}:
            problems.append(resolved.missing("api_key"))
        deployment = client = None
        if not problems:
            try:
                fields = {option: options.get(option) for option in DEPLOYMENT_OPTIONS}
                fields["name"] = deployment_name(options, name_fields)
                deployment = Deployment.create(**fields)
                settings = ApiSettings.create(**{name: options.get(name) for name in
                                                 ("api_key", "api_key_file", "api_url", "validate_certs", "timeout", "deadline")})
                client = DeploymentClient(settings, transport, entry_point=entry_point, log=self.reporter.debug, clock=self.clock,
                                          sleep=self.sleep)
                self.reporter.keys.append(settings.api_key)
            except InvalidInput as problem:
                problems.append(problem)
                deployment = client = None
        label = describe(deployment) if deployment is not None else describe_options(options)
        version_source = resolved.source_of("version")
        if deployment is not None and version_source is not None and version_source.trust == RECORDED:
            self.reporter.info(f"{label}: version {deployment.version}, {version_source.name}")
        if deployment is not None:
            for note in dict.fromkeys(source.notes[option] for source in resolved.sources for option in ("branch", "commit")
                                      if option in source.notes and options.get(option) is None):
                self._say_once(self.reporter.warning, f"{note} (branch and commit are not sent)")
            for source in resolved.sources:  # a record of earlier starts that could not be trusted: said even when unneeded
                if source.trust == RECORDED and "version" in source.notes:
                    self._say_once(self.reporter.warning, f"the versions earlier starts recorded are not used: {source.notes['version']}")
        return self.add(Target(deployment, client, label, problems, self.place))

    def target_for(self, host: str, resolved: "Resolved", transport: Transport, *, entry_point: str,
                   name_fields: t.Mapping[str, t.Any] | None = None) -> Target:
        """The target of ``host``: the deployment its resolved settings describe, shared with every host whose settings
        describe the same one (API URL, AppName, EnvironmentName, Version; the first host's other fields are sent).
        Its ``strict``, ``stale_start`` and ``orphan_guard`` are those of its first host's settings.

        Hosts whose settings cannot be recorded share one target per distinct set of problems; with more than one
        target in the run, its NOT recorded line names them.  Nothing is sent.
        """
        identity = _identity(resolved)
        target = self._by_identity.get(identity)
        if target is None:
            target = self._by_identity[identity] = self.target(resolved, transport, entry_point=entry_point,
                                                               name_fields=name_fields)
            target.policy = policy_of(resolved)
        if host not in target.hosts:
            target.hosts.append(host)
        return target

    def add(self, target: Target) -> Target:
        """Hold ``target`` in this run (:meth:`close_all` ends it with the others)."""
        self.targets.append(target)
        return target

    # --- open ------------------------------------------------------------------------------------------

    def open(self, target: Target, *, since: float | None = None) -> Step:
        """Start ``target``'s deployment.  ``since`` (a clock reading): the start's deadline counts from then.

        Not recordable, refused or unreachable: NOT recorded, one warning (strict: one error, and the Step says the
        run must stop before any deploy step).  The orphan guard is armed on :attr:`owner_pid` before the start is
        sent (a run killed while its start is in flight is cancelled too), and stood down if nothing landed.
        """
        if target not in self._opened:
            self._opened.append(target)
        if not target.recordable:
            target.state = NOT_RECORDED
            return self._not_recorded(target, f"{target.label} NOT recorded{self._for_hosts(target)}: "
                                              f"{_problems_text(target.problems)}", target.problems[0])
        self._warn_once_about_tls(target)
        if self.dry_run:
            target.state = STARTED
            return self._would(target, START)
        # The hosts of one module task (a worker process each) start one after another: the first one's accepted start
        # is then the others' own, with no 409 to read, nor a moment when two of them are in flight.
        with self._start_lock(target) as serialized:
            target.serialized = serialized
            earlier = self._recorded_state(target)
            if earlier in (_ledger.STARTED, _ledger.ENDING):
                # A start task of this very run that runs again (each batch of a serial play), or another host's.
                self._own_start(target)
                return Step(STARTED)
            if earlier == _ledger.ENDED and self.hosts_in_task > 1:
                target.state = ENDED_HERE  # another host of this task started and ended it already
                return self._close_nothing(target, START)
            return self._send_start(target, since)

    def _send_start(self, target: Target, since: float | None) -> Step:
        target.state = STARTING
        self._arm_guard(target)
        try:
            with self.budget.charge():
                result = self._start(target, since)
        except RetraceError as error:
            target.state = NOT_RECORDED
            # The end tasks of this run then send nothing, as every entry point sends no end for a start it did not
            # record: refused (a 409 included: someone else's deployment), never sent, or unanswered.
            self._remember(target, _ledger.UNANSWERED if start_may_have_landed(error) else _ledger.REFUSED)
            if not start_may_have_landed(error):
                # Nothing landed.  (No answer: the start may land after all, and the guard, never released, cancels it
                # once this run is over, instead of leaving it in progress for good.)
                self._stand_down(target)
            return self._not_recorded(target, f"{target.label} NOT recorded: start failed: {_hinted(error, self.hosts_in_task)}",
                                      error)
        if target.state == JOINED:
            self._stand_down(target)  # the job that started it ends it: this job's guard must never cancel it
            return Step(target.state, call=result)
        target.state = STARTED
        target.sent.append(START)
        self.reporter.detail(call_line(target.client, result))
        if self.job_key:
            _guard.forget_join(target.client.settings, target.deployment, self.job_key)
        self._remember(target)
        line = f"{target.label} started"
        self.reporter.info(line)
        return Step(STARTED, line, call=result)

    def _start(self, target: Target, since: float | None) -> CallResult | None:
        """Send start; 409s become a join, this run's own deployment, a recovery or a refusal.  Raises RetraceError."""
        # What the ends of the deployments open meanwhile need is kept: each open one takes an equal share of the rest.
        others_open = sum(1 for other in self.targets if other is not target and other.state in OPEN_STATES)
        calls = self._calls(target, START_SHARE / (1 + others_open), since)
        deployment = target.deployment
        try:
            result = calls.send(START, deployment)
        except BadTransition as conflict:
            if self.hosts_in_task > 1:
                raise  # not this run's (its record says so): someone else's; the run_once hint says what to fix
            holder = _guard.live_guard_owner(target.client.settings, deployment, excluding=self.owner_pid)
            if self.workflow_job_id and self.hosts_in_task == 1:
                target.state = JOINED
                if self.job_key:
                    _guard.remember_join(target.client.settings, deployment, self.job_key)
                self.reporter.info(joined_message(deployment, self.workflow_job_id))
                return None
            if holder is not None:
                raise BadTransition(f"{_sentence(conflict)} A live run on this machine (process {holder}) is deploying it "
                                    "now: it was not cancelled.", action=START, status=conflict.status,
                                    attempts=conflict.attempts, server_message=conflict.server_message) from None
            if self._policy(target).stale_start != "recover" or self.hosts_in_task > 1 or self.workflow_job_id:
                raise
            self.reporter.warning(f"{target.label} was left in progress by a run that ended without closing it "
                                  "(stale_start: recover): cancelling it and starting again")
            try:
                self.reporter.detail(call_line(target.client, calls.send(CANCEL, deployment)))
            except BadTransition:
                pass  # it ended meanwhile (its own guard's cancel landed first): nothing left to cancel
            result = calls.send(START, deployment)
        if result.recovered_from_conflict:
            # A 409 on a retry usually means our lost attempt landed; but if a live run on this machine holds the
            # deployment, the 409 was about its start, and this run must not end that deployment.
            holder = _guard.live_guard_owner(target.client.settings, deployment, excluding=self.owner_pid)
            if holder is not None:
                raise BadTransition(
                    f"Retrace refused to start {describe(deployment)} (HTTP 409 on attempt {result.attempts}): a live run on "
                    f"this machine (process {holder}) is deploying it now, so the 409 is about its start, not this one.",
                    action=START, status=result.status, attempts=result.attempts, server_message=result.server_message)
        return result

    def _arm_guard(self, target: Target) -> None:
        if not self._guarded(target):
            return
        why: list[str] = []
        with self.budget.charge():
            target.guard = _guard.arm_orphan_guard(target.client, target.deployment, owner_pid=self.owner_pid, log=why.append)
        if not target.guard.armed:
            self.reporter.warning(f"{why[-1] if why else 'orphan guard not armed'} for {target.label}: if this run is "
                                  "killed, the deployment stays in progress in Retrace until the next run of this version "
                                  "recovers it (see docs/lifecycle.md, \"The orphan guard\")")

    def _stand_down(self, target: Target) -> None:
        """Release the guard armed for a start that did not land, if it was armed here -- and, without the start lock,
        only for a task of one host: the hosts of a task without ``run_once`` share one watcher, and another host's
        start may have been accepted meanwhile."""
        if target.guard.created and (target.serialized or self.hosts_in_task == 1):
            with self.budget.charge():
                target.guard.release()
        target.guard = _guard.OrphanGuard(None)

    def _own_start(self, target: Target) -> None:
        """An earlier play batch (serial), task or host of this very run started it, and its guard is ours."""
        target.state = STARTED
        if self.owner_pid is not None:
            target.guard = _guard.orphan_guard_of(target.client.settings, target.deployment, self.owner_pid)
        if self.hosts_in_task > 1:
            self.reporter.warning(f"{target.label}: this task ran for {self.hosts_in_task} hosts, and each would send its own "
                                  "start: add 'run_once: true' to the task (hosts of several apps or environments: loop over what "
                                  "stackify.retrace.deployment_targets lists, with for_host), or use the "
                                  "stackify.retrace.tracked_deployment role")
        self.reporter.info(f"{target.label} is already in progress, started earlier by this run: nothing sent again")

    def _recorded_state(self, target: Target) -> str | None:
        """What this run (its place) recorded of its own starts of this very deployment, if it is a run's place."""
        if target.place is None or self.owner_pid is None:
            return None
        return _ledger.state_of(self._ledger_key(target), target.deployment.version, directory=ledger_directory(target.place))

    @contextlib.contextmanager
    def _start_lock(self, target: Target) -> t.Iterator[bool]:
        if target.place is None or self.owner_pid is None:
            yield False
            return
        with _ledger.start_lock(self._ledger_key(target), directory=ledger_directory(target.place)) as held:
            yield held

    # --- close -----------------------------------------------------------------------------------------

    def close(self, target: Target, *, succeeded: bool, reason: str | None = None, share: float = 1.0) -> Step:
        """Complete (``succeeded``) or cancel ``target``'s deployment, if this run holds it open.

        The guard stands down once Retrace answered, one way or the other.  A call that could not be delivered
        (unreachable, time budget spent) leaves it armed: it sends the same end again once this run is over.
        ``share``: of what is left of the time budget, the part this end may use (the others' ends need theirs).
        """
        action = COMPLETE if succeeded else CANCEL
        if target.state == PENDING and not target.recordable:
            # An end sent on its own (resumed, never opened) whose settings are missing or invalid: said as a start
            # would say it, NOT recorded and why; nothing is sent.
            return self.open(target)
        if target.state == JOINED:
            return self._close_joined(target, succeeded, reason)
        if target.state in (START_REFUSED, START_UNANSWERED, ENDED_HERE):
            return self._close_nothing(target, action)
        if target.state == STARTING:
            return self._close_interrupted_start(target)
        if target.state == COMPLETING:
            action = COMPLETE  # interrupted while completing: the work was done; never a cancel after it
        elif target.state != STARTED:
            return Step(target.state)
        if self.dry_run:
            target.state = COMPLETED if action == COMPLETE else CANCELLED
            return self._would(target, action)
        if target.state == STARTED and self._claim_end(target) not in (None, _ledger.STARTED):
            target.state = ENDED_HERE  # another host of this task (or process of this place) ended it meanwhile
            return self._close_nothing(target, action)
        target.state = COMPLETING if action == COMPLETE else CANCELLING
        with self.budget.charge():
            if action == COMPLETE and not target.guard.completing() and target.guard.armed and self._owner_gone():
                return self._left_to_the_watcher(target)
            try:
                result = self._calls(target, share).send(action, target.deployment)
            except RetraceError as error:
                self._end_sent(target, answered=not isinstance(error, ApiUnreachable))
                return self._end_failed(target, action, error)
            target.guard.release()
        target.state = COMPLETED if action == COMPLETE else CANCELLED
        target.sent.append(action)
        self.reporter.detail(call_line(target.client, result))
        self._end_sent(target, answered=True)
        line = f"{target.label} {PAST_TENSE[action]}" + (f": {reason}" if reason and action == CANCEL else "")
        self.reporter.info(line)
        return Step(target.state, line, call=result)

    def close_all(self, *, succeeded: bool, reason: str | None = None) -> list[Step]:
        """End every deployment this run holds open (a signal, an aborting error, the run's last event).

        A start that was in flight is cancelled; a complete that was in flight is sent again (never a cancel).
        Safe to call more than once, and from a signal handler while another call is in flight.
        """
        return self._close_each_of([target for target in list(self.targets) if target.state in OPEN_STATES or target.state == JOINED],
                                   lambda target: (succeeded, reason))

    def close_each(self, *, failed: t.Mapping[str, str], failed_for: t.Mapping[str, t.Collection[Target]] | None = None,
                   unfinished: str | None = None) -> list[Step]:
        """End each open deployment by what happened on its own hosts (:attr:`Target.hosts`): cancelled when one of them
        is in ``failed`` (host -> :data:`HOST_FAILED`, :data:`HOST_UNREACHABLE` or :data:`HOST_STOPPED`: another
        host's failure stopped it), the line naming them; completed otherwise.  A target without hosts completes.

        ``failed_for``: for a host of several deployments (a host in two plays that deploy two apps), the ones its
        failure was in; others are not cancelled for it.  ``unfinished``: the run did not finish (an error aborted it):
        the deployments none of whose hosts failed are cancelled too, for that reason.
        """
        def outcome(target: Target) -> tuple[bool, str | None]:
            own = {host: failed[host] for host in target.hosts
                   if host in failed and (failed_for is None or host not in failed_for or target in failed_for[host])}
            if own:
                return False, hosts_failure_reason(own)
            return (False, unfinished) if unfinished else (True, None)
        return self._close_each_of([target for target in list(self.targets) if target.state in OPEN_STATES or target.state == JOINED],
                                   outcome)

    def _close_each_of(self, targets: list[Target], outcome: t.Callable[[Target], tuple[bool, str | None]]) -> list[Step]:
        """Close ``targets`` one after another, in the order they were opened, each end given an equal share of what is
        left of the time budget."""
        opened = {id(target): position for position, target in enumerate(self._opened)}
        targets = sorted(targets, key=lambda target: opened.get(id(target), len(opened)))
        steps = []
        for done, target in enumerate(targets):
            succeeded, reason = outcome(target)
            steps.append(self.close(target, succeeded=succeeded, reason=reason, share=1 / (len(targets) - done)))
        return steps

    def resume(self, target: Target) -> Target:
        """``target`` as this run left it, where start and end are separate tasks (the module's end tasks).

        A deployment this controller job joined (:meth:`open` on a 409 in a workflow) is left to the job that started
        it.  Otherwise it is taken as started, with the guard :attr:`owner_pid` armed for it, if any.
        """
        if not target.recordable or target.state != PENDING:
            return target
        settings, deployment = target.client.settings, target.deployment
        if self.job_key and _guard.joined_in_job(settings, deployment, self.job_key):
            target.state = JOINED
            return target
        state = self._recorded_state(target)
        if state is not None and state != _ledger.STARTED:
            target.state = {_ledger.REFUSED: START_REFUSED, _ledger.UNANSWERED: START_UNANSWERED}.get(state, ENDED_HERE)
        else:
            target.state = STARTED
        if self.owner_pid is not None:
            target.guard = _guard.orphan_guard_of(settings, deployment, self.owner_pid)
        return target

    def _close_joined(self, target: Target, succeeded: bool, reason: str | None) -> Step:
        """End this job's part of a sibling's deployment: nothing is sent, the job that started it ends it.

        A cancel from here would end a live sibling's deployment, and could not even make a failure stick: the
        starter's complete after it is a one-shot "completed" deployment for Retrace.  So a failed part is said
        here and shows in the controller (the workflow fails), not in Retrace.
        """
        target.state = COMPLETED if succeeded else CANCELLED  # for this job: nothing more to do
        if succeeded:
            line = f"this job's part of {target.label} succeeded; the job that started it ends it: nothing sent"
        else:
            line = (f"this job's part of {target.label} failed" + (f" ({reason})" if reason else "") +
                    "; the job that started it ends the deployment, so this failure is not recorded in Retrace: nothing sent")
        self.reporter.info(line)
        return Step(JOINED, line)

    def _close_interrupted_start(self, target: Target) -> Step:
        """The start was interrupted mid-call and may or may not have landed: cancel it (409: it had not)."""
        target.state = CANCELLING
        try:
            result = self._calls(target).send(CANCEL, target.deployment)
        except BadTransition:
            target.state = NOT_RECORDED
            if target.guard.armed:
                window = target.client.settings.deadline + target.client.settings.timeout
                later = (f"the orphan guard cancels it if it lands within {window:g} s of this run's end; after that, the "
                         "next start of this version ends it (stale_start: recover)")
            else:
                later = "the next start of this version ends it (stale_start: recover)"
            target.notes.append("the start had not been processed when the cancel arrived: see the line above")
            line = (f"{target.label} NOT recorded: the run was stopped while its start was in flight, and the start had not"
                    f" been processed by Retrace when the cancel arrived; should it land later, {later}")
            self.reporter.info(line)
            return Step(NOT_RECORDED, line)
        except RetraceError as error:
            return self._end_failed(target, CANCEL, error)
        target.state = CANCELLED
        target.sent.extend((START, CANCEL))
        target.guard.release()
        self.reporter.detail(call_line(target.client, result))
        line = f"{target.label} cancelled: the run was stopped while its start was in flight"
        self.reporter.info(line)
        return Step(CANCELLED, line, call=result)

    def _end_failed(self, target: Target, action: str, error: RetraceError) -> Step:
        answered = not isinstance(error, ApiUnreachable)
        if answered:
            target.guard.release()  # refused: Retrace answered, the guard has nothing left to do
        target.state = END_FAILED
        said = str(error)
        if not answered and target.guard.armed:
            said = said.rstrip(". ") + "; the orphan guard sends it again once this run is over"
        else:
            said = (said.rstrip(". ") + "; Retrace shows the deployment in progress until its end is sent again, or the"
                    " next start of this version ends it (stale_start: recover)")
        line = f"{target.label}: the {action} was NOT recorded: {said}"
        target.notes.append(f"the {action} failed: see the warning above")
        # A failed cancel leaves the run failed already; only where the call is the whole task does strict fail it.
        fails = self._policy(target).strict and (action == COMPLETE or self.calls_are_tasks)
        (self.reporter.error if fails else self.reporter.warning)(line + (STRICT_SUFFIX if fails else ""))
        return Step(END_FAILED, line, fails_run=fails, error=error)

    # --- shared ----------------------------------------------------------------------------------------

    def _for_hosts(self, target: Target) -> str:
        """`` for web1, web2``: the hosts of a target, named where the run holds several."""
        return f" for {hosts_text(target.hosts)}" if target.hosts and len(self.targets) > 1 else ""

    def _policy(self, target: Target) -> TrackingPolicy:
        """The rules ``target`` is opened and closed by: its own hosts' settings (``strict`` in ``group_vars/api.yml``
        holds for the api hosts' deployment), else the run's."""
        return target.policy or self.policy

    def _not_recorded(self, target: Target, line: str, error: RetraceError) -> Step:
        if self._policy(target).strict:
            self.reporter.error(line + STRICT_SUFFIX)
            return Step(NOT_RECORDED, line, fails_run=True, error=error)
        self.reporter.warning(line + FAIL_OPEN_SUFFIX)
        return Step(NOT_RECORDED, line, error=error)

    def _would(self, target: Target, action: str) -> Step:
        request = target.client.request(action, target.deployment)
        line = (f"{target.label}: would send {action} {json.dumps(request['payload'], ensure_ascii=False)} to {request['url']} "
                f"({self.dry_run}: nothing sent)")
        self.reporter.info(line)
        return Step(target.state, line)

    def _calls(self, target: Target, share: float = 1.0, since: float | None = None) -> _CallsWithin:
        seconds = self.budget.remaining()
        if seconds is not None:
            seconds *= share
        if since is not None:
            # The start's deadline counts from ``since`` (fab deploy: the fabfile's import), never below half of it.
            deadline = target.client.settings.deadline
            elapsed_deadline = max(deadline - (self.clock() - since), deadline / 2)
            seconds = elapsed_deadline if seconds is None else min(seconds, elapsed_deadline)
        return _CallsWithin(target.client, seconds, self.clock, self.reporter.debug)

    def _guarded(self, target: Target) -> bool:
        return self._policy(target).orphan_guard and self.owner_pid is not None

    def _owner_gone(self) -> bool:
        return self.owner_pid is not None and not _guard.is_alive(self.owner_pid)

    def _left_to_the_watcher(self, target: Target) -> Step:
        """The guard was told nothing: its watcher no longer answers, because the run it watches is gone and it has
        taken over (a job killed while this process, one of its workers, was about to complete).  Its cancel is on its
        way: a complete from here could land after it, two opposite ends.  None is sent."""
        target.state = NOT_RECORDED
        line = f"{target.label}: no complete sent: the run ({self.owner_pid}) is gone, and its orphan guard sends the cancel"
        self.reporter.warning(line)
        return Step(NOT_RECORDED, line)

    def _close_nothing(self, target: Target, action: str) -> Step:
        """An end this place must not send: its start was refused or never answered, or it was ended already."""
        why = {START_REFUSED: "Retrace did not record its start (the warning then said why)",
               START_UNANSWERED: "its start got no answer and is not recorded; the orphan guard cancels it, should it have "
                                 "landed, once this run is over",
               ENDED_HERE: "this run ended it already" + (" (another host of this task)" if self.hosts_in_task > 1 else "")
                           if self.owner_pid is not None else "it was ended already from here"}[target.state]
        target.state = NOT_RECORDED
        line = f"{target.label}: no {action} sent: {why}"
        self.reporter.info(line)
        return Step(NOT_RECORDED, line)

    def _remember(self, target: Target, state: str = _ledger.STARTED) -> None:
        if target.place is None:
            return
        try:
            _ledger.remember_start(self._ledger_key(target), target.deployment.version, state=state,
                                   directory=ledger_directory(target.place))
        except OSError as error:
            where = ledger_directory(target.place) or _ledger.state_directory()
            self.reporter.warning(f"could not record the started version in {where}: {error.strerror or error} (an end sent "
                                  "later may then detect another version)")

    def _claim_end(self, target: Target) -> str | None:
        if target.place is None:
            return None
        return _ledger.claim_end(self._ledger_key(target), target.deployment.version, directory=ledger_directory(target.place))

    def _end_sent(self, target: Target, answered: bool) -> None:
        if target.place is not None:
            _ledger.end_sent(self._ledger_key(target), target.deployment.version, answered=answered,
                             directory=ledger_directory(target.place))

    @staticmethod
    def _ledger_key(target: Target) -> str:
        deployment = target.deployment
        return _ledger.place_key(target.client.settings.api_url, deployment.app_name, deployment.environment_name, target.place)

    def _warn_once_about_tls(self, target: Target) -> None:
        settings = target.client.settings
        if not settings.validate_certs and settings.api_url.startswith("https:"):
            self._say_once(self.reporter.warning, f"TLS certificate checks are off (validate_certs: false): anyone between this "
                                                  f"machine and {target.client.settings.api_url} can read the API key; use it "
                                                  "only for testing")

    def _say_once(self, say: t.Callable[[str], None], line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            say(line)


def policy_of(resolved: "Resolved") -> TrackingPolicy:
    """The run's :class:`TrackingPolicy` from its resolved settings (the resolver checked every value: an invalid one
    is its default there, and a problem); ``time_budget`` where the entry point has one (the callback)."""
    budget = resolved["time_budget"] if "time_budget" in resolved.options else None
    return TrackingPolicy(strict=resolved.strict, stale_start=resolved["stale_start"], orphan_guard=resolved["orphan_guard"],
                          time_budget=budget)


def started_from(place: str, description: str) -> "Fallback":
    """A :func:`._resolve.resolve` fallback: the version the last accepted start from ``place`` sent, for this API, app
    and environment -- so that an end sent later from the same place names the same deployment, even when ``git
    describe`` says otherwise by then (``v1.4.2`` became ``v1.4.2-dirty``).  ``description`` names it for users:
    ``"the one retrace.start sent from this directory"``.
    """
    def fallback(values: t.Mapping[str, t.Any]) -> "Source | None":
        app, environment = values.get("app_name"), values.get("environment_name")
        if values.get("version") is not None or not isinstance(app, str) or not isinstance(environment, str):
            return None
        url = values.get("api_url") if isinstance(values.get("api_url"), str) else DEFAULT_API_URL
        try:
            version = _ledger.started_version(_ledger.place_key(url, app, environment, place), directory=ledger_directory(place))
        except _ledger.UnsafeStateDirectory as refused:  # another user could have chosen that version: detection decides
            return Source(description, {}, RECORDED, notes={"version": str(refused)})
        return None if version is None else Source(description, {"version": version}, RECORDED)
    return fallback


RUN_PLACE_PREFIX = "run:"


def ledger_directory(place: str | None) -> str | None:
    """Where the record of ``place`` is kept: a run's tasks (``run:...``) in this user's private runtime directory, as
    long-lived as the run and never in a home that may be read-only (containers); single calls (a directory) in the
    user's state directory (None: :func:`._ledger.state_directory`), to outlive the command."""
    if place is None or not place.startswith(RUN_PLACE_PREFIX):
        return None
    try:
        return _guard.private_directory()
    except OSError:
        return None


def process_place(pid: int) -> str:
    """``run:<pid>:<start time>``: one process (an ``ansible-playbook`` run) as a ledger place, never confused with a
    later process that reuses the pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            started = stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        started = "?"
    return f"{RUN_PLACE_PREFIX}{pid}:{started}"


def joined_message(deployment: Deployment, workflow_job_id: str) -> str:
    """What a job of a controller workflow says when its start is answered 409: it joins the deployment in progress.

    Usually a sibling slice started it; but nothing tells this job who did (Retrace has no read endpoint): a job of an
    earlier workflow, or one that died, leaves the same answer.  So the line says what is known, and docs/awx.md
    (Workflows) says what to do when no job of this workflow is running it.
    """
    return (f"{describe(deployment)} is already in progress: started by another job, e.g. a sibling slice of "
            f"workflow {workflow_job_id}; this job joins it and sends no end")


def describes_a_deployment(resolved: "Resolved") -> bool:
    """True when ``resolved`` has no problem and gives the key, app, environment and version: a deployment
    :meth:`DeploymentRun.target` can record (it may still fail to build, on a value the wire refuses)."""
    options = resolved.as_dict()
    return (not resolved.problems and all(options.get(option) is not None for option in REQUIRED_OPTIONS)
            and bool(options.get("api_key") or options.get("api_key_file")))


def hosts_text(names: t.Sequence[str]) -> str:
    """``web1, web2 and 3 more``: up to :data:`HOSTS_SHOWN` host names."""
    shown = ", ".join(names[:HOSTS_SHOWN])
    return shown + (f" and {len(names) - HOSTS_SHOWN} more" if len(names) > HOSTS_SHOWN else "")


def hosts_failure_reason(what_happened: t.Mapping[str, str]) -> str:
    """``failed on web1; unreachable: db1``: why a deployment is cancelled, from what happened on each of its hosts
    that did not succeed.  Hosts stopped by another host's failure are named only when none of its own failed:
    ``stopped on api1, api2 (another host's failure ended the run there)``."""
    def on(state: str) -> list[str]:
        return sorted(host for host, happened in what_happened.items() if happened == state)
    parts = []
    if on(HOST_FAILED):
        parts.append(f"failed on {hosts_text(on(HOST_FAILED))}")
    if on(HOST_UNREACHABLE):
        parts.append(f"unreachable: {hosts_text(on(HOST_UNREACHABLE))}")
    if on(HOST_STOPPED) and not parts:
        parts.append(f"stopped on {hosts_text(on(HOST_STOPPED))} (another host's failure ended the run there)")
    return "; ".join(parts)


def _identity(resolved: "Resolved") -> tuple:
    """What makes two hosts' settings one deployment: the account (API URL and key), AppName, EnvironmentName and
    Version -- and, for settings that cannot be recorded, the same problems.  The key only as a digest, kept nowhere."""
    options = resolved.as_dict()
    url = options.get("api_url") if isinstance(options.get("api_url"), str) else DEFAULT_API_URL
    key = options.get("api_key")
    key = key.reveal() if hasattr(key, "reveal") else key
    account = hashlib.sha256(f"{key}\n{options.get('api_key_file')}".encode("utf-8")).hexdigest()
    fields = tuple(str(options.get(name)) for name in REQUIRED_OPTIONS)
    return (url.rstrip("/"), account, *fields, tuple(str(problem) for problem in resolved.problems))


def _problems_text(problems: t.Sequence[RetraceError]) -> str:
    """Every problem: a user who fixes three settings must not meet a fourth only then."""
    return "; ".join(str(problem) for problem in problems)


def _sentence(error: RetraceError) -> str:
    text = str(error).rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _hinted(error: RetraceError, hosts_in_task: int) -> str:
    """The error, with the ``run_once`` hint when several hosts of one task each sent the start."""
    if isinstance(error, BadTransition) and error.action == START and hosts_in_task > 1:
        return (f"{_sentence(error)} This task ran for {hosts_in_task} hosts, and each sent its own start: add "
                "'run_once: true' to the task (hosts of several apps or environments: loop over what "
                "stackify.retrace.deployment_targets lists, with for_host), or use the stackify.retrace.tracked_deployment role.")
    return str(error)
