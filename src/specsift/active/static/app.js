// specsift labelling page: plain JS, talks to the FastAPI app in webapp.py.
"use strict";
const COLORS = ["#4c78a8", "#e45756", "#b279a2", "#72b7b2", "#f58518", "#54a24b", "#9d755d"];
const HALPHA = 6564.61;
const S = { cfg: null, cur: null, mode: "single", busy: false, gallery: [], sel: 0, jobTimer: null };
const $ = (id) => document.getElementById(id);

function who() { return localStorage.getItem("specsift_who") || "anonymous"; }
async function api(path, opts = {}) {
  const headers = Object.assign({ "X-Labeller": who() }, opts.body ? { "Content-Type": "application/json" } : {});
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).detail || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}
const post = (path, body) => api(path, { method: "POST", body: JSON.stringify(body || {}) });
function toast(msg, ms = 1800) {
  const t = $("toast"); t.textContent = msg; t.classList.remove("hidden");
  clearTimeout(toast.t); toast.t = setTimeout(() => t.classList.add("hidden"), ms);
}
const color = (label) => COLORS[Math.max(0, S.cfg.classes.indexOf(label)) % COLORS.length];
const pretty = (label) => label ? label.replace(/_/g, " ").toLowerCase() : "skipped";

// ---------------------------------------------------------------- state panel
function showState(st) {
  if (!st) return;
  const c = $("counts"); c.innerHTML = "";
  const total = document.createElement("span");
  total.className = "chip total"; total.textContent = `${st.labelled} labelled`; c.appendChild(total);
  for (const k of S.cfg.classes) {
    const s = document.createElement("span");
    s.className = "chip"; s.style.background = color(k);
    s.textContent = `${pretty(k)} ${st.counts[k] || 0}`; c.appendChild(s);
  }
  const h = $("history"); h.innerHTML = "";
  for (const e of st.history) {
    const li = document.createElement("li");
    li.textContent = e.ident || `#${e.item}`;
    const tag = document.createElement("span"); tag.className = "tag";
    tag.style.background = e.label ? color(e.label) : "#999"; tag.textContent = pretty(e.label);
    li.appendChild(tag); h.appendChild(li);
  }
  document.body.dataset.labelled = st.labelled;
  showJob(st.job);
}

// ---------------------------------------------------------------- single view
const isVI = () => S.cfg.label_set && S.cfg.label_set.name === "vi";
const curZ = () => { const v = parseFloat($("z").value); return Number.isFinite(v) ? v : 0; };

function lineShapes(wmin, wmax, z, onlyMajor, style, star) {
  // lines of the package-wide table at redshift z, labels staggered where they crowd;
  // on a whole spectrum only the major ones (a star's: its absorption lines)
  const shapes = [], ann = [], placed = [];
  const minGap = (wmax - wmin) / 40;
  const wanted = (l) => !onlyMajor || (star ? l.absorption : l.major);
  const lines = S.cfg.lines.map(l => Object.assign({}, l, { obs: l.wave * (1 + z) }))
    .filter(l => l.obs >= wmin && l.obs <= wmax && wanted(l));
  for (const l of lines) {
    const em = style !== "second" && l.emission;
    const col = style === "second" ? "#f58518" : (em ? "#e45756" : "#7d879c");
    let level = 0;
    while (placed.some(p => p.level === level && Math.abs(p.obs - l.obs) < minGap)) level++;
    placed.push({ obs: l.obs, level });
    shapes.push({ type: "line", x0: l.obs, x1: l.obs, yref: "paper", y0: 0, y1: 1, name: l.name,
      line: { color: col, width: 1, dash: style === "second" ? "dot" : (em ? "dot" : "dashdot") } });
    ann.push({ x: l.obs, yref: "paper", y: style === "second" ? 0 : 1.0,
      yshift: style === "second" ? 12 * level : -12 * level, text: l.name, showarrow: false,
      yanchor: style === "second" ? "top" : "bottom", bgcolor: "rgba(255,255,255,0.85)",
      font: { size: 10, color: col } });
  }
  return [shapes, ann];
}

function smooth(f, width) {
  // boxcar over good pixels only (null = masked stays null)
  if (!width || width < 2) return f;
  const h = Math.floor(width / 2), out = new Array(f.length);
  for (let i = 0; i < f.length; i++) {
    if (f[i] === null) { out[i] = null; continue; }
    let s = 0, n = 0;
    for (let j = Math.max(0, i - h); j <= Math.min(f.length - 1, i + h); j++) if (f[j] !== null) { s += f[j]; n++; }
    out[i] = s / n;
  }
  return out;
}

function zoomCentre(wmin, wmax, z, pick) {
  const inRange = S.cfg.lines.filter(l => l.wave * (1 + z) >= wmin && l.wave * (1 + z) <= wmax);
  let line = inRange.find(l => l.name === pick) || inRange.find(l => l.name === "Hα")
    || inRange.find(l => l.major) || inRange[0];
  return line ? { name: line.name, wave: line.wave * (1 + z) } : { name: "", wave: HALPHA };
}

function fillZoomLines(wmin, wmax, z) {
  const sel = $("zoom-line"), keep = sel.value;
  const names = [...new Set(S.cfg.lines.filter(l => l.wave * (1 + z) >= wmin && l.wave * (1 + z) <= wmax).map(l => l.name))];
  sel.innerHTML = "";
  for (const n of names) { const o = document.createElement("option"); o.value = o.textContent = n; sel.appendChild(o); }
  sel.value = names.includes(keep) ? keep : zoomCentre(wmin, wmax, z, "").name;
}

function drawSpectrum(d) {
  const w = d.wave, f = smooth(d.flux, parseInt($("smooth").value, 10));
  const wmin = w[0], wmax = w[w.length - 1], z = curZ();
  const wide = wmax - wmin > 2500;                    // a whole survey spectrum: major lines only
  const second = (d.redshift.solutions || []).find(s => s.kind === "second");
  const best = (d.redshift.solutions || [])[0];
  const star = (best ? best.spectype : d.meta.CLASS) === "STAR";
  let [shapes, ann] = lineShapes(wmin, wmax, z, wide, "main", star);
  if (second && Math.abs(second.z - z) > 1e-4) {
    const [s2, a2] = lineShapes(wmin, wmax, second.z, true, "second", second.spectype === "STAR");
    shapes = shapes.concat(s2); ann = ann.concat(a2);
  }
  const win = S.cfg.window;
  if (win && !isVI()) {
    const lo = win[0], hi = win[0] * Math.pow(10, win[2] * (win[1] - 1));
    shapes.push({ type: "rect", x0: lo, x1: hi, yref: "paper", y0: 0, y1: 1, fillcolor: "#3a5bd9",
      opacity: 0.06, line: { width: 0 }, layer: "below" });
  }
  // axis titles as {text: …}: the bundled plotly drops a plain-string title
  const axes = (xt) => ({ xaxis: { title: { text: xt }, gridcolor: "#eef0f5", tickformat: "d" },
    yaxis: { title: { text: "flux" }, gridcolor: "#eef0f5" } });
  const base = { margin: { l: 64, r: 16, t: 26, b: 46 }, paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#fff", hovermode: "x", showlegend: false };
  const traces = [{ x: w, y: f, type: "scattergl", mode: "lines", line: { color: "#1d2433", width: 1 },
    name: "flux", hovertemplate: "%{x:.1f} Å<br>%{y:.4g}<extra></extra>", connectgaps: false }];
  const showModel = d.model_flux && $("show-model").checked;
  if (showModel) traces.push({ x: w, y: d.model_flux, type: "scattergl", mode: "lines", name: "best fit",
    line: { color: "#e45756", width: 1.2 }, hovertemplate: "fit %{y:.4g}<extra></extra>" });
  Plotly.react("plot-full", traces, Object.assign({}, base, axes("observed wavelength [Å]"), { shapes, annotations: ann }),
    { responsive: true, displaylogo: false, scrollZoom: true });
  fillZoomLines(wmin, wmax, z);
  const c = zoomCentre(wmin, wmax, z, $("zoom-line").value), half = 75 * (1 + z);
  let zlo = c.wave - half, zhi = c.wave + half;
  if (wmax - wmin < 700 || zlo < wmin || zhi > wmax) { zlo = Math.max(wmin, zlo); zhi = Math.min(wmax, zhi); }
  const pick = (arr) => arr.filter((_, i) => w[i] >= zlo && w[i] <= zhi);
  const [zs, za] = lineShapes(zlo, zhi, z, false, "main");
  const zt = [Object.assign({}, traces[0], { x: pick(w), y: pick(f), type: "scatter", line: { color: "#3a5bd9", width: 1.4 } })];
  if (showModel) zt.push(Object.assign({}, traces[1], { x: pick(w), y: pick(d.model_flux), type: "scatter" }));
  Plotly.react("plot-zoom", zt, Object.assign({}, base, axes(`${c.name || "Hα"} region, observed [Å]`), { shapes: zs, annotations: za }),
    { responsive: true, displaylogo: false, scrollZoom: true });
  document.body.dataset.z = z.toFixed(5);
}

function showRedshift(d) {
  const r = d.redshift || { z: 0, z_source: "none", solutions: [] };
  $("z").value = (d.vi && d.vi.z_vi != null ? d.vi.z_vi : r.z).toFixed(5);
  $("z-source").textContent = { catalog: "from the catalog", file: "from the file", none: "no redshift known" }[r.z_source] || "";
  const sol = $("solutions"); sol.innerHTML = "";
  for (const s of r.solutions || []) {
    const b = document.createElement("button");
    b.className = s.kind; b.title = `${s.kind} solution: click to draw the lines there`;
    b.textContent = `${s.kind === "best" ? "best" : s.kind === "second" ? "2nd" : "net"} ${s.spectype || ""} z=${s.z.toFixed(4)}`;
    b.onclick = () => { $("z").value = s.z.toFixed(5); drawSpectrum(S.cur); };
    sol.appendChild(b);
  }
  $("show-model-box").classList.toggle("hidden", !d.model_flux);
}

function resetVI() {
  S.vi = { cls: null, zq: null };
  $("comment").value = "";
  renderVI();
}
function renderVI() {
  for (const b of $("buttons").children) b.classList.toggle("picked", isVI() && b.dataset.label === S.vi.cls);
  for (const b of $("zq").children) b.classList.toggle("current", String(S.vi.zq) === b.dataset.q);
  $("save").disabled = !(S.vi.cls && S.vi.zq !== null);
}

function showItem(d) {
  S.cur = d;
  $("empty").classList.add("hidden");
  $("single").classList.toggle("hidden", S.mode !== "single");
  $("ident").textContent = d.ident;
  $("source").textContent = d.source !== d.ident ? d.source : "";
  const m = $("meta"); m.innerHTML = "";
  for (const [k, v] of Object.entries(d.meta)) {
    if (v === null || v === "") continue;
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td></td>`;
    tr.children[0].textContent = k;
    tr.children[1].textContent = typeof v === "number" && !Number.isInteger(v) ? +v.toPrecision(7) : v;
    if (k === "TARGETID") tr.children[1].id = "targetid";
    m.appendChild(tr);
  }
  const p = $("probs"); p.innerHTML = "";
  if (d.probs && d.model) {
    for (const k of S.cfg.classes) {
      const v = d.probs[k] || 0, row = document.createElement("div");
      row.className = "prob";
      row.innerHTML = `<span></span><div class="track"><div class="fill"></div></div><span></span>`;
      row.children[0].textContent = pretty(k);
      row.querySelector(".fill").style.width = `${(100 * v).toFixed(1)}%`;
      row.querySelector(".fill").style.background = color(k);
      row.children[2].textContent = `${(100 * v).toFixed(0)}%`;
      p.appendChild(row);
    }
    $("score").textContent = d.score != null ? `score ${d.score.toFixed(3)}` : "";
  } else {
    p.innerHTML = `<div class="muted small">No model yet — the first batch is random. Retrain after labelling it.</div>`;
    $("score").textContent = "";
  }
  for (const b of $("buttons").children) b.classList.toggle("current", b.dataset.label === d.label);
  showRedshift(d);
  if (isVI()) resetVI();
  drawSpectrum(d);
  document.body.dataset.item = d.item;
  document.body.dataset.ready = "1";
}

function showEmpty() {
  S.cur = null;
  $("single").classList.add("hidden");
  $("empty").classList.remove("hidden");
  document.body.dataset.item = "";
  document.body.dataset.ready = "1";
}

async function loadNext() {
  document.body.dataset.ready = "0";
  const r = await api("/api/next?n=1");
  showState(r.state);
  if (r.skipped && r.skipped.length) toast(`passed over unreadable: ${r.skipped.map(x => x.ident).join(", ")}`, 5000);
  if (r.items.length) showItem(r.items[0]); else showEmpty();
}

async function act(kind, label) {
  if (S.busy) return;
  S.busy = true;
  try {
    if (kind === "undo") {
      const r = await post("/api/undo");
      showState(r.state);
      if (!r.undone) { toast("nothing to undo"); return; }
      toast(`undid ${pretty(r.undone.label)} on ${r.undone.ident || r.undone.item}`);
      if (S.mode === "gallery") { await loadGallery(); return; }
      document.body.dataset.ready = "0";
      showItem(await api(`/api/spectrum/${r.undone.item}`));
      return;
    }
    if (!S.cur) return;
    let body = { item: S.cur.item, label };
    if (kind === "label" && isVI()) {
      body = { item: S.cur.item, label: S.vi.cls, z_quality: S.vi.zq, z_vi: curZ(),
               comment: $("comment").value };
    }
    const r = kind === "label" ? await post("/api/label", body)
                               : await post("/api/skip", { item: S.cur.item });
    showState(r.state);
    await loadNext();
  } catch (e) { toast(`error: ${e.message}`, 4000); }
  finally { S.busy = false; }
}

// ---------------------------------------------------------------- gallery
function sparkline(d) {
  let lo = HALPHA - 60, hi = HALPHA + 60;
  let pts = d.wave.map((w, i) => [w, d.flux[i]]).filter(p => p[0] >= lo && p[0] <= hi && p[1] !== null);
  if (pts.length < 5) { pts = d.wave.map((w, i) => [w, d.flux[i]]).filter(p => p[1] !== null); }
  if (!pts.length) return "";
  lo = pts[0][0]; hi = pts[pts.length - 1][0];
  const ys = pts.map(p => p[1]), ymin = Math.min(...ys), ymax = Math.max(...ys), span = (ymax - ymin) || 1;
  const path = pts.map((p, i) => `${i ? "L" : "M"}${(200 * (p[0] - lo) / (hi - lo || 1)).toFixed(1)},${(86 - 82 * (p[1] - ymin) / span).toFixed(1)}`).join("");
  const xa = 200 * (HALPHA - lo) / (hi - lo || 1);
  return `<svg viewBox="0 0 200 90" preserveAspectRatio="none"><line x1="${xa}" x2="${xa}" y1="0" y2="90" stroke="#e45756" stroke-dasharray="2,2" stroke-width="0.7"/><path d="${path}" fill="none" stroke="#1d2433" stroke-width="1"/></svg>`;
}

function renderGallery() {
  const g = $("grid"); g.innerHTML = "";
  S.gallery.forEach((d, i) => {
    const card = document.createElement("div");
    card.className = "thumb" + (i === S.sel ? " sel" : "") + (d.done !== undefined ? " done" : "");
    let best = "";
    if (d.probs && d.model) {
      const k = S.cfg.classes.reduce((a, b) => (d.probs[a] >= d.probs[b] ? a : b));
      best = `${pretty(k)} ${(100 * d.probs[k]).toFixed(0)}%`;
    }
    card.innerHTML = sparkline(d) + `<div class="cap"></div><div class="cap"></div><span class="lab"></span>`;
    card.querySelectorAll(".cap")[0].textContent = d.ident;
    card.querySelectorAll(".cap")[1].textContent = best ? `model: ${best}` : "no model yet";
    if (d.done !== undefined) {
      const t = card.querySelector(".lab"); t.className = "lab tag";
      t.style.background = d.done ? color(d.done) : "#999"; t.textContent = pretty(d.done);
    }
    card.onclick = () => { S.sel = i; renderGallery(); };
    card.ondblclick = () => openSingle(d.item);
    g.appendChild(card);
  });
  document.body.dataset.ready = "1";
}

async function loadGallery() {
  document.body.dataset.ready = "0";
  const r = await api("/api/next?n=24");
  showState(r.state);
  S.gallery = r.items; S.sel = 0;
  if (!S.gallery.length) { $("gallery").classList.add("hidden"); showEmpty(); return; }
  $("empty").classList.add("hidden"); $("gallery").classList.remove("hidden");
  renderGallery();
}

async function galleryAct(kind, label) {
  const d = S.gallery[S.sel];
  if (!d || S.busy) return;
  S.busy = true;
  try {
    const r = kind === "label" ? await post("/api/label", { item: d.item, label })
                               : await post("/api/skip", { item: d.item });
    d.done = kind === "label" ? label : null;
    showState(r.state);
    const nxt = S.gallery.findIndex((x, i) => i > S.sel && x.done === undefined);
    if (nxt >= 0) S.sel = nxt;
    if (S.gallery.every(x => x.done !== undefined)) { await loadGallery(); } else renderGallery();
  } catch (e) { toast(`error: ${e.message}`, 4000); }
  finally { S.busy = false; }
}

async function openSingle(item) {
  setMode("single", false);
  showItem(await api(`/api/spectrum/${item}`));
}

function setMode(mode, load = true) {
  S.mode = mode;
  $("mode-single").classList.toggle("active", mode === "single");
  $("mode-gallery").classList.toggle("active", mode === "gallery");
  $("single").classList.toggle("hidden", mode !== "single");
  $("gallery").classList.toggle("hidden", mode !== "gallery");
  if (!load) return;
  (mode === "single" ? loadNext() : loadGallery()).catch(e => toast(e.message, 4000));
}

// ---------------------------------------------------------------- retraining
function showJob(job) {
  const box = $("job");
  if (!job || (job.state !== "running" && !S.jobTimer)) { if (!S.jobTimer) box.classList.add("hidden"); return; }
  box.classList.remove("hidden");
  $("job-bar").style.width = `${(100 * (job.progress || 0)).toFixed(0)}%`;
  $("job-msg").textContent = `${job.state === "running" ? "retraining" : job.state}: ${job.message || ""}`;
  $("retrain").disabled = job.state === "running";
  if (job.state === "running" && !S.jobTimer) S.jobTimer = setInterval(pollJob, 1000);
}
async function pollJob() {
  const job = await api("/api/job");
  showJob(job);
  if (job.state !== "running") {
    clearInterval(S.jobTimer); S.jobTimer = null;
    $("retrain").disabled = false;
    toast(job.state === "done" ? job.message : `retraining ${job.state}: ${job.message}`, 4000);
    setTimeout(() => $("job").classList.add("hidden"), 4000);
    if (job.state === "done") setMode(S.mode);
  }
}
async function retrain() {
  try { await post("/api/retrain"); toast("retraining started"); showJob(await api("/api/job")); }
  catch (e) { toast(e.message, 4000); }
}

// ---------------------------------------------------------------- keyboard
function keys() {
  const k = S.cfg.classes.map((c, i) => [String(i + 1), `${isVI() ? "pick" : "label"} ${pretty(c)}`]);
  const vi = isVI() ? [["then 0–4", "redshift quality"], ["Enter", "save class, quality, z and comment"],
    ["Esc", "clear the choice"]] : [["g", "toggle gallery"], ["← → ↑ ↓", "move in the gallery"],
    ["Enter", "open the selected card"]];
  return k.concat(vi, [["z", "type a redshift (the lines move)"], ["s / space", "skip"],
    ["u / Backspace", "undo your last label"], ["r", "retrain"], ["?", "this help"]]);
}
function viKey(n) {
  // VI: the first number picks the class, the next one the quality 0–4; Enter saves
  if (S.vi.cls === null || S.vi.zq !== null) {
    if (n >= 1 && n <= S.cfg.classes.length) { S.vi = { cls: S.cfg.classes[n - 1], zq: null }; }
  } else if (n >= 0 && n <= 4) { S.vi.zq = n; }
  renderVI();
}
document.addEventListener("keydown", (e) => {
  if (["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  const n = parseInt(k, 10);
  const gallery = S.mode === "gallery";
  if (isVI() && !gallery && Number.isInteger(n)) { e.preventDefault(); viKey(n); }
  else if (isVI() && !gallery && k === "Enter") { e.preventDefault(); if (!$("save").disabled) act("label"); }
  else if (n >= 1 && n <= S.cfg.classes.length) { e.preventDefault(); gallery ? galleryAct("label", S.cfg.classes[n - 1]) : act("label", S.cfg.classes[n - 1]); }
  else if (k === "s" || k === " ") { e.preventDefault(); gallery ? galleryAct("skip") : act("skip"); }
  else if (k === "u" || k === "Backspace") { e.preventDefault(); act("undo"); }
  else if (k === "g" && !isVI()) setMode(gallery ? "single" : "gallery");
  else if (k === "r") retrain();
  else if (k === "z") { e.preventDefault(); $("z").focus(); $("z").select(); }
  else if (k === "?") $("help").classList.toggle("hidden");
  else if (k === "Escape") { $("help").classList.add("hidden"); if (isVI()) resetVI(); }
  else if (gallery && S.gallery.length) {
    const cols = Math.max(1, Math.round($("grid").clientWidth / 240));
    const mv = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols }[k];
    if (mv) { e.preventDefault(); S.sel = Math.min(S.gallery.length - 1, Math.max(0, S.sel + mv)); renderGallery(); }
    if (k === "Enter") openSingle(S.gallery[S.sel].item);
  }
});

// ---------------------------------------------------------------- start
async function init() {
  S.cfg = await api("/api/config");
  $("pool").textContent = `${S.cfg.pool.split(/[\\/]/).slice(-2).join("/")} · ${S.cfg.n_pool} · ${S.cfg.strategy} · ${S.cfg.label_set.name}`;
  $("who").value = who();
  $("who").onchange = (e) => {
    const v = e.target.value.trim();
    if (/^[\w.@+-]{1,64}$/.test(v)) { localStorage.setItem("specsift_who", v); setMode(S.mode); }
    else { toast("name: letters, digits, . _ @ + -"); e.target.value = who(); }
  };
  const b = $("buttons");
  S.cfg.classes.forEach((c, i) => {
    const btn = document.createElement("button");
    btn.dataset.label = c; btn.style.background = color(c);
    btn.innerHTML = `<span></span><kbd>${i + 1}</kbd>`; btn.children[0].textContent = pretty(c);
    btn.onclick = () => isVI() ? (S.vi = { cls: c, zq: S.vi.zq }, renderVI()) : act("label", c);
    b.appendChild(btn);
  });
  S.vi = { cls: null, zq: null };
  if (isVI()) {
    $("vi").classList.remove("hidden");
    $("mode-gallery").classList.add("hidden");          // the gallery labels a class alone
    for (const [q, what] of Object.entries(S.cfg.label_set.z_quality)) {
      const btn = document.createElement("button");
      btn.dataset.q = q; btn.title = what; btn.textContent = q;
      btn.onclick = () => { S.vi.zq = parseInt(q, 10); renderVI(); };
      $("zq").appendChild(btn);
    }
    $("save").onclick = () => act("label");
    renderVI();
  }
  $("z").onchange = () => { if (S.cur) drawSpectrum(S.cur); };
  $("z").oninput = () => { if (S.cur && Number.isFinite(parseFloat($("z").value))) drawSpectrum(S.cur); };
  $("z").onkeydown = (e) => { if (e.key === "Enter" || e.key === "Escape") e.target.blur(); };
  $("smooth").onchange = () => { if (S.cur) drawSpectrum(S.cur); };
  $("zoom-line").onchange = () => { if (S.cur) drawSpectrum(S.cur); };
  $("show-model").onchange = () => { if (S.cur) drawSpectrum(S.cur); };
  $("skip").onclick = () => act("skip");
  $("undo").onclick = () => act("undo");
  $("mode-single").onclick = () => setMode("single");
  $("mode-gallery").onclick = () => setMode("gallery");
  $("retrain").onclick = retrain;
  $("help-btn").onclick = () => $("help").classList.toggle("hidden");
  $("help-close").onclick = () => $("help").classList.add("hidden");
  $("help-keys").innerHTML = keys().map(([a, b]) => `<tr><td><kbd>${a}</kbd></td><td>${b}</td></tr>`).join("");
  await loadNext();
}
init().catch(e => toast(`cannot start: ${e.message}`, 8000));
