// Draws the report's charts as SVG from the page's embedded data (#netforge-data). Strings from
// the data reach the page only through textContent and setAttribute on created nodes.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d"];
  const W = 1100, H = 300, M = { l: 92, r: 16, t: 10, b: 40 };

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }

  // 1.5k, 2M, 0.25: three significant digits, decimal prefixes.
  function si(v) {
    const a = Math.abs(v), k = 1000;
    if (v === 0) return "0";
    let s;
    if (a >= k * k * k) s = (v / (k * k * k)).toPrecision(3) + "G";
    else if (a >= k * k) s = (v / (k * k)).toPrecision(3) + "M";
    else if (a >= k) s = (v / k).toPrecision(3) + "k";
    else s = Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
    s = s.replace(/\.0+([a-zA-Z]|$)/, "$1").replace(/(\.\d*?)0+([a-zA-Z]|$)/, "$1$2");
    return s;
  }

  function fmt(v, unit) {
    switch (unit) {
      case "bytes": return si(v) + "B";
      case "bytes_per_second": return si(v) + "B/s";
      case "per_second": return si(v) + "/s";
      case "ms": return v >= 1000 ? si(v / 1000) + " s" : si(v) + " ms";
      case "seconds": return si(v) + " s";
      default: return si(v);
    }
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) hi = lo + 1;
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
    return out;
  }

  function logTicks(lo, hi) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(Math.pow(10, e));
    return out;
  }

  function lineChart(fig, c) {
    const plot = fig.querySelector(".plot"), legend = fig.querySelector(".legend");
    let x0 = Infinity, x1 = -Infinity, y0 = c.y_log ? Infinity : 0, y1 = -Infinity, n = 0;
    for (const s of c.series) for (const [x, y] of s.points) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      if (!c.y_log || y > 0) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      n++;
    }
    for (const [a, b] of c.bands) { x0 = Math.min(x0, a); x1 = Math.max(x1, b); }
    if (!isFinite(x0)) { x0 = 0; x1 = 1; }
    if (!isFinite(y0)) y0 = c.y_log ? 1 : 0;
    if (x1 <= x0) x1 = x0 + 1;
    if (!isFinite(y1) || y1 <= y0) y1 = y0 + 1;
    if (c.y_log) { y0 = Math.pow(10, Math.floor(Math.log10(y0))); y1 = Math.pow(10, Math.ceil(Math.log10(y1))); }
    else y1 = niceTicks(y0, y1, 5).slice(-1)[0] >= y1 ? niceTicks(y0, y1, 5).slice(-1)[0] : y1;
    const pw = W - M.l - M.r, ph = H - M.t - M.b;
    const sx = (x) => M.l + (x - x0) / (x1 - x0) * pw;
    const sy = c.y_log ? (y) => M.t + ph - (Math.log10(Math.max(y, y0)) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) * ph
      : (y) => M.t + ph - (y - y0) / (y1 - y0) * ph;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-points": n, "data-series": c.series.length });
    const grid = el("g", { class: "grid" }, svg);
    for (const [a, b] of c.bands) {
      el("rect", { class: "band", x: sx(a), y: M.t, width: Math.max(1, sx(b) - sx(a)), height: ph }, svg);
    }
    const yt = c.y_log ? logTicks(y0, y1) : niceTicks(y0, y1, 5);
    for (const v of yt) {
      el("line", { x1: M.l, x2: M.l + pw, y1: sy(v), y2: sy(v) }, grid);
      const t = el("text", { class: "tick", x: M.l - 6, y: sy(v) + 4, "text-anchor": "end" }, svg);
      t.textContent = fmt(v, c.y_unit);
    }
    const xt = c.x_ticks.length ? c.x_ticks : niceTicks(x0, x1, 8).map((v) => [v, fmt(v, c.x_unit)]);
    for (const [v, label] of xt) {
      if (v < x0 - 1e-9 || v > x1 + 1e-9) continue;
      el("line", { x1: sx(v), x2: sx(v), y1: M.t, y2: M.t + ph }, grid);
      const t = el("text", { class: "tick", x: sx(v), y: M.t + ph + 16, "text-anchor": "middle" }, svg);
      t.textContent = label;
    }
    const xl = el("text", { class: "axis", x: M.l + pw / 2, y: H - 4, "text-anchor": "middle" }, svg);
    xl.textContent = c.x_label;
    const yl = el("text", { class: "axis", x: 12, y: M.t + ph / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${M.t + ph / 2})` }, svg);
    yl.textContent = c.y_label;
    // The first series (the fleet, or established) is drawn last, on top, and a little wider.
    for (let i = c.series.length - 1; i >= 0; i--) {
      const s = c.series[i];
      const d = s.points.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ");
      el("polyline", { class: "line", points: d, stroke: COLORS[i % COLORS.length], "stroke-width": i === 0 ? 2.4 : 1.6, "data-points": s.points.length }, svg);
    }
    c.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const item = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "sw"; sw.style.background = color;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(s.name));
      legend.appendChild(item);
    });
    if (c.bands.length) {
      const item = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "sw band";
      item.appendChild(sw);
      item.appendChild(document.createTextNode(c.band_label));
      legend.appendChild(item);
    }
    // Hover: the values of every series at the nearest sample.
    const cursor = el("line", { x1: 0, x2: 0, y1: M.t, y2: M.t + ph, stroke: "#888", "stroke-dasharray": "3 3", visibility: "hidden" }, svg);
    const tip = document.createElement("div");
    tip.className = "tip";
    fig.appendChild(tip);
    const hit = el("rect", { x: M.l, y: M.t, width: pw, height: ph, fill: "transparent" }, svg);
    hit.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const x = x0 + ((ev.clientX - box.left) / box.width * W - M.l) / pw * (x1 - x0);
      const lines = [];
      let at = null;
      for (const s of c.series) {
        let best = null;
        for (const p of s.points) if (best === null || Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
        if (best) { at = at === null ? best[0] : at; lines.push(s.name + ": " + fmt(best[1], c.y_unit)); }
      }
      if (at === null) return;
      const xs = c.x_ticks.length ? "p" + (100 * (1 - Math.pow(10, -at))).toPrecision(6).replace(/\.?0+$/, "") : fmt(at, c.x_unit);
      tip.textContent = xs + "\n" + lines.join("\n");
      cursor.setAttribute("x1", sx(at)); cursor.setAttribute("x2", sx(at)); cursor.setAttribute("visibility", "visible");
      const fb = fig.getBoundingClientRect();
      tip.style.display = "block";
      tip.style.left = Math.min(ev.clientX - fb.left + 14, fb.width - tip.offsetWidth - 8) + "px";
      tip.style.top = (ev.clientY - fb.top + 10) + "px";
    });
    hit.addEventListener("mouseleave", () => { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
    plot.appendChild(svg);
    return n;
  }

  function barChart(fig, b) {
    const plot = fig.querySelector(".plot");
    const rowH = 26, h = b.items.length * rowH + 10, labelW = 130;
    const max = Math.max(1, ...b.items.map((i) => i[1]));
    const svg = el("svg", { viewBox: `0 0 ${W} ${h}`, role: "img", "data-points": b.items.length });
    b.items.forEach(([name, v], i) => {
      const y = 5 + i * rowH;
      const t = el("text", { class: "bar-label", x: labelW - 8, y: y + 17, "text-anchor": "end" }, svg);
      t.textContent = name;
      const w = Math.max(2, (W - labelW - 90) * v / max);
      el("rect", { x: labelW, y: y + 4, width: w, height: rowH - 8, fill: COLORS[1], rx: 2 }, svg);
      const vt = el("text", { class: "bar-label", x: labelW + w + 6, y: y + 17 }, svg);
      vt.textContent = String(v);
    });
    plot.appendChild(svg);
    return b.items.length;
  }

  const status = document.getElementById("render-status");
  try {
    const data = JSON.parse(document.getElementById("netforge-data").textContent);
    let charts = 0, points = 0;
    for (const c of data.charts) {
      const fig = document.getElementById("chart-" + c.id);
      if (!fig) continue;
      points += lineChart(fig, c);
      charts++;
    }
    for (const b of data.bars) {
      const fig = document.getElementById("bars-" + b.id);
      if (!fig) continue;
      points += barChart(fig, b);
      charts++;
    }
    status.textContent = "Drawn: " + charts + " charts, " + points + " points.";
    status.setAttribute("data-charts", charts);
    status.setAttribute("data-points", points);
  } catch (e) {
    status.textContent = "Could not draw the charts: " + e;
    status.setAttribute("data-error", String(e));
    throw e;
  }
})();
