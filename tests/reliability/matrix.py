"""The reliability matrices: each row a promise, each cell the tests (by pytest node id) that keep it.

A reference is ``path::test`` (every parametrization of that test) or ``path::test[id]`` (one).
report_plugin.py matches them to the outcomes of the run and writes docs/reliability.md.  Tests
live where their entry point's other tests live; tests/reliability/ holds only the rows no other
suite covered.  Renaming a cited test without updating this file turns its cell into ``not run``,
which fails ``make test``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class NotApplicable:
    reason: str


@dataclasses.dataclass(frozen=True)
class Limitation:
    """A promise the entry point cannot keep, said plainly instead of hidden; not a test."""
    reason: str


@dataclasses.dataclass(frozen=True)
class Row:
    case: str
    expected: str
    cells: dict
    attempts: str = ""


@dataclasses.dataclass(frozen=True)
class Matrix:
    title: str
    intro: str
    rows: tuple
    with_attempts: bool = False
    #: the entry-point columns, in order; empty: "core" then ENTRY_POINTS, those that some row fills
    columns: tuple = ()


ENTRY_POINTS = ("module", "role", "callback", "fabric")
#: the columns of the one-outcome matrix: Fabric's two ways of tracking apart
ONE_OUTCOME_COLUMNS = ("callback", "role", "module", "fab_deploy", "fab_calls")

CORE = "tests/integration/core/test_core_against_emulator.py"
M_FAULTS = "tests/integration/module/test_module_faults.py"
M_INPUT = "tests/integration/module/test_module_bad_input.py"
M_SECRET = "tests/integration/module/test_module_secrecy.py"
M_GUARD = "tests/integration/module/test_module_orphan_guard.py"
R_MOLECULE = "tests/integration/role/test_role_molecule.py"
R_PLAYS = "tests/integration/role/test_role_playbooks.py"
R_LIFE = "tests/integration/role/test_role_lifecycle.py"
CB = "tests/integration/callback/test_callback_end_to_end.py"
CB_LIFE = "tests/integration/callback/test_callback_lifecycle.py"
F_CALLS = "tests/integration/fabric/test_fabric_single_calls.py"
F_SSH = "tests/integration/fabric/test_fabric_deploy_ssh.py"
F_INT = "tests/integration/fabric/test_fabric_interrupts.py"
F_CONV = "tests/integration/fabric/test_fabric_conventions.py"
REL_FAULTS = "tests/reliability/test_fault_matrix.py"
REL_EXITS = "tests/reliability/test_exit_paths.py"
REL_LIFE = "tests/reliability/test_lifecycle_paths.py"
REL_INPUT = "tests/reliability/test_bad_input_matrix.py"
REL_KEY = "tests/reliability/test_key_hygiene.py"


def _refs(*references: str) -> tuple:
    return references


# --- fault matrix ------------------------------------------------------------------------------

OWN_START_ONLY = NotApplicable("It sends an end only for the start it sent itself and Retrace accepted.")


def _role_refused(case: str) -> tuple:
    """The role deploys untracked with one warning, and with retrace_strict stops before deploying."""
    return (f"{REL_FAULTS}::test_role_deploys_untracked_with_one_warning_when_the_start_is_refused[{case}]",
            f"{REL_FAULTS}::test_role_strict_stops_before_deploying_when_the_start_is_refused[{case}]")


FAULT_ROWS = (
    Row("503, 503, then 202", "accepted after retrying; the run goes on", {
        "core": _refs(f"{CORE}::test_transient_failures_twice_then_accepted[fault0]"),
        "module": _refs(f"{REL_FAULTS}::test_module_retries_503_twice_and_honours_an_http_date"),
        "role": _refs(f"{REL_FAULTS}::test_role_recovers_from_retryable_faults[503x2-then-429-seconds]"),
        "callback": _refs(f"{REL_FAULTS}::test_callback_recovers_from_retryable_faults[503x2-then-429-seconds]"),
        "fabric": _refs(f"{REL_FAULTS}::test_fabric_recovers_from_retryable_faults[503x2]"),
    }, attempts="3"),
    Row("429 with Retry-After in seconds", "waits at least that long, then accepted", {
        "core": _refs(f"{CORE}::test_transient_failures_twice_then_accepted[fault4]", f"{CORE}::test_retry_after_seconds_is_waited_for"),
        "module": _refs(f"{M_FAULTS}::test_overload_and_server_errors_are_retried"),
        "role": _refs(f"{REL_FAULTS}::test_role_recovers_from_retryable_faults[503x2-then-429-seconds]"),
        "callback": _refs(f"{REL_FAULTS}::test_callback_recovers_from_retryable_faults[503x2-then-429-seconds]"),
        "fabric": _refs(f"{REL_FAULTS}::test_fabric_recovers_from_retryable_faults[429-seconds]"),
    }, attempts="2"),
    Row("429 with Retry-After as an HTTP date", "waits until that date, then accepted", {
        "core": _refs(f"{CORE}::test_retry_after_http_date_is_waited_for"),
        "module": _refs(f"{REL_FAULTS}::test_module_retries_503_twice_and_honours_an_http_date"),
        "role": _refs(f"{REL_FAULTS}::test_role_recovers_from_retryable_faults[reset-then-429-date]"),
        "callback": _refs(f"{REL_FAULTS}::test_callback_recovers_from_retryable_faults[reset-then-429-date]"),
        "fabric": _refs(f"{REL_FAULTS}::test_fabric_recovers_from_retryable_faults[429-http-date]"),
    }, attempts="2"),
    Row("connection refused", "retried until the deadline, then reported unreachable; nothing else breaks", {
        "core": _refs(f"{CORE}::test_refused_connection_ends_in_a_clear_unreachable_error"),
        "module": _refs(f"{M_FAULTS}::test_unreachable_api_fails_within_the_deadline"),
        "role": _role_refused("connection-refused"),
        "callback": _refs(f"{CB}::test_api_down_never_changes_the_exit_code"),
        "fabric": _refs(f"{F_CALLS}::test_a_closed_port_is_reported_unreachable"),
    }, attempts="> 1, within the deadline"),
    Row("connection reset", "retried, then accepted", {
        "core": _refs(f"{CORE}::test_transient_failures_twice_then_accepted[fault7]"),
        "module": _refs(f"{M_FAULTS}::test_lost_answers_and_broken_connections_are_retried"),
        "role": _refs(f"{REL_FAULTS}::test_role_recovers_from_retryable_faults[reset-then-429-date]"),
        "callback": _refs(f"{REL_FAULTS}::test_callback_recovers_from_retryable_faults[reset-then-429-date]"),
        "fabric": _refs(f"{F_CALLS}::test_retryable_faults_are_retried_until_accepted[connection reset]"),
    }, attempts="2"),
    Row("server hangs", "each attempt cut at the timeout; the whole call bounded by the deadline (callback: its time budget)", {
        "core": _refs(f"{CORE}::test_hanging_server_is_bounded_by_the_deadline"),
        "module": _refs(f"{M_FAULTS}::test_lost_answers_and_broken_connections_are_retried"),
        "role": _refs(f"{REL_FAULTS}::test_role_recovers_from_retryable_faults[lost-answer-then-hang]"),
        "callback": _refs(f"{CB}::test_hanging_start_is_bounded_by_the_budget", f"{CB}::test_hanging_end_is_bounded_by_the_budget"),
        "fabric": _refs(f"{F_CALLS}::test_retryable_faults_are_retried_until_accepted[hang past the timeout]"),
    }, attempts="> 1 within the deadline"),
    Row("401 (key rejected)", "fails at once, says to check api_key, never shows the key", {
        "core": _refs(f"{CORE}::test_unknown_key_is_401_once"),
        "module": _refs(f"{M_FAULTS}::test_refusals_fail_at_once_with_one_clear_message"),
        "role": _role_refused("401"),
        "callback": _refs(f"{CB}::test_rejected_key_warns_once_and_sends_no_end"),
        "fabric": _refs(f"{F_CALLS}::test_a_wrong_key_is_rejected_without_being_shown"),
    }, attempts="1"),
    Row("400 unknown app or environment", "fails at once, names the app and environment", {
        "core": _refs(f"{CORE}::test_unknown_app_or_environment_is_400_with_guidance"),
        "module": _refs(f"{M_FAULTS}::test_refusals_fail_at_once_with_one_clear_message"),
        "role": _role_refused("400-unknown-app"),
        "callback": _refs(f"{CB}::test_rejected_request_warns_and_keeps_the_failure_exit_code"),
        "fabric": _refs(f"{F_CALLS}::test_an_unknown_app_is_named"),
    }, attempts="1"),
    Row("409 on start: already in progress, no live run on this machine holds it",
        "stale_start recover (default): one warning, cancel, start again once, then the run as usual;"
        " stale_start fail: refused at once",
        {
            "core": _refs(f"{CORE}::test_bad_transitions_are_409_once[start-start]"),
            "module": _refs(f"{M_GUARD}::test_a_stale_start_left_by_a_dead_run_is_recovered"),
            "role": _refs(f"{REL_FAULTS}::test_role_recovers_a_deployment_a_dead_run_left_in_progress")
            + _role_refused("409-in-progress-stale-start-fail"),
            "callback": _refs(f"{CB_LIFE}::test_stale_start_is_recovered_with_one_line_unless_told_to_fail"),
            "fabric": _refs(f"{F_CONV}::test_a_deployment_left_in_progress_is_recovered_once_unless_told_to_fail"),
        }, attempts="1 per call (start 409, cancel, start)"),
    Row("409 on an end: cancel of a deployment not in progress",
        "refused at once (a complete with no start is not refused: it is a one-shot deployment, 202)",
        {
            "core": _refs(f"{CORE}::test_bad_transitions_are_409_once[cancel-None]",
                          f"{CORE}::test_bad_transitions_are_409_once[cancel-complete]",
                          f"{CORE}::test_a_complete_when_not_in_progress_is_a_one_shot_deployment"),
            "module": _refs(f"{M_FAULTS}::test_refusals_fail_at_once_with_one_clear_message"),
            "role": OWN_START_ONLY, "callback": OWN_START_ONLY,
            "fabric": _refs(f"{F_CALLS}::test_cancel_without_start_is_a_bad_transition",
                            f"{F_CALLS}::test_complete_without_start_is_a_one_shot_deployment_with_every_field"),
        }, attempts="1"),
    Row("409 on a retried start", "the first attempt was accepted but its answer lost: counted as accepted", {
        "core": _refs(f"{CORE}::test_409_on_a_retried_start_counts_as_success"),
        "module": _refs(f"{M_FAULTS}::test_lost_answers_and_broken_connections_are_retried"),
        "role": _refs(f"{REL_FAULTS}::test_role_recovers_from_retryable_faults[lost-answer-then-hang]"),
        "callback": _refs(f"{REL_FAULTS}::test_callback_recovers_from_retryable_faults[lost-answer]"),
        "fabric": _refs(f"{F_CALLS}::test_an_accepted_call_whose_answer_was_lost_counts_as_done"),
    }, attempts="2"),
)

# --- exit-path matrix ----------------------------------------------------------------------------

MODULE_EXITS = NotApplicable("The module sends exactly the one call each task names; pairing a start with one end"
                             " on every exit path is what the role, the callback and `fab deploy` are for.")
NO_PLAYBOOK = NotApplicable("Fabric has no playbooks, rescue blocks or ignore_errors: a step is a shell command,"
                            " and a failure it tolerates is written in the command (`cmd || true`).")
NO_RUNNER = NotApplicable("ansible-runner runs Ansible only. A CI system stopping `fab` kills it the same way:"
                          " see the SIGKILL rows.")
NO_HANDLERS = NotApplicable("Fabric has no plays, handlers or `meta` tasks: its steps are shell commands run in order.")
NOT_AD_HOC = NotApplicable("Only callbacks are loaded by ad-hoc commands.")
ONE_PROCESS = NotApplicable("One process sends both the start and the end, with the version it settled on at the start.")


MACHINE_LOST = Limitation("When the machine or container running the deployment is lost with everything in it (power cut,"
                          " `podman kill` of an ansible-runner job with container isolation, an evicted pod), no"
                          " process is left to send the cancel, the orphan guard included: the deployment stays in"
                          " progress in Retrace. The next run of the same version recovers it (the fault matrix's"
                          " 409 row: one warning, cancel, start again), and `fab retrace.cancel` or the module ends it"
                          " by hand. Runs on other machines cannot tell a lost run from a live one: that is why"
                          " recovery only looks for live runs on its own machine (docs/lifecycle.md).")


def _guard(how: str) -> tuple:
    """A playbook whose module task `state: started` armed the orphan guard, then ended as ``how`` says."""
    return _refs(f"{M_GUARD}::test_a_run_killed_after_the_start_is_cancelled_by_the_guard[{how}]")


def _life(test: str, *ids: str) -> tuple:
    return tuple(f"{REL_LIFE}::{test}[{case}]" for case in ids) if ids else _refs(f"{REL_LIFE}::{test}")


EXIT_ROWS = (
    Row("success", "one start, one complete", {
        "module": MODULE_EXITS,
        "role": _refs(f"{R_MOLECULE}::test_all_hosts_succeed_one_start_one_complete"),
        "callback": _refs(f"{CB}::test_successful_run_is_one_started_and_completed_deployment"),
        "fabric": _refs(f"{F_SSH}::test_all_hosts_succeed_in_parallel_with_one_start_and_one_complete"),
    }),
    Row("failure", "one start, one cancel; the run still fails", {
        "module": MODULE_EXITS,
        "role": _refs(f"{R_MOLECULE}::test_a_failed_host_means_one_start_one_cancel_and_a_failed_play[role_one_host_fails"),
        "callback": _refs(f"{CB}::test_task_failure_cancels_and_names_the_host"),
        "fabric": _refs(f"{F_SSH}::test_a_failing_command_on_one_host_cancels_once"),
    }),
    Row("rescued or ignored failure", "one start, one complete", {
        "module": MODULE_EXITS,
        "role": _refs(f"{REL_EXITS}::test_role_completes_when_the_deployment_tasks_rescue_or_ignore_a_failure"),
        "callback": _refs(f"{CB}::test_rescued_failure_completes", f"{CB}::test_ignored_failures_complete"),
        "fabric": NO_PLAYBOOK,
    }),
    Row("unreachable host", "one start, one cancel; the run still fails", {
        "module": MODULE_EXITS,
        "role": _refs(f"{R_MOLECULE}::test_a_failed_host_means_one_start_one_cancel_and_a_failed_play[role_host_unreachable"),
        "callback": _refs(f"{CB}::test_unreachable_host_cancels"),
        "fabric": _refs(f"{F_SSH}::test_an_unreachable_host_cancels_once"),
    }),
    Row("SIGINT (Ctrl-C)", "one start, one cancel", {
        "module": MODULE_EXITS,
        "role": _refs(f"{R_LIFE}::test_a_signal_during_the_tracked_tasks_cancels[SIGINT]")
        + _life("test_role_run_stopped_during_the_tracked_tasks_is_cancelled", "SIGINT-group"),
        "callback": _refs(f"{CB}::test_signal_mid_run_cancels[SIGINT-False-99]", f"{CB}::test_signal_mid_run_cancels[SIGINT-True-99]"),
        "fabric": _refs(f"{F_SSH}::test_a_signal_mid_deploy_cancels_once[SIGINT]"),
    }),
    Row("SIGTERM", "one start, one cancel", {
        "module": _guard("SIGTERM"),
        "role": _refs(f"{R_LIFE}::test_a_signal_during_the_tracked_tasks_cancels[SIGTERM]"),
        "callback": _refs(f"{CB}::test_signal_mid_run_cancels[SIGTERM"),
        "fabric": _refs(f"{F_SSH}::test_a_signal_mid_deploy_cancels_once[SIGTERM]"),
    }),
    Row("abort by error", "one start, one cancel (or, if the error comes before the start, nothing at all)", {
        "module": MODULE_EXITS,
        "role": _refs(f"{REL_EXITS}::test_role_cancels_when_a_deployment_task_errors"),
        "callback": _refs(f"{CB}::test_error_after_start_cancels", f"{CB}::test_unparsable_second_playbook_file_cancels"),
        "fabric": _refs(f"{REL_EXITS}::test_fabric_tracked_block_cancels_on_a_python_error",
                        f"{REL_INPUT}::test_fabric_deploy_rejects_bad_steps_before_the_start"),
    }),
    Row("abort by error: the deployment tasks file does not parse", "nothing at all, or one start and one cancel", {
        "module": MODULE_EXITS,
        "role": _refs(f"{REL_EXITS}::test_role_sends_nothing_when_the_deployment_tasks_file_does_not_parse"),
        "callback": _refs(f"{CB}::test_unparsable_second_playbook_file_cancels"),
        "fabric": NotApplicable("Fabric's steps are read and checked before the start (see the bad-input matrix)."),
    }),
    Row("several playbooks", "callback: one deployment for the whole command; role: one per play it runs in", {
        "module": MODULE_EXITS,
        "role": _refs(f"{REL_EXITS}::test_role_in_two_playbook_files_is_two_deployments"),
        "callback": _refs(f"{CB}::test_two_playbook_files_are_one_deployment", f"{CB}::test_two_playbook_files_one_failing_cancel_once"),
        "fabric": NotApplicable("Fabric has no playbooks: one `fab deploy` is one deployment."),
    }),
    Row("parallel hosts, one failing", "one start, one cancel after every host finished", {
        "module": MODULE_EXITS,
        "role": _refs(f"{R_MOLECULE}::test_a_failed_host_means_one_start_one_cancel_and_a_failed_play[role_one_host_fails"),
        "callback": _refs(f"{CB}::test_unreachable_host_cancels"),
        "fabric": _refs(f"{F_SSH}::test_a_failing_command_on_one_host_cancels_once"),
    }),    # --- the ways real runs end ---
    Row("ansible-runner cancel (AWX, Automation Platform: SIGKILL to the job's process group)",
        "one start, one cancel from the orphan guard within 15 s", {
            "module": MODULE_EXITS,
            "role": _life("test_ansible_runner_cancel_ends_the_role_s_deployment"),
            "callback": _refs(f"{CB_LIFE}::test_ansible_runner_cancel_is_cancelled_and_runner_is_not_held"),
            "fabric": NO_RUNNER,
        }),
    Row("ansible-runner job_timeout (the same SIGKILL, decided by the clock)",
        "one start, one cancel from the orphan guard within 15 s", {
            "module": MODULE_EXITS,
            "role": _life("test_ansible_runner_job_timeout_ends_the_role_s_deployment"),
            "callback": _refs(f"{CB_LIFE}::test_ansible_runner_job_timeout_is_cancelled"),
            "fabric": NO_RUNNER,
        }),
    Row("SIGKILL to the process group", "one start, one cancel from the orphan guard within 15 s", {
        "module": _guard("SIGKILL to the process group"),
        "role": _refs(f"{R_LIFE}::test_a_signal_during_the_tracked_tasks_cancels[SIGKILL]"),
        "callback": _refs(f"{CB_LIFE}::test_sigkill_is_cancelled_by_the_orphan_guard[process-group]"),
        "fabric": _refs(f"{F_INT}::test_sigkill_leaves_one_cancel_to_the_orphan_guard[process group]"),
    }),
    Row("SIGKILL to the main process alone (OOM killer, crash)", "one start, one cancel from the orphan guard within 15 s", {
        "module": _guard("SIGKILL to ansible-playbook alone"),
        "role": _life("test_role_run_stopped_during_the_tracked_tasks_is_cancelled", "SIGKILL-main"),
        "callback": _refs(f"{CB_LIFE}::test_sigkill_is_cancelled_by_the_orphan_guard[main-process-only]"),
        "fabric": _refs(f"{F_INT}::test_sigkill_leaves_one_cancel_to_the_orphan_guard[fab alone]"),
    }),
    Row("SIGHUP (to the main process; to the process group, as a closed terminal or SSH session sends it)",
        "one start, one cancel within 15 s", {
            "module": _guard("SIGHUP"),
            "role": _refs(f"{R_LIFE}::test_a_signal_during_the_tracked_tasks_cancels[SIGHUP]")
            + _life("test_role_run_stopped_during_the_tracked_tasks_is_cancelled", "SIGHUP-group"),
            "callback": _refs(f"{CB_LIFE}::test_sighup_cancels_before_the_process_ends"),
            "fabric": _refs(f"{F_INT}::test_a_signal_during_a_local_step_cancels_at_once_and_runs_no_further_step[1-129]",
                            f"{F_INT}::test_a_signal_during_a_single_host_run_cancels_at_once[1-129]")
            + _life("test_fab_deploy_hung_up_over_ssh_is_cancelled"),
        }),
    Row("the machine or container is lost mid-run", "nothing can be sent; the next run of the version recovers it", {
        "module": MACHINE_LOST, "role": MACHINE_LOST, "callback": MACHINE_LOST, "fabric": MACHINE_LOST,
    }),
    Row("`meta: end_play` in the deployment tasks", "one start, one complete or cancel within 15 s; exit 0", {
        "module": _refs(f"{M_GUARD}::test_a_playbook_that_ends_without_closing_the_deployment_is_cancelled"),
        "role": _refs(f"{R_LIFE}::test_meta_end_play_in_the_tracked_tasks_is_cancelled"),
        "callback": _life("test_callback_run_ended_early_by_end_play_completes"),
        "fabric": NO_HANDLERS,
    }),
    Row("a handler notified by the deployment tasks fails", "one start, one cancel; the run fails", {
        "module": MODULE_EXITS,
        "role": _refs(f"{R_LIFE}::test_a_failing_handler_notified_by_the_tracked_tasks_cancels"),
        "callback": _life("test_callback_failing_handler_cancels"),
        "fabric": NO_HANDLERS,
    }),
    Row("every host unreachable", "one start, one cancel within 15 s; the run fails", {
        "module": MODULE_EXITS,
        "role": _refs(f"{R_LIFE}::test_every_host_unreachable_is_cancelled"),
        "callback": _life("test_callback_run_with_every_host_unreachable_cancels"),
        "fabric": _life("test_fab_deploy_with_every_host_unreachable_cancels"),
    }),
    Row("ad-hoc command (`ansible HOST -m ping`, callbacks loaded as ansible-runner and AWX load them)",
        "nothing at all (unless `track_ad_hoc` is set)", {
            "module": NOT_AD_HOC, "role": NOT_AD_HOC,
            "callback": _refs(f"{CB_LIFE}::test_ad_hoc_command_sends_nothing")
            + _life("test_ad_hoc_job_under_ansible_runner_sends_nothing"),
            "fabric": NOT_AD_HOC,
        }),
    Row("no task ran on any host (no host matched, empty play)", "nothing at all", {
        "module": MODULE_EXITS,
        "role": NotApplicable("The role is tasks: where none runs, the role does not run either, and sends nothing."),
        "callback": _refs(f"{CB_LIFE}::test_run_in_which_no_task_ran_sends_nothing_and_says_so"),
        "fabric": NotApplicable("`fab deploy` refuses an empty `retrace.steps` before the start (bad-input matrix)."),
    }),
    Row("single calls around a changing tree (start, a tracked file changes so `git describe` says -dirty, then end)",
        "the end names the version the start opened: one start, one complete or cancel of it", {
            "module": NotApplicable("The module never detects a version: every task names it."),
            "role": ONE_PROCESS, "callback": ONE_PROCESS,
            "fabric": _refs(f"{F_CONV}::test_complete_names_the_version_start_sent_even_after_the_tree_changed")
            + _life("test_single_call_cancel_ends_the_version_the_start_opened_though_the_tree_changed"),
        }),
    Row("Retrace down at start (default, fail-open)",
        "the deployment steps still run; one warning says what was not recorded; exit 0", {
            "module": _refs(f"{M_FAULTS}::test_without_strict_a_tracking_failure_warns_and_the_play_goes_on"),
            "role": _refs(f"{R_LIFE}::test_retrace_down_at_the_start_warns_and_deploys_anyway"),
            "callback": _refs(f"{CB}::test_api_down_never_changes_the_exit_code"),
            "fabric": _refs(f"{F_CONV}::test_deploy_goes_on_when_retrace_is_down_with_one_warning"),
        }),
    Row("Retrace down at start, `strict` set", "the run fails before any deployment step runs", {
        "module": _refs(f"{M_FAULTS}::test_strict_true_fails_the_task"),
        "role": _refs(f"{R_LIFE}::test_strict_fails_the_play_before_any_tracked_task"),
        "callback": _refs(f"{CB_LIFE}::test_strict_failed_start_stops_the_run_before_any_task"),
        "fabric": _life("test_fab_deploy_strict_with_retrace_down_runs_no_step"),
    }),
)

# --- bad-input matrix ----------------------------------------------------------------------------

CALLBACK_OFF = "warns once naming the setting; the playbook runs untracked"
MODULE_ALL = _refs(f"{M_INPUT}::test_every_bad_setting_sends_nothing_and_names_the_setting")
ROLE_INPUT = _refs(f"{R_PLAYS}::test_a_bad_setting_warns_once_and_the_deployment_goes_on",
                   f"{R_PLAYS}::test_a_bad_setting_with_strict_fails_the_play_before_the_tasks")
ROLE_VIA_MODULE = NotApplicable("The role passes this setting to the module's start task, so the module's check"
                                " (Module column) is the one that applies; it is not run again through the role.")


def _fab(case: str) -> tuple:
    return _refs(f"{F_CALLS}::test_bad_input_fails_before_anything_is_sent[{case}]")


def _callback(case: str) -> tuple:
    return _refs(f"{REL_INPUT}::test_callback_rejects_bad_settings_before_sending[{case}]")


INPUT_ROWS = (
    Row("api_key missing", "'api_key: is required' (and where to set it)", {
        "module": _refs(f"{M_INPUT}::test_no_key_anywhere_warns_once_and_the_deployment_goes_on",
                        f"{M_INPUT}::test_no_key_with_strict_fails_before_the_deploy_step"),
        "role": _refs(f"{R_PLAYS}::test_no_key_anywhere_runs_the_tasks_with_one_warning",
                      f"{R_PLAYS}::test_no_key_with_strict_fails_the_play_before_the_tasks"),
        "callback": _refs(f"{CB}::test_missing_settings_warn_once_and_send_nothing"), "fabric": _fab("no key")}),
    Row("api_key with a newline or space", "'api_key: must not contain spaces, newlines…'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE, "callback": _callback("key-with-newline"), "fabric": _fab("key with a newline")}),
    Row("api_url plain http:// to a remote host", "'api_url: plain http:// would send the API key unencrypted'", {
        "module": MODULE_ALL, "role": ROLE_INPUT, "callback": _callback("plain-http"), "fabric": _fab("plain http to a remote host")}),
    Row("api_url not an http(s) URL", "'api_url: must be an absolute https:// URL'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE, "callback": _callback("api-url-not-a-url"), "fabric": _fab("api_url not http")}),
    Row("app_name missing", "'app_name: is required'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE,
        "callback": _refs(f"{CB}::test_missing_settings_warn_once_and_send_nothing"), "fabric": _fab("no app")}),
    Row("environment_name empty", "'environment_name: is required but is empty'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE, "callback": _callback("blank-environment"), "fabric": _fab("empty environment flag")}),
    Row("version longer than 255", "'version: must be at most 255 characters'", {
        "module": MODULE_ALL, "role": ROLE_INPUT, "callback": _callback("version-too-long"), "fabric": _fab("version too long")}),
    Row("version not a string", "'version: must be a string, got …'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE,
        "callback": _refs(f"{CB}::test_numeric_extra_var_is_refused_not_silently_rounded"),
        "fabric": _fab("version not a string in fabric.yaml")}),
    Row("name with a control character", "'name: must not contain control characters'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE, "callback": _callback("name-control-character"),
        "fabric": _fab("name with a control character")}),
    Row("uri not an absolute URL", "'uri: must be an absolute http:// or https:// URL'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE, "callback": _callback("relative-uri"), "fabric": _fab("uri not a URL")}),
    Row("timeout not a positive number", "names 'timeout'", {
        "module": MODULE_ALL, "role": ROLE_INPUT, "callback": _callback("negative-timeout"), "fabric": _fab("timeout negative")}),
    Row("validate_certs not a boolean", "names 'validate_certs'", {
        "module": MODULE_ALL, "role": ROLE_VIA_MODULE,
        "callback": _callback("validate-certs-not-boolean"),
        "fabric": _fab("validate_certs not a boolean")}),
    Row("deployment steps missing (role: tracked_deployment_tasks, Fabric: retrace.steps)", "names the setting; nothing deployed", {
        "module": NotApplicable("The module runs no deployment steps."),
        "role": _refs(f"{R_PLAYS}::test_a_bad_tasks_file_fails_before_the_start_is_sent"),
        "callback": NotApplicable("The callback runs no deployment steps: the playbook is the deployment."),
        "fabric": _refs(f"{REL_INPUT}::test_fabric_deploy_rejects_bad_steps_before_the_start")}),
)

# --- key hygiene ---------------------------------------------------------------------------------

KEY_ROWS = (
    Row("stdout and stderr, highest verbosity, success", "the key never appears", {
        "module": _refs(f"{REL_KEY}::test_module_key_hygiene", f"{M_SECRET}::test_key_stays_secret_at_every_verbosity_and_outcome"),
        "role": _refs(f"{REL_KEY}::test_role_key_hygiene"),
        "callback": _refs(f"{REL_KEY}::test_callback_key_hygiene[success]", f"{CB}::test_key_never_printed_at_vvvv_but_payload_is"),
        "fabric": _refs(f"{REL_KEY}::test_fabric_key_hygiene", f"{F_CALLS}::test_the_key_is_never_shown_even_in_fabric_debug_output"),
    }),
    Row("stdout and stderr, highest verbosity, every failure", "the key never appears (401, 400, 409, invalid input, unreachable, task failure)", {
        "module": _refs(f"{REL_KEY}::test_module_key_hygiene", f"{M_SECRET}::test_key_stays_secret_at_every_verbosity_and_outcome"),
        "role": _refs(f"{REL_KEY}::test_role_key_hygiene", f"{R_PLAYS}::test_key_stays_secret_when_the_role_fails_at_vvvv"),
        "callback": _refs(f"{REL_KEY}::test_callback_key_hygiene"),
        "fabric": _refs(f"{REL_KEY}::test_fabric_key_hygiene", f"{F_CALLS}::test_a_wrong_key_is_rejected_without_being_shown"),
    }),
    Row("logs", "the key never appears in ANSIBLE_LOG_PATH (Fabric has no log file: its -d debug output is checked)", {
        "module": _refs(f"{REL_KEY}::test_module_key_hygiene", f"{M_SECRET}::test_key_stays_secret_at_every_verbosity_and_outcome"),
        "role": _refs(f"{REL_KEY}::test_role_key_hygiene"),
        "callback": _refs(f"{REL_KEY}::test_callback_key_hygiene"),
        "fabric": _refs(f"{REL_KEY}::test_fabric_key_hygiene",
                        f"{F_CALLS}::test_a_key_kept_in_fabric_yaml_or_fabric_env_is_redacted_from_fabric_debug_output"),
    }),
    Row("emulator journal", "only the key's fingerprint is recorded", {
        "module": _refs(f"{REL_KEY}::test_module_key_hygiene"),
        "role": _refs(f"{REL_KEY}::test_role_key_hygiene"),
        "callback": _refs(f"{REL_KEY}::test_callback_key_hygiene"),
        "fabric": _refs(f"{REL_KEY}::test_fabric_key_hygiene"),
    }),
    Row("files written", "no file the run creates or changes holds the key (temp dirs, HOME, project)", {
        "module": _refs(f"{REL_KEY}::test_module_key_hygiene"),
        "role": _refs(f"{REL_KEY}::test_role_key_hygiene"),
        "callback": _refs(f"{REL_KEY}::test_callback_key_hygiene"),
        "fabric": _refs(f"{REL_KEY}::test_fabric_key_hygiene"),
    }),
)

# --- one environment, one outcome ----------------------------------------------------------------------

OUTCOME = "tests/reliability/test_one_outcome.py"
_OUTCOME_ENTRIES = {"callback": "callback", "role": "role", "module": "module", "fab_deploy": "fab-deploy",
                    "fab_calls": "fab-start"}
NO_STEP = NotApplicable("`fab retrace.start|complete|cancel` run no deploy step: the CI job runs it between them.")
NO_INVENTORY = NotApplicable("Fabric has no inventory variables: per-environment settings live in `fabric.yaml`'s"
                             " `retrace:` section or a runtime file (`fab -f staging.yaml`), both the project's own.")
NO_VAULT = NotApplicable("Fabric has no Ansible Vault: the key comes from the environment or a key file"
                         " (`api_key_file`), as docs/fabric.md says.")
NO_EXTRA_VARS = NotApplicable("Fabric has no extra vars: every setting comes from the user's own flags, environment or"
                              " config files, and no flag carries the key.")
NO_SERIAL = NotApplicable("Fabric has no serial batches: `fab deploy` runs every host between one start and one end"
                          " (`retrace.parallel: false` runs them one after another, still one deployment).")
NO_STDOUT_CALLBACK = NotApplicable("Fabric has no pluggable stdout callback and no machine-readable output mode to keep"
                                   " parseable.")


def _outcome(test: str, strict: bool = False, **not_applicable) -> dict:
    """The one-outcome cells of ``test``: one parametrization per entry point (``-strict``: strict set), or the reason
    why a column does not apply."""
    suffix = "-strict" if strict else ""
    return {column: not_applicable.get(column) or _refs(f"{OUTCOME}::{test}[{entry}{suffix}]")
            for column, entry in _OUTCOME_ENTRIES.items()}


NOT_RECORDED = "the deploy step runs, exit 0, nothing recorded; one warning line says so"
STRICT_FAILS = "fails before the deploy step: ansible-playbook exits 2, `fab` 2 (a setting) or 1 (Retrace); nothing recorded"
OUTCOME_ROWS = (
    Row("success", "one start, one complete (single call: the start); exit 0; `deployment <version> of <app> to"
        " <environment> started`, then `... completed`; no warning", _outcome("test_success_is_recorded_from_start_to_complete")),
    Row("the deploy step fails", "one start, one cancel; exit 2 (`fab deploy` 1); `... cancelled`",
        _outcome("test_a_failed_deploy_step_is_cancelled", fab_calls=NO_STEP)),
    Row("no API key anywhere", f"{NOT_RECORDED}: `NOT recorded`, `api_key`, `RETRACE_API_KEY`",
        _outcome("test_no_api_key_anywhere")),
    Row("no API key anywhere, `strict` set", f"{STRICT_FAILS}; the same line", _outcome("test_no_api_key_anywhere", strict=True)),
    Row("no version, outside any git checkout", f"{NOT_RECORDED} (no made-up version): `NOT recorded`, `version`,"
        " `RETRACE_VERSION`, and `retrace_version` (Ansible) or `--version` (Fabric)",
        _outcome("test_no_version_outside_any_git_checkout")),
    Row("no version, `strict` set", f"{STRICT_FAILS}; the same line",
        _outcome("test_no_version_outside_any_git_checkout", strict=True)),
    Row("git refuses the checkout (dubious ownership: owned by another uid), no other version",
        f"{NOT_RECORDED}: `safe.directory`, `NOT recorded`", _outcome("test_git_refuses_a_checkout_owned_by_another_user")),
    Row("git refuses the checkout, `strict` set", f"{STRICT_FAILS}; the same lines",
        _outcome("test_git_refuses_a_checkout_owned_by_another_user", strict=True)),
    Row("API key refused (HTTP 401)", f"{NOT_RECORDED}: `NOT recorded`, `api_key`; no end sent",
        _outcome("test_a_key_retrace_refuses")),
    Row("`retrace_environment_name: Staging`, `retrace_version: 3.1.0` in the inventory's `group_vars/all.yml`",
        "recorded as 3.1.0 to Staging, one start, one complete; no warning",
        _outcome("test_per_environment_settings_in_the_inventory_group_vars", fab_deploy=NO_INVENTORY, fab_calls=NO_INVENTORY)),
    Row("`retrace_api_key` vaulted inline (`!vault`) in the inventory's `group_vars/all.yml`, no key exported",
        "decrypted and recorded, strict or not: one start, one complete; no warning",
        _outcome("test_an_api_key_vaulted_inline_in_group_vars", fab_deploy=NO_VAULT, fab_calls=NO_VAULT)),
    Row("the same, `strict` set", "the same", _outcome("test_an_api_key_vaulted_inline_in_group_vars", strict=True,
                                                       fab_deploy=NO_VAULT, fab_calls=NO_VAULT)),
    Row("a misspelt setting (`stirct: true`: `[callback_retrace]`, role var, module argument, `fabric.yaml`)",
        "recorded, exit 0; one warning: `stirct`, `did you mean strict` (a variable: `retrace_strict`)",
        _outcome("test_a_misspelt_setting_is_named_and_the_deployment_is_tracked")),
    Row("key from the environment, `api_url` written in the project (ansible.cfg, the module task's literal argument,"
        " `fabric.yaml`, `--api-url`)", "accepted: recorded, exit 0, no warning",
        _outcome("test_api_url_written_in_the_project_is_trusted_with_a_key_from_the_environment",
                 role=NotApplicable("The role takes its settings from variables only: see the next row."))),
    Row("key from the environment, `retrace_api_url` in play vars (the same API spelt otherwise)",
        f"nothing sent; {NOT_RECORDED}: `NOT recorded`, `api_url`, `RETRACE_API_URL`",
        _outcome("test_api_url_from_play_variables_never_gets_a_key_from_the_environment", fab_deploy=NO_EXTRA_VARS,
                 fab_calls=NO_EXTRA_VARS)),
    Row("key from the environment, `-e retrace_api_url=` (the same API spelt otherwise)",
        f"nothing sent; {NOT_RECORDED}: `NOT recorded`, `api_url`, `RETRACE_API_URL`",
        _outcome("test_api_url_from_extra_vars_never_gets_a_key_from_the_environment", fab_deploy=NO_EXTRA_VARS,
                 fab_calls=NO_EXTRA_VARS)),
    Row("`serial: 1` over two hosts (module: `run_once` start in the serial play, complete in a later play)",
        "callback and module: one start, one complete; role: one start and one complete per batch (docs/role.md); no warning",
        _outcome("test_serial_batches", fab_deploy=NO_SERIAL, fab_calls=NO_SERIAL)),
    Row("API down (connection refused)", f"{NOT_RECORDED}: `NOT recorded`, `unreachable`", _outcome("test_api_down")),
    Row("API down, `strict` set", f"{STRICT_FAILS}; the same line", _outcome("test_api_down", strict=True)),
    Row("a dead proxy (`HTTPS_PROXY` to a closed port, https API)",
        f"{NOT_RECORDED}: `NOT recorded`, `proxy`, the proxy's host:port", _outcome("test_a_dead_proxy_is_named")),
    Row("an invalid setting (`deadline: abc`) with `strict` set", f"{STRICT_FAILS}; the line names `deadline`",
        _outcome("test_an_invalid_setting_with_strict_fails_before_the_deploy_step", strict=True)),
    Row("an invalid `strict` value (`ture`)", f"counts as strict: {STRICT_FAILS}; the line names `strict` and `ture`",
        _outcome("test_an_invalid_strict_value_counts_as_strict_and_is_named")),
    Row("`ANSIBLE_STDOUT_CALLBACK=ansible.posix.json`", "stdout parses as JSON; recorded: one start, one complete",
        _outcome("test_a_json_stdout_callback_keeps_stdout_parseable", fab_deploy=NO_STDOUT_CALLBACK, fab_calls=NO_STDOUT_CALLBACK)),
)

MATRICES = (
    Matrix("Fault matrix", "The Retrace API misbehaving, injected into the emulator. \"Fails\" means: by default"
           " (`strict` false) tracking never takes a deployment down: one warning names the error and what was not"
           " recorded, and the role's tasks, the playbook and `fab deploy`'s steps run on; with `strict` the module task"
           " fails with the error named, the role stops before the deployment tasks run, the callback stops the run"
           " and `fab deploy` or the single call (`fab retrace.start|complete|cancel`) exits 1 with the message."
           " Attempts are requests the emulator received for that call.", FAULT_ROWS, with_attempts=True),
    Matrix("Exit-path matrix", "However the run ends, Retrace sees one start followed by exactly one complete or"
           " cancel, or nothing at all (checked in the emulator's journal).", EXIT_ROWS),
    Matrix("Bad-input matrix", "Each is rejected before any request reaches the emulator (its journal stays empty),"
           f" with a message naming the field. Module, role and Fabric fail; the callback {CALLBACK_OFF}.", INPUT_ROWS),
    Matrix("Key hygiene", "A distinct secret key, accepted by the emulator, is used at the highest verbosity"
           " (`-vvvv`, `fab -d`) on success and on every failure, and searched for everywhere it could leak.", KEY_ROWS),
    Matrix("One environment, one outcome", "The same situation through every entry point: the callback, the"
           " role, a playbook tracked with module tasks (start `run_once`, a block with the deploy step whose rescue"
           " cancels, then complete), `fab deploy` and the single call `fab retrace.start`. Each run gets its settings the"
           " way that entry point's users give them (the key and URL exported; `ansible.cfg`, extra vars, role vars,"
           " the tasks' arguments, `fabric.yaml`, flags) and has one real deploy step that leaves a marker file. One run per"
           " cell asserts all four: the deploy step ran or not, the exit status, what the emulator recorded, and the line"
           " (fragments in one line of stdout + stderr). Without `strict` nothing about tracking stops a deployment;"
           " with `strict` (set the entry point's own way) each problem fails the run before the deploy step.",
           OUTCOME_ROWS, columns=ONE_OUTCOME_COLUMNS),
)
