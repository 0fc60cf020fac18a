// inspectd set-up page: reads the JSON API (/api/...) and draws with plain DOM and SVG.
// No framework, no build step, nothing loaded from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 1000;
const ALARMS_MS = 2000;
const HIST_BINS = 30;
const HISTORY = 1200; // points the daemon keeps per camera

const ui = {
  cameras: [],
  camera: null,      // selected camera id
  points: [],        // its recent scores, oldest first
  calibration: null, // the model's calibration statistics
  slider: null,      // the threshold the slider shows, once the user moved it
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${path}: HTTP ${r.status}`);
  return body;
}

// A change: POST with the token from the header field. Resolves to {status, body}.
async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { method: "POST", headers, body: body === undefined ? "" : JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}

const fmt = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toPrecision(4));

// ---- cameras and status -------------------------------------------------------------

function selectCamera(id) {
  if (ui.camera === id) return;
  ui.camera = id;
  ui.points = [];
  ui.slider = null;
  $("camera-name").textContent = id;
  setLive();
  refreshScores();
}

function setLive() {
  if (!ui.camera) return;
  $("live").src = `/api/cameras/${encodeURIComponent(ui.camera)}/live.mjpg?fps=${$("fps").value}`;
}

let drawnNav = null;

function drawCameras() {
  const nav = $("cameras");
  const navKey = JSON.stringify([ui.camera, ui.cameras.map((c) => c.id)]);
  if (navKey !== drawnNav) {
    drawnNav = navKey;
    nav.replaceChildren(...ui.cameras.map((c) => {
    const b = el("button", { type: "button", "data-camera": c.id }, c.id);
    b.setAttribute("aria-current", String(c.id === ui.camera));
    b.addEventListener("click", () => selectCamera(c.id));
    return b;
    }));
  }
  const c = ui.cameras.find((c) => c.id === ui.camera);
  $("empty").hidden = !!c;
  $("camera").hidden = !c;
  if (!c) return;
  const last = c.last || {};
  const rows = [
    ["state", c.state],
    ["fps", fmt(c.fps)],
    ["frames", c.frames],
    ["dropped", c.frames_dropped],
    ["model", c.model_id ? `${c.model} (${c.model_id})` : c.model],
    ["verdict", last.verdict || "–"],
    ["score", fmt(last.score)],
    ["threshold", fmt(last.threshold)],
    ["alarm", last.alarm_active ? "ACTIVE" : "none"],
  ];
  $("status").replaceChildren(...rows.flatMap(([k, v]) => {
    const dd = el("dd", { "data-field": k }, String(v));
    if (k === "verdict") dd.className = `verdict-${v}`;
    return [el("dt", {}, k), dd];
  }));
}

async function refreshCameras() {
  try {
    const cameras = await getJson("/api/cameras");
    ui.cameras = cameras;
    if (!ui.camera && cameras.length) selectCamera(cameras[0].id);
    drawCameras();
  } catch (e) {
    $("empty").textContent = `Cannot read the cameras: ${e.message}`;
  }
}

// ---- scores: chart, histogram, slider -------------------------------------------------

// Fetches only the points after the last one held; all of them again after a restart.
async function refreshScores() {
  if (!ui.camera) return;
  try {
    const held = ui.points.length ? ui.points[ui.points.length - 1].seq : null;
    const since = held === null ? "" : `?since=${held}`;
    const s = await getJson(`/api/cameras/${encodeURIComponent(ui.camera)}/scores${since}`);
    if (s.camera !== ui.camera) return;
    if (held !== null && (s.last_seq === null || s.last_seq < held)) {
      ui.points = [];
      return refreshScores();
    }
    ui.points = held === null ? s.points : ui.points.concat(s.points).slice(-HISTORY);
    ui.calibration = s.calibration;
    drawChart();
    drawHistogram();
    drawSlider();
  } catch (e) {
    $("chart-range").textContent = e.message;
  }
}

const currentThreshold = () => (ui.points.length ? ui.points[ui.points.length - 1].threshold : null);
const sliderValue = () => (ui.slider !== null ? ui.slider : currentThreshold());

// The top of the score axis: the largest score or threshold seen, with headroom.
function scoreMax() {
  let m = 0;
  for (const p of ui.points) m = Math.max(m, p.score, p.threshold);
  if (ui.slider !== null) m = Math.max(m, ui.slider);
  return m > 0 ? m * 1.1 : 1;
}

function drawChart() {
  const chart = $("chart");
  const [W, H] = [800, 240];
  const pts = ui.points;
  chart.replaceChildren();
  if (!pts.length) return;
  const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  const ymax = scoreMax();
  const x = (t) => ((t - t0) / (t1 - t0)) * W;
  const y = (v) => H - (v / ymax) * H;
  // Alarm episodes: spans of consecutive points with the alarm active.
  let start = null;
  pts.forEach((p, i) => {
    if (p.alarm_active && start === null) start = p.t;
    const ends = start !== null && (!p.alarm_active || i === pts.length - 1);
    if (ends) {
      chart.append(svg("rect", { class: "alarm", x: x(start), y: 0, width: Math.max(x(p.t) - x(start), 2), height: H }));
      start = null;
    }
  });
  chart.append(svg("polyline", { class: "scores", points: pts.map((p) => `${x(p.t)},${y(p.score)}`).join(" ") }));
  // The threshold in force, as a step line (it can change at run time).
  const steps = [];
  pts.forEach((p, i) => {
    if (i > 0) steps.push(`${x(p.t)},${y(pts[i - 1].threshold)}`);
    steps.push(`${x(p.t)},${y(p.threshold)}`);
  });
  if (pts.length === 1) steps.push(`${W},${y(pts[0].threshold)}`);
  chart.append(svg("polyline", { class: "threshold", points: steps.join(" ") }));
  for (const p of pts) {
    if (p.verdict === "NG") chart.append(svg("circle", { class: "ng", cx: x(p.t), cy: y(p.score), r: 2.5 }));
    // A frame too broken to judge (frame health): marked at the bottom, never a score.
    if (p.verdict === "invalid") chart.append(svg("rect", { class: "invalid", x: x(p.t) - 1, y: H - 6, width: 2, height: 6 }));
  }
  if (ui.slider !== null) {
    chart.append(svg("line", { class: "preview", x1: 0, x2: W, y1: y(ui.slider), y2: y(ui.slider) }));
  }
  const seconds = ((t1 - t0) / 1000).toFixed(0);
  $("chart-range").textContent = `last ${pts.length} frames, ${seconds} s`;
}

function drawHistogram() {
  const hist = $("hist");
  const [W, H] = [400, 200];
  hist.replaceChildren();
  const pts = ui.points;
  if (!pts.length) return;
  const vmax = scoreMax();
  const bins = new Array(HIST_BINS).fill(0);
  for (const p of pts) bins[Math.min(HIST_BINS - 1, Math.floor((p.score / vmax) * HIST_BINS))] += 1;
  const top = Math.max(...bins);
  const bw = W / HIST_BINS;
  bins.forEach((n, i) => {
    const h = (n / top) * (H - 14);
    hist.append(svg("rect", { class: "bar", x: i * bw + 0.5, y: H - h, width: bw - 1, height: h }));
  });
  const mark = (cls, v) => {
    if (v === null || v === undefined) return;
    const xv = (v / vmax) * W;
    hist.append(svg("line", { class: cls, x1: xv, x2: xv, y1: 0, y2: H }));
  };
  const c = ui.calibration;
  if (c) {
    mark("calibration", c.stats.mean);
    mark("calibration", c.stats.p99);
  }
  mark("threshold", currentThreshold());
  // normal-quantile calibrates on held-out good images; f1-validation on a labelled set.
  const images = c && c.method === "normal-quantile" ? "held-out good images" : "calibration images";
  $("calibration").textContent = c
    ? `Green lines: mean and p99 of the model's ${c.stats.count} ${images} (${c.method}): ` +
      `mean ${fmt(c.stats.mean)}, std ${fmt(c.stats.std)}, p99 ${fmt(c.stats.p99)}, max ${fmt(c.stats.max)}. ` +
      `Orange: the threshold in force (calibrated: ${fmt(c.image)}).`
    : "The model carries no calibration statistics. Orange: the threshold in force.";
}

function drawSlider() {
  const s = $("slider");
  const vmax = scoreMax();
  s.max = String(vmax);
  s.step = String(vmax / 1000);
  if (ui.slider === null && currentThreshold() !== null) s.value = String(currentThreshold());
  preview();
}

// How many of the recent frames would have been NG at the slider's threshold.
function preview() {
  const t = sliderValue();
  const n = ui.points.length;
  if (t === null || !n) {
    $("preview").textContent = "No scores yet.";
    return;
  }
  const would = ui.points.filter((p) => p.score >= t).length;
  const now = ui.points.filter((p) => p.verdict === "NG").length;
  $("preview").textContent =
    `At ${fmt(t)}: ${would} of the last ${n} frames NG (${((100 * would) / n).toFixed(1)} %); ` +
    `at the thresholds in force: ${now}.`;
}

async function applyThreshold(body) {
  const msg = $("tune-message");
  msg.textContent = "Sending…";
  const r = await post(`/api/cameras/${encodeURIComponent(ui.camera)}/threshold`, body);
  if (r.status === 202) {
    msg.textContent = "Accepted: the decision thread applies it between frames (see the threshold line).";
    ui.slider = null;
  } else {
    msg.textContent = `Refused (HTTP ${r.status}): ${r.body.error || "no reason given"}`;
  }
  msg.dataset.status = String(r.status);
}

// ---- alarms -------------------------------------------------------------------------------

async function refreshAlarms() {
  try {
    const { alarms } = await getJson("/api/alarms");
    drawAlarms(alarms);
  } catch (e) {
    $("review-message").textContent = e.message;
  }
}

let drawnAlarms = null; // what the list shows, so an unchanged list is not rebuilt

function drawAlarms(alarms) {
  const json = JSON.stringify(alarms);
  if (json === drawnAlarms) return;
  drawnAlarms = json;
  const list = $("alarms");
  if (!alarms.length) {
    list.replaceChildren(el("li", { class: "none" }, "No alarms yet."));
    return;
  }
  list.replaceChildren(...alarms.map((a) => {
    const li = el("li", { class: "alarm", "data-alarm": a.alarm_id });
    const image = (src, alt) => (src ? el("img", { src, alt, loading: "lazy" }) : el("span", { class: "small" }, "no evidence"));
    li.append(image(a.frame, "frame"), image(a.heatmap, "heatmap"));
    const info = el("div");
    info.append(
      el("div", {}, `${a.camera} · ${a.started_at.replace("T", " ").replace("Z", " UTC")}`),
      el("div", {}, `score ${fmt(a.score)} / threshold ${fmt(a.threshold)} · frame ${a.seq}`),
      el("div", { class: a.active ? "active" : "" }, `${a.active ? "active" : "cleared"}${a.acknowledged ? ", acknowledged" : ""}`),
    );
    const buttons = el("div");
    if (a.active && !a.acknowledged) {
      const ack = el("button", { type: "button", class: "ack" }, "Acknowledge");
      ack.addEventListener("click", () => act(`/api/cameras/${encodeURIComponent(a.camera)}/ack`, { alarm_id: a.alarm_id }, "Acknowledged"));
      buttons.append(ack);
    }
    if (a.frame) {
      const good = el("button", { type: "button", class: "good" }, "Mark as good");
      good.addEventListener("click", () => act(`${a.frame}/good`, undefined, "Copied into the model's feedback/good/"));
      buttons.append(good);
    }
    info.append(buttons);
    li.append(info);
    return li;
  }));
}

async function act(path, body, done) {
  const msg = $("review-message");
  const r = await post(path, body);
  msg.textContent = r.status < 300 ? `${done}${r.body.copied_to ? `: ${r.body.copied_to}` : ""}.` : `Refused (HTTP ${r.status}): ${r.body.error || ""}`;
  refreshAlarms();
}

// ---- wiring ---------------------------------------------------------------------------------

$("fps").addEventListener("change", setLive);
$("slider").addEventListener("input", (e) => {
  ui.slider = Number(e.target.value);
  preview();
  drawChart();
});
$("apply").addEventListener("click", () => {
  const t = sliderValue();
  if (t !== null) applyThreshold({ threshold: t });
});
$("reset").addEventListener("click", () => applyThreshold({ reset: true }));

// The live image reconnects if the stream ends (a reload, a restart).
$("live").addEventListener("error", () => setTimeout(setLive, 2000));

// For scripts and the browser test: set the slider as a person would.
window.inspectd = {
  setSlider(value) {
    if (value > Number($("slider").max)) $("slider").max = String(value * 1.1);
    $("slider").value = String(value);
    $("slider").dispatchEvent(new Event("input"));
  },
};

refreshCameras();
setInterval(refreshCameras, REFRESH_MS);
setInterval(refreshScores, REFRESH_MS);
refreshAlarms();
setInterval(refreshAlarms, ALARMS_MS);
