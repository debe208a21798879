// The researchorg dashboard: one page, a view per hash route, live through server-sent events.
// Everything agents wrote reaches the document as text (textContent, text nodes), never as markup.
"use strict";

const COLORS = { keep: "#2ca02c", discard: "#9aa3ad", crash: "#d62728", measured: "#3b6fb6", noise: "#3b6fb6",
                 running: "#0f8ea8", invalid: "#a4247a", timeout: "#d62728", interrupted: "#b8860b", best: "#1f7a1f" };
const state = { overview: null, version: -1, current: null, route: null };
const LOG_KEEP = 512 * 1024;  // characters of a log the experiment page holds

// ---- helpers --------------------------------------------------------------------------------------------
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "data") for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = dv;
    else node.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}
async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || body.detail || `${response.status} ${response.statusText}`);
  return body;
}
const num = (v, d = 6) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
const pct = (v) => (v === null || v === undefined ? "-" : `${Math.round(100 * v)}%`);
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "-");
function dur(s) {
  if (s === null || s === undefined) return "-";
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(2)} h`;
}
const statusTag = (s) => el("span", { class: `status-${s}` }, s);
const link = (id) => el("a", { href: `#/experiment/${id}` }, `#${id}`);
function table(head, rows, onRow) {
  return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells, i) => el("tr", onRow ? { class: "link", onclick: () => onRow(i) } : {},
      cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))))));
}
const td = (v, cls) => el("td", { class: cls }, v);
function diffBlock(text) {
  const pre = el("pre", { class: "diff" });
  if (!text) { pre.append(el("span", { class: "dim" }, "(no change)")); return pre; }
  for (const line of text.split("\n")) {
    let cls = "";
    if (line.startsWith("diff --git") || line.startsWith("+++") || line.startsWith("---")) cls = "file";
    else if (line.startsWith("@@")) cls = "hunk";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    pre.append(cls ? el("span", { class: cls }, line) : document.createTextNode(line + "\n"));
  }
  return pre;
}
function betterLabel() {
  return state.overview && state.overview.direction === "maximize" ? "higher is better" : "lower is better";
}

// ---- frontier -------------------------------------------------------------------------------------------
function limits(values, keep) {
  if (!values.length) return [0, 1];
  const s = [...values].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
  let lo = s[0], hi = s[s.length - 1];
  const iqr = q(0.75) - q(0.25);
  if (iqr > 0) { lo = Math.max(lo, q(0.25) - 3 * iqr); hi = Math.min(hi, q(0.75) + 3 * iqr); }
  for (const v of keep) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const spread = hi - lo || Math.abs(hi) * 0.05 || 1;
  return [lo - 0.08 * spread, hi + 0.08 * spread];
}

function frontierData(f, axis) {
  const c = f.columns, n = c.id.length;
  const order = [...Array(n).keys()].sort((a, b) => c[axis][a] - c[axis][b] || c.id[a] - c.id[b]);
  const values = c.metric.filter((v) => v !== null);
  const [lo, hi] = limits(values, f.steps.map((s) => s.value));
  const worst = f.direction === "minimize" ? hi : lo;
  const clip = (v) => Math.min(hi, Math.max(lo, v));
  const xs = [], series = { discard: [], keep: [], noise: [], evidence: [], crash: [], best: [], main: [] }, ids = [];
  const stepOf = new Map(f.steps.map((s) => [s.id, s.value]));
  const mainOf = new Map(f.main.map((s) => [s.id, s.value]));
  let last = null, lastMain = null;
  order.forEach((i, k) => {
    xs.push(c[axis][i]); ids.push(c.id[i]);
    const m = c.metric[i], st = f.statuses[c.status[i]], kind = f.kinds[c.kind[i]];
    for (const key in series) series[key].push(null);
    if (m === null) series.crash[k] = worst;
    else if (st === "keep") series.keep[k] = clip(m);
    else if (st === "discard") series.discard[k] = clip(m);
    else if (kind === "noise") series.noise[k] = clip(m);
    else series.evidence[k] = clip(m);
    if (stepOf.has(c.id[i])) { series.best[k] = stepOf.get(c.id[i]); last = k; }
    if (mainOf.has(c.id[i])) { series.main[k] = mainOf.get(c.id[i]); lastMain = k; }
  });
  if (last !== null && xs.length) series.best[xs.length - 1] = series.best[last];
  if (lastMain !== null && xs.length) series.main[xs.length - 1] = series.main[lastMain];
  return { data: [xs, series.discard, series.keep, series.noise, series.evidence, series.crash, series.best, series.main], ids,
           range: [lo, hi], points: n };
}

function frontierView(root) {
  const axes = { id: "experiment #", hours: "hours since the program began", slot_hours: "slot-hours used" };
  const select = el("select", { id: "xaxis" }, Object.entries(axes).map(([k, v]) => el("option", { value: k }, v)));
  const info = el("div", { class: "dim", id: "frontier-info" });
  const box = el("div", { id: "frontier-chart", class: "card" });
  root.append(el("h2", {}, "Frontier"), el("div", { class: "controls" }, el("label", {}, "x-axis ", select), info), box,
    el("div", { class: "legend-note" }, "Every run a dot: kept green, discarded grey, evidence runs (noise floor, " +
      "re-runs, verifications) hollow, runs without a result red at the edge. The solid step line is main (the " +
      "program branch) after each merge; the dashed one the best kept run's code (the mean of its runs); the band is the noise floor (baseline ± 1σ). Drag to zoom, double-click to " +
      "reset, click a dot to open its experiment."));
  let plot = null, frontier = null, built = null, down = null;
  function draw(keepZoom) {
    const axis = select.value;
    built = frontierData(frontier, axis);
    box.dataset.points = String(built.points);
    info.textContent = `${frontier.columns.id.length} finished runs; ${frontier.headline || "no result yet"}` +
      (frontier.candidate ? `; candidate ${frontier.candidate}, not on main` : "");
    if (plot && keepZoom) {
      const { min, max } = plot.scales.x;
      plot.setData(built.data, false);
      plot.setScale("x", { min, max });
      return;
    }
    if (plot) plot.destroy();
    const hollow = (color) => ({ show: true, size: 6, width: 1.2, stroke: color, fill: "#ffffff" });
    const dots = (label, color, p) => ({ label, stroke: color, paths: () => null, points: p || { show: true, size: 6,
      stroke: color, fill: color } });
    const floors = frontier.floors;
    const opts = {
      width: Math.max(400, box.clientWidth - 28), height: 440,
      scales: { x: { time: false, range: (u, lo, hi) => {  // room on both sides, so edge dots show whole
        const pad = Math.max((hi - lo) * 0.02, axis === "id" ? 0.5 : 1e-4);
        return [lo - pad, hi + pad];
      } }, y: { range: () => built.range } },
      axes: [{ label: axes[axis] }, { label: `${frontier.metric} (${betterLabel()})`, size: 70 }],
      series: [{ label: axes[axis] }, dots("discarded", COLORS.discard), dots("kept", COLORS.keep),
        dots("noise floor runs", COLORS.noise, hollow(COLORS.noise)),
        dots("re-runs, verifications", "#8c8c8c", hollow("#8c8c8c")),
        dots("no result", COLORS.crash, { show: true, size: 7, stroke: COLORS.crash, fill: COLORS.crash }),
        { label: "best kept", stroke: "#7fbf7f", width: 1.5, dash: [5, 4], spanGaps: true,
          paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        { label: "main", stroke: COLORS.best, width: 2.5, spanGaps: true,
          paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
      hooks: { drawClear: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.fillStyle = "rgba(158, 202, 225, 0.35)";
        for (const f of floors) {
          const a = u.valToPos(f.mean - f.sigma, "y", true), b = u.valToPos(f.mean + f.sigma, "y", true);
          ctx.fillRect(u.bbox.left, Math.min(a, b), u.bbox.width, Math.abs(b - a));
        }
        ctx.restore();
      }] },
    };
    plot = new uPlot(opts, built.data, box);
    plot.over.addEventListener("mousedown", (e) => { down = [e.clientX, e.clientY]; });
    plot.over.addEventListener("click", (e) => {
      const moved = down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 4;
      const i = plot.cursor.idx;
      if (!moved && i !== null && i !== undefined) location.hash = `#/experiment/${built.ids[i]}`;
    });
  }
  select.addEventListener("change", () => draw(false));
  async function update(first) {
    frontier = await api("api/frontier");
    draw(!first);
  }
  return { update, first: () => update(true), destroy: () => plot && plot.destroy() };
}

// ---- experiments ----------------------------------------------------------------------------------------
function experimentsView(root) {
  const q = { agent: "", status: "", kind: "", q: "", sort: "id", desc: true, offset: 0 };
  const pick = (name) => el("select", { id: `filter-${name}`, onchange: (e) => { q[name] = e.target.value; q.offset = 0; update(); } });
  const filters = { agent: pick("agent"), status: pick("status"), kind: pick("kind") };
  let timer = null;
  const search = el("input", { id: "search", type: "search", placeholder: "search descriptions, evidence, #id, commit",
    size: 36, oninput: (e) => { clearTimeout(timer); timer = setTimeout(() => { q.q = e.target.value; q.offset = 0; update(); }, 250); } });
  const count = el("span", { class: "dim" });
  const holder = el("div", { id: "experiments-table" });
  const pager = el("div", { class: "pager" });
  root.append(el("h2", {}, "Experiments"), el("div", { class: "controls" }, filters.agent, filters.status,
    filters.kind, search, count), holder, pager);
  const columns = [["id", "#"], ["agent", "agent"], ["kind", "kind"], ["status", "status"], ["metric", "metric"],
    ["slot_seconds", "slot time"], ["description", "description"], [null, "evidence"]];
  function fill(select, values, label) {
    const now = select.value;
    select.replaceChildren(el("option", { value: "" }, `every ${label}`), ...values.map((v) => el("option", { value: v }, v)));
    select.value = values.includes(now) ? now : "";
  }
  async function update() {
    const params = new URLSearchParams({ ...q, limit: 100 });
    const page = await api(`api/experiments?${params}`);
    fill(filters.agent, page.agents, "agent"); fill(filters.status, page.statuses, "status"); fill(filters.kind, page.kinds, "kind");
    count.textContent = `${page.total} experiments`;
    const head = el("tr", {}, columns.map(([key, label]) => el("th", {
      class: key ? `sort${q.sort === key ? " sorted" : ""}` : "",
      onclick: key ? () => { q.desc = q.sort === key ? !q.desc : key !== "description" && key !== "agent"; q.sort = key; update(); } : null,
    }, label + (q.sort === key ? (q.desc ? " ▾" : " ▴") : ""))));
    const body = el("tbody", {}, page.rows.map((r) => el("tr", { class: "link", data: { id: r.id },
      onclick: () => { location.hash = `#/experiment/${r.id}`; } },
      td(`#${r.id}`, "num"), td(r.agent), td(r.kind), el("td", {}, statusTag(r.status)), td(num(r.metric), "num"),
      td(dur(r.slot_seconds), "num"), td(r.description), td(r.evidence, "dim"))));
    holder.replaceChildren(el("table", {}, el("thead", {}, head), body));
    pager.replaceChildren(
      el("button", { disabled: q.offset === 0 ? "" : null, onclick: () => { q.offset = Math.max(0, q.offset - 100); update(); } }, "‹ newer"),
      el("span", { class: "dim" }, `${page.total ? q.offset + 1 : 0}–${Math.min(page.total, q.offset + 100)} of ${page.total}`),
      el("button", { disabled: q.offset + 100 >= page.total ? "" : null, onclick: () => { q.offset += 100; update(); } }, "older ›"));
  }
  return { update, first: update };
}

// ---- one experiment -------------------------------------------------------------------------------------
function experimentView(root, id) {
  const meta = el("div");
  const logBox = el("pre", { id: "log", class: "wrap" });
  const logNote = el("div", { class: "dim" });
  let shownStatus = null, offset = null, poll = null, tab = "parent", data = null;
  const diffHolder = el("div", { id: "diff" });
  const tabs = el("div", { class: "tabs" });
  root.append(meta, el("div", { class: "card" }, el("h3", {}, "Diff"), tabs, diffHolder),
    el("div", { class: "card" }, el("h3", {}, "Log"), logNote, logBox));
  function showDiff() {
    tabs.replaceChildren(
      el("button", { class: tab === "parent" ? "on" : "", onclick: () => { tab = "parent"; showDiff(); } }, "against its parent"),
      el("button", { class: tab === "main" ? "on" : "", onclick: () => { tab = "main"; showDiff(); } }, `against main (${data.main || "-"})`));
    const d = tab === "parent" ? data.diff : data.diff_main;
    diffHolder.replaceChildren(diffBlock(d.text), d.cut ? el("div", { class: "dim" }, "(cut: the diff is longer)") : "");
  }
  function render() {
    const e = data;
    const kv = (pairs) => el("div", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [el("span", { class: "k" }, k), el("span", {}, v)]).flat());
    const parts = [
      el("h2", {}, `#${e.id} `, e.description || "(no description)"),
      el("div", { class: "grid2" },
        el("div", { class: "card" }, kv([["status", el("span", { id: "status" }, statusTag(e.status))], ["agent", e.agent], ["kind", e.kind],
          [e.metric_name, num(e.metric)], ["measures again", e.rerun_of ? link(e.rerun_of) : null], ["seed", String(e.seed)],
          ["slot", e.slot], ["hardware", e.hardware], ["commit", e.commit.slice(0, 10)], ["parent", e.parent_commit.slice(0, 10)],
          ["started", when(e.started_at)], ["ended", when(e.ended_at)], ["training", dur(e.training_seconds)],
          ["total", dur(e.total_seconds)]])),
        el("div", { class: "card" }, el("h3", {}, "Hypothesis"), el("div", { class: "msg body" }, e.hypothesis || "-"),
          e.reason ? [el("h3", {}, "Why it ended so"), el("pre", { class: "wrap", id: "reason" }, e.reason)] : "")),
    ];
    const d = e.decision;
    if (d) {
      const conf = d.confounds && Object.keys(d.confounds).length
        ? table(["confound", "this run", "its comparison", "ratio"], Object.entries(d.confounds).map(([k, v]) =>
          v && typeof v === "object" ? [k, num(v.value, 3), num(v.incumbent, 3), v.ratio === undefined ? "-" : `×${num(v.ratio, 3)}`]
            : [k, String(v), "", ""]))
        : el("div", { class: "dim" }, "no confounds recorded");
      parts.push(el("div", { class: "card", id: "decision" }, el("h3", {}, "Decision"),
        kv([["rule", d.rule], ["z", d.z !== undefined ? num(d.z, 2) : null], ["says", d.text],
          ["candidate runs", (d.candidate_runs || []).map((v) => num(v, 4)).join(", ")],
          ["incumbent runs", (d.incumbent_runs || []).map((v) => num(v, 4)).join(", ")],
          ["hardware", d.hardware]]), el("h3", {}, "Confounds"), conf));
    }
    if (e.runs_after.length || e.verification || e.merged.length) {
      const v = e.verification;
      parts.push(el("div", { class: "card", id: "evidence" }, el("h3", {}, "Runs that measure it again"),
        e.runs_after.length ? table(["run", "kind", "status", "metric", "seed"], e.runs_after.map((r) =>
          [link(r.id), r.kind, statusTag(r.status), num(r.metric), String(r.seed)])) : el("div", { class: "dim" }, "none"),
        v ? [el("h3", {}, "Verification"), kv([["reproduced", v.reproduced ? "yes" : "no"], ["fresh mean", num(v.mean)],
          ["claimed", num(v.claimed)], ["incumbent", num(v.incumbent)], ["runs", v.runs.map((r) => `#${r}`).join(" ")]])] : "",
        e.merged.length ? [el("h3", {}, "Merged into main"), ...e.merged.map((m) => el("div", {}, `${m.how} by ${m.by}, main ${m.after.slice(0, 7)}, ${num(m.metric)}`))] : ""));
    }
    meta.replaceChildren(...parts);
    showDiff();
    shownStatus = e.status;
  }
  async function followLog() {
    const chunk = await api(`api/experiments/${id}/log${offset === null ? "" : `?offset=${offset}`}`);
    if (offset === null) {
      logBox.textContent = chunk.text || "";
      logNote.textContent = chunk.cut ? "(its last 64 KB)" : data && !data.has_log ? "no log for this run" : "";
    } else if (chunk.text) {
      const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
      logBox.append(document.createTextNode(chunk.text));
      if (logBox.textContent.length > LOG_KEEP) {  // a chatty run: the page keeps the log's end only
        logBox.textContent = logBox.textContent.slice(-LOG_KEEP);
        logNote.textContent = "(its last 512 KB)";
      }
      if (atEnd) logBox.scrollTop = logBox.scrollHeight;
    }
    offset = chunk.offset;
    if (!chunk.running && poll) { clearInterval(poll); poll = null; }
  }
  async function update(first) {
    data = await api(`api/experiments/${id}`);
    if (first || data.status !== shownStatus) render();
    if (first) {
      await followLog();
      if (data.status === "running") poll = setInterval(() => followLog().catch(() => {}), 1000);
      logBox.scrollTop = logBox.scrollHeight;
    } else if (!poll) await followLog();
  }
  return { update: () => update(false), first: () => update(true), destroy: () => poll && clearInterval(poll) };
}

// ---- agents ---------------------------------------------------------------------------------------------
function agentsView(root) {
  const holder = el("div", { id: "agents-table" });
  root.append(el("h2", {}, "Agents"), holder);
  async function update() {
    const agents = await api("api/agents");
    holder.replaceChildren(el("table", {}, el("thead", {}, el("tr", {}, ["agent", "role", "backend", "state", "", "branch",
      "experiments", "keep rate", "reproduced", "tokens", "USD"].map((h) => el("th", {}, h)))),
    el("tbody", {}, agents.map((a) => el("tr", { data: { agent: a.name } }, td(a.name), td(a.role), td(a.backend),
      el("td", {}, el("span", { class: `badge state-${a.state}`, data: { state: a.state } }, a.state)), td(a.detail, "dim"),
      td(a.branch ? `${a.branch} @ ${a.head}` : "-"), td(String(a.experiments), "num"),
      td(a.keep_rate === null ? "-" : `${pct(a.keep_rate)} (${a.keeps}/${a.decided})`, "num"),
      td(a.verified ? `${pct(a.reproduction_rate)} (${a.reproduced}/${a.verified})` : "-", "num"),
      td(a.tokens ? a.tokens.toLocaleString() : "-", "num"), td(a.cost_usd ? `$${a.cost_usd.toFixed(3)}` : "-", "num"))))));
  }
  return { update, first: update };
}

// ---- slots ----------------------------------------------------------------------------------------------
function slotsView(root) {
  const canvasBox = el("div", { class: "card", id: "slots-timeline" });
  const util = el("div", { id: "slots-table" });
  const queue = el("div", { id: "queue" });
  root.append(el("h2", {}, "Slots"), canvasBox, util, el("h3", {}, "Queue: experiments waiting for a slot"), queue);
  let layout = null;
  async function update() {
    const s = await api("api/slots");
    const width = Math.max(400, canvasBox.clientWidth - 28), label = 120, row = 24;
    const canvas = el("canvas", { width: width * devicePixelRatio, height: (s.slots.length * row + 24) * devicePixelRatio });
    canvas.style.width = `${width}px`; canvas.style.height = `${s.slots.length * row + 24}px`;
    const ctx = canvas.getContext("2d");
    ctx.scale(devicePixelRatio, devicePixelRatio);
    const span = Math.max(s.end - s.start, 1e-9), x = (t) => label + (t / span) * (width - label - 8);
    ctx.font = "12px system-ui"; ctx.textBaseline = "middle";
    layout = [];
    s.slots.forEach((slot, i) => {
      const y = i * row + 4;
      ctx.fillStyle = "#1d2430"; ctx.fillText(slot.name, 4, y + row / 2 - 2);
      ctx.fillStyle = "#f0f2f5"; ctx.fillRect(label, y, width - label - 8, row - 6);
      for (const [id, a, b, code] of slot.runs) {
        ctx.fillStyle = COLORS[s.statuses[code]] || "#888";
        const x0 = x(a), x1 = Math.max(x(b), x0 + 1);
        ctx.fillRect(x0, y, x1 - x0, row - 6);
        layout.push([x0, x1, y, y + row - 6, id]);
      }
    });
    ctx.fillStyle = "#6b7585";
    ctx.fillText(`${when(s.start)}  →  ${when(s.end)}  (${dur(span)})`, label, s.slots.length * row + 12);
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
      const hit = layout.find(([x0, x1, y0, y1]) => px >= x0 - 1 && px <= x1 + 1 && py >= y0 && py <= y1);
      if (hit) location.hash = `#/experiment/${hit[4]}`;
    });
    canvasBox.dataset.runs = String(layout.length);
    canvasBox.replaceChildren(canvas, el("div", { class: "legend-note" }, "Each bar a run on its slot, coloured by how " +
      "it ended (kept green, discarded grey, evidence blue, crashes red, running teal); click one to open it."));
    util.replaceChildren(table(["slot", "hardware", "runs", "utilization"], s.slots.map((slot) =>
      [slot.name, slot.hardware, el("td", { class: "num" }, String(slot.runs.length)), el("td", { class: "num" }, pct(slot.utilization))])));
    queue.replaceChildren(s.queue.length ? table(["experiment", "agent", "kind", "waiting since", "description"],
      s.queue.map((q) => [link(q.id), q.agent, q.kind, when(q.since), q.description]))
      : el("div", { class: "dim" }, "empty"));
  }
  return { update, first: update };
}

// ---- messages -------------------------------------------------------------------------------------------
function messagesView(root) {
  const kind = el("select", { id: "message-kind", onchange: () => update() });
  const feed = el("div", { id: "feed" });
  root.append(el("h2", {}, "Messages"), el("div", { class: "controls" }, kind), feed);
  async function update() {
    const messages = await api("api/messages");
    const kinds = [...new Set(messages.map((m) => m.kind))].sort(), now = kind.value;
    kind.replaceChildren(el("option", { value: "" }, "every kind"), ...kinds.map((k) => el("option", { value: k }, k)));
    kind.value = kinds.includes(now) ? now : "";
    const shown = messages.filter((m) => !kind.value || m.kind === kind.value).reverse();
    feed.replaceChildren(...(shown.length ? shown.map((m) => el("div", { class: "msg", data: { id: m.id } },
      el("div", { class: "head" }, el("span", { class: "badge" }, m.kind), ` #${m.id} from ${m.sender} to ${m.recipient || "everyone"} · ${when(m.at)}`,
        m.experiment_id ? [" · about ", link(m.experiment_id)] : ""),
      el("div", { class: "body" }, m.body), m.cut ? el("div", { class: "dim" }, "(cut: the message is longer)") : ""))
      : [el("div", { class: "dim" }, "no messages yet")]));
  }
  return { update, first: update };
}

// ---- main -----------------------------------------------------------------------------------------------
function mainView(root) {
  const holder = el("div", { id: "merges" });
  root.append(el("h2", {}, "Main"), holder);
  async function update() {
    const m = await api("api/main");
    const rows = m.merges.map((r) => {
      const v = r.verification, c = r.contribution;
      return [el("td", { class: "num" }, String(r.id)), link(r.experiment_id), r.agent, r.description, r.how,
        el("td", { class: "num" }, num(r.metric)), el("td", { class: "num" }, r.gain === null ? "-" : (r.gain >= 0 ? "+" : "") + num(r.gain)),
        v ? `${v.reproduced ? "reproduced" : "not reproduced"}: ${num(v.mean)} over ${v.runs} fresh runs (claimed ${num(v.claimed)})` : "not verified",
        c ? `${c.contribution === null ? "-" : num(c.contribution)} ± ${c.se === null ? "-" : num(2 * c.se)}${c.matters ? " (matters)" : ""}` : "-"];
    });
    holder.replaceChildren(
      el("div", { class: "dim" }, `main at ${m.head}; baseline ${num(m.baseline)}; ${m.merges.length} merges` +
        (m.ablation ? "; contributions from the latest ablation" : "; no ablation run yet (`researchorg ablate`)")),
      rows.length ? table(["merge", "experiment", "agent", "change", "how", m.metric, "gain", "verification", "contribution ± 2 SE"], rows)
        : el("p", { class: "dim" }, "nothing merged yet"));
  }
  return { update, first: update };
}

// ---- knobs ----------------------------------------------------------------------------------------------
function knobsView(root) {
  const imp = el("div", { class: "card", id: "importance" });
  const par = el("div", { class: "card", id: "parallel" });
  root.append(el("h2", {}, "Knobs"), imp, par);
  async function update() {
    const k = await api("api/knobs");
    if (!k.axes.length) { imp.replaceChildren(el("p", { class: "dim" }, "no tuner trials with knobs yet")); par.replaceChildren(); return; }
    const all = Object.entries(k.importance || {}), entries = all.slice(0, 12);
    imp.replaceChildren(el("h3", {}, `Parameter importance (Optuna, PED-ANOVA)${all.length > 12 ? `: the top 12 of ${all.length}` : ""}`),
      entries.length ? table(["knob", "importance", ""], entries.map(([name, v]) => [name, el("td", { class: "num" }, v.toFixed(3)),
        el("td", {}, el("div", { class: "bar", style: null, data: { w: v } }))]))
        : el("div", { class: "dim" }, "needs at least 4 finished trials"));
    imp.querySelectorAll(".bar").forEach((b) => { b.style.width = `${Math.max(2, 300 * Number(b.dataset.w))}px`; });
    const width = Math.max(400, par.clientWidth - 28), height = 340, pad = 40;
    const canvas = el("canvas", { width: width * devicePixelRatio, height: height * devicePixelRatio });
    canvas.style.width = `${width}px`; canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d"); ctx.scale(devicePixelRatio, devicePixelRatio);
    const axes = [...k.axes, { name: k.metric, type: "metric" }];
    const metrics = k.rows.map((r) => r[r.length - 1]);
    const mlo = Math.min(...metrics), mhi = Math.max(...metrics);
    const norm = (axis, v) => {
      if (axis.type === "metric") return mhi > mlo ? (v - mlo) / (mhi - mlo) : 0.5;
      if (axis.type === "categorical") { const i = axis.choices.indexOf(v); return axis.choices.length > 1 ? i / (axis.choices.length - 1) : 0.5; }
      const f = axis.log ? Math.log : (x) => x;
      return (f(v) - f(axis.low)) / (f(axis.high) - f(axis.low) || 1);
    };
    const xAt = (i) => pad + (i * (width - 2 * pad)) / Math.max(1, axes.length - 1);
    const yAt = (t) => height - 30 - t * (height - 60);
    const good = (m) => { const t = mhi > mlo ? (m - mlo) / (mhi - mlo) : 0.5; return k.direction === "minimize" ? 1 - t : t; };
    const sorted = [...k.rows].sort((a, b) => good(a[a.length - 1]) - good(b[b.length - 1]));
    for (const r of sorted) {
      const g = good(r[r.length - 1]);
      ctx.strokeStyle = `rgba(${Math.round(200 - 170 * g)}, ${Math.round(120 + 40 * g)}, ${Math.round(220 - 160 * g)}, ${0.25 + 0.6 * g})`;
      ctx.beginPath();
      axes.forEach((axis, i) => { const v = r[i + 1], y = yAt(Math.min(1, Math.max(0, norm(axis, v)))); i ? ctx.lineTo(xAt(i), y) : ctx.moveTo(xAt(i), y); });
      ctx.stroke();
    }
    ctx.fillStyle = "#1d2430"; ctx.font = "12px system-ui"; ctx.textAlign = "center";
    axes.forEach((axis, i) => {
      ctx.strokeStyle = "#6b7585"; ctx.beginPath(); ctx.moveTo(xAt(i), yAt(0)); ctx.lineTo(xAt(i), yAt(1)); ctx.stroke();
      ctx.fillText(axis.name, xAt(i), height - 10);
      const lo = axis.type === "metric" ? mlo.toPrecision(4) : axis.type === "categorical" ? String(axis.choices[0]) : String(axis.low);
      const hi = axis.type === "metric" ? mhi.toPrecision(4) : axis.type === "categorical" ? String(axis.choices[axis.choices.length - 1]) : String(axis.high);
      ctx.fillText(hi, xAt(i), yAt(1) - 8); ctx.fillText(lo, xAt(i), yAt(0) + 12);
    });
    par.dataset.lines = String(k.rows.length);
    par.replaceChildren(el("h3", {}, `Parallel coordinates: ${k.rows.length} trials (the better, the darker and greener)`), canvas);
  }
  return { update, first: update };
}

// ---- bench ----------------------------------------------------------------------------------------------
function benchView(root) {
  const box = el("div", { class: "card", id: "bench-curves" });
  const holder = el("div");
  root.append(el("h2", {}, "Bench"), box, holder);
  let plot = null;
  async function update() {
    const b = await api("api/bench");
    const orgs = Object.keys(b.curves);
    const palette = ["#2457a6", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    if (plot) plot.destroy();
    plot = new uPlot({ width: Math.max(400, box.clientWidth - 28), height: 380, scales: { x: { time: false } },
      axes: [{ label: "hours" }, { label: "improvement of main (mean over repeats)", size: 70 }],
      series: [{ label: "hours" }, ...orgs.map((o, i) => ({ label: `${o} (${b.curves[o].repeats} repeats)`, stroke: palette[i % palette.length], width: 2 }))] },
    [b.hours, ...orgs.map((o) => b.curves[o].mean)], box);
    box.dataset.orgs = String(orgs.length);
    holder.replaceChildren(
      el("div", { class: "card", id: "bench-summary" }, el("h3", {}, "Summary (mean ± 95% CI over repeats)"), table(b.head, b.rows)),
      el("div", { class: "card" }, el("h3", {}, "Paired comparisons of the final improvement of main"),
        b.paired.length ? table(["orgs", "mean difference", "p (paired t)"], b.paired.map((p) =>
          [`${p.a} - ${p.b}`, `${p.mean_diff >= 0 ? "+" : ""}${num(p.mean_diff, 4)} ± ${num(p.ci95, 4)}`, Number(p.p).toPrecision(3)]))
          : el("div", { class: "dim" }, "one org: nothing to pair")),
      el("div", { class: "card" }, el("h3", {}, "Spec"), el("pre", {}, b.spec)));
  }
  return { update, first: update, destroy: () => plot && plot.destroy() };
}

// ---- routing and live updates ---------------------------------------------------------------------------
const VIEWS = { frontier: frontierView, experiments: experimentsView, experiment: experimentView, agents: agentsView,
  slots: slotsView, messages: messagesView, main: mainView, knobs: knobsView, bench: benchView };

function navigation() {
  const o = state.overview;
  const names = o.kind === "bench" ? ["bench"] : ["frontier", "experiments", "agents", "slots", "messages", "main",
    ...(o.tuner ? ["knobs"] : [])];
  document.getElementById("nav").replaceChildren(...names.map((n) =>
    el("a", { href: `#/${n}`, id: `nav-${n}`, class: state.route && state.route[0] === n ? "on" : "" }, n)));
}

async function route() {
  const o = state.overview;
  let [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  if (!VIEWS[name] || (o.kind === "bench") !== (name === "bench")) name = o.kind === "bench" ? "bench" : "frontier";
  state.route = [name, arg];
  if (state.current && state.current.destroy) state.current.destroy();
  const root = document.getElementById("view");
  root.replaceChildren();
  delete root.dataset.ready;
  root.dataset.view = name;
  navigation();
  const view = VIEWS[name](root, arg);
  state.current = view;
  try {
    await view.first();
    root.dataset.ready = "1";
  } catch (err) {
    root.append(el("p", { class: "error" }, String(err.message || err)));
  }
}

async function refresh() {
  state.overview = await api("api/overview");
  const o = state.overview;
  document.getElementById("title").textContent = o.kind === "bench" ? `bench ${o.name}` :
    `${o.name}: ${o.task}, ${o.metric} (${o.direction}), ${o.experiments} experiments`;
  const live = document.getElementById("live");
  live.textContent = o.live ? "live" : o.kind === "bench" ? "finished" : "not running";
  live.className = o.live ? "badge live" : "badge";
  document.title = `researchorg · ${o.name}`;
}

async function start() {
  await refresh();
  window.addEventListener("hashchange", route);
  await route();
  const events = new EventSource("api/stream");
  events.addEventListener("change", async (e) => {
    const { version } = JSON.parse(e.data);
    if (version === state.version) return;
    const first = state.version < 0;
    state.version = version;
    document.body.dataset.version = String(version);
    if (first) return;
    await refresh();
    if (state.current) await state.current.update().catch(() => {});
  });
}

start().catch((err) => document.getElementById("view").replaceChildren(el("p", { class: "error" }, String(err.message || err))));
