"""The run engine (plugins/module_utils/_run.py), once for every entry point: a real client over a scripted
transport, a fake clock, and a recording stand-in for the orphan guard (tests/integration/core drives the real one).
"""

from __future__ import annotations

import dataclasses
import os
import types

import pytest

from ansible_collections.stackify.retrace.plugins.module_utils import _run
from ansible_collections.stackify.retrace.plugins.module_utils._resolve import ENVIRONMENT, PROJECT, VARIABLES, Source, resolve
from ansible_collections.stackify.retrace.plugins.module_utils.settings import OPTIONS, TrackingPolicy
from ansible_collections.stackify.retrace.plugins.module_utils.transport import ConnectionFailed, Response, TimedOut

URL = "http://127.0.0.1:9"
SETTINGS = {"api_key": "unit-test-key-0123", "api_url": URL, "app_name": "Shop", "environment_name": "Production", "version": "7",
            "timeout": 1, "deadline": 5}


class Clock:
    """Time that only moves when the client sleeps or an answer takes time."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ScriptedTransport:
    """Answers each action from its script (a status, or an exception to raise); 202 when the script is empty."""

    def __init__(self, clock, **scripts):
        self.clock = clock
        self.scripts = {action: list(answers) for action, answers in scripts.items()}
        self.sent = []

    def post(self, url, body, headers, timeout):
        action = url.rsplit("/", 1)[1]
        self.sent.append(action)
        answers = self.scripts.get(action) or [202]
        answer = answers.pop(0) if len(answers) > 1 or action not in self.scripts else answers[0]
        if isinstance(answer, Exception):
            if isinstance(answer, TimedOut):
                self.clock.sleep(timeout)
            raise answer
        return Response(answer, {}, b"")


class Guards:
    """Stands in for the _guard module: records arming, completing and release; says who holds what."""

    def __init__(self, holder=None, arms=True):
        self.events = []
        self.holder = holder
        self.arms = arms
        self.joins = set()
        self.armed_for = set()
        self.watcher_answers = True
        self.owner_alive = True

    def _handle(self, owner, created=True):
        guards = self

        class Handle:
            armed = guards.arms

            def completing(self):
                guards.events.append(("completing", owner))
                return guards.watcher_answers

            def release(self):
                guards.events.append(("release", owner))

        return Handle()

    def arm_orphan_guard(self, client, deployment, *, owner_pid=None, log=None):
        self.events.append(("arm", owner_pid))
        handle = self._handle(owner_pid)
        handle.created = owner_pid not in self.armed_for
        self.armed_for.add(owner_pid)
        if not self.arms:
            log("orphan guard not armed (not a private directory)")
        return handle

    def orphan_guard_of(self, settings, deployment, owner_pid):
        return self._handle(owner_pid)

    def live_guard_owner(self, settings, deployment, excluding=None):
        return None if self.holder == excluding else self.holder

    def remember_join(self, settings, deployment, job):
        self.joins.add(job)

    def forget_join(self, settings, deployment, job):
        self.joins.discard(job)

    def joined_in_job(self, settings, deployment, job):
        return job in self.joins

    OrphanGuard = None  # set in the fixture


class Lines:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda line: self.lines.append((level, line))

    def at(self, level):
        return [line for found, line in self.lines if found == level]


@pytest.fixture
def guards(monkeypatch, tmp_path):
    fake = Guards()
    fake.directory = str(tmp_path / "runtime")
    os.makedirs(fake.directory, mode=0o700)
    real = _run._guard
    fake_module = types.SimpleNamespace(**{name: getattr(fake, name) for name in
                                           ("arm_orphan_guard", "orphan_guard_of", "live_guard_owner", "remember_join",
                                            "forget_join", "joined_in_job")}, OrphanGuard=real.OrphanGuard,
                                        is_alive=lambda pid: fake.owner_alive,
                                        private_directory=lambda: fake.directory)
    monkeypatch.setattr(_run, "_guard", fake_module)
    return fake


def make_run(guards, *, policy=TrackingPolicy(), settings=None, scripts=None, owner_pid=4242, **context):
    clock = Clock()
    transport = ScriptedTransport(clock, **(scripts or {}))
    lines = Lines()
    run = _run.DeploymentRun(policy, lines, owner_pid=owner_pid, clock=clock, sleep=clock.sleep, **context)
    resolved = resolve([Source("test settings", {**SETTINGS, **(settings or {})}, PROJECT)])
    target = run.target(resolved, transport, entry_point="test")
    return run, target, transport, lines


def test_success_starts_arms_the_guard_completes_and_releases_it(guards):
    run, target, transport, lines = make_run(guards)
    assert run.open(target).state == _run.STARTED
    step = run.close(target, succeeded=True)
    assert step.state == _run.COMPLETED and transport.sent == ["start", "complete"]
    assert guards.events == [("arm", 4242), ("completing", 4242), ("release", 4242)]
    assert lines.at("info") == ["deployment 7 of Shop to Production started", "deployment 7 of Shop to Production completed"]
    assert lines.at("warning") == []


def test_failure_cancels_with_the_reason(guards):
    run, target, transport, lines = make_run(guards)
    run.open(target)
    step = run.close(target, succeeded=False, reason="failed on web1")
    assert step.state == _run.CANCELLED and transport.sent == ["start", "cancel"]
    assert lines.at("info")[-1] == "deployment 7 of Shop to Production cancelled: failed on web1"
    assert ("completing", 4242) not in guards.events and guards.events[-1] == ("release", 4242)


@pytest.mark.parametrize("strict", [False, True])
def test_a_missing_setting_is_not_recorded_and_names_the_fix(guards, strict):
    run, target, transport, lines = make_run(guards, policy=TrackingPolicy(strict=strict), settings={"api_key": None})
    step = run.open(target)
    assert step.state == _run.NOT_RECORDED and step.fails_run is strict and transport.sent == []
    line = (lines.at("error") if strict else lines.at("warning"))[0]
    assert "deployment 7 of Shop to Production NOT recorded: api_key: is not set" in line
    assert ("strict: the run stops" in line) is strict
    assert run.close(target, succeeded=True).state == _run.NOT_RECORDED and transport.sent == []


def test_a_key_of_the_wrong_kind_is_named_once_not_also_as_missing(guards):
    sources = [Source("the play's variables", {"api_key": {"vaulted": "?"}}, VARIABLES),
               Source("the environment", {"app_name": "Shop", "environment_name": "Production", "version": "7"}, ENVIRONMENT)]
    run = _run.DeploymentRun(TrackingPolicy(), lines := Lines(), owner_pid=1)
    run.open(run.target(resolve(sources), ScriptedTransport(Clock()), entry_point="test"))
    (line,) = lines.at("warning")
    assert "NOT recorded: api_key: must be a string, got dict (from the play's variables)" in line
    assert "is not set" not in line


def test_a_missing_version_says_how_to_set_it_from_each_source(guards):
    sources = [Source("extra vars", {}, VARIABLES, "-e retrace_{option}=..."),
               Source("the environment", {"api_key": "k", "app_name": "Shop", "environment_name": "Production"}, ENVIRONMENT),
               Source("git", {}, "detected", notes={"version": "git refused /srv/app (dubious ownership): run git config "
                                                               "--global --add safe.directory /srv/app"})]
    run = _run.DeploymentRun(TrackingPolicy(), lines := Lines(), owner_pid=1)
    target = run.target(resolve(sources), ScriptedTransport(Clock()), entry_point="test")
    run.open(target)
    (line,) = lines.at("warning")
    assert line.startswith("deployment of Shop to Production NOT recorded: version: is not set (git refused /srv/app")
    assert "safe.directory /srv/app): set it with -e retrace_version=... or RETRACE_VERSION" in line


def test_unknown_settings_are_said_once_and_the_run_is_recorded(guards):
    from ansible_collections.stackify.retrace.plugins.module_utils._resolve import unknown_settings
    unknown = unknown_settings(["retrace_stirct", "retrace_version"], "the play's variables", OPTIONS, prefix="retrace_")
    run = _run.DeploymentRun(TrackingPolicy(), lines := Lines(), owner_pid=1)
    for _attempt in range(2):
        target = run.target(resolve([Source("s", SETTINGS, PROJECT)], unknown=unknown), ScriptedTransport(Clock()),
                            entry_point="test")
    assert lines.at("warning") == ["unknown setting 'retrace_stirct' in the play's variables (did you mean retrace_strict?): it is ignored"]
    assert run.open(target).state == _run.STARTED


def test_strict_holds_when_another_setting_is_invalid(guards):
    run, target, transport, lines = make_run(guards, settings={"strict": "true", "deadline": "abc"})
    # the policy comes from the same resolution: an entry point builds it from Resolved.strict
    assert run.policy.strict is False
    resolved = resolve([Source("s", {**SETTINGS, "strict": "true", "deadline": "abc"}, PROJECT)])
    assert resolved.strict is True and [problem.option for problem in resolved.problems] == ["deadline"]


def test_an_invalid_strict_value_counts_as_strict():
    resolved = resolve([Source("s", {**SETTINGS, "strict": "ture"}, PROJECT)])
    assert resolved.strict is True
    assert [str(problem) for problem in resolved.problems] == ["strict: must be true or false, got 'ture' (from s)"]


@pytest.mark.parametrize("strict", [False, True])
def test_a_start_that_never_landed_stands_its_guard_down(guards, strict):
    """The guard is armed before the start is sent (a run killed while it is in flight is cancelled too); a start
    refused, or never sent, releases it."""
    refused = ConnectionFailed("connection refused")
    run, target, transport, lines = make_run(guards, policy=TrackingPolicy(strict=strict), scripts={"start": [refused]})
    step = run.open(target)
    assert step.state == _run.NOT_RECORDED and step.fails_run is strict
    assert guards.events == [("arm", 4242), ("release", 4242)]
    assert "NOT recorded: start failed: Retrace API at http://127.0.0.1:9 unreachable" in (lines.at("error") + lines.at("warning"))[0]


def test_a_start_that_may_have_landed_arms_a_guard_that_is_never_released(guards):
    run, target, transport, lines = make_run(guards, scripts={"start": [TimedOut("no answer")]})
    assert run.open(target).state == _run.NOT_RECORDED
    assert guards.events == [("arm", 4242)]
    run.close(target, succeeded=True)
    assert guards.events == [("arm", 4242)] and transport.sent.count("complete") == 0


def test_stale_start_is_cancelled_and_started_again_once(guards):
    run, target, transport, lines = make_run(guards, scripts={"start": [409, 202]})
    assert run.open(target).state == _run.STARTED
    assert transport.sent == ["start", "cancel", "start"]
    assert "left in progress by a run that ended without closing it" in lines.at("warning")[0]


def test_stale_start_fail_refuses(guards):
    run, target, transport, lines = make_run(guards, policy=TrackingPolicy(stale_start="fail"), scripts={"start": [409]})
    assert run.open(target).state == _run.NOT_RECORDED and transport.sent == ["start"]


def test_a_live_run_on_this_machine_is_never_cancelled(guards):
    guards.holder = 999
    run, target, transport, lines = make_run(guards, scripts={"start": [409]})
    assert run.open(target).state == _run.NOT_RECORDED and transport.sent == ["start"]
    assert "A live run on this machine (process 999) is deploying it now: it was not cancelled." in lines.at("warning")[0]


def test_this_runs_own_earlier_start_is_recognised(guards):
    """An earlier play batch of this run (serial) started it: the run's record says so; nothing is sent again."""
    first, target, transport, lines = make_run(guards, place="run:4242:1", calls_are_tasks=True)
    assert first.open(target).state == _run.STARTED
    run, target, transport, lines = make_run(guards, place="run:4242:1", calls_are_tasks=True)
    assert run.open(target).state == _run.STARTED and transport.sent == []
    assert lines.at("warning") == [] and "started earlier by this run" in lines.at("info")[0]
    run.close(target, succeeded=True)
    assert transport.sent == ["complete"] and guards.events[-1] == ("release", 4242)


def test_its_own_guard_is_never_taken_for_another_live_run(guards):
    """The guard is armed before the start: a 409 then meets this run's own watcher, which is no live sibling."""
    guards.holder = 4242
    run, target, transport, lines = make_run(guards, scripts={"start": [409, 202]})
    assert run.open(target).state == _run.STARTED and transport.sent == ["start", "cancel", "start"]


def test_a_workflow_job_joins_and_sends_no_end(guards):
    run, target, transport, lines = make_run(guards, scripts={"start": [409]}, workflow_job_id="70", job_id="71")
    assert run.open(target).state == _run.JOINED and guards.joins == {"70-71"}
    assert run.close(target, succeeded=False, reason="failed on web1").state == _run.JOINED
    assert transport.sent == ["start"] and lines.at("warning") == []
    assert "this job's part of deployment 7 of Shop to Production failed (failed on web1)" in lines.at("info")[-1]


def test_a_joined_job_resumed_in_a_later_task_sends_nothing(guards):
    guards.joins.add("70-71")
    run, target, transport, lines = make_run(guards, workflow_job_id="70", job_id="71")
    run.resume(target)
    assert run.close(target, succeeded=True).state == _run.JOINED and transport.sent == []


def test_several_hosts_starting_at_once_get_the_run_once_hint(guards):
    run, target, transport, lines = make_run(guards, scripts={"start": [409]}, hosts_in_task=2)
    assert run.open(target).state == _run.NOT_RECORDED and transport.sent == ["start"]
    assert "add 'run_once: true' to the task" in lines.at("warning")[0]


@pytest.mark.parametrize("answer, released", [(ConnectionFailed("connection refused"), False), (409, True)])
def test_the_guard_stands_down_only_when_retrace_answered_the_end(guards, answer, released):
    run, target, transport, lines = make_run(guards, scripts={"complete": [answer]})
    run.open(target)
    step = run.close(target, succeeded=True)
    assert step.state == _run.END_FAILED and not step.fails_run
    assert (("release", 4242) in guards.events) is released
    assert ("the orphan guard sends it again" in lines.at("warning")[0]) is not released
    # Refused, nobody sends it again: the line says how the deployment gets its end.
    assert ("in progress until its end is sent again, or the next start of this version ends it" in lines.at("warning")[0]) is released


def test_strict_fails_the_run_on_a_failed_complete_but_not_on_a_failed_cancel(guards):
    for succeeded, fails in ((True, True), (False, False)):
        run, target, transport, lines = make_run(guards, policy=TrackingPolicy(strict=True),
                                                 scripts={"complete": [401], "cancel": [401]})
        run.open(target)
        assert run.close(target, succeeded=succeeded).fails_run is fails


def test_the_time_budget_is_shared_and_the_start_keeps_some_for_the_end(guards):
    hang = TimedOut("no answer")
    run, target, transport, lines = make_run(guards, policy=TrackingPolicy(time_budget=3), scripts={"start": [hang]},
                                             settings={"deadline": 30, "timeout": 10})
    clock = run.clock
    began = clock()
    assert run.open(target).state == _run.NOT_RECORDED
    assert clock() - began <= 2 + 0.01  # two thirds of the budget
    assert run.budget.remaining() >= 1 - 0.01


def test_a_spent_budget_sends_nothing(guards):
    run, target, transport, lines = make_run(guards, policy=TrackingPolicy(time_budget=1))
    run.open(target)
    run.budget.spent = 1
    step = run.close(target, succeeded=True)
    assert step.state == _run.END_FAILED and transport.sent == ["start"] and "time budget is spent" in lines.at("warning")[0]


def test_close_all_cancels_an_interrupted_start_and_resends_an_interrupted_complete(guards):
    run, target, transport, lines = make_run(guards)
    target.state = _run.STARTING  # as a signal handler finds it, the start's answer not read yet
    run.close_all(succeeded=False, reason="SIGTERM")
    assert transport.sent == ["cancel"] and target.state == _run.CANCELLED
    run, target, transport, lines = make_run(guards)
    run.open(target)
    target.state = _run.COMPLETING
    run.close_all(succeeded=False, reason="SIGTERM")
    assert transport.sent == ["start", "complete"]
    assert run.close_all(succeeded=False) == []  # nothing left open: a second call sends nothing


def test_an_interrupted_start_that_had_not_landed_leaves_nothing_in_progress(guards):
    run, target, transport, lines = make_run(guards, scripts={"cancel": [409]})
    target.state = _run.STARTING
    run.close_all(succeeded=False)
    assert target.told_retrace() == "Retrace was not told (the start had not been processed when the cancel arrived: see the line above)"
    assert [line for line in lines.at("info") if "NOT recorded: the run was stopped while its start was in flight" in line], lines.at("info")


def test_several_deployments_in_one_run_end_each_by_its_own_outcome(guards):
    clock = Clock()
    transport = ScriptedTransport(clock)
    run = _run.DeploymentRun(TrackingPolicy(), lines := Lines(), owner_pid=7, clock=clock, sleep=clock.sleep)
    web = run.target(resolve([Source("s", {**SETTINGS, "app_name": "Shop.Web"}, PROJECT)]), transport, entry_point="t")
    api = run.target(resolve([Source("s", {**SETTINGS, "app_name": "Shop.Api"}, PROJECT)]), transport, entry_point="t")
    run.open(web)
    run.open(api)
    run.close(api, succeeded=False, reason="failed on api1")
    run.close_all(succeeded=True)
    assert transport.sent == ["start", "start", "cancel", "complete"]
    assert lines.at("info")[-2:] == ["deployment 7 of Shop.Api to Production cancelled: failed on api1",
                                     "deployment 7 of Shop.Web to Production completed"]


def several_targets_run(guards, policy=TrackingPolicy(), **scripts):
    clock = Clock()
    transport = ScriptedTransport(clock, **scripts)
    run = _run.DeploymentRun(policy, lines := Lines(), owner_pid=7, clock=clock, sleep=clock.sleep)

    def host(host_name, **settings):
        return run.target_for(host_name, resolve([Source("s", {**SETTINGS, **settings}, PROJECT)]), transport, entry_point="t")
    return run, host, transport, lines


def test_hosts_with_the_same_deployment_share_one_target(guards):
    run, host, transport, lines = several_targets_run(guards)
    web1, web2 = host("web1", app_name="Shop.Web"), host("web2", app_name="Shop.Web", name="another name")
    api1 = host("api1", app_name="Shop.Api")
    staging = host("web3", app_name="Shop.Web", environment_name="Staging")
    assert web1 is web2 and web1.hosts == ["web1", "web2"]
    assert len({id(web1), id(api1), id(staging)}) == 3 and run.targets == [web1, api1, staging]
    assert host("web1", app_name="Shop.Web").hosts == ["web1", "web2"]  # asked again: not added twice


def test_each_target_ends_by_what_happened_on_its_own_hosts(guards):
    run, host, transport, lines = several_targets_run(guards)
    web, api = host("web1", app_name="Shop.Web"), host("api1", app_name="Shop.Api")
    host("api2", app_name="Shop.Api")
    run.open(web)
    run.open(api)
    steps = run.close_each(failed={"api2": _run.HOST_FAILED, "api1": _run.HOST_STOPPED, "elsewhere": _run.HOST_FAILED})
    assert [step.state for step in steps] == [_run.COMPLETED, _run.CANCELLED]
    assert transport.sent == ["start", "start", "complete", "cancel"]
    assert lines.at("info")[-2:] == ["deployment 7 of Shop.Web to Production completed",
                                     "deployment 7 of Shop.Api to Production cancelled: failed on api2"]
    assert run.close_all(succeeded=False) == []  # each ended exactly once


def test_the_cancel_reason_names_five_hosts_of_each_kind_and_stopped_hosts_only_when_none_failed():
    happened = {f"web{n}": _run.HOST_FAILED for n in range(7)} | {"db1": _run.HOST_UNREACHABLE, "db2": _run.HOST_STOPPED}
    assert _run.hosts_failure_reason(happened) == "failed on web0, web1, web2, web3, web4 and 2 more; unreachable: db1"
    assert _run.hosts_failure_reason({"api1": _run.HOST_STOPPED, "api2": _run.HOST_STOPPED}) == (
        "stopped on api1, api2 (another host's failure ended the run there)")


def test_a_target_that_cannot_be_recorded_names_its_hosts_and_the_others_are_tracked(guards):
    run, host, transport, lines = several_targets_run(guards)
    web = host("web1", app_name="Shop.Web")
    broken = host("api3", app_name=None)
    assert host("api4", app_name=None) is broken and not broken.recordable
    assert run.open(broken).state == _run.NOT_RECORDED
    assert run.open(web).state == _run.STARTED
    assert len(lines.at("warning")) == 1, lines.at("warning")
    assert lines.at("warning")[0].startswith("deployment 7 to Production NOT recorded for api3, api4: app_name: is not set")
    assert transport.sent == ["start"]
    run.close_each(failed={"api3": _run.HOST_FAILED})
    assert transport.sent == ["start", "complete"]


def test_a_signal_ends_every_open_target_once_including_a_start_in_flight(guards):
    run, host, transport, lines = several_targets_run(guards)
    web, api = host("web1", app_name="Shop.Web"), host("api1", app_name="Shop.Api")
    run.open(web)
    api.state = _run.STARTING  # interrupted while its start was on the wire
    run.close_all(succeeded=False, reason="the run was stopped by SIGTERM")
    assert transport.sent == ["start", "cancel", "cancel"]
    assert run.close_all(succeeded=False) == [] and run.close_each(failed={}) == []


def test_many_targets_against_a_hanging_api_stay_within_the_time_budget(guards):
    hang = TimedOut("no answer")
    run, host, transport, lines = several_targets_run(guards, policy=TrackingPolicy(time_budget=10),
                                                      complete=[hang], cancel=[hang])
    targets = [host(f"h{n}", app_name=f"App{n}") for n in range(5)]
    for target in targets:
        target.client = target.client.replace(settings=dataclasses.replace(target.client.settings, deadline=30, timeout=10))
    began = run.clock()
    for target in targets:
        assert run.open(target).state == _run.STARTED
    run.close_each(failed={})
    assert run.clock() - began <= 10 + 0.01
    assert run.budget.remaining() >= -0.01
    # each end had its own share: none was left unsent because an earlier one took the whole budget
    assert transport.sent.count("complete") >= 5


def test_a_later_start_keeps_time_for_the_ends_of_the_deployments_already_open(guards):
    hang = TimedOut("no answer")
    run, host, transport, lines = several_targets_run(guards, policy=TrackingPolicy(time_budget=9), start=[202, hang])
    first, second = host("h1", app_name="App1"), host("h2", app_name="App2")
    second.client = second.client.replace(settings=dataclasses.replace(second.client.settings, deadline=30, timeout=10))
    run.open(first)
    began = run.clock()
    assert run.open(second).state == _run.NOT_RECORDED
    assert run.clock() - began <= 9 * _run.START_SHARE / 2 + 0.01  # half of two thirds: the first one's end keeps its part


def test_dry_run_sends_nothing_and_says_what_it_would_send(guards):
    run, target, transport, lines = make_run(guards, dry_run="check mode")
    run.open(target)
    run.close(target, succeeded=True)
    assert transport.sent == [] and guards.events == []
    assert lines.at("info")[0].startswith('deployment 7 of Shop to Production: would send start {"Name": "7", "Version": "7"')
    assert lines.at("info")[0].endswith("(check mode: nothing sent)")


def test_tls_checks_off_are_said_once_per_run(guards):
    run, target, transport, lines = make_run(guards, settings={"validate_certs": False, "api_url": "https://127.0.0.1:9"})
    run.open(target)
    again = {**SETTINGS, "validate_certs": False, "api_url": "https://127.0.0.1:9", "app_name": "Other"}
    run.open(run.target(resolve([Source("s", again, PROJECT)]), transport, entry_point="t"))
    plain = make_run(guards, settings={"validate_certs": False})  # plain http (loopback): no TLS to check
    plain[0].open(plain[1])
    assert len([line for line in lines.at("warning") + plain[3].at("warning") if "validate_certs: false" in line]) == 1


def test_a_guard_that_cannot_be_armed_is_said_at_the_default_level(guards):
    guards.arms = False
    run, target, transport, lines = make_run(guards)
    run.open(target)
    assert lines.at("warning") == [lines.at("warning")[0]] and "orphan guard not armed" in lines.at("warning")[0]


def test_single_calls_arm_no_guard(guards):
    run, target, transport, lines = make_run(guards, owner_pid=None)
    run.open(target)
    run.close(target, succeeded=True)
    assert guards.events == [] and transport.sent == ["start", "complete"]


def test_key_from_the_environment_never_goes_to_a_url_from_variables():
    environ = {"RETRACE_API_KEY": "k"}
    sources = [Source("extra vars", {"api_url": "https://evil.example"}, VARIABLES),
               Source("the environment", {"api_key": "k"}, ENVIRONMENT)]
    (problem,) = resolve(sources, environ=environ).problems
    assert problem.option == "api_url" and "https://evil.example (from extra vars) is refused" in str(problem)
    trusted = [Source("ansible.cfg", {"api_url": "https://other.example"}, PROJECT), sources[1]]
    assert resolve(trusted, environ=environ).problems == []
    same = [Source("extra vars", {"api_url": "https://API.stackify.net:443/"}, VARIABLES), sources[1]]
    assert resolve(same, environ=environ).problems == []


def test_an_end_sent_on_its_own_after_a_refused_start_from_the_same_place_sends_nothing(guards, tmp_path, monkeypatch):
    """The module's completed task after its started task got 401: no complete (refused too, or a one-shot record of a
    deployment Retrace never saw start); a start that may have landed is not such a start (its end is sent)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    run, target, transport, lines = make_run(guards, scripts={"start": [401]}, place="run:1:1", calls_are_tasks=True)
    assert run.open(target).state == _run.NOT_RECORDED
    end_run, end, end_transport, end_lines = make_run(guards, place="run:1:1", calls_are_tasks=True)
    assert os.listdir(guards.directory) == ["started.json", "started.json.lock"] or "started.json" in os.listdir(guards.directory)
    end_run.resume(end)
    assert end_run.close(end, succeeded=True).state == _run.NOT_RECORDED and end_transport.sent == []
    assert "no complete sent: Retrace did not record its start" in end_lines.at("info")[0]
    # accepted later in the same run (a retried task): its end is sent
    again, target, transport, lines = make_run(guards, place="run:1:1", calls_are_tasks=True)
    again.open(target)
    end_run, end, end_transport, end_lines = make_run(guards, place="run:1:1", calls_are_tasks=True)
    end_run.resume(end)
    end_run.close(end, succeeded=True)
    assert end_transport.sent == ["complete"]


def test_a_worker_whose_run_is_gone_and_whose_watcher_took_over_sends_no_complete(guards):
    """A job killed as one of its workers completes: the watcher no longer answers ``completing`` (it is sending its
    cancel); a complete from the worker would land after that cancel."""
    run, target, transport, lines = make_run(guards)
    run.open(target)
    guards.watcher_answers, guards.owner_alive = False, False
    assert run.close(target, succeeded=True).state == _run.NOT_RECORDED
    assert transport.sent == ["start"]
    assert lines.at("warning") == ["deployment 7 of Shop to Production: no complete sent: the run (4242) is gone, and its "
                                   "orphan guard sends the cancel"]


def test_a_watcher_that_does_not_answer_while_the_run_lives_does_not_stop_the_complete(guards):
    run, target, transport, lines = make_run(guards)
    run.open(target)
    guards.watcher_answers = False
    assert run.close(target, succeeded=True).state == _run.COMPLETED
    assert transport.sent == ["start", "complete"]


def test_a_host_of_two_deployments_cancels_only_the_one_it_failed_in(guards):
    run, host, transport, lines = several_targets_run(guards)
    web, api = host("web1", app_name="Shop.Web"), host("web1", app_name="Shop.Api")  # one host, two plays
    run.open(web)
    run.open(api)
    run.close_each(failed={"web1": _run.HOST_FAILED}, failed_for={"web1": [api]})
    assert lines.at("info")[-2:] == ["deployment 7 of Shop.Web to Production completed",
                                     "deployment 7 of Shop.Api to Production cancelled: failed on web1"]


def test_a_run_that_did_not_finish_cancels_every_deployment_each_for_its_own_reason(guards):
    run, host, transport, lines = several_targets_run(guards)
    web, api = host("web1", app_name="Shop.Web"), host("api1", app_name="Shop.Api")
    run.open(web)
    run.open(api)
    run.close_each(failed={"web1": _run.HOST_UNREACHABLE}, unfinished="an error aborted the run")
    assert lines.at("info")[-2:] == ["deployment 7 of Shop.Web to Production cancelled: unreachable: web1",
                                     "deployment 7 of Shop.Api to Production cancelled: an error aborted the run"]


def test_a_deployment_is_opened_by_the_strict_setting_of_its_own_hosts(guards):
    run, host, transport, lines = several_targets_run(guards, start=[401])
    lenient, strict = host("web1", app_name="Shop.Web"), host("api1", app_name="Shop.Api", strict=True)
    assert not run.open(lenient).fails_run
    assert run.open(strict).fails_run and "(strict: the run stops)" in lines.at("error")[0]


def test_the_same_deployment_for_another_account_is_another_target_and_ends_in_the_order_opened(guards):
    run, host, transport, lines = several_targets_run(guards)
    other_account, ours = host("web2", app_name="Shop.Web", api_key="another-account-key-0123"), host("web1", app_name="Shop.Web")
    assert other_account is not ours
    run.open(ours)
    run.open(other_account)
    run.close_each(failed={})
    assert transport.sent == ["start", "start", "complete", "complete"]
    assert lines.at("info")[-2:] == ["deployment 7 of Shop.Web to Production completed"] * 2
    assert run._opened == [ours, other_account]  # pylint: disable=protected-access
