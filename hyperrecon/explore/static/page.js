// hrbench explore: one page, no libraries, nothing loaded from the network.
// Live mode talks to the local server (/api/...); an exported page carries its data in #export-data and snaps λ
// to the grid it was rendered on. Renders are coalesced: at most one request in flight, and when it returns only
// the newest λ is sent (older slider positions are dropped, never queued).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const EXPORT = JSON.parse($("export-data").textContent || "null");
  const state = { info: null, model: null, slice: 0, lam: [], metric: null, sliceData: null, recon: null };
  // what the browser test and the curious read: renders shown, last latency, current λ; ready once an image shows
  const probe = (window.hrExplore = { renders: 0, latencyMs: null, lam: state.lam, ready: false, errors: 0 });
  const client = Math.random().toString(36).slice(2, 12);
  let seq = 0;

  // ---- backends ------------------------------------------------------------------------------------------------
  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  const live = {
    info: () => getJSON("/api/info"),
    slice: (i) => getJSON(`/api/slice?slice=${i}`),
    render: (m, i, lam) =>
      getJSON(`/api/render?model=${encodeURIComponent(m)}&slice=${i}&lam=${lam.join(",")}&client=${client}&seq=${++seq}`),
    diverse: (m, i) => getJSON(`/api/diverse?model=${encodeURIComponent(m)}&slice=${i}`),
  };
  const exported = {
    info: async () => EXPORT.info,
    slice: async (i) => EXPORT.slices[i],
    render: async (m, i, lam) => {
      const e = EXPORT.renders[m][i][gridIndex(lam)];
      return { ...e, lam: gridLam(lam), baseline: EXPORT.baselines[e.baseline + "/" + i] || null };
    },
    diverse: async (m, i) => {
      const d = (EXPORT.diverse[m] || {})[i];
      if (!d) throw new Error("not pre-computed for this slice in the exported page");
      return d;
    },
  };
  const backend = EXPORT ? exported : live;
  const axis = () => EXPORT.grid; // the exported λ axis (same for both λ)
  function gridPos(v) { const n = axis().length; return Math.round(v * (n - 1)); }
  function gridIndex(lam) { const n = axis().length; return lam.length === 1 ? gridPos(lam[0]) : gridPos(lam[0]) * n + gridPos(lam[1]); }
  function gridLam(lam) { return lam.map((v) => axis()[gridPos(v)]); }

  // ---- status --------------------------------------------------------------------------------------------------
  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
    if (isError) probe.errors += 1;
  }
  const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const lamText = (lam) => lam.map((v) => fmt(v, 3)).join(", ");

  // ---- images and the difference map ------------------------------------------------------------------------------
  function setImage(img, src) {
    img.src = src;
    return img.decode ? img.decode().catch(() => {}) : Promise.resolve();
  }
  function pixels(img) {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    return g.getImageData(0, 0, c.width, c.height).data;
  }
  // inferno-like colour map, 5 stops, linear in between
  const STOPS = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
  function colour(t) {
    const x = Math.min(Math.max(t, 0), 1) * (STOPS.length - 1);
    const i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
    return STOPS[i].map((a, k) => Math.round(a + f * (STOPS[i + 1][k] - a)));
  }
  function drawDiff() {
    const t = state.sliceData && state.sliceData.pixels, img = $("recon");
    if (!t || !img.naturalWidth) return;
    const r = pixels(img), c = $("diff");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d"), out = g.createImageData(c.width, c.height);
    const scale = 255 * state.sliceData.diff_scale;
    for (let p = 0; p < r.length; p += 4) {
      const [R, G, B] = colour(Math.abs(r[p] - t[p]) / scale);
      out.data[p] = R; out.data[p + 1] = G; out.data[p + 2] = B; out.data[p + 3] = 255;
    }
    g.putImageData(out, 0, 0);
    $("diff-caption").textContent = `|reconstruction − ground truth|, black 0 to yellow ${fmt(state.sliceData.diff_scale, 3)} (= max |input − truth|)`;
  }

  // ---- rendering, coalesced ------------------------------------------------------------------------------------------
  let inflight = false, wanted = null;
  function requestRender() {
    wanted = { model: state.model, slice: state.slice, lam: state.lam.slice() };
    pump();
  }
  async function pump() {
    if (inflight || !wanted || !state.sliceData) return;
    const req = wanted; wanted = null; inflight = true;
    const t0 = performance.now();
    try {
      const r = await backend.render(req.model, req.slice, req.lam);
      if (r && !r.superseded && !(wanted && wanted.slice !== req.slice)) await show(r, t0);
    } catch (e) {
      status(String(e.message || e), true);
    } finally {
      inflight = false;
      pump();
    }
  }
  async function show(r, t0) {
    state.recon = r;
    await setImage($("recon"), r.image);
    drawDiff();
    $("recon-caption").textContent = `${label(r.model)} at λ = ${lamText(r.lam)}`;
    const b = r.baseline;
    if (b) {
      await setImage($("baseline"), b.image);
      $("baseline-caption").textContent = `nearest trained baseline: U-Net at λ = ${lamText(b.lam)}`;
    } else {
      $("baseline").removeAttribute("src");
      $("baseline-caption").textContent = "no baseline trained yet";
    }
    readout(r, b);
    const ms = performance.now() - t0;
    probe.renders += 1; probe.latencyMs = ms; probe.shownLam = r.lam.slice(); probe.ready = true;
    $("latency").textContent = EXPORT ? "pre-rendered (λ snapped to the export grid)"
      : `slider to image ${ms.toFixed(0)} ms (server ${fmt(r.server_ms, 1)} ms)`;
    drawLandscape();
    status("");
  }
  function readout(r, b) {
    const names = state.info.readout, head = $("readout").tHead.rows[0], body = $("readout").tBodies[0];
    head.innerHTML = "<th></th>" + names.map((n) => `<th>${n.toUpperCase().replace("RPSNR", "rPSNR")}</th>`).join("");
    const row = (who, m) => `<tr><td>${who}</td>${names.map((n) => `<td>${fmt(m[n], n.includes("psnr") ? 2 : 4)}</td>`).join("")}</tr>`;
    body.innerHTML = row(label(r.model), r.metrics) + (b ? row(`U-Net λ=${lamText(b.lam)}`, b.metrics) : "");
  }
  const label = (name) => (state.info.models.find((m) => m.name === name) || { label: name }).label;

  // ---- slices ------------------------------------------------------------------------------------------------------
  async function selectSlice(i) {
    state.slice = i;
    document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", Number(b.dataset.index) === i));
    const s = await backend.slice(i);
    await Promise.all([setImage($("target"), s.target), setImage($("input"), s.input)]);
    state.sliceData = { ...s, pixels: pixels($("target")) };
    $("diverse").hidden = true;
    requestRender();
  }

  // ---- sliders -----------------------------------------------------------------------------------------------------
  function buildSliders() {
    const box = $("sliders"), k = state.info.n_lams;
    const step = EXPORT ? 1 / (axis().length - 1) : 0.005;
    box.innerHTML = "";
    for (let a = 0; a < k; a++) {
      const name = document.createElement("label"), input = document.createElement("input"), out = document.createElement("output");
      name.textContent = state.info.lam_labels[a]; name.htmlFor = `lam${a}`;
      Object.assign(input, { type: "range", min: 0, max: 1, step, value: state.lam[a], id: `lam${a}` });
      out.id = `lam${a}-value`; out.textContent = fmt(state.lam[a]);
      input.addEventListener("input", () => setLam(a, Number(input.value), false));
      box.append(name, input, out);
    }
  }
  function setLam(a, v, moveSlider) {
    state.lam[a] = Math.min(Math.max(v, 0), 1);
    if (moveSlider) $(`lam${a}`).value = state.lam[a];
    $(`lam${a}-value`).textContent = fmt(Number($(`lam${a}`).value));
    state.lam[a] = Number($(`lam${a}`).value); // the slider's own rounding to its step
    drawLandscape();
    requestRender();
  }

  // ---- landscape (AO) or curve (SL) -----------------------------------------------------------------------------------
  const PLOT = { left: 48, right: 12, top: 12, bottom: 40 };
  function plotBox(c) { return { x0: PLOT.left, y0: PLOT.top, w: c.width - PLOT.left - PLOT.right, h: c.height - PLOT.top - PLOT.bottom }; }
  function currentData() {
    const l = state.info.landscapes.models[state.model];
    return l ? l[state.metric] : null;
  }
  function drawLandscape() {
    const c = $("landscape"), g = c.getContext("2d"), p = plotBox(c), d = currentData();
    g.clearRect(0, 0, c.width, c.height);
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#111"; g.strokeStyle = "#111";
    if (!d) { g.fillText("no evaluation results for this model yet", p.x0, p.y0 + 20); return; }
    const X = (v) => p.x0 + v * p.w, Y2 = (v) => p.y0 + (1 - v) * p.h;
    if (state.info.n_lams === 1) {
      const ys = d.mean.filter((v) => v !== null), base = (state.info.landscapes.baselines[state.metric] || []);
      const all = ys.concat(base.map((b) => b.mean).filter((v) => v !== null));
      let lo = Math.min(...all), hi = Math.max(...all); if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
      const Y = (v) => p.y0 + (1 - (v - lo) / (hi - lo)) * p.h;
      g.strokeStyle = "#2171b5"; g.lineWidth = 2; g.beginPath();
      d.lams.forEach((l, i) => { if (d.mean[i] !== null) (i ? g.lineTo : g.moveTo).call(g, X(l), Y(d.mean[i])); });
      g.stroke();
      g.fillStyle = "#000";
      base.forEach((b) => { if (b.mean !== null) { g.beginPath(); g.arc(X(b.lam[0]), Y(b.mean), 3.5, 0, 7); g.fill(); } });
      g.fillText(fmt(hi, 2), 4, p.y0 + 8); g.fillText(fmt(lo, 2), 4, p.y0 + p.h);
      g.strokeStyle = "#d94801"; g.lineWidth = 1.5; g.beginPath(); g.moveTo(X(state.lam[0]), p.y0); g.lineTo(X(state.lam[0]), p.y0 + p.h); g.stroke();
      $("landscape-note").textContent = `${state.metric} (mean over test slices) of ${label(state.model)} over λ; dots: trained baselines. Click to set λ.`;
    } else {
      const ax = d.axis, n = ax.length, vals = d.grid.flat().filter((v) => v !== null);
      const lo = Math.min(...vals), hi = Math.max(...vals);
      const edge = (i) => (i <= 0 ? 0 : i >= n ? 1 : (ax[i - 1] + ax[i]) / 2);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        const v = d.grid[i][j]; if (v === null) continue;
        const [R, G, B] = colour((v - lo) / Math.max(hi - lo, 1e-12));
        g.fillStyle = `rgb(${R},${G},${B})`;
        g.fillRect(X(edge(i)), Y2(edge(j + 1)), X(edge(i + 1)) - X(edge(i)) + 0.5, Y2(edge(j)) - Y2(edge(j + 1)) + 0.5);
      }
      g.strokeStyle = "#fff"; g.lineWidth = 1;
      state.info.baselines.forEach((b) => { g.beginPath(); g.arc(X(b.lam[0]), Y2(b.lam[1]), 3, 0, 7); g.stroke(); });
      g.strokeStyle = "#00e5ff"; g.lineWidth = 2; const cx = X(state.lam[0]), cy = Y2(state.lam[1]);
      g.beginPath(); g.moveTo(cx - 8, cy); g.lineTo(cx + 8, cy); g.moveTo(cx, cy - 8); g.lineTo(cx, cy + 8); g.stroke();
      g.fillStyle = "#111"; g.fillText("1", p.x0 - 10, p.y0 + 8); g.fillText("0", p.x0 - 10, p.y0 + p.h);
      $("landscape-note").textContent = `${state.metric} (mean over test slices) of ${label(state.model)}: dark ${fmt(lo, 2)}, light ${fmt(hi, 2)}; circles: trained baselines; cross: current λ. Click to set λ.`;
    }
    g.fillStyle = "#111";
    g.fillText("0", p.x0 - 3, p.y0 + p.h + 12); g.fillText("1", p.x0 + p.w - 3, p.y0 + p.h + 12);
    g.fillText(state.info.lam_labels[0], p.x0, p.y0 + p.h + 28);
    if (state.info.n_lams === 2) { g.save(); g.translate(14, p.y0 + p.h - 4); g.rotate(-Math.PI / 2); g.fillText(state.info.lam_labels[1], 0, 0); g.restore(); }
  }
  function onLandscapeClick(ev) {
    const c = $("landscape"), rect = c.getBoundingClientRect(), p = plotBox(c);
    const x = ((ev.clientX - rect.left) * c.width) / rect.width, y = ((ev.clientY - rect.top) * c.height) / rect.height;
    const l1 = (x - p.x0) / p.w, l2 = 1 - (y - p.y0) / p.h;
    if (l1 < -0.05 || l1 > 1.05 || (state.info.n_lams === 2 && (l2 < -0.05 || l2 > 1.05))) return;
    setLam(0, l1, true);
    if (state.info.n_lams === 2) setLam(1, l2, true);
  }

  // ---- copy λ, diverse pair -------------------------------------------------------------------------------------------
  function copyLam() {
    const lam = state.recon ? state.recon.lam : state.lam;
    const text = `λ = ${lam.map((v) => Number(v.toFixed(4))).join(", ")}   (${state.model}, slice ${state.info.slices[state.slice].id})\n` +
      `${state.info.command} --model ${state.model} --lam ${lam.map((v) => Number(v.toFixed(4))).join(",")} --save recon-${state.model}.npz`;
    const box = $("copied"); box.hidden = false; box.textContent = text;
    const done = () => status("λ and command copied");
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, () => status("select the text below to copy it"));
    else { const r = document.createRange(); r.selectNodeContents(box); const s = getSelection(); s.removeAllRanges(); s.addRange(r); status("text selected: press Ctrl-C"); }
  }
  async function showDiverse() {
    const box = $("diverse");
    box.hidden = false; box.textContent = "computing over the λ grid …";
    try {
      const d = await backend.diverse(state.model, state.slice);
      const r = d.range, pr = d.pair;
      let html = `<p>Range of reconstructions over ${d.n_lams_evaluated} λ (grid of ${d.grid_points} per axis): ${r.n_above} with rPSNR &gt; ${fmt(r.rpsnr_threshold, 1)} dB, ` +
        `mean per-pixel range ${fmt(r.range_mean_per_pixel, 4)}.</p>`;
      if (pr) {
        html += `<p>Most diverse pair among the λ with PSNR in the top ${fmt(100 * (1 - pr.quantile), 0)} % (${pr.n_kept} kept): distance ${fmt(pr.distance, 3)}. Click an image to go to its λ.</p>` +
          `<div class="pair"><figure><img id="pair-a" src="${pr.image_a}" alt="pair a"><figcaption>λ = ${lamText(pr.lam_a)}, PSNR ${fmt(pr.psnr_a, 2)}</figcaption></figure>` +
          `<figure><img id="pair-b" src="${pr.image_b}" alt="pair b"><figcaption>λ = ${lamText(pr.lam_b)}, PSNR ${fmt(pr.psnr_b, 2)}</figcaption></figure></div>`;
      }
      box.innerHTML = html;
      if (pr) {
        $("pair-a").onclick = () => pr.lam_a.forEach((v, a) => setLam(a, v, true));
        $("pair-b").onclick = () => pr.lam_b.forEach((v, a) => setLam(a, v, true));
      }
    } catch (e) { box.textContent = String(e.message || e); status(String(e.message || e), true); }
  }

  // ---- start ---------------------------------------------------------------------------------------------------------
  async function start() {
    try {
      const info = (state.info = await backend.info());
      $("title").textContent = `${info.study} (${info.profile}) — ${info.run}`;
      const sel = $("model");
      info.models.forEach((m) => sel.add(new Option(m.label, m.name)));
      state.model = info.models[0].name;
      sel.onchange = () => { state.model = sel.value; $("diverse").hidden = true; drawLandscape(); requestRender(); };
      const metrics = Object.keys((info.landscapes.models[state.model] || {}));
      const msel = $("metric");
      (metrics.length ? metrics : ["psnr"]).forEach((m) => msel.add(new Option(m, m)));
      state.metric = msel.value;
      msel.onchange = () => { state.metric = msel.value; drawLandscape(); };
      for (let a = 0; a < info.n_lams; a++) state.lam[a] = EXPORT ? gridLam([0.5])[0] : 0.5;
      buildSliders();
      const nav = $("slices");
      info.slices.forEach((s) => {
        const b = document.createElement("button");
        b.type = "button"; b.dataset.index = s.index; b.title = `slice ${s.id}`;
        b.innerHTML = `<img alt="slice ${s.index}" src="${s.thumb}"><span>${s.id}</span>`;
        b.onclick = () => selectSlice(s.index);
        nav.append(b);
      });
      $("landscape").addEventListener("click", onLandscapeClick);
      $("copy").onclick = copyLam;
      $("diverse-btn").onclick = showDiverse;
      drawLandscape();
      await selectSlice(info.slices[0].index); // probe.ready turns true when the first image is shown
    } catch (e) {
      status(String(e.message || e), true);
    }
  }
  start();
})();
