// The timeline page's script (harness/report/timeline.py inlines it). It names no scheme or
// host and loads nothing: the page is self-contained.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("data").textContent);
  const chart = document.getElementById("chart");
  const inner = document.getElementById("inner");
  const tip = document.getElementById("tip");
  const pinned = document.getElementById("pinned");
  const select = document.getElementById("view");
  const noteEl = document.getElementById("note");
  const ROW = 26, BAR = 18, BAND = 14, AXIS = 16;
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = "11px system-ui, sans-serif";
  const measure = (t) => ctx.measureText(t).width;
  // x: each slot's position at zoom 1, where every operation's label fits in its bar; the
  // page draws x * zoom.
  const GAP = 6;
  let view = null, slots = [], last = 0, x = [], zoomBy = 1, labelW = 60, top = AXIS;
  let rows = new Map();
  let faultRows = [];

  function lowerBound(arr, x) {
    let lo = 0, hi = arr.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (arr[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function text(o) {
    return (o.o !== undefined ? "#" + (o.o + 1) + " " : "") + (o.n ? o.n + ": " : "") + o.l;
  }
  function procKey(p) { return /^-?\d+$/.test(p) ? [0, Number(p), p] : [1, 0, p]; }
  function cmpProc(a, b) {
    const x = procKey(a), y = procKey(b);
    return x[0] - y[0] || x[1] - y[1] || (x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0);
  }

  function setup(index) {
    view = D.views[index];
    const pos = new Set();
    for (const o of view.ops) { pos.add(o.c); if (o.r !== null) pos.add(o.r); }
    slots = Array.from(pos).sort((a, b) => a - b);
    last = slots.length;
    for (const o of view.ops) {
      o.a = lowerBound(slots, o.c);
      o.b = o.r === null ? last : lowerBound(slots, o.r);
      o.w = measure(text(o)) + 10;
    }
    const procs = Array.from(new Set(view.ops.map((o) => o.p))).sort(cmpProc);
    rows = new Map(procs.map((p, i) => [p, i]));
    const nodes = new Map();
    for (const o of view.ops) {
      if (!nodes.has(o.p)) nodes.set(o.p, new Set());
      if (o.n) nodes.get(o.p).add(o.n);
    }
    view.names = procs.map((p) => {
      const ns = Array.from(nodes.get(p) || []);
      return "process " + p + (ns.length === 1 ? " @ " + ns[0] : ns.length ? " @ " + ns.length + " nodes" : "");
    });
    labelW = Math.ceil(Math.max(60, ...view.names.map((n) => measure(n) * 1.1 + 16)));
    const families = Array.from(new Set(view.faults.map((f) => f.name))).sort();
    faultRows = families;
    top = AXIS + families.length * BAND + (families.length ? 4 : 0);
    noteEl.textContent = view.key + (view.note ? ": " + view.note : "");
    layout();
    zoomBy = 1;
  }

  // The narrowest slot positions where each bar is at least as wide as its label: slots in
  // order, each one a gap past the last and past the start of every bar ending there plus
  // that bar's label.
  function layout() {
    const ending = Array.from({ length: last + 1 }, () => []);
    for (const o of view.ops) ending[o.b].push(o);
    x = new Array(last + 1).fill(0);
    for (let s = 1; s <= last; s++) {
      let at = x[s - 1] + GAP;
      for (const o of ending[s]) at = Math.max(at, x[o.a] + o.w);
      x[s] = at;
    }
  }

  function xOf(slot) { return labelW + x[Math.min(Math.max(slot, 0), last)] * zoomBy; }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function div(cls, style, content) {
    const el = document.createElement("div");
    el.className = cls;
    Object.assign(el.style, style);
    if (content !== undefined) el.textContent = content;
    return el;
  }

  function draw() {
    const width = xOf(last) + GAP * zoomBy + 20, height = top + rows.size * ROW + 8;
    clear(inner);
    inner.style.width = width + "px";
    inner.style.height = height + "px";
    const left = chart.scrollLeft - chart.clientWidth, right = chart.scrollLeft + 2 * chart.clientWidth;
    const visible = (a, b) => xOf(b) >= left && xOf(a) <= right;
    // Axis: history positions, about every 70 px.
    let shown = -Infinity;
    for (let s = 0; s < last; s++) {
      const at = xOf(s);
      if (at > right) break;
      if (at >= left && at - shown >= 70) {
        inner.appendChild(div("tick", { left: at + "px" }, String(slots[s])));
        shown = at;
      }
    }
    // Faults: a labelled row per family, and a light shade over the processes.
    for (const f of view.faults) {
      const a = lowerBound(slots, f.a), b = f.b === null ? last : Math.max(lowerBound(slots, f.b), a);
      const w = Math.max(xOf(b) - xOf(a), 2), row = faultRows.indexOf(f.name);
      const band = div("fband", { left: xOf(a) + "px", top: AXIS + row * BAND + "px", width: w + "px",
        background: f.color }, f.text);
      band.title = f.text;
      inner.appendChild(band);
      inner.appendChild(div("fault", { left: xOf(a) + "px", top: top + "px", width: w + "px",
        height: rows.size * ROW + "px", background: f.color }));
    }
    if (view.region) {
      const a = lowerBound(slots, view.region[0]), b = lowerBound(slots, view.region[1]);
      const region = div("region", { left: xOf(a) + "px", top: top + "px",
        width: Math.max(xOf(b) - xOf(a) + GAP * zoomBy / 2, 2) + "px",
        height: rows.size * ROW + "px" });
      region.title = "no linearization exists past the right edge";
      inner.appendChild(region);
    }
    for (const [p, i] of rows) {
      inner.appendChild(div("lane", { left: labelW + "px", top: top + i * ROW + BAR / 2 + "px",
        width: width - labelW + "px" }));
    }
    view.ops.forEach((o, i) => {
      if (!visible(o.a, o.b) && i !== view.focus) return;
      const cls = ["op", o.s];
      if (o.m) cls.push(o.m);
      if (o.dim) cls.push("dim");
      const el = div(cls.join(" "), { left: xOf(o.a) + "px", top: top + rows.get(o.p) * ROW + "px",
        width: Math.max(xOf(o.b) - xOf(o.a), 4) + "px" }, text(o));
      el.dataset.i = String(i);
      inner.appendChild(el);
    });
    // The process names: the one element in flow, sticky at the left edge while the chart
    // scrolls sideways.
    const names = div("", { width: labelW + "px", paddingTop: top + "px" });
    names.id = "names";
    view.names.forEach((n) => names.appendChild(div("pname", { width: labelW + "px" }, n)));
    inner.insertBefore(names, inner.firstChild);
  }

  function details(o) {
    const rowsOut = [["process", o.p], ["node", o.n || "not recorded"], ["operation", o.l],
      ["status", o.s === "info" ? "info (outcome unknown)" : o.s]];
    if (o.k !== null) rowsOut.push(["key", o.k]);
    if (o.v !== null) rowsOut.push(["value", o.v]);
    if (o.out !== undefined) rowsOut.push(["returned", o.out]);
    if (o.err !== undefined) rowsOut.push(["error", o.err]);
    rowsOut.push(["history index", o.j === null ? o.i + " (never returned)" : o.i + ".." + o.j]);
    if (o.t0 !== null) rowsOut.push(["called at", o.t0.toFixed(3) + " s"]);
    if (o.t1 !== null) rowsOut.push(["returned at", o.t1.toFixed(3) + " s"]);
    for (const [k, v] of Object.entries(o.x || {})) rowsOut.push([k, v]);
    if (o.o !== undefined) rowsOut.push(["linearized", "#" + (o.o + 1)]);
    if (o.st !== undefined) rowsOut.push(["state after", o.st]);
    if (o.m === "failed") rowsOut.push(["", view.region ? "no linearization gets past its return" : "named by a finding"]);
    if (o.m === "pending") rowsOut.push(["", "pending when no linearization could go on"]);
    const table = document.createElement("table");
    for (const [k, v] of rowsOut) {
      const tr = table.insertRow();
      tr.insertCell().textContent = k;
      tr.insertCell().textContent = v;
    }
    return table;
  }

  function opAt(target) {
    const el = target.closest ? target.closest(".op") : null;
    return el && el.dataset.i !== undefined ? view.ops[Number(el.dataset.i)] : null;
  }
  inner.addEventListener("mousemove", (e) => {
    const o = opAt(e.target);
    if (!o) { tip.style.display = "none"; return; }
    clear(tip);
    tip.appendChild(details(o));
    tip.style.display = "block";
    const w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.min(e.clientX + 14, window.innerWidth - w - 4) + "px";
    tip.style.top = (e.clientY + 14 + h > window.innerHeight ? e.clientY - h - 10 : e.clientY + 14) + "px";
  });
  inner.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  inner.addEventListener("click", (e) => {
    const o = opAt(e.target);
    if (!o) return;
    clear(pinned);
    pinned.appendChild(details(o));
  });

  function centre(px, rowIndex) {
    chart.scrollLeft = Math.max(0, px - labelW - (chart.clientWidth - labelW) / 2);
    if (rowIndex !== null) chart.scrollTop = Math.max(0, top + rowIndex * ROW - chart.clientHeight / 2);
  }
  function zoom(factor, fit) {
    const mid = (chart.scrollLeft + (chart.clientWidth + labelW) / 2 - labelW) / zoomBy;
    zoomBy = fit ? Math.min((chart.clientWidth - labelW - 40) / Math.max(x[last], 1), 1)
      : Math.min(Math.max(zoomBy * factor, 0.001), 64);
    draw();
    centre(fit ? labelW : labelW + mid * zoomBy, null);
    draw();
  }
  document.getElementById("zoom-in").addEventListener("click", () => zoom(2, false));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(0.5, false));
  document.getElementById("zoom-fit").addEventListener("click", () => zoom(1, true));
  document.getElementById("to-failure").addEventListener("click", () => show());
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLSelectElement) return;
    if (e.key === "+" || e.key === "=") zoom(2, false);
    else if (e.key === "-") zoom(0.5, false);
    else if (e.key === "0") zoom(1, true);
  });
  chart.addEventListener("wheel", (e) => {
    if (!e.ctrlKey) return;
    e.preventDefault();
    zoom(e.deltaY < 0 ? 1.25 : 0.8, false);
  }, { passive: false });
  let pending = false;
  chart.addEventListener("scroll", () => {
    if (pending || view.ops.length < 1500) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  });

  // Draw the view at the present zoom, centred on its failure (or its start).
  function show() {
    draw();
    const f = view.focus !== null ? view.ops[view.focus] : null;
    centre(f ? (xOf(f.a) + xOf(f.b)) / 2 : labelW, f ? rows.get(f.p) : null);
    draw();
  }
  D.views.forEach((v, i) => {
    const opt = document.createElement("option");
    opt.value = String(i);
    opt.textContent = v.key + (v.verdict ? " (" + v.verdict + ")" : "") + ": " + v.ops.length + " operations";
    select.appendChild(opt);
  });
  select.addEventListener("change", () => { setup(Number(select.value)); show(); });
  // A link may name the view to open: page.html#3.
  const asked = Number(location.hash.slice(1));
  const first = Number.isInteger(asked) && asked >= 0 && asked < D.views.length ? asked : 0;
  if (D.views.length) { select.value = String(first); setup(first); show(); }
  window.timeline = { zoom: () => zoomBy, view: () => view, slots: () => last };
})();
