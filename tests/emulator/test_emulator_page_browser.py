"""The emulator's page in a real browser: headless Chromium (Debian's) driven by Selenium, against real runs.

Nothing here sleeps and hopes: every check waits, generously, until the page shows what the run did. A run that must
be seen in progress waits on a file the test creates once the page showed it. Each test opens the page once and checks
at the end that it was never reloaded: everything it saw came from the page's own live updates.

Without Chromium, chromedriver or selenium these tests skip, saying what to install; in CI (CI=true) they fail.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import headless_chromium
import key_forms
from retrace_emulator import DEMO_API_KEY
from retrace_emulator import contract as contract_module
from retrace_emulator import page as page_module
from retrace_emulator import server as server_module

#: seconds to wait for the page to show something: far more than a poll (1 s), for a loaded CI machine
SHOWS_WITHIN = 60.0
#: seconds for the orphan guard's cancel to land after a run is killed, on top of that
GUARD_WITHIN = 30.0
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
# The callback's pretend deployment: it starts when the first task starts, then waits for the test's go-ahead.
PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      gather_facts: false
      tasks:
        - name: Wait for the go-ahead
          ansible.builtin.wait_for:
            path: "{{ go_file }}"
            timeout: 600
        - name: Break when asked
          ansible.builtin.fail:
            msg: broken on purpose
          when: break_it | default(false) | bool
        - name: Deploy
          ansible.builtin.debug:
            msg: deployed
""")
# One JavaScript call reads a consistent picture: the page redraws every second, so elements found one by one could
# belong to two different drawings. innerText is the text as displayed.
CARDS = """
return Array.from(document.querySelectorAll('#deployments .deployment')).map((card) => ({
    version: card.querySelector('.version').innerText,
    badge: card.querySelector('.badge').innerText,
    state: card.dataset.state,
    facts: Object.fromEntries(Array.from(card.querySelectorAll('.facts dt')).map((dt) => [dt.innerText, dt.nextElementSibling.innerText])),
    calls: Array.from(card.querySelectorAll('tr.call')).map((row) => row.innerText.split('\t')),
    text: card.innerText,
}));
"""
REFUSED_ROWS = "return Array.from(document.querySelectorAll('#refused tr.call')).map((row) => row.innerText);"


@pytest.fixture(scope="module")
def chromium():
    problem = headless_chromium.missing()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the page's browser tests must run in CI: {problem}")
        pytest.skip(problem)
    with headless_chromium.Chromium() as browser:
        yield browser


class Page:
    """The emulator's page open in Chromium, read the way a user reads it."""

    def __init__(self, browser: headless_chromium.Chromium, emulator):
        self.driver = browser.driver
        self.driver.get(f"{emulator.url}/")
        # A reload would drop this: its presence at the end proves everything came in as live updates.
        self.driver.execute_script("window.openedOnce = true;")

    def cards(self) -> list[dict]:
        return self.driver.execute_script(CARDS)

    def refused_rows(self) -> list[list[str]]:
        """The table of refused and faulted calls, newest first: time, call, app / environment / version, answer, from, note."""
        return [row.split("\t") for row in self.driver.execute_script(REFUSED_ROWS)]

    def wait_for(self, version: str, badge: str, within: float = SHOWS_WITHIN) -> dict:
        """The card of ``version`` once the page shows it with the state ``badge`` (as displayed)."""
        return self.wait_until(lambda: next((card for card in self.cards() if card["version"] == version and card["badge"] == badge), None),
                               f"deployment {version!r} shown as {badge!r}", within)

    def wait_until(self, probe, what: str, within: float = SHOWS_WITHIN):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"the page never showed {what} within {within:.0f} s; it shows:\n{self.text()}")

    def text(self) -> str:
        return self.driver.execute_script("return document.body.innerText")

    def count(self, selector: str) -> int:
        return self.driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector)

    def was_never_reloaded(self) -> bool:
        return self.driver.execute_script("return window.openedOnce === true")


class CallbackRun:
    """ansible-playbook with the collection's callback, against the emulator; it waits for ``go()`` after its start."""

    def __init__(self, emulator, workdir: pathlib.Path, version: str, *, break_it: bool = False):
        self.go_file = workdir / f"go-{version}"
        playbook = workdir / "deploy.yml"
        playbook.write_text(PLAYBOOK)
        env = {name: value for name, value in os.environ.items() if not name.startswith(("RETRACE_", "STACKIFY_", "ANSIBLE_"))}
        env.update(ANSIBLE_COLLECTIONS_PATH=os.environ["ANSIBLE_COLLECTIONS_PATH"], ANSIBLE_CALLBACKS_ENABLED="stackify.retrace.deployment",
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"), ANSIBLE_HOME=str(workdir / "home"),
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1", RETRACE_API_URL=emulator.url, RETRACE_API_KEY=DEMO_API_KEY,
                   RETRACE_APP_NAME="DemoApp", RETRACE_ENVIRONMENT_NAME="Production", RETRACE_VERSION=version,
                   RETRACE_BRANCH="main", RETRACE_COMMIT="9f2c1ab", RETRACE_URI="https://ci.example.com/builds/42")
        command = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(playbook), "-e", f"go_file={self.go_file}",
                   "-e", f"break_it={break_it}"]
        # Its own process group, so that the test can kill the whole run as AWX does.
        self.process = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def go(self) -> None:
        self.go_file.touch()

    def finish(self) -> tuple[int, str]:
        output = self.process.communicate(timeout=300)[0]
        return self.process.returncode, output

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what ansible-runner's cancel and job_timeout do
        self.process.communicate(timeout=60)


def test_a_real_run_shows_in_progress_then_completed_without_a_reload(chromium, retrace_emulator, tmp_path):
    page = Page(chromium, retrace_emulator)
    page.wait_until(lambda: "No calls yet" in page.text(), "the empty state")
    run = CallbackRun(retrace_emulator, tmp_path, "5.0.0")
    try:
        card = page.wait_for("5.0.0", "in progress")
        assert card["state"] == "in_progress"
        assert "DemoApp / Production / 5.0.0" in card["text"]
        assert {name: card["facts"][name] for name in ("Name", "Branch", "Commit", "Uri")} == {
            "Name": "5.0.0", "Branch": "main", "Commit": "9f2c1ab", "Uri": "https://ci.example.com/builds/42"}
        assert card["facts"]["Duration"].startswith("running for ")
        [(_time, action, answer, sender, _note)] = card["calls"]
        assert (action, answer, sender) == ("start", "202", "ansible-callback"), "the entry point comes from the User-Agent"
        assert page.count(".lane .bar.in_progress") == 1
        run.go()
        card = page.wait_for("5.0.0", "completed")
    except BaseException:
        run.kill()
        raise
    returncode, output = run.finish()
    assert returncode == 0, output
    assert " s (start " in card["facts"]["Duration"] and ", complete " in card["facts"]["Duration"]
    assert [call[1:3] for call in card["calls"]] == [["start", "202"], ["complete", "202"]]
    assert page.count(".lane .bar.complete") == 1 and page.count(".lane .bar.in_progress") == 0
    assert page.was_never_reloaded()


def test_a_cancelled_run_a_one_shot_a_409_refusals_and_faults_show_as_such(chromium, retrace_emulator, api, tmp_path):
    page = Page(chromium, retrace_emulator)
    failing = CallbackRun(retrace_emulator, tmp_path, "6.0.0", break_it=True)
    failing.go()
    returncode, output = failing.finish()
    assert returncode == 2, output
    assert api.post("complete", Version="6.1.0", headers={"User-Agent": "stackify-jenkins/1.0"}).status == 202  # one-shot
    assert api.post("start", Version="6.2.0").status == 202
    assert api.post("start", Version="6.2.0").status == 409
    retrace_emulator.inject("complete", [{"status": 503, "retry_after": "1"}])
    assert api.post("complete", Version="6.2.0").status == 503
    assert api.post("start", Version="6.3.0", key="not-a-known-key").status == 401
    assert api.post("start", Version="6.3.0", AppName="NoSuchApp").status == 400

    assert page.wait_for("6.0.0", "cancelled")["state"] == "cancelled"
    one_shot = page.wait_for("6.1.0", "one-shot complete")
    assert one_shot["facts"]["Duration"] == "none: a one-shot complete, with no start"
    assert [call[1:4] for call in one_shot["calls"]] == [["complete", "202", "stackify-jenkins/1.0"]]
    conflict = page.wait_for("6.2.0", "in progress")
    assert [call[1:3] for call in conflict["calls"]] == [["start", "202"], ["start", "409 refused"], ["complete", "503 injected"]]
    assert "already in progress" in conflict["calls"][1][4] and "fault: status 503 Retry-After: 1" in conflict["calls"][2][4]

    def four_rows():
        rows = page.refused_rows()
        return rows if len(rows) == 4 else None

    rows = page.wait_until(four_rows, "four refused or faulted calls")
    assert [row[3] for row in rows] == ["400 refused", "401 refused", "503 injected", "409 refused"]
    assert "Unknown AppName 'NoSuchApp'" in rows[0][5] and "API key rejected" in rows[1][5]
    assert rows[0][2] == "NoSuchApp / Production / 6.3.0"
    assert page.count(".lane .one-shot") == 1 and page.count(".lane .bar.cancel") == 1
    assert page.count(".lane .mark.refused") == 3 and page.count(".lane .mark.fault") == 1
    assert page.was_never_reloaded()


def test_the_end_the_orphan_guard_sent_is_shown_as_such(chromium, retrace_emulator, tmp_path):
    page = Page(chromium, retrace_emulator)
    run = CallbackRun(retrace_emulator, tmp_path, "7.0.0")
    try:
        page.wait_for("7.0.0", "in progress")
    finally:
        run.kill()  # the run never ends the deployment: its orphan guard must
    card = page.wait_for("7.0.0", "cancelled", SHOWS_WITHIN + GUARD_WITHIN)
    assert "Cancelled by the orphan guard" in card["text"]
    assert [call[1:4] for call in card["calls"]] == [["start", "202", "ansible-callback"], ["cancel", "202", "ansible-callback orphan guard"]]
    assert page.count(".lane .bar.cancel.by-guard") == 1
    assert page.was_never_reloaded()


HOSTILE = {
    "Version": "<script>window.pwned = 1</script>",
    "Name": '"><img src=x onerror="window.pwned = 2">',
    "Branch": "<b>bold</b>",
    "Commit": "</td></tr><tr><td>forged",
    "Uri": "javascript:window.pwned = 3",
}


def test_everything_a_client_sent_is_shown_as_text(chromium, retrace_emulator, api):
    page = Page(chromium, retrace_emulator)
    assert api.post("start", **HOSTILE, headers={"User-Agent": "<img src=x onerror=window.pwned=4>"}).status == 202
    retrace_emulator.inject("complete", [{"status": 502, "body": "<img src=x onerror=window.pwned=5>Bad Gateway"}])
    assert api.post("complete", Version=HOSTILE["Version"]).status == 502
    assert api.post("start", Version='"><img src=x onerror="window.pwned = 6">', key=None).status == 401
    card = page.wait_for(HOSTILE["Version"], "in progress")
    assert {name: card["facts"][name] for name in ("Name", "Branch", "Commit", "Uri")} == {name: HOSTILE[name] for name in ("Name", "Branch", "Commit", "Uri")}
    assert card["calls"][0][3] == "<img", "the User-Agent's first word, as text"
    page.wait_until(lambda: len(page.refused_rows()) == 2, "the 401 and the injected 502")
    assert "<img src=x onerror=window.pwned=5>Bad Gateway" in page.text()
    assert '"><img src=x onerror="window.pwned = 6">' in page.text(), "a refused call's version, as text"
    for tag in ("img", "script", "b", "iframe", "a"):
        assert page.count(f"main {tag}") == 0, f"a <{tag}> element was made from a client's value"
    assert page.driver.execute_script("return window.pwned === undefined")
    assert page.was_never_reloaded()


@pytest.mark.retrace_emulator(accounts=key_forms.FORMS_ACCOUNTS)
def test_no_form_of_a_key_shows_on_the_page(chromium, retrace_emulator, api):
    """The key echoed upper-cased, split or base64-encoded, in a field and in the User-Agent: the page shows none of it,
    neither as text nor in an attribute (a tooltip)."""
    page = Page(chromium, retrace_emulator)
    for number, form in enumerate(key_forms.KEY_FORMS.values()):
        assert api.post("start", key=key_forms.FORMS_KEY, AppName="Shop", EnvironmentName="Prod", Version=f"v{number}",
                        Name=f"leaked {form} here", headers={"User-Agent": f"careless/1.0 ({key_forms.flat(form)})"}).status == 202
    page.wait_until(lambda: len(page.cards()) == len(key_forms.KEY_FORMS), f"{len(key_forms.KEY_FORMS)} deployments")
    text, markup = page.text(), html.unescape(page.driver.execute_script("return document.documentElement.outerHTML"))
    for name, shown in (("text", text), ("markup", markup)):
        assert not key_forms.exposes(shown), f"the key can be read from the page's {name}:\n{shown}"
    assert text.count("<redacted key ") >= len(key_forms.KEY_FORMS)
    assert page.was_never_reloaded()


# -- what breaks a page: errors while drawing, a page that fell behind, large and strange values, long runs ----------

LIVE = "return [document.getElementById('live').innerText, document.getElementById('live').dataset.answers]"


def _summary(page: Page) -> str:
    return page.driver.execute_script("return document.getElementById('summary').innerText")


def test_an_error_while_drawing_shows_and_the_page_keeps_polling(chromium, retrace_emulator, api):
    page = Page(chromium, retrace_emulator)
    page.wait_until(lambda: "No calls yet" in page.text(), "the empty state")
    # Every redraw now fails, as a bug deep in drawing would.
    page.driver.execute_script("window.realReplaceChildren = Element.prototype.replaceChildren;"
                               "Element.prototype.replaceChildren = function () { throw new Error('broken on purpose'); };")
    assert api.post("start", Version="8.0.0").status == 202
    page.wait_until(lambda: "drawing failed" in page.driver.execute_script(LIVE)[0] and "broken on purpose" in page.driver.execute_script(LIVE)[0],
                    "the drawing error in the status")
    page.driver.execute_script("Element.prototype.replaceChildren = window.realReplaceChildren;")
    assert page.wait_for("8.0.0", "in progress")["state"] == "in_progress", "the polling went on: the next answer drew the page"
    page.wait_until(lambda: page.driver.execute_script(LIVE)[0].startswith("live"), "the status back to live")
    assert page.was_never_reloaded()


def test_a_page_that_fell_behind_shows_no_ended_deployment_in_progress(chromium, retrace_emulator, api, monkeypatch):
    """More deployments change between two polls than one answer carries (3 here): the page still ends up right."""
    gate, parked = threading.Event(), threading.Event()
    gate.set()
    answer = page_module.updates

    def small_and_held(emulator, query, limit=None):  # pylint: disable=unused-argument
        if not gate.is_set():
            parked.set()
            gate.wait()
        return answer(emulator, query, limit=3)

    monkeypatch.setattr(page_module, "updates", small_and_held)
    try:
        for version in ("11.0", "11.1"):
            assert api.post("start", Version=version).status == 202
        page = Page(chromium, retrace_emulator)
        page.wait_for("11.0", "in progress")
        gate.clear()
        assert parked.wait(SHOWS_WITHIN), "the page's next poll never came"
        assert api.post("complete", Version="11.0").status == 202
        for version in ("11.2", "11.3", "11.4"):
            assert api.post("start", Version=version).status == 202
            assert api.post("complete", Version=version).status == 202
    finally:
        gate.set()  # the held poll is answered: it carries everything that changed meanwhile
    page.wait_for("11.4", "completed")
    assert {card["version"]: card["badge"] for card in page.cards()} == {
        "11.1": "in progress", "11.2": "completed", "11.3": "completed", "11.4": "completed"}, "11.0 ended: never shown in progress"
    assert "1 deployment." in _summary(page), _summary(page)
    assert page.was_never_reloaded()


def test_a_deployment_in_progress_is_shown_however_many_ended_since_it_began(chromium, retrace_emulator, api):
    """A start long ago still running, and a redeploy running now of a version first deployed long ago, are never hidden."""
    page = Page(chromium, retrace_emulator)
    assert api.post("start", Version="12.0-long").status == 202
    assert api.post("start", Version="12.0-redeployed").status == 202
    assert api.post("complete", Version="12.0-redeployed").status == 202
    page.wait_for("12.0-redeployed", "completed")
    for number in range(100):
        assert api.post("complete", Version=f"12.{number + 1}").status == 202  # one-shots, all newer
    assert api.post("start", Version="12.0-redeployed").status == 202
    page.wait_for("12.0-redeployed", "in progress")
    page.wait_for("12.0-long", "in progress")
    assert page.count("#deployments .deployment") == 100
    assert "2 deployments." in _summary(page), "102 deployments, 100 shown: " + _summary(page)
    assert page.was_never_reloaded()


def test_the_page_is_not_redrawn_when_nothing_changed(chromium, retrace_emulator, api):
    assert api.post("complete", Version="13.0.0").status == 202  # a one-shot: nothing in progress moves with the clock
    page = Page(chromium, retrace_emulator)
    page.wait_for("13.0.0", "one-shot complete")
    page.driver.execute_script("window.drawnCard = document.querySelector('#deployments .deployment');")
    seen = [page.driver.execute_script(LIVE)]

    def two_more_answers():  # the status counts the answers (its time of day changes too, but not at every answer)
        if page.driver.execute_script(LIVE) != seen[-1]:
            seen.append(page.driver.execute_script(LIVE))
        return len(seen) >= 3

    page.wait_until(two_more_answers, "two more answers")
    assert page.driver.execute_script("return window.drawnCard.isConnected"), "the page was drawn again though nothing changed"
    assert api.post("start", Version="13.1.0").status == 202
    page.wait_for("13.1.0", "in progress")
    assert not page.driver.execute_script("return window.drawnCard.isConnected"), "news is drawn"


def test_long_values_without_spaces_keep_the_page_as_wide_as_its_window(chromium, retrace_emulator, api):
    page = Page(chromium, retrace_emulator)
    assert api.post("start", Version="v" * 10_000, headers={"User-Agent": "u" * 20_000}).status == 400
    assert api.post("start", Version="14.0.0", Branch="b" * 255, Uri="https://ci.example.com/" + "x" * 2000,
                    headers={"User-Agent": "w" * 5000}).status == 202
    assert api.send("GET", "/" + "p" * 5000).status == 404
    page.wait_for("14.0.0", "in progress")
    page.wait_until(lambda: len(page.refused_rows()) == 2, "the two refused calls")
    width, window = page.driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= window, f"the page is {width} px wide in a {window} px window"
    notes = page.driver.execute_script("return Array.from(document.querySelectorAll('#refused td.note')).map((cell) => cell.offsetWidth)")
    assert min(notes) >= 150, f"a long value squeezed the note column to {min(notes)} px"
    assert page.was_never_reloaded()


def test_right_to_left_and_invisible_characters_cannot_disguise_a_value(chromium, retrace_emulator, api):
    assert api.post("start", Version="1.0\u202e0.2", Name="a\u200bb").status == 202
    card = Page(chromium, retrace_emulator).wait_for("1.0\\u202e0.2", "in progress")  # the escapes, as text
    assert card["facts"]["Name"] == "a\\u200bb"
    # and each value isolated from the text around it
    bidi = chromium.driver.execute_script("return getComputedStyle(document.querySelector('#deployments .version')).unicodeBidi")
    assert bidi == "isolate"


class _Shifted(datetime.datetime):
    """datetime whose now() is moved by ``offset``: calls that arrived a day ago, without waiting a day."""

    offset = datetime.timedelta(0)

    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.now(tz) + cls.offset


def test_a_deployment_over_a_day_reads_in_days_and_hours_with_dates(chromium, retrace_emulator, api, monkeypatch):
    for module in (contract_module, server_module):
        monkeypatch.setattr(module, "datetime", _Shifted)
    monkeypatch.setattr(_Shifted, "offset", -datetime.timedelta(hours=26))
    assert api.post("start", Version="15.0.0").status == 202
    monkeypatch.setattr(_Shifted, "offset", datetime.timedelta(0))
    assert api.post("complete", Version="15.0.0").status == 202
    page = Page(chromium, retrace_emulator)
    card = page.wait_for("15.0.0", "completed")
    stamp, clock = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}", r"\d{2}:\d{2}:\d{2}\.\d{3}"
    assert re.fullmatch(rf"1 d 2 h \(start {stamp}, complete {clock}\)", card["facts"]["Duration"]), card["facts"]["Duration"]
    assert re.fullmatch(stamp, card["calls"][0][0]) and re.fullmatch(clock, card["calls"][1][0]), "only a call of another day has a date"
    axis = page.driver.execute_script("return Array.from(document.querySelectorAll('.lane.axis .lane-label, .lane.axis .tick')).map((n) => n.innerText)")
    assert axis[0] == "span 1 d 2 h"
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", tick) for tick in axis[1:]), axis
