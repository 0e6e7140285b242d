// The Control Room's own script: local times, copy ids, confirmations, live run events (SSE), charts.
(function () {
  "use strict";

  function units(s) {
    s = Math.max(0, Math.round(s));
    if (s < 45) return null;
    if (s < 3600) return Math.max(1, Math.round(s / 60)) + " m";
    if (s < 86400) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " d";
  }

  const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const absFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  function offset(secs) {
    secs = Math.max(0, secs);
    if (secs < 1) return "+" + Math.round(secs * 1000) + " ms";
    const s = Math.round(secs);
    if (s < 60) return "+" + s + " s";
    if (s < 3600) return "+" + Math.floor(s / 60) + " m " + (s % 60) + " s";
    return "+" + Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " m";
  }

  function refreshTimes(root) {
    const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
    (root || document).querySelectorAll("time[data-clock]").forEach(function (t) {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.title = fmt.format(d);
      t.textContent = clockFmt.format(d);
    });
    (root || document).querySelectorAll("time[data-abs]").forEach(function (t) {
      const d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) t.textContent = absFmt.format(d);
    });
    (root || document).querySelectorAll("time[data-rel]").forEach(function (t) {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.title = fmt.format(d);
      const secs = (Date.now() - d.getTime()) / 1000;
      const u = units(Math.abs(secs));
      t.textContent = u === null ? "just now" : secs < 0 ? "in " + u : u + " ago";
    });
  }

  function escapeHtml(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  document.addEventListener("click", function (ev) {
    const code = ev.target.closest && ev.target.closest("code.copy");
    if (code && navigator.clipboard) {
      navigator.clipboard.writeText(code.textContent.trim()).then(function () {
        code.classList.add("copied");
        setTimeout(function () { code.classList.remove("copied"); }, 900);
      });
    }
  });

  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    const msg = form.getAttribute && form.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { ev.preventDefault(); ev.stopImmediatePropagation(); }
  }, true);

  document.addEventListener("keydown", function (ev) {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter" && ev.target.id === "sql-text" && !editor) {
      ev.preventDefault();
      ev.target.form.requestSubmit();
    }
  });

  // --- live run page -------------------------------------------------------------------------
  function liveRun() {
    const page = document.getElementById("run-page");
    if (!page || page.dataset.finished === "true" || !window.EventSource) return;
    const runId = page.dataset.runId;
    const tbody = document.getElementById("events");
    let pending = null;
    // after= is read when the stream (re)connects: EventSource also sends Last-Event-ID on a reconnect
    const src = new EventSource("/ops/runs/" + runId + "/events/stream?after=" + page.dataset.lastSeq);
    function refresh() {
      if (pending) return;
      pending = setTimeout(function () {
        pending = null;
        fetch("/runs/" + runId + "/live?tab=" + encodeURIComponent(page.dataset.tab || "events"), { headers: { "HX-Request": "true" } })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (!html) return;
            const live = document.getElementById("run-live");
            const tpl = document.createElement("template");
            tpl.innerHTML = html.trim();
            const next = tpl.content.querySelector("#run-live");
            if (live && next) { live.replaceWith(next); refreshTimes(next); if (window.htmx) htmx.process(next); }
          });
      }, 150);
    }
    src.onmessage = null;
    const start = tbody && tbody.dataset.runStart ? new Date(tbody.dataset.runStart) : null;
    function onEvent(ev) {
      let e;
      try { e = JSON.parse(ev.data); } catch (_) { return; }
      // the stream resumes after the last rendered seq; a reconnect may still replay: never show one twice
      if (e.seq <= Number(page.dataset.lastSeq || 0)) return;
      page.dataset.lastSeq = e.seq;
      if (tbody && !tbody.querySelector('tr[data-seq="' + e.seq + '"]')) {
        const tr = document.createElement("tr");
        tr.className = "fresh lvl-" + e.level;
        tr.dataset.seq = e.seq;
        const at = new Date(e.ts);
        const off = start && !isNaN(at) ? ' <span class="offset">' + offset((at - start) / 1000) + "</span>" : "";
        tr.innerHTML = '<td class="num">' + e.seq + '</td><td class="when"><time datetime="' + escapeHtml(e.ts) + '" data-clock></time>' + off + "</td><td>" +
          escapeHtml(e.phase || "") + "</td><td><code>" + escapeHtml(e.type) + "</code></td><td>" + escapeHtml(e.message) + "</td>";
        tbody.appendChild(tr);
        refreshTimes(tr);
      }
      if (/^(RUN_|PHASE_(CLAIMED|STARTED|SUCCEEDED|FAILED|REQUEUED|SKIPPED)|LEASE_EXPIRED|ARTIFACT_)/.test(e.type)) refresh();
    }
    // every type of domain/events.py (an event of a type missing here would not show until a reload)
    ["RUN_CREATED", "RUN_STARTED", "PHASE_CLAIMED", "PHASE_STARTED", "PHASE_PROGRESS", "PHASE_LOG", "PHASE_SUCCEEDED",
     "PHASE_FAILED", "PHASE_REQUEUED", "PHASE_SKIPPED", "LEASE_EXPIRED", "ARTIFACT_REGISTERED", "CONNECTION_USED",
     "RUN_SUCCEEDED", "RUN_FAILED", "RUN_CANCELLED", "RUN_HELD", "RUN_RELEASED", "DQ_RESULT", "SCHEMA_DRIFT", "METRIC",
     "LINEAGE"].forEach(function (t) {
      src.addEventListener(t, onEvent);
    });
    src.onmessage = onEvent;
    src.addEventListener("end", function () {
      src.close();
      page.dataset.finished = "true";
      const state = document.getElementById("live-state");
      if (state) state.textContent = "The run has finished.";
      refresh();
    });
  }

  // --- charts ------------------------------------------------------------------------------------
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function hourlyChart() {
    const el = document.getElementById("hourly-chart");
    const data = document.getElementById("hourly-data");
    if (!el || !data || !window.uPlot) return;
    const d = JSON.parse(data.textContent);
    const names = ["succeeded", "failed", "running", "queued", "cancelled"];
    const colours = { succeeded: css("--ok"), failed: css("--bad"), running: css("--run"), queued: css("--wait"), cancelled: css("--warn") };
    // stacked bars: draw the running totals, tallest first, so each status shows as its own band
    const stacks = [];
    let acc = d.x.map(function () { return 0; });
    names.forEach(function (n) { acc = acc.map(function (v, i) { return v + (d[n][i] || 0); }); stacks.push(acc.slice()); });
    const order = names.map(function (_, i) { return i; }).reverse();
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 40] }) : null;
    const opts = {
      width: el.clientWidth || 600, height: 220, legend: { show: false },
      cursor: { points: { show: false } },
      series: [{}].concat(order.map(function (i) {
        const n = names[i];
        return { label: n, stroke: colours[n], fill: colours[n], width: 0, paths: bars, points: { show: false } };
      })),
      axes: [{ stroke: css("--pico-muted-color"), grid: { stroke: css("--line") } },
             { stroke: css("--pico-muted-color"), grid: { stroke: css("--line") }, size: 40 }],
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
    };
    const plot = new uPlot(opts, [d.x].concat(order.map(function (i) { return stacks[i]; })), el);
    const legend = document.createElement("p");
    legend.className = "chart-legend small";
    legend.innerHTML = names.map(function (n) {
      const total = d[n].reduce(function (a, b) { return a + b; }, 0);
      return '<span><i style="background:' + colours[n] + '"></i>' + n + " " + total + "</span>";
    }).join(" ");
    el.appendChild(legend);
    window.addEventListener("resize", function () { plot.setSize({ width: el.clientWidth, height: 220 }); });
  }

  function lineageGraph() {
    const el = document.getElementById("lineage-graph");
    const data = document.getElementById("lineage-data");
    if (!el || !data || !window.cytoscape) return;
    const g = JSON.parse(data.textContent);
    const colour = { upstream: css("--wait"), focus: css("--run"), downstream: css("--ok") };
    const elements = g.nodes.map(function (n) { return { data: { id: n.id, label: n.id, role: n.role } }; })
      .concat(g.edges.map(function (e, i) { return { data: { id: "e" + i, source: e.source, target: e.target } }; }));
    // labels sit inside boxes sized to them, and the layout counts them: no label overlaps another
    window.lineageCy = cytoscape({
      container: el, elements: elements, userZoomingEnabled: false, maxZoom: 1.2, minZoom: 0.2,
      layout: { name: "breadthfirst", directed: true, spacingFactor: 1.15, padding: 20, avoidOverlap: true,
                nodeDimensionsIncludeLabels: true },
      style: [
        { selector: "node", style: { label: "data(label)", "font-size": 11, color: "#fff", shape: "round-rectangle",
          width: "label", height: 22, padding: "6px", "text-valign": "center", "text-halign": "center",
          "font-family": "ui-monospace, monospace",
          "background-color": function (n) { return colour[n.data("role")] || css("--wait"); } } },
        { selector: "edge", style: { width: 1.5, "line-color": css("--pico-muted-color"), "target-arrow-color": css("--pico-muted-color"),
          "target-arrow-shape": "triangle", "curve-style": "bezier" } },
      ],
    });
  }

  // --- SQL workbench ---------------------------------------------------------------------------
  let editor = null;

  function sqlWorkbench() {
    const ta = document.getElementById("sql-text");
    const form = document.getElementById("sql-form");
    if (!ta || !form) return;
    const schemaEl = document.getElementById("sql-schema");
    const schema = schemaEl ? JSON.parse(schemaEl.textContent) : {};
    if (window.LakehouseEditor) {
      editor = window.LakehouseEditor.create(ta, { schema: schema, placeholder: ta.getAttribute("placeholder"),
                                                   onRun: function () { form.requestSubmit(); } });
      document.documentElement.dataset.sqlEditor = "ready";
    }
    form.addEventListener("submit", function () {
      // an empty editor runs the example its placeholder shows (a table that exists), not "the query is empty"
      if (!ta.value.trim() && ta.dataset.example) {
        if (editor) editor.setValue(ta.dataset.example); else ta.value = ta.dataset.example;
      }
    }, true);
    document.addEventListener("click", function (ev) {
      const b = ev.target.closest && ev.target.closest("button.insert");
      if (!b) return;
      ev.preventDefault();
      if (editor) editor.insert(b.dataset.insert); else { ta.value += b.dataset.insert; ta.focus(); }
    });
    const filter = document.getElementById("schema-filter");
    if (filter) filter.addEventListener("input", function () {
      const q = filter.value.toLowerCase();
      document.querySelectorAll(".schema-tree > li").forEach(function (li) {
        li.hidden = q && li.dataset.name.toLowerCase().indexOf(q) < 0;
      });
    });
    const env = document.getElementById("sql-env");
    if (env) env.addEventListener("change", function () {  // the browser and completion follow the environment
      const u = new URL(location.href);
      u.searchParams.set("env", env.value);
      u.searchParams.set("sql", ta.value);
      location.assign(u.toString());
    });
    setupResult(document.getElementById("sql-result"));
  }

  function setupResult(root) {
    if (!root) return;
    root.dataset.ready = "1";
    const dataEl = root.querySelector("script.result-data");
    if (!dataEl) return;
    const data = JSON.parse(dataEl.textContent);
    const table = root.querySelector("table.sortable");
    if (table) table.querySelectorAll("button.sort").forEach(function (btn) {
      btn.addEventListener("click", function () { sortBy(table, btn.closest("th"), data); });
    });
    const chart = root.querySelector("#result-chart");
    const grid = root.querySelector("#result-table");
    root.querySelectorAll(".result-tabs a").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        root.querySelectorAll(".result-tabs a").forEach(function (x) { x.removeAttribute("aria-current"); });
        a.setAttribute("aria-current", "page");
        const showChart = a.dataset.view === "chart";
        chart.hidden = !showChart;
        grid.hidden = showChart;
        if (showChart) drawResultChart(chart, data);
      });
    });
    // defaults: a label column on X (the first non-numeric one), the first other numeric column on Y
    const xSel = chart.querySelector(".chart-x"), ySel = chart.querySelector(".chart-y");
    const firstLabel = data.numeric.indexOf(false);
    if (firstLabel >= 0) xSel.value = String(firstLabel);
    const yPick = data.numeric.findIndex(function (n, i) { return n && String(i) !== xSel.value; });
    if (yPick >= 0) ySel.value = String(yPick);
    chart.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { drawResultChart(chart, data); });
    });
  }

  function sortBy(table, th, data) {
    const col = Number(th.dataset.col);
    const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    table.querySelectorAll("th").forEach(function (x) { x.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir);
    const tbody = table.tBodies[0];
    const rows = Array.prototype.slice.call(tbody.rows);
    const numeric = data.numeric[col];
    function key(tr) {
      const td = tr.cells[col];
      if (td.classList.contains("null")) return null;
      return numeric ? Number(td.dataset.v) : td.textContent;
    }
    rows.sort(function (a, b) {
      const x = key(a), y = key(b);
      if (x === y) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      const c = numeric ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  function drawResultChart(fig, data) {
    const area = fig.querySelector(".chart-area");
    area.innerHTML = "";
    if (!window.uPlot) return;
    const xi = Number(fig.querySelector(".chart-x").value);
    const yv = fig.querySelector(".chart-y").value;
    if (yv === "") { area.innerHTML = '<p class="empty-inline">Charts need a numeric column.</p>'; return; }
    const yi = Number(yv);
    const kind = fig.querySelector(".chart-kind").value;
    const xNumeric = data.numeric[xi];
    const labels = data.rows.map(function (r) { return r[xi]; });
    const xs = xNumeric ? labels.map(Number) : labels.map(function (_, i) { return i; });
    const ys = data.rows.map(function (r) { return r[yi] === null ? null : Number(r[yi]); });
    let order = xs.map(function (_, i) { return i; });
    if (xNumeric) order.sort(function (a, b) { return xs[a] - xs[b]; });
    const bars = kind === "bar" && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
    const opts = {
      width: area.clientWidth || fig.clientWidth || 640, height: 260, legend: { show: false },
      scales: { x: { time: false } },
      series: [{ label: data.columns[xi].name }, { label: data.columns[yi].name, stroke: css("--run"),
        fill: kind === "bar" ? css("--run") : undefined, width: kind === "bar" ? 0 : 2, paths: bars,
        points: { show: kind === "line" } }],
      axes: [
        { label: data.columns[xi].name, stroke: css("--pico-muted-color"), grid: { stroke: css("--line") },
          values: xNumeric ? undefined : function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) && labels[order[v]] !== undefined ? String(labels[order[v]]) : ""; }); } },
        { label: data.columns[yi].name, stroke: css("--pico-muted-color"), grid: { stroke: css("--line") }, size: 60 },
      ],
    };
    new uPlot(opts, [order.map(function (i, k) { return xNumeric ? xs[i] : k; }), order.map(function (i) { return ys[i]; })], area);
    fig.dataset.drawn = String(data.rows.length);
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes();
    setInterval(refreshTimes, 30000);
    liveRun();
    hourlyChart();
    lineageGraph();
    sqlWorkbench();
  });
  document.addEventListener("htmx:afterSwap", function (ev) {
    refreshTimes(ev.target);
    const result = document.getElementById("sql-result");
    if (result && !result.dataset.ready) setupResult(result);
  });
})();

// --- Overview: p50/p95 run duration per hour and queue depth (uPlot, from the JSON the page embeds) ---
(function () {
  "use strict";
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function secs(v) {
    if (v == null) return "—";
    if (v === 0) return "0";
    if (v < 1) return Math.round(v * 1000) + " ms";
    if (v < 10) return Math.round(v * 10) / 10 + " s";
    if (v < 60) return Math.round(v) + " s";
    if (v < 3600) return Math.floor(v / 60) + " m " + Math.round(v % 60) + " s";
    return Math.floor(v / 3600) + " h " + Math.round((v % 3600) / 60) + " m";
  }

  function lineChart(id, dataId, series, yValues) {
    const el = document.getElementById(id);
    const data = document.getElementById(dataId);
    if (!el || !data || !window.uPlot) return;
    const d = JSON.parse(data.textContent);
    const opts = {
      width: el.clientWidth || 600, height: 180, legend: { show: false },
      cursor: { points: { show: true } },
      series: [{}].concat(series.map(function (s) {
        const one = { label: s.label, stroke: s.colour, width: 2, spanGaps: false, points: { show: true, size: 4 } };
        if (s.fill) one.fill = s.fill;
        return one;
      })),
      axes: [{ stroke: css("--pico-muted-color"), grid: { stroke: css("--line") } },
             { stroke: css("--pico-muted-color"), grid: { stroke: css("--line") }, size: 56, values: yValues }],
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max || 0)]; } } },
    };
    const plot = new uPlot(opts, [d.x].concat(series.map(function (s) { return d[s.key]; })), el);
    const legend = document.createElement("p");
    legend.className = "chart-legend small";
    legend.setAttribute("aria-hidden", "true");
    legend.innerHTML = series.map(function (s) {
      return '<span><i style="background:' + s.colour + '"></i>' + s.label + "</span>";
    }).join(" ");
    el.appendChild(legend);
    window.addEventListener("resize", function () { plot.setSize({ width: el.clientWidth, height: 180 }); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.uPlot) return;
    lineChart("duration-chart", "duration-data", [
      { key: "p50", label: "p50", colour: css("--run") },
      { key: "p95", label: "p95", colour: css("--warn") },
    ], function (u, ticks) { return ticks.map(secs); });
    lineChart("queue-chart", "queue-data", [
      { key: "depth", label: "queued phases", colour: css("--wait"), fill: css("--wait-bg") },
    ], function (u, ticks) { return ticks.map(function (v) { return Number.isInteger(v) ? String(v) : ""; }); });
  });
})();
