// The emulator's page: asks /_emulator/updates for news every second and draws what the emulated Retrace received.
//
// Every value a client sent (versions, names, branches, messages, User-Agents) is inserted as text: element.append()
// with a string makes a text node, and nothing here assigns innerHTML. Attributes get only our own words or text
// through setAttribute ("title"), which is never parsed as markup. Each such value sits in a <bdi>, so right-to-left
// text cannot reorder what is around it (the server already wrote control and format characters as \u escapes).
//
// Drawing never stops the polling: an error while drawing shows in the status pill, and the next answer draws again.
// Nothing here spreads a list into a call's arguments (a long one overflows the stack), and the page is drawn
// again only when an answer brought something new or a deployment in progress makes the picture move with the clock.
"use strict";

(function () {
  const POLL_MS = 1000;
  const RETRY_MS = 2000;
  const SHOWN = 100;  // deployments drawn at most (those in progress first, then the latest changed), and refused calls
  const KEPT = 400;  // calls, and ended deployments, kept in memory at most; deployments in progress are all kept
  const CARD_CALLS = 20;  // calls listed on a deployment's card at most: the latest
  const STATE_LABEL = {
    in_progress: "in progress",
    completed: "completed",
    cancelled: "cancelled",
    one_shot: "one-shot complete",
  };
  const FIELDS = ["Name", "Branch", "Commit", "Uri"];

  let state = fresh(null);
  let dirty = true;  // something to draw that is not drawn yet (also after a drawing failed)
  let answers = 0;

  function fresh(generation) {
    return {
      generation: generation,
      calls: [],
      callsCursor: 0,
      deployments: new Map(),
      deploymentsCursor: 0,
      skippedCalls: 0,
      skippedDeployments: 0,
      serverOffset: 0,
    };
  }

  // --- talking to the emulator ---------------------------------------------------------------------

  async function poll() {
    let delay = POLL_MS;
    try {
      try {
        apply(await fetchUpdate());
        answers += 1;
      } catch (error) {
        showProblem("no answer from the emulator (" + error.message + "), retrying");
        delay = RETRY_MS;
        return;
      }
      try {
        if (dirty || anyRunning()) {
          render();
          dirty = false;
        }
        showLive();
      } catch (error) {
        showProblem("drawing failed (" + error.name + ": " + error.message + "); still polling, the page may be out of date");
      }
    } finally {
      setTimeout(poll, delay);
    }
  }

  async function fetchUpdate() {
    const query = new URLSearchParams({
      generation: state.generation || "",
      calls: String(state.callsCursor),
      deployments: String(state.deploymentsCursor),
    });
    const answer = await fetch("/_emulator/updates?" + query.toString(), { cache: "no-store" });
    if (!answer.ok) {
      throw new Error("HTTP " + answer.status);
    }
    return answer.json();
  }

  function apply(update) {
    if (update.generation !== state.generation) {
      state = fresh(update.generation);  // the emulator was reset (or restarted): start over
      dirty = true;
    }
    state.serverOffset = update.server_time - Date.now();
    if (update.calls.length || update.deployments.length || update.deployments_replace) {
      dirty = true;
    }
    state.skippedCalls += update.skipped_calls;
    for (const call of update.calls) {
      state.calls.push(call);
    }
    if (state.calls.length > KEPT) {
      state.skippedCalls += state.calls.length - KEPT;
      state.calls.splice(0, state.calls.length - KEPT);
    }
    if (update.deployments_replace) {
      // The emulator sent its picture now (this page fell behind): what this page held and is not in it is older.
      state.deployments = new Map();
      state.skippedDeployments = update.skipped_deployments;
    }
    for (const deployment of update.deployments) {
      state.deployments.set(deployment.id, deployment);
    }
    forgetOldEnded();
    state.callsCursor = update.calls_cursor;
    state.deploymentsCursor = update.deployments_cursor;
  }

  // Keeps every deployment in progress and the KEPT latest changed of the ended ones.
  function forgetOldEnded() {
    const ended = Array.from(state.deployments.values()).filter((deployment) => deployment.state !== "in_progress");
    if (ended.length <= KEPT) {
      return;
    }
    ended.sort(byActivity);
    for (const deployment of ended.slice(KEPT)) {
      state.deployments.delete(deployment.id);
      state.skippedDeployments += 1;
    }
  }

  function anyRunning() {
    for (const deployment of state.deployments.values()) {
      if (deployment.state === "in_progress") {
        return true;
      }
    }
    return false;
  }

  function showLive() {
    const live = byId("live");
    live.className = "live ok";
    live.textContent = "live, updated " + clock(Date.now());
    live.dataset.answers = String(answers);
  }

  function showProblem(text) {
    const live = byId("live");
    live.className = "live down";
    live.textContent = text;
    live.dataset.answers = String(answers);
  }

  // --- drawing -------------------------------------------------------------------------------------

  // Latest change first: the revision counts every accepted call of the emulator.
  function byActivity(a, b) {
    return b.revision - a.revision;
  }

  // The deployments drawn: every one in progress (however old its first start), then the latest changed.
  function chooseShown(deployments) {
    const running = deployments.filter((deployment) => deployment.state === "in_progress").sort(byActivity);
    const ended = deployments.filter((deployment) => deployment.state !== "in_progress").sort(byActivity);
    return running.concat(ended).slice(0, SHOWN);
  }

  function render() {
    const now = Date.now() + state.serverOffset;
    const deployments = Array.from(state.deployments.values());
    const shown = chooseShown(deployments);
    const callsOf = new Map();
    for (const call of state.calls) {
      if (call.deployment !== null && state.deployments.has(call.deployment)) {
        if (!callsOf.has(call.deployment)) {
          callsOf.set(call.deployment, []);
        }
        callsOf.get(call.deployment).push(call);
      }
    }
    const unnamed = state.calls.filter((call) => call.verdict !== "accepted" && !callsOf.has(call.deployment));
    const lanes = shown.slice().sort((a, b) => latestStart(a) - latestStart(b) || a.revision - b.revision);
    fill("summary", [summary(deployments, deployments.length - shown.length)]);
    fill("timeline", timeline(lanes, callsOf, unnamed, now));
    fill("deployments", cards(shown.slice().sort(byActivity), callsOf, now));
    fill("refused", [refusedTable(state.calls.filter((call) => call.verdict !== "accepted").slice(-SHOWN).reverse())]);
  }

  // When the deployment's latest run began: its latest start, else its first step the page has.
  function latestStart(deployment) {
    const steps = deployment.history;
    for (let index = steps.length - 1; index >= 0; index--) {
      if (steps[index].action === "start") {
        return steps[index].at;
      }
    }
    return steps[0].at;
  }

  function summary(deployments, hidden) {
    if (!deployments.length && !state.calls.length && !state.skippedDeployments) {
      return "No calls yet. Point a pipeline at " + location.origin + " with an account's API key: "
        + "its deployments show up here while it runs.";
    }
    const counts = {};
    for (const deployment of deployments) {
      const shown = shownState(deployment);
      counts[shown] = (counts[shown] || 0) + 1;
    }
    const states = Object.keys(STATE_LABEL).filter((key) => counts[key]).map((key) => counts[key] + " " + STATE_LABEL[key]);
    const refused = state.calls.filter((call) => call.verdict === "refused").length;
    const faults = state.calls.filter((call) => call.verdict === "fault").length;
    let text = plural(deployments.length, "deployment") + (states.length ? " (" + states.join(", ") + ")" : "")
      + "; " + plural(state.calls.length, "call") + ", " + refused + " refused, " + plural(faults, "fault") + ".";
    const olderDeployments = state.skippedDeployments + hidden;
    if (state.skippedCalls || olderDeployments) {
      text += " Older ones not shown: " + plural(state.skippedCalls, "call") + ", " + plural(olderDeployments, "deployment") + ".";
    }
    return text;
  }

  // The time axis: one lane per deployment, a bar from each start to its end (or to now while in progress), a diamond
  // for a one-shot complete, small marks for refused and faulted calls; a last lane for refused calls that name no
  // deployment.
  function timeline(deployments, callsOf, unnamed, now) {
    const times = [];
    let running = false;
    for (const deployment of deployments) {
      deployment.history.forEach((step) => times.push(step.at));
      (callsOf.get(deployment.id) || []).forEach((call) => times.push(call.at));
      running = running || deployment.state === "in_progress";
    }
    unnamed.forEach((call) => times.push(call.at));
    if (!times.length) {
      return [el("p", "empty", "Nothing received yet.")];
    }
    // Loops, not Math.min(...times): spreading a long array into arguments overflows the stack.
    let first = Infinity;
    let last = running ? now : -Infinity;
    for (const at of times) {
      first = Math.min(first, at);
      last = Math.max(last, at);
    }
    // The axis ends at the last event, or now while a deployment runs: a finished run keeps its picture.
    const span = Math.max(last - first, 1000);
    const x = (at) => (2 + 96 * (at - first) / span).toFixed(3) + "%";
    const rows = [axis(first, span, x)];
    for (const deployment of deployments) {
      rows.push(lane(deployment, callsOf.get(deployment.id) || [], now, x));
    }
    if (unnamed.length) {
      const track = el("div", "track");
      unnamed.forEach((call) => track.append(mark(call, x)));
      rows.push(el("div", "lane other", el("div", "lane-label", "refused, naming no deployment"), track));
    }
    return rows;
  }

  function axis(first, span, x) {
    const ticks = el("div", "track ticks");
    // Dates on the ticks once the axis crosses midnight: "23:10" then "01:40" would read backwards.
    const dated = day(first) !== day(first + span);
    for (let index = 0; index <= 4; index++) {
      const at = first + span * index / 4;
      const tick = el("span", "tick", (dated ? date(at) + " " : "") + clock(at, span < 10000));
      tick.style.left = x(at);
      ticks.append(tick);
    }
    return el("div", "lane axis", el("div", "lane-label", "span " + duration(span)), ticks);
  }

  function lane(deployment, calls, now, x) {
    const track = el("div", "track");
    const steps = deployment.history;
    steps.forEach((step, index) => {
      if (step.action === "start") {
        const end = steps[index + 1];
        const bar = el("span", "bar " + (end ? end.action : "in_progress") + (end && end.orphan_guard ? " by-guard" : ""));
        bar.style.left = x(step.at);
        bar.style.width = "calc(" + x(end ? end.at : now) + " - " + x(step.at) + ")";
        bar.setAttribute("title", target(deployment.fields) + ": " + (end ? end.action + " after " + duration(end.at - step.at)
          + (end.orphan_guard ? ", sent by the orphan guard" : "") : "in progress for " + duration(now - step.at)));
        track.append(bar);
      } else if (step.one_shot) {
        const diamond = el("span", "one-shot");
        diamond.style.left = x(step.at);
        diamond.setAttribute("title", target(deployment.fields) + ": one-shot complete (no start)");
        track.append(diamond);
      }
    });
    calls.filter((call) => call.verdict !== "accepted").forEach((call) => track.append(mark(call, x)));
    const shown = shownState(deployment);
    const label = el("div", "lane-label", el("span", "badge " + shown, STATE_LABEL[shown]), " ", text(target(deployment.fields)));
    label.setAttribute("title", target(deployment.fields) + (deployment.earlier_steps ? " (" + earlier(deployment) + ")" : ""));
    return el("div", "lane", label, track);
  }

  function mark(call, x) {
    const node = el("span", "mark " + call.verdict);
    node.style.left = x(call.at);
    node.setAttribute("title", stamp(call.at, true) + " " + (call.action || call.method + " " + call.path) + ": " + answer(call)
      + (note(call) ? " - " + note(call) : ""));
    return node;
  }

  function cards(deployments, callsOf, now) {
    if (!deployments.length) {
      return [el("p", "empty", "No deployment yet.")];
    }
    return deployments.map((deployment) => card(deployment, callsOf.get(deployment.id) || [], now));
  }

  function card(deployment, calls, now) {
    const shown = shownState(deployment);
    const fields = deployment.fields;
    const title = el("h3", "target",
      text(fields.AppName, "app"), " / ", text(fields.EnvironmentName, "env"), " / ", text(fields.Version, "version"));
    const head = el("div", "card-head", el("span", "badge " + shown, STATE_LABEL[shown]), title,
      el("span", "key", "key " + deployment.key_fingerprint));
    const facts = el("dl", "facts");
    for (const name of FIELDS) {
      const value = fields[name];
      const sent = typeof value === "string";
      facts.append(el("dt", null, name), el("dd", sent ? "field-" + name.toLowerCase() : "missing", sent ? text(value) : "not sent"));
    }
    facts.append(el("dt", null, "Duration"), el("dd", "duration", lasted(deployment, now)));
    const article = el("article", "deployment " + shown, head, facts);
    const end = deployment.history[deployment.history.length - 1];
    if (end.orphan_guard) {
      article.append(el("p", "guard", (end.action === "cancel" ? "Cancelled" : "Completed") + " by the orphan guard: the run (",
        text(end.entry_point), ") died before it ended the deployment, and its watcher sent the " + end.action + "."));
    }
    if (deployment.earlier_steps) {
      article.append(el("p", "earlier", earlier(deployment) + "."));
    }
    if (calls.length > CARD_CALLS) {
      article.append(el("p", "earlier", "The latest " + CARD_CALLS + " of its " + calls.length + " calls this page holds:"));
    }
    article.append(callTable(calls.slice(-CARD_CALLS), false));
    article.dataset.state = shown;
    return article;
  }

  function refusedTable(calls) {
    if (!calls.length) {
      return el("p", "empty", "None: every call was accepted.");
    }
    return callTable(calls, true);
  }

  function callTable(calls, withTarget) {
    const head = el("tr", null, el("th", null, "time"), el("th", null, "call"));
    if (withTarget) {
      head.append(el("th", null, "app / environment / version"));
    }
    head.append(el("th", null, "answer"), el("th", null, "from"), el("th", null, "note"));
    const body = el("tbody");
    for (const call of calls) {
      const from = el("td", "from", text(call.entry_point));
      if (call.orphan_guard) {
        from.append(" ", el("span", "tag guard-tag", "orphan guard"));
      }
      if (call.agent) {
        from.setAttribute("title", call.agent);
      }
      const row = el("tr", "call " + call.verdict, el("td", "time", stamp(call.at, true)),
        el("td", "action", call.action || text(call.method + " " + call.path)));
      if (withTarget) {
        row.append(el("td", "target", text(target(call.fields))));
      }
      row.append(el("td", "answer", answer(call)), from, el("td", "note", text(note(call))));
      body.append(row);
    }
    return el("table", "calls", el("thead", null, head), body);
  }

  // --- words ---------------------------------------------------------------------------------------

  function shownState(deployment) {
    const last = deployment.history[deployment.history.length - 1];
    return deployment.state === "completed" && last.one_shot ? "one_shot" : deployment.state;
  }

  function lasted(deployment, now) {
    const steps = deployment.history;
    const last = steps[steps.length - 1];
    if (deployment.state === "in_progress") {
      return "running for " + duration(now - last.at);
    }
    const before = steps[steps.length - 2];
    if (last.one_shot || !before || before.action !== "start") {
      return "none: a one-shot complete, with no start";
    }
    return duration(last.at - before.at) + " (start " + stamp(before.at, true) + ", " + last.action + " " + stamp(last.at, true) + ")";
  }

  function earlier(deployment) {
    return plural(deployment.earlier_steps + deployment.history.length, "step") + " in all; the time axis draws the latest "
      + deployment.history.length;
  }

  function answer(call) {
    if (call.status === null) {
      return "no answer (" + call.outcome + ")" + (call.processed_status ? ", processed: " + call.processed_status : "");
    }
    const word = { accepted: "", refused: " refused", fault: " injected" }[call.verdict];
    return String(call.status) + word;
  }

  function note(call) {
    const parts = [];
    if (call.fault) {
      parts.push("fault: " + call.fault);
    }
    if (call.message) {
      parts.push(call.message);
    }
    return parts.concat(call.warnings.map((warning) => "warning: " + warning)).join("; ");
  }

  function target(fields) {
    const names = [fields.AppName, fields.EnvironmentName, fields.Version];
    return names.some((name) => name) ? names.map((name) => name || "?").join(" / ") : "-";
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  // "8.25 s", "42.1 s", "5 min 3 s", "2 h 5 min", "3 d 4 h": the two largest units.
  function duration(ms) {
    if (ms < 60000) {
      return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    }
    const seconds = Math.round(ms / 1000);
    const days = Math.floor(seconds / 86400);
    const hours = Math.floor(seconds % 86400 / 3600);
    const minutes = Math.floor(seconds % 3600 / 60);
    if (days) {
      return days + " d " + hours + " h";
    }
    if (hours) {
      return hours + " h " + minutes + " min";
    }
    return minutes + " min " + seconds % 60 + " s";
  }

  function clock(at, precise) {
    const time = new Date(at);
    const text = [time.getHours(), time.getMinutes(), time.getSeconds()].map((part) => String(part).padStart(2, "0")).join(":");
    return precise ? text + "." + String(time.getMilliseconds()).padStart(3, "0") : text;
  }

  // The time of a call, with its date when that is not today (the emulator's today).
  function stamp(at, precise) {
    return (day(at) === day(Date.now() + state.serverOffset) ? "" : date(at) + " ") + clock(at, precise);
  }

  function date(at) {
    const time = new Date(at);
    return time.getFullYear() + "-" + String(time.getMonth() + 1).padStart(2, "0") + "-" + String(time.getDate()).padStart(2, "0");
  }

  function day(at) {
    return new Date(at).toDateString();
  }

  function byId(id) {
    return document.getElementById(id);
  }

  // Replaces the children of the element with this id by the nodes (or strings) of the list.
  function fill(id, nodes) {
    const fragment = document.createDocumentFragment();
    for (const node of nodes) {
      fragment.append(node);
    }
    byId(id).replaceChildren(fragment);
  }

  // A value a client sent, isolated (<bdi>): right-to-left text in it cannot reorder the words around it.
  function text(value, className) {
    return el("bdi", className, value);
  }

  // el("td", "class", child, ...): strings become text nodes, never markup.
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child);
      }
    }
    return node;
  }

  byId("origin").textContent = location.origin;
  poll();
})();
