// ctstream view: the scans table, one scan's three slice views with overlays, a run's
// curves. Plain JavaScript, no libraries; everything comes from this server's /api routes
// (src/view/routes.rs documents them).
"use strict";

const PLANES = ["axial", "coronal", "sagittal"];
// The array axis (z 0, y 1, x 2) each plane's index runs along, and its rows and columns.
const AXIS = { axial: 0, coronal: 1, sagittal: 2 };
const ROWS_COLS = { axial: [1, 2], coronal: [0, 2], sagittal: [0, 1] };
// Colours of label values (green is the annotated nodules' own, so none here): value v of
// the i-th label volume takes colour i + v - 1.
const LABEL_COLOURS = [[0, 190, 230], [230, 170, 0], [200, 80, 220], [240, 240, 60], [90, 120, 255], [255, 120, 120], [120, 255, 200], [255, 255, 255]];
const LABEL_ALPHA = 0.3;
const MAX_CACHED = 300;

const state = {
  store: null, rows: [], sortKey: "series_id", sortDir: 1,
  scan: null, index: { axial: 0, coronal: 0, sagittal: 0 }, point: null,
  window: { level: -600, width: 1500 }, overlays: new Set(), hovered: "axial",
  generation: { axial: 0, coronal: 0, sagittal: 0 },
  run: null,
};
window.ctview = state; // for the browser test and for a curious user's console

const cache = new Map();

function $(sel) { return document.querySelector(sel); }
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function say(text) { $("#status").textContent = text || ""; }
function fmt(v, digits) { return v === null || v === undefined ? "" : Number(v).toFixed(digits); }

async function getJson(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${url}: HTTP ${r.status}`);
  return body;
}

// A slice as { rows, cols, data } (Int16Array or Uint8Array), cached.
async function getSlice(url) {
  if (cache.has(url)) {
    const v = cache.get(url);
    cache.delete(url); cache.set(url, v);
    return v;
  }
  const r = await fetch(url);
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  const [rows, cols] = r.headers.get("x-slice-shape").split(",").map(Number);
  const buf = await r.arrayBuffer();
  const data = r.headers.get("x-slice-dtype") === "uint8" ? new Uint8Array(buf) : new Int16Array(buf);
  const v = { rows, cols, data };
  cache.set(url, v);
  while (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value);
  return v;
}

// ---------------------------------------------------------------- tabs
function showTab(name) {
  for (const p of ["scans", "scan", "run"]) {
    $(`#page-${p}`).hidden = p !== name;
    $(`#tab-${p}`).classList.toggle("active", p === name);
  }
  if (name === "run") drawRun();
}

// ---------------------------------------------------------------- the scans table
function rowValue(r, key) {
  switch (key) {
    case "slices": return r.shape_zyx[0];
    case "spacing": return r.spacing_xyz[2];
    case "labels": return r.labels.join(" ");
    case "flags": return r.flags.length;
    default: return r[key];
  }
}

// The filter box: words separated by spaces, all of which a row must match. A word
// `COLUMN<N`, `COLUMN>N`, `COLUMN<=N`, `COLUMN>=N` or `COLUMN=N` compares a numeric column
// (lung_ml, hu_min, hu_max, hu_mean, slices, nodules, excluded, candidates, findings,
// flags: their count); any other word is looked for in the series id, flags, label
// names and warnings.
const NUMERIC = new Set(["lung_ml", "hu_min", "hu_max", "hu_mean", "slices", "nodules", "excluded", "candidates", "findings", "flags"]);
const COMPARE = { "<": (a, b) => a < b, ">": (a, b) => a > b, "<=": (a, b) => a <= b, ">=": (a, b) => a >= b, "=": (a, b) => a === b };

function matcher(word) {
  const m = word.match(/^([a-z_]+)(<=|>=|<|>|=)(-?[0-9.]+)$/);
  if (m && NUMERIC.has(m[1]) && Number.isFinite(Number(m[3]))) {
    const [, key, op, n] = m;
    return (r) => { const v = rowValue(r, key); return v !== null && v !== undefined && COMPARE[op](v, Number(n)); };
  }
  const w = word.toLowerCase();
  return (r) => [r.series_id, ...r.flags, ...r.labels, ...r.warnings].some((s) => s.toLowerCase().includes(w));
}

function drawScans() {
  const tests = $("#filter").value.trim().split(/\s+/).filter(Boolean).map(matcher);
  const flaggedOnly = $("#flagged-only").checked;
  const rows = state.rows.filter((r) => (!flaggedOnly || r.flags.length > 0) && tests.every((t) => t(r)));
  const k = state.sortKey, d = state.sortDir;
  rows.sort((a, b) => {
    const x = rowValue(a, k), y = rowValue(b, k);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * d;
  });
  for (const th of document.querySelectorAll("#scans th[data-key]")) {
    th.classList.toggle("sorted-asc", th.dataset.key === k && d === 1);
    th.classList.toggle("sorted-desc", th.dataset.key === k && d === -1);
  }
  const body = $("#scans tbody");
  body.replaceChildren(...rows.map((r) => {
    const sp = r.spacing_xyz.map((v) => fmt(v, 2)).join(" x ");
    const id = encodeURIComponent(r.series_id);
    return el("tr", { "data-series": r.series_id, onclick: () => openScan(r.series_id) },
      el("td", {}, el("img", { src: `/api/scans/${id}/thumbnail.png`, loading: "lazy", alt: "" })),
      el("td", {}, r.series_id),
      el("td", {}, `${r.shape_zyx[0]} x ${r.shape_zyx[1]} x ${r.shape_zyx[2]}`),
      el("td", {}, sp),
      el("td", {}, r.lung_ml === null ? "" : fmt(r.lung_ml, 0)),
      el("td", {}, r.hu_min), el("td", {}, r.hu_max),
      el("td", {}, r.nodules + (r.excluded ? ` (+${r.excluded} excl.)` : "")),
      el("td", {}, r.candidates),
      el("td", {}, r.findings === null ? "" : r.findings),
      el("td", {}, r.labels.join(", ")),
      el("td", { class: "flags", title: r.warnings.join("\n") }, r.flags.join("; ")));
  }));
  $("#scan-count").textContent = `${rows.length} of ${state.rows.length} scans`;
}

// ---------------------------------------------------------------- one scan
async function openScan(id, at) {
  say("");
  let scan;
  try { scan = await getJson(`/api/scans/${encodeURIComponent(id)}`); } catch (e) { say(e.message); return; }
  state.scan = scan;
  const [nz, ny, nx] = scan.shape_zyx;
  const first = scan.nodules.find((n) => n.inside && !n.source.includes("excluded"));
  const c = at || (first ? first.voxel_zyx : [nz / 2, ny / 2, nx / 2]);
  setPoint(c);
  $("#tab-scan").disabled = false;
  $("#scan-title").textContent = `${scan.series_id}  ${nz} x ${ny} x ${nx}, ` +
    `spacing ${scan.spacing_xyz.map((v) => fmt(v, 2)).join(" x ")} mm`;
  $("#scan-flags").textContent = scan.flags.join("; ");
  buildOverlays(scan);
  fillTables(scan);
  history.replaceState(null, "", `#scan=${encodeURIComponent(id)}`);
  showTab("scan");
  drawAll();
}

function setPoint(zyx) {
  const shape = state.scan.shape_zyx;
  const p = zyx.map((v, a) => Math.min(shape[a] - 1, Math.max(0, Math.round(v))));
  state.point = p;
  for (const plane of PLANES) state.index[plane] = p[AXIS[plane]];
}

function buildOverlays(scan) {
  const box = $("#overlays");
  const items = [];
  scan.labels.forEach((l, i) => items.push([`label:${l.name}`, `${l.name}`, LABEL_COLOURS[i % LABEL_COLOURS.length]]));
  if (scan.nodules.length) items.push(["nodules", "annotated nodules", [40, 210, 70]]);
  if (scan.candidates.length) items.push(["candidates", "candidates", [240, 240, 60]]);
  if (scan.probability) items.push(["probability", "predicted probability", [230, 40, 40]]);
  if (scan.findings.length) items.push(["findings", "findings", [255, 120, 255]]);
  items.push(["crosshair", "crosshair", [255, 255, 0]]);
  // What was on stays on from scan to scan; a first scan shows lungs, nodules, findings.
  const defaults = new Set(["label:lungs", "nodules", "findings", "probability", "crosshair"]);
  const keep = state.overlays.size ? state.overlays : defaults;
  state.overlays = new Set(items.map((i) => i[0]).filter((k) => keep.has(k)));
  box.replaceChildren(el("span", {}, "overlays:"), ...items.map(([key, text, colour]) => {
    const input = el("input", { type: "checkbox", "data-overlay": key });
    input.checked = state.overlays.has(key);
    input.addEventListener("change", () => {
      if (input.checked) state.overlays.add(key); else state.overlays.delete(key);
      drawAll();
    });
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = `rgb(${colour})`; // CSSOM, which the page's CSP allows
    return el("label", {}, input, swatch, text);
  }));
}

function fillTables(scan) {
  const jump = (zyx) => { setPoint(zyx); drawAll(); };
  $("#nodules tbody").replaceChildren(...scan.nodules.map((n) => el("tr", {
    "data-nodule": n.nodule_id, onclick: () => jump(n.voxel_zyx),
  }, el("td", {}, n.nodule_id), el("td", {}, n.source), el("td", {}, fmt(n.diameter_mm, 1)),
  el("td", {}, n.voxel_zyx.map((v) => fmt(v, 0)).join(", ")),
  el("td", {}, n.in_lung_region === null ? "" : (n.in_lung_region ? "yes" : "no")))));
  const findings = scan.findings.filter((f) => f.voxel_zyx).sort((a, b) => b.probability - a.probability);
  $("#findings tbody").replaceChildren(...findings.map((f, i) => el("tr", {
    "data-finding": i, onclick: () => jump(f.voxel_zyx),
  }, el("td", {}, fmt(f.probability, 3)), el("td", {}, f.voxel_zyx.map((v) => fmt(v, 0)).join(", ")))));
}

function drawAll() { for (const p of PLANES) drawView(p); updateWindowText(); }

function updateWindowText() {
  $("#window-text").textContent = `level ${Math.round(state.window.level)}, width ${Math.round(state.window.width)}`;
}

// Spacing (mm) of a plane's rows and columns.
function rowColSpacing(plane) {
  const [sx, sy, sz] = state.scan.spacing_xyz;
  const s = [sz, sy, sx];
  const [r, c] = ROWS_COLS[plane];
  return [s[r], s[c]];
}

async function drawView(plane) {
  const scan = state.scan;
  const fig = document.querySelector(`figure.view[data-plane="${plane}"]`);
  const canvas = fig.querySelector("canvas");
  const gen = ++state.generation[plane];
  const index = state.index[plane];
  const id = encodeURIComponent(scan.series_id);
  const n = scan.shape_zyx[AXIS[plane]];
  let image, labels = [], prob = null;
  try {
    const want = [getSlice(`/api/scans/${id}/image/${plane}/${index}`)];
    const labelNames = scan.labels.map((l, i) => [l.name, i]).filter(([name]) => state.overlays.has(`label:${name}`));
    for (const [name] of labelNames) want.push(getSlice(`/api/scans/${id}/label/${encodeURIComponent(name)}/${plane}/${index}`));
    if (scan.probability && state.overlays.has("probability")) want.push(getSlice(`/api/scans/${id}/probability/${plane}/${index}`));
    const got = await Promise.all(want);
    image = got[0];
    labels = labelNames.map(([, i], k) => [got[1 + k], i]);
    if (scan.probability && state.overlays.has("probability")) prob = got[got.length - 1];
  } catch (e) { say(e.message); return; }
  if (gen !== state.generation[plane] || scan !== state.scan) return; // a newer request drew
  const { rows, cols } = image;
  const flip = plane !== "axial"; // head up on coronal and sagittal views
  const img = new ImageData(cols, rows);
  const lo = state.window.level - state.window.width / 2, inv = 255 / state.window.width;
  for (let r = 0; r < rows; r++) {
    const dst = (flip ? rows - 1 - r : r) * cols;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c, o = (dst + c) * 4;
      let g = (image.data[i] - lo) * inv;
      g = g < 0 ? 0 : g > 255 ? 255 : g;
      let R = g, G = g, B = g;
      for (const [l, li] of labels) {
        const v = l.data[i];
        if (v) {
          const k = LABEL_COLOURS[(li + v - 1) % LABEL_COLOURS.length], a = LABEL_ALPHA;
          R = R * (1 - a) + k[0] * a; G = G * (1 - a) + k[1] * a; B = B * (1 - a) + k[2] * a;
        }
      }
      if (prob) {
        const p = prob.data[i] / 1000;
        if (p >= 0.05) { const a = 0.75 * p; R = R * (1 - a) + 230 * a; G = G * (1 - a) + 40 * a; B = B * (1 - a) + 40 * a; }
      }
      img.data[o] = R; img.data[o + 1] = G; img.data[o + 2] = B; img.data[o + 3] = 255;
    }
  }
  const off = new OffscreenCanvas(cols, rows);
  off.getContext("2d").putImageData(img, 0, 0);
  const [rs, cs] = rowColSpacing(plane);
  const W = 512, H = Math.max(16, Math.round(W * (rows * rs) / (cols * cs)));
  if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, W, H);
  const sx = W / cols, sy = H / rows;
  // Voxel (z, y, x) -> canvas point of this plane.
  const toCanvas = (zyx) => {
    const [ra, ca] = ROWS_COLS[plane];
    const row = flip ? rows - 1 - zyx[ra] : zyx[ra];
    return [(zyx[ca] + 0.5) * sx, (row + 0.5) * sy];
  };
  const axis = AXIS[plane];
  const axisSpacing = [scan.spacing_xyz[2], scan.spacing_xyz[1], scan.spacing_xyz[0]][axis];
  ctx.lineWidth = 1.5;
  ctx.font = "12px sans-serif";
  if (state.overlays.has("nodules")) {
    for (const nd of scan.nodules) {
      if (!nd.diameter_mm) continue;
      const dmm = Math.abs(nd.voxel_zyx[axis] - index) * axisSpacing, r = nd.diameter_mm / 2;
      if (dmm >= r) continue;
      const rmm = Math.sqrt(r * r - dmm * dmm);
      const [x, y] = toCanvas(nd.voxel_zyx);
      ctx.strokeStyle = nd.source.includes("excluded") ? "rgb(150,150,150)" : "rgb(40,210,70)";
      ctx.beginPath();
      ctx.ellipse(x, y, Math.max(2, rmm / cs * sx), Math.max(2, rmm / rs * sy), 0, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(`${fmt(nd.diameter_mm, 1)} mm`, x + rmm / cs * sx + 3, y);
    }
  }
  if (state.overlays.has("candidates")) {
    ctx.strokeStyle = "rgb(240,240,60)";
    for (const c of scan.candidates) {
      if (Math.abs(c.voxel_zyx[axis] - index) * axisSpacing > 3) continue;
      const [x, y] = toCanvas(c.voxel_zyx);
      ctx.beginPath(); ctx.moveTo(x - 4, y); ctx.lineTo(x + 4, y); ctx.moveTo(x, y - 4); ctx.lineTo(x, y + 4); ctx.stroke();
    }
  }
  if (state.overlays.has("findings")) {
    ctx.strokeStyle = "rgb(255,120,255)";
    for (const f of scan.findings) {
      if (!f.voxel_zyx || Math.abs(f.voxel_zyx[axis] - index) * axisSpacing > 5) continue;
      const [x, y] = toCanvas(f.voxel_zyx);
      ctx.strokeRect(x - 7, y - 7, 14, 14);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(fmt(f.probability, 2), x + 9, y - 8);
    }
  }
  if (state.overlays.has("crosshair") && state.point) {
    const [x, y] = toCanvas(state.point);
    ctx.strokeStyle = "rgba(255,255,0,0.5)";
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, H); ctx.moveTo(0, y); ctx.lineTo(W, y); ctx.stroke();
  }
  fig.querySelector("figcaption").textContent = `${plane} ${index} / ${n - 1}`;
  fig.dataset.index = index;
  canvas.dataset.drawn = `${scan.series_id}/${plane}/${index}`;
}

function move(plane, by) {
  const n = state.scan.shape_zyx[AXIS[plane]];
  const i = Math.min(n - 1, Math.max(0, state.index[plane] + by));
  if (i !== state.index[plane]) { state.index[plane] = i; drawView(plane); }
}

function wireViews() {
  for (const fig of document.querySelectorAll("figure.view")) {
    const plane = fig.dataset.plane, canvas = fig.querySelector("canvas");
    canvas.addEventListener("wheel", (e) => { e.preventDefault(); move(plane, e.deltaY > 0 ? 1 : -1); }, { passive: false });
    canvas.addEventListener("mouseenter", () => { state.hovered = plane; });
    let down = null;
    canvas.addEventListener("mousedown", (e) => { down = { x: e.clientX, y: e.clientY, w: { ...state.window }, dragged: false }; });
    window.addEventListener("mousemove", (e) => {
      if (!down) return;
      const dx = e.clientX - down.x, dy = e.clientY - down.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) down.dragged = true;
      if (down.dragged) {
        state.window = { level: down.w.level + dy * 4, width: Math.max(1, down.w.width + dx * 8) };
        drawAll();
      }
    });
    canvas.addEventListener("mouseup", (e) => {
      if (down && !down.dragged) {
        const rect = canvas.getBoundingClientRect();
        const fx = (e.clientX - rect.left) / rect.width, fy = (e.clientY - rect.top) / rect.height;
        const [ra, ca] = ROWS_COLS[plane];
        const shape = state.scan.shape_zyx;
        const p = state.point.slice();
        p[ca] = Math.floor(fx * shape[ca]);
        const row = Math.floor(fy * shape[ra]);
        p[ra] = plane === "axial" ? row : shape[ra] - 1 - row;
        setPoint(p);
        drawAll();
      }
      down = null;
    });
    window.addEventListener("mouseup", () => { down = null; });
  }
  document.addEventListener("keydown", (e) => {
    if ($("#page-scan").hidden || !state.scan || e.target.tagName === "INPUT") return;
    const by = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 }[e.key];
    if (by) { e.preventDefault(); move(state.hovered, by); }
  });
  for (const b of document.querySelectorAll("button.preset")) {
    b.addEventListener("click", () => {
      state.window = { level: Number(b.dataset.level), width: Number(b.dataset.width) };
      drawAll();
    });
  }
}

// ---------------------------------------------------------------- a run's curves
async function loadRun() {
  try { state.run = await getJson("/api/run"); } catch (e) { say(e.message); }
}

function chart(title, series, opts) {
  const canvas = el("canvas", { width: 560, height: 300 });
  const fig = el("figure", { "data-chart": title }, canvas);
  const ctx = canvas.getContext("2d");
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!opts.logX || x > 0));
  ctx.fillStyle = "#1a1a1a"; ctx.fillRect(0, 0, 560, 300);
  ctx.fillStyle = "#ddd"; ctx.font = "13px sans-serif";
  ctx.fillText(title, 50, 16);
  if (!pts.length) { ctx.fillText("no values", 250, 150); return fig; }
  const tx = (x) => (opts.logX ? Math.log10(x) : x);
  let x0 = Math.min(...pts.map((p) => tx(p[0]))), x1 = Math.max(...pts.map((p) => tx(p[0])));
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (opts.y01) { y0 = 0; y1 = 1; }
  if (x1 === x0) { x1 = x0 + 1; }
  if (y1 === y0) { y1 = y0 + 1; }
  const L = 50, R = 550, T = 26, B = 270;
  const px = (x) => L + (tx(x) - x0) / (x1 - x0) * (R - L), py = (y) => B - (y - y0) / (y1 - y0) * (B - T);
  ctx.strokeStyle = "#666"; ctx.strokeRect(L, T, R - L, B - T);
  ctx.fillStyle = "#aaa"; ctx.font = "11px sans-serif";
  ctx.fillText(String(+y1.toPrecision(3)), 4, T + 8); ctx.fillText(String(+y0.toPrecision(3)), 4, B);
  const xl = (v) => String(+(opts.logX ? 10 ** v : v).toPrecision(3));
  ctx.fillText(xl(x0), L, B + 14); ctx.fillText(xl(x1), R - 30, B + 14);
  ctx.fillText(opts.xName, (L + R) / 2 - 20, B + 26);
  series.forEach((s, k) => {
    ctx.strokeStyle = s.colour; ctx.lineWidth = 1.5; ctx.beginPath();
    let started = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y) || (opts.logX && x <= 0)) continue;
      if (started) ctx.lineTo(px(x), py(y)); else { ctx.moveTo(px(x), py(y)); started = true; }
    }
    ctx.stroke();
    if (series.length > 1) { ctx.fillStyle = s.colour; ctx.fillText(s.name, R - 150, T + 14 + 14 * k); }
  });
  return fig;
}

// Columns of the logs that are bookkeeping, not measurements: not drawn.
const NOT_DRAWN = new Set(["step", "epoch", "batch", "batch_fingerprint"]);
// The measurements drawn first, in this order; the rest follow as the log has them.
const FIRST = ["cpm", "loss", "dice", "sensitivity", "fps_per_scan"];

// The mean of the last `n` values at each point (fewer at the start), skipping gaps.
function runningMean(points, n) {
  const out = [], win = [];
  let sum = 0;
  for (const [x, y] of points) {
    if (y === null || !Number.isFinite(y)) continue;
    win.push(y); sum += y;
    if (win.length > n) sum -= win.shift();
    out.push([x, sum / win.length]);
  }
  return out;
}

function logCharts(log, prefix) {
  if (!log || !log.values.length) return [];
  const step = log.columns.indexOf("step");
  const xs = step >= 0 ? log.values[step] : log.values[0].map((_, i) => i);
  const rank = (name) => (FIRST.includes(name) ? FIRST.indexOf(name) : FIRST.length);
  return log.columns.map((name, c) => [name, c])
    .filter(([name, c]) => !NOT_DRAWN.has(name) && log.values[c].some((v) => v !== null))
    .sort((a, b) => rank(a[0]) - rank(b[0]))
    .map(([name, c]) => {
      const points = xs.map((x, i) => [x, log.values[c][i]]);
      const series = [{ name, colour: "#4cf", points }];
      // A noisy per-step curve gets its running mean over 20 steps beside it.
      if (points.length > 50) series.push({ name: "mean of 20", colour: "#fc4", points: runningMean(points, 20) });
      return chart(`${prefix} ${name}`, series, { xName: "step" });
    });
}

function drawRun() {
  const run = state.run, box = $("#charts");
  if (!run) { box.replaceChildren(); return; }
  $("#run-title").textContent = run.folder ? `run ${run.folder}` : "evaluation";
  const train = logCharts(run.metrics, "train:"), val = logCharts(run.val, "validation:");
  // Validation's headline figures (CPM, loss, Dice) beside training's loss and Dice.
  const figs = [...val.slice(0, 3), ...train.slice(0, 2), ...val.slice(3), ...train.slice(2)];
  if (run.froc) {
    const f = run.froc;
    figs.unshift(chart(`FROC: CPM ${fmt(f.cpm, 3)}, ${f.detected} of ${f.nodules} nodules on ${f.scans} scans`,
      [{ name: "sensitivity", colour: "#f84", points: f.curve.map((p) => [p.fps_per_scan, p.sensitivity]) }],
      { xName: "false positives per scan", logX: true, y01: true }));
  }
  box.replaceChildren(...figs);
}

// ---------------------------------------------------------------- start
async function start() {
  for (const b of document.querySelectorAll("button.tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
  for (const th of document.querySelectorAll("#scans th[data-key]")) {
    th.addEventListener("click", () => {
      if (state.sortKey === th.dataset.key) state.sortDir = -state.sortDir; else { state.sortKey = th.dataset.key; state.sortDir = 1; }
      drawScans();
    });
  }
  $("#filter").addEventListener("input", drawScans);
  $("#flagged-only").addEventListener("change", drawScans);
  wireViews();
  try {
    state.store = await getJson("/api/store");
    state.rows = await getJson("/api/scans");
  } catch (e) { say(e.message); return; }
  $("#store-name").textContent = `${state.store.location}: ${state.store.scans} scans`;
  drawScans();
  if (state.store.run || state.store.evaluation) { $("#tab-run").disabled = false; await loadRun(); }
  const m = location.hash.match(/^#scan=(.+)$/);
  if (m) await openScan(decodeURIComponent(m[1])); else showTab("scans");
  document.body.dataset.ready = "1";
}

start();
