// The emulator's page: asks /_emulator/updates for news every second and draws what the emulated Retrace received.
//
// Every value a client sent (versions, names, branches, messages, User-Agents) is inserted as text: element.append()
// with a string makes a text node, and nothing here assigns innerHTML. Attributes get only our own words or text
// through setAttribute ("title"), which is never parsed as markup.
"use strict";

(function () {
  const POLL_MS = 1000;
  const RETRY_MS = 2000;
  const SHOWN = 100;  // deployments, and refused calls, drawn at most: the newest
  const KEPT = 400;  // calls and deployments kept in memory at most
  const STATE_LABEL = {
    in_progress: "in progress",
    completed: "completed",
    cancelled: "cancelled",
    one_shot: "one-shot complete",
  };
  const FIELDS = ["Name", "Branch", "Commit", "Uri"];

  let state = fresh(null);

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
    const query = new URLSearchParams({
      generation: state.generation || "",
      calls: String(state.callsCursor),
      deployments: String(state.deploymentsCursor),
    });
    let delay = POLL_MS;
    try {
      const answer = await fetch("/_emulator/updates?" + query.toString(), { cache: "no-store" });
      if (!answer.ok) {
        throw new Error("HTTP " + answer.status);
      }
      apply(await answer.json());
      showLive(true);
    } catch (error) {
      showLive(false, error);
      delay = RETRY_MS;
    }
    render();
    setTimeout(poll, delay);
  }

  function apply(update) {
    if (update.generation !== state.generation) {
      state = fresh(update.generation);  // the emulator was reset (or restarted): start over
    }
    state.serverOffset = update.server_time - Date.now();
    state.skippedCalls += update.skipped_calls;
    state.skippedDeployments += update.skipped_deployments;
    state.calls.push(...update.calls);
    if (state.calls.length > KEPT) {
      state.skippedCalls += state.calls.length - KEPT;
      state.calls.splice(0, state.calls.length - KEPT);
    }
    for (const deployment of update.deployments) {
      state.deployments.set(deployment.id, deployment);
    }
    while (state.deployments.size > KEPT) {
      state.deployments.delete(state.deployments.keys().next().value);
      state.skippedDeployments += 1;
    }
    state.callsCursor = update.calls_cursor;
    state.deploymentsCursor = update.deployments_cursor;
  }

  function showLive(ok, error) {
    const live = byId("live");
    live.className = ok ? "live ok" : "live down";
    live.textContent = ok ? "live, updated " + clock(Date.now()) : "no answer from the emulator (" + error.message + "), retrying";
  }

  // --- drawing -------------------------------------------------------------------------------------

  function render() {
    const now = Date.now() + state.serverOffset;
    const deployments = Array.from(state.deployments.values()).sort((a, b) => a.history[0].at - b.history[0].at);
    const shown = deployments.slice(-SHOWN);
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
    byId("summary").replaceChildren(summary(deployments));
    byId("timeline").replaceChildren(...timeline(shown, callsOf, unnamed, now));
    byId("deployments").replaceChildren(...cards(shown.slice().reverse(), callsOf, now));
    byId("refused").replaceChildren(refusedTable(state.calls.filter((call) => call.verdict !== "accepted").slice(-SHOWN).reverse()));
  }

  function summary(deployments) {
    if (!deployments.length && !state.calls.length) {
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
    if (state.skippedCalls || state.skippedDeployments) {
      text += " Older ones not shown: " + plural(state.skippedCalls, "call") + ", " + plural(state.skippedDeployments, "deployment") + ".";
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
    const first = Math.min(...times);
    // The axis ends at the last event, or now while a deployment runs: a finished run keeps its picture.
    const last = Math.max(...times, running ? now : first);
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
    for (let index = 0; index <= 4; index++) {
      const at = first + span * index / 4;
      const tick = el("span", "tick", clock(at, span < 10000));
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
    const label = el("div", "lane-label", el("span", "badge " + shown, STATE_LABEL[shown]), " ", target(deployment.fields));
    label.setAttribute("title", target(deployment.fields));
    return el("div", "lane", label, track);
  }

  function mark(call, x) {
    const node = el("span", "mark " + call.verdict);
    node.style.left = x(call.at);
    node.setAttribute("title", clock(call.at, true) + " " + (call.action || call.method + " " + call.path) + ": " + answer(call)
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
      el("span", "app", fields.AppName), " / ", el("span", "env", fields.EnvironmentName), " / ", el("span", "version", fields.Version));
    const head = el("div", "card-head", el("span", "badge " + shown, STATE_LABEL[shown]), title,
      el("span", "key", "key " + deployment.key_fingerprint));
    const facts = el("dl", "facts");
    for (const name of FIELDS) {
      const value = fields[name];
      const sent = typeof value === "string";
      facts.append(el("dt", null, name), el("dd", sent ? "field-" + name.toLowerCase() : "missing", sent ? value : "not sent"));
    }
    facts.append(el("dt", null, "Duration"), el("dd", "duration", lasted(deployment, now)));
    const article = el("article", "deployment " + shown, head, facts);
    const end = deployment.history[deployment.history.length - 1];
    if (end.orphan_guard) {
      article.append(el("p", "guard", (end.action === "cancel" ? "Cancelled" : "Completed") + " by the orphan guard: the run ("
        + end.entry_point + ") died before it ended the deployment, and its watcher sent the " + end.action + "."));
    }
    article.append(callTable(calls, false));
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
      const from = el("td", "from", call.entry_point);
      if (call.orphan_guard) {
        from.append(" ", el("span", "tag guard-tag", "orphan guard"));
      }
      if (call.agent) {
        from.setAttribute("title", call.agent);
      }
      const row = el("tr", "call " + call.verdict, el("td", "time", clock(call.at, true)),
        el("td", "action", call.action || call.method + " " + call.path));
      if (withTarget) {
        row.append(el("td", "target", target(call.fields)));
      }
      row.append(el("td", "answer", answer(call)), from, el("td", "note", note(call)));
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
    return duration(last.at - before.at) + " (start " + clock(before.at, true) + ", " + last.action + " " + clock(last.at, true) + ")";
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

  function duration(ms) {
    if (ms < 60000) {
      return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    }
    return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
  }

  function clock(at, precise) {
    const time = new Date(at);
    const text = [time.getHours(), time.getMinutes(), time.getSeconds()].map((part) => String(part).padStart(2, "0")).join(":");
    return precise ? text + "." + String(time.getMilliseconds()).padStart(3, "0") : text;
  }

  function byId(id) {
    return document.getElementById(id);
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
