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

  function refreshTimes(root) {
    const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
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
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter" && ev.target.id === "sql-text") {
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
    function onEvent(ev) {
      let e;
      try { e = JSON.parse(ev.data); } catch (_) { return; }
      page.dataset.lastSeq = e.seq;
      if (tbody) {
        const tr = document.createElement("tr");
        tr.className = "fresh lvl-" + e.level;
        tr.innerHTML = '<td class="num">' + e.seq + '</td><td><time datetime="' + escapeHtml(e.ts) + '" data-rel>just now</time></td><td>' +
          escapeHtml(e.phase || "") + "</td><td><code>" + escapeHtml(e.type) + "</code></td><td>" + escapeHtml(e.message) + "</td>";
        tbody.appendChild(tr);
        refreshTimes(tr);
      }
      if (/^(RUN_|PHASE_(CLAIMED|STARTED|SUCCEEDED|FAILED|REQUEUED|SKIPPED)|LEASE_EXPIRED|ARTIFACT_)/.test(e.type)) refresh();
    }
    ["RUN_CREATED", "RUN_STARTED", "PHASE_CLAIMED", "PHASE_STARTED", "PHASE_PROGRESS", "PHASE_LOG", "PHASE_SUCCEEDED",
     "PHASE_FAILED", "PHASE_REQUEUED", "PHASE_SKIPPED", "LEASE_EXPIRED", "ARTIFACT_REGISTERED", "RUN_SUCCEEDED",
     "RUN_FAILED", "RUN_CANCELLED", "DQ_RESULT", "SCHEMA_DRIFT", "METRIC", "LINEAGE"].forEach(function (t) {
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
    cytoscape({
      container: el, elements: elements, userZoomingEnabled: false, maxZoom: 1.1, minZoom: 0.3,
      layout: { name: "breadthfirst", directed: true, spacingFactor: 1.1, padding: 30 },
      style: [
        { selector: "node", style: { label: "data(label)", "font-size": 11, color: css("--pico-color"),
          "background-color": function (n) { return colour[n.data("role")] || css("--wait"); }, "text-valign": "bottom", "text-margin-y": 4 } },
        { selector: "edge", style: { width: 1.5, "line-color": css("--pico-muted-color"), "target-arrow-color": css("--pico-muted-color"),
          "target-arrow-shape": "triangle", "curve-style": "bezier" } },
      ],
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes();
    setInterval(refreshTimes, 30000);
    liveRun();
    hourlyChart();
    lineageGraph();
  });
  document.addEventListener("htmx:afterSwap", function (ev) { refreshTimes(ev.target); });
})();
