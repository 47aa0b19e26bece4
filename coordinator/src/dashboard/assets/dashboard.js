// The ablate dashboard: one client of the JSON API (deploy/README.md). Each page long-polls
// its endpoint with ?since=VERSION and redraws from the answer; nothing reloads the page.
// Text from the coordinator (names, factors, reasons) only ever goes into textContent.
"use strict";

const body = document.body;
const PAGE = body.dataset.page;
const ID = body.dataset.id;
const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const main = document.getElementById("main");
const SVG = "http://www.w3.org/2000/svg";

// ---- small helpers -------------------------------------------------------------------

function h(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function s(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) if (c) e.append(c);
  return e;
}

// replaceChildren without the parts a page leaves out (null).
function show(...parts) {
  main.replaceChildren(...parts.flat().filter((p) => p !== null && p !== undefined && p !== false));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dash = "—";

function percent(v) {
  return v === null || v === undefined ? dash : (v * 100).toFixed(1) + " %";
}
function fixed(v, d) {
  return v === null || v === undefined ? dash : Number(v).toFixed(d);
}
function params(n) {
  if (!n) return dash;
  if (n < 1000) return String(n);
  if (n < 1e6) return (n / 1e3).toFixed(1) + "k";
  return (n / 1e6).toFixed(2) + "M";
}
function duration(sec) {
  if (sec === null || sec === undefined) return dash;
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return sec + "s";
  const m = Math.floor(sec / 60), r = sec % 60;
  if (m < 60) return m + "m " + String(r).padStart(2, "0") + "s";
  const hr = Math.floor(m / 60);
  return hr + "h " + String(m % 60).padStart(2, "0") + "m";
}
function ago(sec) {
  return sec === null || sec === undefined ? "never" : duration(sec) + " ago";
}
function when(ms) {
  return ms ? new Date(ms).toLocaleString() : dash;
}
function stateBadge(state) {
  return h("span", { class: "state " + state, text: state });
}
function swatch(color) {
  const e = h("span", { class: "swatch" });
  e.style.background = color;
  return e;
}

// ---- live status, logout, confirmation -----------------------------------------------

const live = document.getElementById("live");
function setLive(ok, text) {
  live.className = "live " + (ok ? "ok" : "stale");
  live.textContent = text;
}

const logout = document.getElementById("logout");
if (body.dataset.auth !== "on") logout.hidden = true;
logout.addEventListener("click", async () => {
  await fetch("/logout", { method: "POST", headers: { "x-csrf-token": CSRF } });
  location.assign("/login");
});
for (const a of document.querySelectorAll("nav a")) {
  if (a.dataset.nav === PAGE || (PAGE === "experiment" && a.dataset.nav === "experiments")) {
    a.classList.add("active");
  }
}

const modal = document.getElementById("confirm");
function confirmAction(text) {
  return new Promise((resolve) => {
    document.getElementById("confirm-text").textContent = text;
    modal.hidden = false;
    const yes = document.getElementById("confirm-yes");
    const no = document.getElementById("confirm-no");
    const done = (answer) => {
      modal.hidden = true;
      yes.onclick = no.onclick = null;
      resolve(answer);
    };
    yes.onclick = () => done(true);
    no.onclick = () => done(false);
    no.focus();
  });
}

async function cancelTarget(target, what) {
  if (!(await confirmAction("Cancel " + what + "? Its running attempts are stopped."))) return;
  const r = await fetch("/api/cancel", {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": CSRF },
    body: JSON.stringify({ target }),
  });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ error: r.statusText }));
    showError("Cancel failed: " + (e.error || r.status));
  }
}

let errorBox = null;
function showError(text) {
  if (!errorBox) {
    errorBox = h("div", { class: "error-box", role: "alert" });
    main.before(errorBox);
  }
  errorBox.textContent = text;
}

// ---- the long-poll loop ----------------------------------------------------------------

async function follow(url, render) {
  let version = null;
  for (;;) {
    let doc;
    try {
      const r = await fetch(version === null ? url : url + "?since=" + version, {
        headers: { accept: "application/json" },
        cache: "no-store",
      });
      if (r.status === 401) {
        location.assign("/login?next=" + encodeURIComponent(location.pathname));
        return;
      }
      doc = await r.json();
      if (!r.ok) throw new Error(doc.error || r.statusText);
    } catch (e) {
      setLive(false, "reconnecting…");
      if (String(e.message || "").includes("not found")) {
        show(h("div", { class: "error-box", text: e.message }));
        return;
      }
      await sleep(2500);
      continue;
    }
    version = doc.version;
    render(doc);
    setLive(true, "live · " + new Date().toLocaleTimeString());
    // Progress arrives many times a second: at most one redraw a second.
    await sleep(1000);
  }
}

// ---- experiments -------------------------------------------------------------------------

function countsCell(e) {
  const parts = [
    ["finished", e.finished], ["running", e.running], ["queued", e.queued],
    ["failed", e.failed], ["cancelled", e.cancelled], ["stopped", e.stopped],
  ].filter(([, n]) => n > 0);
  const stack = h("div", { class: "stack" });
  for (const [state, n] of parts) {
    if (state === "queued") continue;
    const seg = h("span", { class: state });
    seg.style.width = (100 * n) / Math.max(1, e.runs) + "%";
    stack.append(seg);
  }
  return h("td", {},
    h("div", { class: "counts" }, parts.map(([st, n]) => h("span", { class: "state " + st, text: n + " " + st }))),
    stack);
}

function renderExperiments(doc) {
  const rows = doc.experiments.map((e) =>
    h("tr", { dataset: { experiment: e.id } },
      h("td", { class: "name" }, h("a", { href: "/experiments/" + encodeURIComponent(e.id), text: e.name }),
        h("div", { class: "muted", text: e.id })),
      h("td", { class: "exp-state" }, stateBadge(e.state)),
      countsCell(e),
      h("td", { class: "num", text: e.runs }),
      h("td", { class: "hide-narrow", text: when(e.submitted_unix_ms) }),
      h("td", { class: "num", text: e.state === "running" || e.state === "queued" ? duration(e.age_seconds) : dash })));
  const table = h("table", {},
    h("thead", {}, h("tr", {},
      h("th", { text: "Experiment" }), h("th", { text: "State" }), h("th", { text: "Runs by state" }),
      h("th", { class: "num", text: "Runs" }), h("th", { class: "hide-narrow", text: "Submitted" }),
      h("th", { class: "num", text: "Wall time (active)" }))),
    h("tbody", {}, rows));
  show(
    h("h1", { text: "Experiments" }),
    h("p", { class: "meta", text: doc.total === 0 ? "Nothing submitted yet: ablate submit GRID, or ablate run GRID." :
      doc.total + " experiment" + (doc.total === 1 ? "" : "s") + ", newest first." }),
    h("section", {}, h("div", { class: "scroll" }, table)));
}

// ---- one experiment ----------------------------------------------------------------------

const METRICS = [
  ["eval_acc", "Eval accuracy", (v) => (v * 100).toFixed(0) + "%"],
  ["eval_loss", "Eval loss", (v) => tick(v)],
  ["train_loss", "Train loss", (v) => tick(v)],
  ["lr", "Learning rate", (v) => tick(v)],
];

function tick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 100 || a < 0.001) return v.toExponential(0);
  return String(Number(v.toPrecision(3)));
}

function niceStep(range) {
  const raw = range / 4;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

function chart(metric, title, fmt, runs) {
  const W = 560, H = 280, R = 14, T = 12, B = 30;
  let maxEpoch = 1, lo = Infinity, hi = -Infinity;
  for (const run of runs) {
    maxEpoch = Math.max(maxEpoch, run.epochs || 1);
    for (const v of run.curves[metric]) {
      if (v === null || !isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (metric === "eval_acc") { lo = Math.max(0, Math.min(lo, hi - 0.05)); hi = Math.min(1, Math.max(hi, lo + 0.05)); }
  if (hi - lo < 1e-12) { const d = Math.abs(hi) * 0.1 || 0.1; lo -= d; hi += d; }
  const step = niceStep(hi - lo);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(v);
  // Room for the longest tick label at the phone's larger font (about 10 units a character).
  const L = 16 + 10 * Math.max(...ticks.map((v) => fmt(v).length));
  const x = (e) => L + ((e - 1) / Math.max(1, maxEpoch - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, "data-metric": metric });
  for (const v of ticks) {
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const t = s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
    t.textContent = fmt(v);
    svg.append(t);
  }
  const every = Math.max(1, Math.ceil(maxEpoch / 10));
  for (let e = 1; e <= maxEpoch; e += every) {
    const t = s("text", { x: x(e), y: H - B + 16, "text-anchor": "middle" });
    t.textContent = e;
    svg.append(t);
  }
  const label = s("text", { x: W - R, y: H - 2, "text-anchor": "end" });
  label.textContent = "epoch";
  svg.append(label);
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(s("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  // Drawn in submission order, so that overlapping runs stack as in the report.
  for (const run of [...runs].sort((a, b) => a.index - b.index)) {
    const g = s("g", { "data-run": run.id });
    const pts = [];
    run.curves.epoch.forEach((e, k) => {
      const v = run.curves[metric][k];
      if (v === null || !isFinite(v)) return;
      pts.push([x(e), y(v)]);
    });
    if (pts.length > 1) {
      g.append(s("polyline", { points: pts.map((p) => p.join(",")).join(" "), fill: "none",
        stroke: run.color, "stroke-width": 2, "stroke-linejoin": "round" }));
    }
    for (const [px, py] of pts) g.append(s("circle", { cx: px, cy: py, r: 3, fill: run.color }));
    svg.append(g);
  }
  return h("figure", { class: "chart" }, h("h3", { text: title }), svg);
}

function progressCell(run) {
  const fill = h("div", { class: "fill" });
  fill.style.width = (run.progress * 100).toFixed(1) + "%";
  fill.style.background = run.color;
  let text;
  if (run.state === "running" && run.epoch > 0) {
    text = "epoch " + run.epoch + "/" + run.epochs;
  } else {
    text = run.epochs_done + "/" + run.epochs + " epochs";
  }
  return h("td", { class: "progress-cell" },
    h("div", { class: "progress", dataset: { progress: run.progress.toFixed(4), epochsDone: run.epochs_done } },
      h("div", { class: "track" }, fill), h("small", { text })));
}

function why(run) {
  return run.error || run.stop_reason || run.pending_reason || "";
}

function runsTable(doc) {
  const factors = doc.factors || [];
  const isActive = (run) => run.state === "running" || run.state === "queued";
  // Columns that would be empty for every run are left out.
  const showWhy = doc.runs.some((run) => why(run));
  const rows = doc.runs.map((run) => h("tr", { dataset: { run: run.id, state: run.state } },
    h("td", { class: "name" }, h("div", { class: "run-name" }, swatch(run.color), h("span", { text: run.name }))),
    factors.map((f) => h("td", { class: "factor hide-narrow" }, run.factors[f] === undefined ? dash :
      h("code", { text: typeof run.factors[f] === "string" ? run.factors[f] : JSON.stringify(run.factors[f]) }))),
    h("td", { class: "num hide-narrow", text: params(run.params) }),
    h("td", { class: "num best-acc", text: percent(run.best_eval_acc) }),
    h("td", { class: "num hide-narrow", text: run.best_epoch ?? dash }),
    progressCell(run),
    h("td", { class: "num", text: run.attempts }),
    h("td", { text: run.worker || dash }),
    h("td", {}, h("div", { class: "state-cell" }, stateBadge(run.state),
      isActive(run) ? h("button", { class: "small danger cancel-run", type: "button", title: "Cancel this run",
        onclick: () => cancelTarget(run.id, "run " + run.name) }, "Cancel") : null)),
    h("td", { class: "num", text: duration(run.elapsed_seconds) }),
    showWhy ? h("td", { class: "why", text: why(run) }) : null));
  return h("table", { id: "runs" },
    h("thead", {}, h("tr", {},
      h("th", { text: "Run" }), factors.map((f) => h("th", { class: "factor hide-narrow", text: f })),
      h("th", { class: "num hide-narrow", text: "Params" }), h("th", { class: "num", text: "Best eval acc" }),
      h("th", { class: "num hide-narrow", text: "Best epoch" }), h("th", { text: "Progress" }),
      h("th", { class: "num", text: "Attempts" }), h("th", { text: "Worker" }),
      h("th", { text: "State" }), h("th", { class: "num", text: "Time" }),
      showWhy ? h("th", { text: "Why (pending, stopped, failed)" }) : null)),
    h("tbody", {}, rows));
}

function effectsSection(effects) {
  if (!effects.length) return null;
  const rows = [];
  for (const f of effects) {
    f.levels.forEach((l, k) => {
      const bar = h("div", { class: "bar" });
      if (l.delta_points !== null) {
        const seg = h("span", { class: l.delta_points >= 0 ? "pos" : "neg" });
        seg.style.width = Math.min(50, Math.abs(l.delta_points)) + "%";
        bar.append(seg);
      }
      rows.push(h("tr", { class: k === 0 ? "baseline" : null },
        h("td", { text: k === 0 ? f.factor : "" }),
        h("td", {}, h("code", { text: l.label })),
        h("td", { class: "num", text: percent(l.mean_acc) + (l.std_acc !== null ? " ± " + (l.std_acc * 100).toFixed(1) : "") }),
        h("td", { class: "num", text: l.runs }),
        h("td", { class: "num", text: l.delta_points === null ? "baseline" : (l.delta_points >= 0 ? "+" : "") + l.delta_points.toFixed(1) }),
        h("td", {}, bar)));
    });
  }
  return h("section", { id: "effects" },
    h("h2", { text: "Factor effects" }),
    h("p", { class: "note", text: "Mean best eval accuracy per level; the difference to the first level in points, averaged over seeds." }),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "Factor" }), h("th", { text: "Level" }),
        h("th", { class: "num", text: "Best eval acc" }), h("th", { class: "num", text: "Runs" }),
        h("th", { class: "num", text: "Δ points" }), h("th", {}))),
      h("tbody", {}, rows))));
}

function claimsSection(claims) {
  if (!claims.length) return null;
  const rows = claims.map((c) => h("tr", {},
    h("td", { class: "claim", text: c.name }),
    h("td", {}, h("span", { class: "verdict " + c.verdict, text: c.verdict })),
    h("td", { class: "why", text: c.reason + (c.partial ? " (some runs unfinished)" : "") })));
  return h("section", { id: "claims" }, h("h2", { text: "Claims" }),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "Claim" }), h("th", { text: "Verdict" }), h("th", { text: "Why" }))),
      h("tbody", {}, rows))));
}

function renderExperiment(doc) {
  const e = doc.experiment;
  document.title = e.name + " · ablate";
  const active = e.state === "running" || e.state === "queued";
  const title = h("div", { class: "titlebar" },
    h("div", { class: "grow" },
      h("h1", {}, e.name, " ", stateBadge(e.state)),
      h("div", { class: "meta", text: e.id + " · submitted " + when(e.submitted_unix_ms) + " · " + e.runs + " runs" }),
      h("div", { class: "downloads" }, h("span", { class: "muted", text: "Report:" }),
        doc.reports.map((r) => h("a", { href: r.url, download: true, text: r.format })))),
    active ? h("button", { class: "danger", id: "cancel-experiment", type: "button",
      onclick: () => cancelTarget(e.id, "experiment " + e.name + " (every unfinished run)") }, "Cancel experiment") : null);
  const legend = h("div", { class: "legend" },
    [...doc.runs].sort((a, b) => a.index - b.index).map((r) => h("span", {}, swatch(r.color), r.name)));
  show(
    title,
    h("section", { class: "summary" }, doc.summary.map((t) => h("p", { text: t }))),
    h("section", {}, h("h2", { text: "Runs" }),
      h("p", { class: "note", text: "Best eval accuracy first; colours as in the report's charts." }),
      h("div", { class: "scroll" }, runsTable(doc))),
    h("section", { id: "curves" }, h("h2", { text: "Curves" }),
      h("p", { class: "note", text: "One point per finished epoch, drawn as the epochs arrive." }),
      h("div", { class: "charts" }, METRICS.map(([m, t, f]) => chart(m, t, f, doc.runs))), legend),
    effectsSection(doc.effects),
    claimsSection(doc.claims));
}

// ---- workers -----------------------------------------------------------------------------

function renderWorkers(doc) {
  const rows = doc.workers.map((w) => h("tr", { dataset: { worker: w.id } },
    h("td", { class: "name", text: w.name }),
    h("td", {}, stateBadge(w.connected ? "connected" : "lost")),
    h("td", {}, h("code", { text: w.devices.join(", ") })),
    h("td", { class: "num", text: w.busy.length + "/" + w.devices.length }),
    h("td", {}, w.runs.length ? w.runs.map((r, k) => [k ? ", " : "",
      r.experiment ? h("a", { href: "/experiments/" + encodeURIComponent(r.experiment), text: r.id }) : r.id]) : h("span", { class: "muted", text: "idle" })),
    h("td", { class: "num", text: w.threads }),
    h("td", { text: ago(w.seconds_since_seen) })));
  show(
    h("h1", { text: "Workers" }),
    h("p", { class: "meta", text: doc.workers.length ? doc.workers.filter((w) => w.connected).length + " of " + doc.workers.length + " connected." : "No worker has registered yet." }),
    h("section", {}, h("div", { class: "scroll" }, h("table", { id: "workers" },
      h("thead", {}, h("tr", {}, h("th", { text: "Worker" }), h("th", { text: "State" }),
        h("th", { text: "Devices" }), h("th", { class: "num", text: "Busy" }),
        h("th", { text: "Current runs" }), h("th", { class: "num", text: "Threads" }),
        h("th", { text: "Last heartbeat" }))),
      h("tbody", {}, rows)))));
}

// ---- start -------------------------------------------------------------------------------

if (PAGE === "experiments") follow("/api/experiments", renderExperiments);
else if (PAGE === "experiment") follow("/api/experiments/" + encodeURIComponent(ID), renderExperiment);
else if (PAGE === "workers") follow("/api/workers", renderWorkers);
