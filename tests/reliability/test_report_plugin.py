"""The report plugin never shows a row as passing unless every test it cites ran and passed."""

from __future__ import annotations

import re

from tests.reliability import matrix
from tests.reliability.report_plugin import FAILED, NOT_RUN, PASSED, SKIPPED, cell_status, render

TEST = "tests/x/test_a.py::test_one"


def every_cited_test(outcome: str = "passed") -> dict[str, str]:
    return {reference: outcome for table in matrix.MATRICES for row in table.rows for cell in row.cells.values()
            if isinstance(cell, tuple) for reference in cell}


def test_a_cell_passes_only_when_each_cited_test_passed():
    assert cell_status((TEST,), {TEST: "passed"}) == PASSED
    assert cell_status((TEST,), {TEST: "failed"}) == FAILED
    assert cell_status((TEST,), {TEST: "skipped"}) == SKIPPED
    assert cell_status((TEST,), {}) == NOT_RUN
    assert cell_status((TEST, "tests/x/test_a.py::test_two"), {TEST: "passed"}) == NOT_RUN
    assert cell_status((), {}) == NOT_RUN


def test_parametrized_tests_are_cited_whole_or_by_id_prefix():
    outcomes = {f"{TEST}[a-1]": "passed", f"{TEST}[b-2]": "failed"}
    assert cell_status((TEST,), outcomes) == FAILED
    assert cell_status((f"{TEST}[a-1]",), outcomes) == PASSED
    assert cell_status((f"{TEST}[a",), outcomes) == PASSED
    assert cell_status((f"{TEST}[b",), outcomes) == FAILED
    assert cell_status((f"{TEST}_more",), {f"{TEST}_more_x": "passed"}) == NOT_RUN


def test_a_missing_or_failed_row_is_reported_and_shown():
    outcomes = every_cited_test()
    text, problems = render(outcomes)
    assert problems == [] and "**FAIL**" not in text and "**not run**" not in text
    dropped = next(iter(outcomes))
    del outcomes[dropped]
    text, problems = render(outcomes)
    assert problems and all("not run" in problem for problem in problems) and "**not run**" in text
    outcomes[dropped] = "failed"
    text, problems = render(outcomes)
    assert problems and "**FAIL**" in text


def test_the_document_is_deterministic_and_machine_independent():
    first = render(every_cited_test())[0]
    second = render(dict(reversed(list(every_cited_test().items()))))[0]
    assert first == second
    assert not re.search(r"127\.0\.0\.1:\d+|/tmp/|\d+\.\d+ ?s\b", first)
