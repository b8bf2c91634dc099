// The runs page of `lamrunner serve`. Plain DOM, no framework. Run data is user data: it is
// only ever set as text (el() below), never parsed as HTML.
"use strict";

const LIST_REFRESH_MS = 2000; // the list, while a listed run is in progress
const RUN_REFRESH_MS = 1000; // a run's page, while the run is in progress
let timer = null;

// -- small helpers ----------------------------------------------------------------------------

// An absent value (null, undefined, false) renders as nothing: never the text "null".
const absent = (value) => value === null || value === undefined || value === false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (absent(value)) continue;
    if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  return add(node, ...children);
}

// node.append for page content: absent children are skipped, the rest become text or nodes.
function add(node, ...children) {
  for (const child of children) {
    if (absent(child)) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function replace(node, ...children) {
  node.replaceChildren();
  return add(node, ...children);
}

// The present parts joined by `sep`: `words(" · ", "GET", null, 3)` is "GET · 3".
function words(sep, ...parts) {
  return parts.filter((part) => !absent(part) && part !== "").join(sep);
}

function announce(message) {
  document.getElementById("announce").textContent = message;
}

class PageError extends Error {}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      ...options,
    });
  } catch (err) {
    throw new PageError("The server does not answer (is `lamrunner serve` still running?).");
  }
  if (response.status === 401) {
    throw new PageError(
      "This server needs an API key. Open the page once as /?api_key=YOUR_KEY " +
        "(the server keeps it in a cookie for this browser)."
    );
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message || body.error : response.statusText;
    throw new PageError(`${response.status}: ${message}`);
  }
  return body;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m - h * 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function when(iso) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return el("span", { text: iso });
  return el("time", { datetime: iso, title: iso, text: moment.toLocaleString() });
}

function badge(status) {
  const text = String(status).replace("-", " "); // not-started -> not started
  return el("span", { class: `status s-${status}`, "data-status": status, text });
}

function resumed(resumes) {
  if (!resumes || !resumes.length) return [];
  const last = resumes[resumes.length - 1];
  const times = resumes.length === 1 ? "once" : `${resumes.length} times`;
  return [
    el("dt", { text: "Resumed" }),
    el("dd", { id: "run-resumed" }, `${times}, last `, absent(last.at) ? null : when(last.at),
      absent(last.fromStep) ? null : ` (from step ${last.fromStep})`),
  ];
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function showProblem(main, err) {
  const message = err instanceof PageError ? err.message : `The page failed: ${err}`;
  const old = main.querySelector(".notice.problem");
  const notice = el("p", { class: "notice problem", role: "alert", text: message });
  if (old) old.replaceWith(notice);
  else main.prepend(notice);
}

function clearProblem(main) {
  const old = main.querySelector(".notice.problem");
  if (old) old.remove();
}

function schedule(fn, ms) {
  clearTimeout(timer);
  timer = setTimeout(fn, ms);
}

// -- the runs list ----------------------------------------------------------------------------

async function showList(main) {
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const name of ["status", "workflow", "before"]) {
    if (params.get(name)) query.set(name, params.get(name));
  }
  document.title = "lamrunner runs";
  replace(main, el("h1", { text: "Runs" }));
  const slot = el("div", { id: "runs" });
  main.append(slot);
  let filtersShown = false;

  async function refresh() {
    let data;
    try {
      data = await api(`/api/page/runs?${query}`);
    } catch (err) {
      showProblem(main, err);
      schedule(refresh, LIST_REFRESH_MS * 2);
      return;
    }
    clearProblem(main);
    if (!filtersShown) {
      slot.before(filters(data, params));
      filtersShown = true;
    }
    replace(slot, runsTable(data), pager(data, params));
    if (data.live) schedule(refresh, LIST_REFRESH_MS);
  }
  await refresh();
}

function filters(data, params) {
  const form = el("form", { class: "filters", method: "get", action: "/", role: "search" });
  const status = el(
    "select",
    { name: "status", id: "filter-status", onchange: () => form.requestSubmit() },
    el("option", { value: "", text: "any" }),
    ...data.statuses.map((s) =>
      el("option", { value: s, text: s, selected: data.filters.status === s })
    )
  );
  const workflows = [...data.workflows];
  if (data.filters.workflow && !workflows.includes(data.filters.workflow)) {
    workflows.push(data.filters.workflow);
  }
  const workflow = el(
    "select",
    { name: "workflow", id: "filter-workflow", onchange: () => form.requestSubmit() },
    el("option", { value: "", text: "any" }),
    ...workflows.map((w) =>
      el("option", { value: w, text: w, selected: data.filters.workflow === w })
    )
  );
  form.addEventListener("submit", (event) => {
    // Empty selects stay out of the address, so a link reads /?status=failed.
    event.preventDefault();
    const query = new URLSearchParams();
    if (status.value) query.set("status", status.value);
    if (workflow.value) query.set("workflow", workflow.value);
    location.assign(query.toString() ? `/?${query}` : "/");
  });
  add(
    form,
    el("label", { for: "filter-status" }, "Status", status),
    el("label", { for: "filter-workflow" }, "Workflow", workflow),
    el("noscript", {}, el("button", { type: "submit", text: "Filter" }))
  );
  if (params.get("status") || params.get("workflow")) {
    add(form, el("a", { href: "/", text: "Clear filters" }));
  }
  return form;
}

function runsTable(data) {
  if (!data.runs.length) {
    return el("p", { class: "notice", id: "no-runs", text: "No runs match." });
  }
  const head = el(
    "tr",
    {},
    ...["Run", "Workflow", "Status", "Started", "Duration", "Attempts"].map((h, i) =>
      el("th", { scope: "col", class: i >= 4 ? "num" : null, text: h })
    )
  );
  const rows = data.runs.map((run) =>
    el(
      "tr",
      { "data-job-id": run.jobId, "data-status": run.status },
      el("td", { "data-label": "Run" }, el("a", { href: `/runs/${encodeURIComponent(run.jobId)}`, text: run.jobId })),
      el("td", { "data-label": "Workflow", text: run.workflow }),
      el("td", { "data-label": "Status" }, badge(run.status)),
      el("td", { "data-label": "Started" }, when(run.createdAt)),
      el("td", { "data-label": "Duration", class: "num duration", text: duration(run.durationMs) }),
      el("td", { "data-label": "Attempts", class: "num attempts", text: run.attempts })
    )
  );
  return el(
    "table",
    { class: "runs" },
    el("caption", { class: "visually-hidden", text: "Runs, newest first" }),
    el("thead", {}, head),
    el("tbody", {}, ...rows)
  );
}

function pager(data, params) {
  const nav = el("nav", { class: "pager", "aria-label": "Pages" });
  const base = new URLSearchParams();
  for (const name of ["status", "workflow"]) {
    if (params.get(name)) base.set(name, params.get(name));
  }
  if (params.get("before")) {
    add(nav, el("a", { href: base.toString() ? `/?${base}` : "/", text: "Newest" }));
  }
  if (data.older) {
    base.set("before", data.older);
    add(nav, el("a", { href: `/?${base}`, rel: "next", id: "older", text: "Older" }));
  }
  return nav;
}

// -- a run's page -----------------------------------------------------------------------------

async function showRun(main, jobId) {
  document.title = `run ${jobId}`;
  replace(
    main,
    el("p", {}, el("a", { href: "/", text: "← All runs" })),
    el("h1", {}, "Run ", el("span", { id: "run-id", text: jobId }))
  );
  const slot = el("div", { id: "run" });
  main.append(slot);

  async function refresh() {
    let data;
    try {
      data = await api(`/api/page/runs/${encodeURIComponent(jobId)}`);
    } catch (err) {
      showProblem(main, err);
      schedule(refresh, RUN_REFRESH_MS * 3);
      return;
    }
    clearProblem(main);
    // A refresh keeps what the reader had: opened results, the focused button, the scroll.
    const open = [...slot.querySelectorAll("details[open]")].map((d) => d.dataset.key);
    const focused = document.activeElement && slot.contains(document.activeElement)
      ? document.activeElement.id : null;
    const scrolled = window.scrollY;
    const seen = JSON.stringify(data);
    if (seen !== slot.dataset.seen) {
      slot.dataset.seen = seen;
      replace(slot, ...runParts(data, jobId, refresh));
      for (const key of open) {
        const again = slot.querySelector(`details[data-key="${CSS.escape(key)}"]`);
        if (again) again.open = true;
      }
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
      window.scrollTo(0, scrolled);
    }
    if (data.run.live) schedule(refresh, RUN_REFRESH_MS);
  }
  await refresh();
}

function runParts(data, jobId, refresh) {
  const run = data.run;
  const parts = [
    el(
      "dl",
      { class: "meta" },
      el("dt", { text: "Status" }),
      el("dd", { id: "run-status" }, badge(run.status), run.live ? " (live)" : null),
      el("dt", { text: "Workflow" }),
      el("dd", { text: run.workflow }),
      el("dt", { text: "Started" }),
      el("dd", {}, when(run.createdAt)),
      el("dt", { text: run.live ? "Running for" : "Duration" }),
      el("dd", { text: duration(run.durationMs) }),
      el("dt", { text: "Attempts so far" }),
      el("dd", { id: "run-attempts", text: run.attempts }),
      run.parent ? el("dt", { text: "Started by" }) : null,
      run.parent
        ? el("dd", {}, el("a", { href: `/runs/${encodeURIComponent(run.parent.runId)}`, text: run.parent.runId }), absent(run.parent.step) ? null : ` (step ${run.parent.step})`)
        : null,
      ...resumed(run.resumes)
    ),
    actions(run, jobId, refresh),
  ];
  if (run.error) parts.push(errorBox(run.error, data.steps));
  if (run.result !== null && run.result !== undefined) {
    parts.push(el("h2", { text: "Result" }), el("pre", { id: "run-result", text: json(run.result) }));
  }
  parts.push(el("h2", { text: "Steps" }), steps(data.steps));
  if (data.children.length) {
    parts.push(
      el("h2", { text: "Sub-workflow runs" }),
      el(
        "ul",
        { class: "children" },
        ...data.children.map((c) =>
          el(
            "li",
            {},
            el("a", { href: `/runs/${encodeURIComponent(c.runId)}`, text: c.runId }),
            ` ${words(" · ", c.workflow, absent(c.step) ? null : `step ${c.step}`, c.mode)} · `,
            badge(String(c.status).toLowerCase())
          )
        )
      )
    );
  }
  return parts;
}

function actions(run, jobId, refresh) {
  const bar = el("div", { class: "actions" });
  const act = (verb, label, cls, question) =>
    el("button", {
      type: "button",
      id: `${verb}-button`,
      class: cls,
      text: label,
      onclick: async (event) => {
        const button = event.currentTarget;
        if (question && !window.confirm(question)) return;
        button.disabled = true;
        try {
          await api(`/jobs/${encodeURIComponent(jobId)}/${verb}`, { method: "POST" });
          announce(`${label} requested for run ${jobId}.`);
        } catch (err) {
          showProblem(document.getElementById("main"), err);
          button.disabled = false;
          return;
        }
        await refresh();
        schedule(refresh, RUN_REFRESH_MS);
      },
    });
  if (run.canCancel) {
    add(bar, act("cancel", "Cancel", "danger", `Cancel run ${jobId}? Its polls stop and it ends canceled.`));
  }
  if (run.canResume) add(bar, act("resume", "Resume", null));
  return bar;
}

function errorBox(error, stepsData) {
  const box = el(
    "section",
    { class: "error-box", id: "run-error", "aria-label": "Error" },
    el("h2", { text: `Error: ${error.type || "error"}` }),
    error.step ? el("p", { class: "muted", text: `in step ${error.step}` }) : null,
    el("pre", { text: error.message || json(error) })
  );
  const last = lastResponse(stepsData);
  if (last) {
    const body = typeof last.body === "string" ? last.body : absent(last.body) ? null : json(last.body);
    add(
      box,
      el("h3", { text: absent(last.status) ? "Last response" : `Last response (HTTP ${last.status})` }),
      absent(body) ? null : el("pre", { id: "last-response", text: body }),
      last.truncated ? el("p", { class: "muted", text: "(cut: the body was longer)" }) : null
    );
  }
  return box;
}

function lastResponse(stepsData) {
  let found = null;
  for (const step of stepsData) {
    for (const poll of step.polls) {
      for (const entry of poll.timeline) if (entry.lastResponse) found = entry.lastResponse;
    }
  }
  return found;
}

function steps(stepsData) {
  if (!stepsData.length) return el("p", { class: "muted", text: "No step has started yet." });
  return el(
    "ol",
    { class: "steps" },
    ...stepsData.map((step, i) =>
      el(
        "li",
        { "data-step": step.key, "data-status": step.status },
        el(
          "div",
          { class: "step-head" },
          el("h3", { text: `${i + 1}. ${step.name}` }),
          badge(step.status),
          el("span", { class: "muted", text: duration(step.durationMs) }),
          step.left && step.left !== "sequence" && step.left !== "end"
            ? el("span", { class: "muted", text: `→ ${step.left}${step.to ? ` ${step.to}` : ""}` })
            : null
        ),
        step.error ? el("pre", { class: "s-error", text: words(": ", step.error.type, step.error.message) }) : null,
        ...step.polls.map((poll) => pollView(step, poll)),
        step.result !== null && step.result !== undefined
          ? el(
              "details",
              { "data-key": `result-${step.key}` },
              el("summary", { text: "Result" }),
              el("pre", { text: json(step.result) })
            )
          : null
      )
    )
  );
}

function pollView(step, poll) {
  const statuses = Object.entries(poll.statuses)
    .map(([status, n]) => `${status} × ${n}`)
    .join(", ");
  const summary = `Poll${step.polls.length > 1 ? ` of request ${poll.element}` : ""}: ` +
    `${poll.attempts} attempt${poll.attempts === 1 ? "" : "s"}` +
    (poll.elided ? ` (${poll.elided} not kept)` : "") + (statuses ? ` — ${statuses}` : "");
  return el(
    "div",
    { class: "poll", "data-element": poll.element },
    el("p", { class: "poll-summary", text: summary }),
    el(
      "ol",
      { class: "timeline", "aria-label": "Attempts, in order" },
      ...poll.timeline.map((entry) => attemptView(entry))
    )
  );
}

function attemptView(entry) {
  if (entry.elided) {
    return el("li", { class: "gap", text: `… ${entry.elided} attempts not kept …` });
  }
  const settled = entry.delayMs === null || entry.delayMs === undefined;
  const good = entry.outcome === "success";
  const cls = ["attempt", settled ? (good ? "settled-ok" : "settled-bad") : null]
    .filter(Boolean)
    .join(" ");
  const parts = [`#${entry.attempt} `, el("strong", { text: entry.status ?? "—" }), ` ${duration(entry.durationMs)}`];
  if (!settled) parts.push(` · wait ${duration(entry.delayMs)}`);
  else if (!absent(entry.outcome)) parts.push(` · ${entry.outcome}`);
  if (entry.progress && entry.progress.percent !== undefined) parts.push(` · ${entry.progress.percent}%`);
  const title = [entry.at, entry.error].filter(Boolean).join(" — ");
  return el("li", { class: cls, title, "data-attempt": entry.attempt }, ...parts);
}

// -- routing ----------------------------------------------------------------------------------

function start() {
  const main = document.getElementById("main");
  const match = location.pathname.match(/^\/runs\/([^/]+)$/);
  const shown = match ? showRun(main, decodeURIComponent(match[1])) : showList(main);
  shown.catch((err) => showProblem(main, err));
}

document.addEventListener("DOMContentLoaded", start);
