"""pytest plugin: turn the results of the tests named in tests/reliability/matrix.py into docs/reliability.md.

Enabled by ``scripts/test`` (the README's ``make test``)::

    python -m pytest tests -p tests.reliability.report_plugin --reliability-report docs/reliability.md

It only listens: every test runs once, wherever it lives, and its report (also the ones the
pytest-xdist controller receives from its workers) is matched to the matrix rows that cite it.
At the end of the session the table is written, and the run fails when a row did not pass:

- a cited test that failed or errored makes its cell ``FAIL``;
- a cited test that was skipped, deselected, renamed or never collected makes it ``not run`` --
  never ``pass``;
- a cell that states a known limitation says so and does not fail the run (it is not a test).

The file holds no timings, ports or paths of this machine, so regenerating it from a passing run
leaves it unchanged.  With CI=true a generated file that differs from the checked-in one fails
the run too: the committed table must be the one the code earns.
"""

from __future__ import annotations

import os
import pathlib
import re

import pytest

from tests.reliability.matrix import ENTRY_POINTS, MATRICES, Limitation, NotApplicable

PASSED, FAILED, SKIPPED, NOT_RUN = "pass", "FAIL", "skipped", "not run"
_SEVERITY = {"passed": 0, "skipped": 1, "failed": 2}


def pytest_addoption(parser):
    parser.getgroup("reliability").addoption(
        "--reliability-report", metavar="PATH", default=None,
        help="write the reliability table (tests/reliability/matrix.py) to PATH and fail if a row did not pass")


def pytest_configure(config):
    path = config.getoption("reliability_report")
    if path and not hasattr(config, "workerinput"):  # the xdist controller (or a plain run) writes it, not each worker
        config.pluginmanager.register(ReliabilityReport(pathlib.Path(path)), "reliability-report")


class ReliabilityReport:
    """Collects one outcome per test node id, then renders and checks the matrix."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.outcomes: dict[str, str] = {}
        self.problems: list[str] = []
        self.changed = False

    def pytest_runtest_logreport(self, report):
        # setup/teardown count only when they go wrong; "passed" needs the call phase itself to pass
        if report.when != "call" and report.outcome == "passed":
            return
        # pytest-xdist's loadgroup appends "@<group>" to the node ids of xdist_group tests: cite them without it.
        nodeid = re.sub(r"@[\w-]+$", "", report.nodeid)
        previous = self.outcomes.get(nodeid)
        if previous is None or _SEVERITY[report.outcome] > _SEVERITY[previous]:
            self.outcomes[nodeid] = report.outcome

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        text, self.problems = render(self.outcomes)
        old = self.path.read_text(encoding="utf-8") if self.path.exists() else None
        self.changed = old != text
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(text, encoding="utf-8")
            if os.environ.get("CI") == "true" and not self.problems:
                self.problems.append(f"{self.path} was out of date: commit the regenerated file")
        if self.problems and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.section("reliability report")
        rows = sum(len(matrix.rows) for matrix in MATRICES)
        terminalreporter.write_line(f"{self.path}: {rows} rows{' (updated)' if self.changed else ' (unchanged)'}")
        for problem in self.problems:
            terminalreporter.write_line(f"reliability: {problem}", red=True)
        if not self.problems:
            terminalreporter.write_line("reliability: every row passed", green=True)


def cell_status(cell, outcomes: dict[str, str]) -> str:
    """pass / FAIL / skipped / not run for the tests a cell cites (all of them must pass)."""
    statuses = []
    for reference in cell:
        found = [outcome for node, outcome in outcomes.items() if _cites(reference, node)]
        if not found:
            statuses.append(NOT_RUN)
        elif "failed" in found:
            statuses.append(FAILED)
        elif "skipped" in found:
            statuses.append(SKIPPED)
        else:
            statuses.append(PASSED)
    for status in (FAILED, NOT_RUN, SKIPPED):
        if status in statuses:
            return status
    return PASSED if statuses else NOT_RUN


def _cites(reference: str, node: str) -> bool:
    """``path::test`` cites every parametrization; ``path::test[prefix`` (no closing bracket) those whose id starts so."""
    if node == reference or node.startswith(reference + "["):
        return True
    return "[" in reference and not reference.endswith("]") and node.startswith(reference)


def render(outcomes: dict[str, str]) -> tuple[str, list[str]]:
    """The Markdown document and the list of rows that did not pass."""
    problems: list[str] = []
    notes: list[str] = []
    lines = [
        "# Reliability report",
        "",
        "<!-- GENERATED by tests/reliability/report_plugin.py from tests/reliability/matrix.py during `make test`."
        " Do not edit: change the matrix or the tests and run `make test`. -->",
        "",
        "Every promise the docs make about failures, exits, bad input and the API key, as a table of tests that ran",
        "for real: `ansible-playbook`, `molecule` and `fab` subprocesses over loopback HTTP against the Retrace",
        "emulator (and a real sshd for Fabric). A cell is `pass` only when every test it cites passed in the run",
        "that wrote this file; `FAIL` or `not run` fail that run. `n/a` and `limitation` cells are explained in",
        "the notes below each table. The tests behind each cell are listed at the end.",
        "",
        "Generated by: `make test` on the newest ansible-core and Python of the README's Support section; every",
        "other supported ansible-core x Python cell runs the Ansible-facing tests in the same CI run.",
        "",
    ]
    evidence: list[str] = ["## Tests behind each cell", ""]
    for matrix in MATRICES:
        columns = list(matrix.columns) or [entry for entry in (("core",) + ENTRY_POINTS) if any(entry in row.cells for row in matrix.rows)]
        headers = ["Case", "Expected", *(["Attempts"] if matrix.with_attempts else []),
                   *(ENTRY_POINT_TITLES[entry] for entry in columns)]
        lines += [f"## {matrix.title}", "", matrix.intro, "", "| " + " | ".join(headers) + " |",
                  "|" + "---|" * len(headers)]
        evidence += [f"### {matrix.title}", ""]
        for row in matrix.rows:
            cells = []
            for entry in columns:
                cell = row.cells.get(entry, NotApplicable("not applicable"))
                if isinstance(cell, (NotApplicable, Limitation)):
                    label = "n/a" if isinstance(cell, NotApplicable) else "**limitation**"
                    if cell.reason not in notes:
                        notes.append(cell.reason)
                    cells.append(f"{label} [{notes.index(cell.reason) + 1}]")
                    continue
                status = cell_status(cell, outcomes)
                cells.append(status if status == PASSED else f"**{status}**")
                if status != PASSED:
                    problems.append(f"{matrix.title} / {row.case} / {entry}: {status}")
                evidence.append(f"- {row.case} — {ENTRY_POINT_TITLES[entry]}: " + ", ".join(f"`{ref}`" for ref in cell))
            attempts = [row.attempts] if matrix.with_attempts else []
            lines.append("| " + " | ".join([row.case, row.expected, *attempts, *cells]).replace("\n", " ") + " |")
        lines += [""]
        evidence += [""]
    lines += ["## Notes", ""] + [f"{index}. {note}" for index, note in enumerate(notes, 1)] + [""]
    return "\n".join(lines + evidence).rstrip("\n") + "\n", problems


ENTRY_POINT_TITLES = {"core": "Core", "module": "Module", "role": "Role", "callback": "Callback", "fabric": "Fabric",
                      "fab_deploy": "`fab deploy`", "fab_calls": "`fab retrace.*`"}
