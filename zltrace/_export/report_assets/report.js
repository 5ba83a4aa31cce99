// zltrace report: draws the page from the JSON data blocks written by zltrace/_export/report.py.
// Rule: trace data reaches the DOM only through textContent and DOM properties, never as markup.
(function () {
  "use strict";
  var d = document;
  var SVG = "http://www.w3.org/2000/svg";
  var PAGE = 500;
  var MAX_BARS = 240;
  // SVG presentation attributes cannot use CSS variables: the chart colours, once.
  var C = { lat: "#9ec5f4", latDark: "#0969da", tin: "#8250df", cache: "#c8b4f5", tout: "#e16f24" };

  function byId(id) { return d.getElementById(id); }
  function el(tag, cls, text) {
    var e = d.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function svgEl(tag, attrs) {
    var e = d.createElementNS(SVG, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  // -- formatting -------------------------------------------------------------------------
  function fmtNs(ns) {
    if (ns === null || ns === undefined) return "\u2013";
    var ms = ns / 1e6;
    if (ms < 1) return ms.toFixed(2) + " ms";
    if (ms < 10) return ms.toFixed(1) + " ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    return (ms / 1000).toFixed(2) + " s";
  }
  function fmtInt(n) {
    if (n === null || n === undefined) return "\u2013";
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }
  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function fmtTime(iso) { var m = /T(\d\d:\d\d:\d\d(?:\.\d{1,3})?)/.exec(iso || ""); return m ? m[1] : ""; }
  function fmtDate(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", " UTC") : ""; }
  function sum(a, b) { return (a || 0) + (b || 0); }
  function tokensIn(r) { return r.tokens_in === null ? null : sum(sum(r.tokens_in, r.tokens_cache_read), r.tokens_cache_write); }
  function statusGroup(r) { return r.status === null ? "none" : Math.floor(r.status / 100) + "xx"; }

  // -- data -------------------------------------------------------------------------------
  var meta = JSON.parse(byId("zl-meta").textContent);
  var rows = [];
  var blocks = d.querySelectorAll("script.zl-s");
  for (var bi = 0; bi < blocks.length; bi++) rows.push(JSON.parse(blocks[bi].textContent));
  var details = {};
  function detailOf(r) {
    if (!details[r.i]) details[r.i] = JSON.parse(byId("zl-d-" + r.i).textContent);
    return details[r.i];
  }

  var state = { host: "", path: "", status: "", model: "", shown: PAGE, open: {} };
  var view = rows;

  // -- header summary -----------------------------------------------------------------------
  (function () {
    var errors = 0, tin = 0, tout = 0, hasTokens = false;
    rows.forEach(function (r) {
      if (r.outcome !== "complete" || r.status === null || r.status >= 400) errors++;
      if (r.tokens_in !== null || r.tokens_out !== null) hasTokens = true;
      tin += tokensIn(r) || 0; tout += r.tokens_out || 0;
    });
    var parts = [fmtInt(rows.length) + (rows.length === 1 ? " exchange" : " exchanges")];
    if (meta.first) parts.push(fmtDate(meta.first) + (meta.last && meta.last !== meta.first ? " \u2192 " + fmtTime(meta.last) : ""));
    if (hasTokens) parts.push(fmtInt(tin) + " tokens in, " + fmtInt(tout) + " out");
    parts.push(fmtInt(errors) + " failed");
    parts.push("zltrace " + meta.version);
    byId("zl-summary").textContent = parts.join("  \u00b7  ");
    byId("zl-summary").title = "failed: status \u2265 400, no response, or cut short";
  })();

  var main = byId("zl-main");

  // -- filters ------------------------------------------------------------------------------
  var filters = add(main, el("div", "zl-filters"));
  function select(label, key, options) {
    var lab = add(filters, el("label", null, label));
    var s = add(lab, el("select"));
    s.id = "zl-f-" + key;
    options.forEach(function (o) { var opt = add(s, el("option", null, o[1])); opt.value = o[0]; });
    s.addEventListener("change", function () { state[key] = s.value; apply(); });
    return s;
  }
  function distinct(fn) {
    var seen = {}, out = [];
    rows.forEach(function (r) { var v = fn(r); if (v !== null && v !== undefined && !Object.prototype.hasOwnProperty.call(seen, v)) { seen[v] = 1; out.push(v); } });
    return out.sort();
  }
  var hostSel = select("Host", "host", [["", "All hosts"]].concat(distinct(function (r) { return r.host; }).map(function (h) { return [h, h]; })));
  var pathLab = add(filters, el("label", null, "Path contains"));
  var pathIn = add(pathLab, el("input"));
  pathIn.id = "zl-f-path"; pathIn.type = "search"; pathIn.placeholder = "/v1/messages";
  pathIn.addEventListener("input", function () { state.path = pathIn.value.toLowerCase(); apply(); });
  var statusNames = { "1xx": "1xx informational", "2xx": "2xx success", "3xx": "3xx redirect", "4xx": "4xx client error", "5xx": "5xx server error", "none": "No response" };
  var statusSel = select("Status", "status", [["", "Any status"]].concat(distinct(statusGroup).map(function (g) { return [g, statusNames[g] || g]; })));
  var models = distinct(function (r) { return r.model; });
  var modelSel = select("Model", "model", [["", "Any model"]].concat(models.map(function (m) { return [m, m]; }), [["\u0000", "(no model)"]]));
  var clear = add(filters, el("button", "zl-btn", "Clear"));
  clear.type = "button";
  clear.addEventListener("click", function () {
    state.host = state.path = state.status = state.model = "";
    hostSel.value = statusSel.value = modelSel.value = pathIn.value = "";
    apply();
  });
  var countEl = add(filters, el("span", "zl-count"));

  function matches(r) {
    if (state.host && r.host !== state.host) return false;
    if (state.path && r.path.toLowerCase().indexOf(state.path) < 0) return false;
    if (state.status && statusGroup(r) !== state.status) return false;
    if (state.model) {
      if (state.model === "\u0000") { if (r.model !== null) return false; }
      else if (r.model !== state.model) return false;
    }
    return true;
  }

  // -- charts -------------------------------------------------------------------------------
  var charts = add(main, el("div", "zl-charts"));
  function chartBox(title, legend) {
    var box = add(charts, el("div", "zl-chart"));
    var head = add(box, el("div", "zl-chart-head"));
    add(head, el("h2", null, title));
    var leg = add(head, el("div", "zl-legend"));
    legend.forEach(function (l) {
      var s = add(leg, el("span", null, l[1]));
      var sw = el("i"); sw.style.background = l[0]; s.insertBefore(sw, s.firstChild);
    });
    return add(box, el("div"));
  }
  var latBox = chartBox("Latency per exchange", [[C.lat, "total"], [C.latDark, "time to first byte"]]);
  var tokBox = chartBox("Tokens per exchange", [[C.tin, "input"], [C.cache, "cache"], [C.tout, "output"]]);

  // Groups the visible exchanges into at most MAX_BARS bars (each the max / sum of its group).
  function bins(list) {
    var size = Math.max(1, Math.ceil(list.length / MAX_BARS)), out = [];
    for (var s = 0; s < list.length; s += size) out.push(list.slice(s, s + size));
    return { size: size, groups: out };
  }
  function niceMax(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  function drawChart(box, list, series, fmt, emptyText) {
    box.textContent = "";
    var b = bins(list);
    var totals = b.groups.map(function (g) {
      return series.map(function (s) { return g.reduce(function (acc, r) { return s.agg === "max" ? Math.max(acc, s.get(r) || 0) : acc + (s.get(r) || 0); }, 0); });
    });
    var top = 0;
    totals.forEach(function (t) { var v = series[0].stack ? t.reduce(function (a, x) { return a + x; }, 0) : Math.max.apply(null, t); top = Math.max(top, v); });
    if (!list.length || top <= 0) { add(box, el("div", "zl-empty-chart", emptyText)); return; }
    // Drawn at the box's own width, so text is never stretched (redrawn on resize).
    var W = Math.max(240, box.clientWidth || 600), H = 130, L = 52, B = 16, T = 6, R = 4;
    var ymax = niceMax(top), plotW = W - L - R, plotH = H - B - T;
    var root = add(box, svgEl("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img" }));
    [0, 0.5, 1].forEach(function (f) {
      var y = T + plotH * (1 - f);
      add(root, svgEl("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "grid" }));
      var t = add(root, svgEl("text", { x: L - 6, y: y + 3, "text-anchor": "end" }));
      t.textContent = fmt(ymax * f);
    });
    var slot = plotW / b.groups.length, bw = Math.max(1, Math.min(24, slot * 0.75));
    totals.forEach(function (t, gi) {
      var x = L + gi * slot + (slot - bw) / 2;
      var g = add(root, svgEl("g", { "class": "bar" }));
      var base = T + plotH;
      series.forEach(function (s, si) {
        var h = plotH * t[si] / ymax;
        if (h <= 0) return;
        var y = s.stack ? base - h : T + plotH - h;
        add(g, svgEl("rect", { x: x, y: y, width: bw, height: Math.max(h, 0.5), fill: s.color }));
        if (s.stack) base -= h;
      });
      var group = b.groups[gi];
      var tip = add(g, svgEl("title", {}));
      var label = b.size === 1 ? "#" + (group[0].i + 1) + " " + group[0].method + " " + group[0].path
        : "#" + (group[0].i + 1) + "\u2013#" + (group[group.length - 1].i + 1);
      tip.textContent = label + "\n" + series.map(function (s, si) { return s.name + ": " + fmt(t[si]); }).join("\n");
      g.addEventListener("click", function () { expand(group[0], true); });
    });
    var axis = add(root, svgEl("text", { x: W - R, y: H - 3, "text-anchor": "end" }));
    axis.textContent = list.length + " exchanges" + (b.size > 1 ? " (" + b.size + " per bar)" : "");
  }
  function fmtMsAxis(ns) { return fmtNs(ns).replace(".00 ", " "); }
  function fmtTok(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + "k" : String(Math.round(n)); }
  function drawCharts() {
    drawChart(latBox, view, [
      { name: "total", color: C.lat, agg: "max", get: function (r) { return r.duration; } },
      { name: "time to first byte", color: C.latDark, agg: "max", get: function (r) { return r.ttfb; } }
    ], fmtMsAxis, "No exchanges to chart");
    drawChart(tokBox, view, [
      { name: "input", color: C.tin, stack: true, get: function (r) { return r.tokens_in; } },
      { name: "cache", color: C.cache, stack: true, get: function (r) { return sum(r.tokens_cache_read, r.tokens_cache_write); } },
      { name: "output", color: C.tout, stack: true, get: function (r) { return r.tokens_out; } }
    ], fmtTok, "No token usage in these exchanges");
  }

  // -- table --------------------------------------------------------------------------------
  var wrap = add(main, el("div", "zl-table-wrap"));
  var table = add(wrap, el("table", "zl-table"));
  table.id = "zl-table";
  var headRow = add(add(table, el("thead")), el("tr"));
  var COLS = [["", ""], ["#", "num"], ["Started (UTC)", ""], ["Method", ""], ["URL", ""], ["Status", ""],
    ["Duration", "num"], ["TTFB", "num"], ["Tokens in", "num"], ["Tokens out", "num"], ["Model", ""]];
  COLS.forEach(function (c) { add(headRow, el("th", c[1], c[0])); });
  headRow.children[7].title = "Time to the first body byte (headers when there is no body)";
  headRow.children[8].title = "Input tokens, including cache reads and writes";
  var tbody = add(table, el("tbody"));
  var more = add(main, el("div", "zl-more"));

  function statusBadge(r) {
    var text, cls;
    if (r.status === null) { text = r.outcome; cls = r.outcome === "error" ? "sx" : "sn"; }
    else { text = String(r.status); cls = "s" + Math.floor(r.status / 100); }
    var b = el("span", "zl-badge " + cls, text);
    if (r.status !== null && r.outcome !== "complete") {
      b.title = r.outcome;
      b.textContent = text + " \u00b7 " + r.outcome;
      b.className = "zl-badge " + (r.outcome === "error" ? "sx" : "s4");
    }
    return b;
  }

  function rowFor(r) {
    var tr = el("tr", "zl-row");
    tr.tabIndex = 0;
    tr.id = "zl-row-" + r.i;
    tr.setAttribute("aria-expanded", "false");
    add(tr, el("td", "zl-caret"));
    add(tr, el("td", "num zl-faint", r.i + 1));
    var tdTime = add(tr, el("td", "zl-time", fmtTime(r.started)));
    tdTime.title = r.started;
    add(tr, el("td", "zl-method", r.method));
    var tdUrl = add(tr, el("td", "zl-url"));
    tdUrl.title = r.url;
    add(tdUrl, el("span", "zl-host", r.host));
    add(tdUrl, d.createTextNode(r.path));
    var tdSt = add(tr, el("td", "zl-status"));
    add(tdSt, statusBadge(r));
    if (r.sse) add(tdSt, el("span", "zl-sse", r.frames ? "event-stream" : "SSE"));
    add(tr, el("td", "num", fmtNs(r.duration)));
    add(tr, el("td", "num", fmtNs(r.ttfb)));
    add(tr, el("td", "num", fmtInt(tokensIn(r))));
    add(tr, el("td", "num", fmtInt(r.tokens_out)));
    add(tr, el("td", "zl-model", r.model === null ? "" : r.model));
    tr.addEventListener("click", function () { toggle(r); });
    tr.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(r); }
    });
    return tr;
  }

  function renderRows() {
    tbody.textContent = "";
    more.textContent = "";
    if (!view.length) {
      var td = add(add(tbody, el("tr")), el("td", "zl-empty", rows.length ? "No exchange matches the filters." : "No exchanges in this trace."));
      td.colSpan = COLS.length;
    }
    var n = Math.min(view.length, state.shown);
    for (var k = 0; k < n; k++) {
      var r = view[k];
      add(tbody, rowFor(r));
      if (state.open[r.i]) openDetail(r);
    }
    if (view.length > n) {
      var btn = add(more, el("button", "zl-btn", "Show " + Math.min(PAGE, view.length - n) + " more (" + fmtInt(view.length - n) + " hidden)"));
      btn.type = "button";
      btn.addEventListener("click", function () { state.shown += PAGE; renderRows(); });
    }
    countEl.textContent = "Showing " + fmtInt(n) + " of " + fmtInt(view.length) + (view.length !== rows.length ? " matching (" + fmtInt(rows.length) + " in trace)" : "");
  }

  function refresh() {
    view = rows.filter(matches);
    state.shown = PAGE;
    renderRows();
    drawCharts();
  }
  function apply() { refresh(); writeHash(); }

  // -- detail ---------------------------------------------------------------------------------
  function section(parent, title, note, open) {
    var det = add(parent, el("details", "zl-sec"));
    det.open = open !== false;
    var sum = add(det, el("summary", null, title));
    if (note) add(sum, el("span", "zl-muted", note));
    return add(det, el("div", "zl-sec-body"));
  }
  function kv(parent, pairs) {
    var dl = add(parent, el("dl", "zl-kv"));
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      add(dl, el("dt", null, p[0]));
      add(dl, el("dd", null, p[1]));
    });
    return dl;
  }
  function headersTable(parent, headers) {
    if (!headers.length) { add(parent, el("p", "zl-faint", "No headers")); return; }
    var t = add(parent, el("table", "zl-headers"));
    headers.forEach(function (h) {
      var tr = add(t, el("tr"));
      add(tr, el("td", null, h[0]));
      add(tr, el("td", null, h[1]));
    });
  }
  function truncNote(parent, cut, what) {
    if (cut > 0) add(parent, el("p", "zl-trunc", "\u2026 " + fmtInt(cut) + " more bytes of " + what + " truncated (first " + fmtBytes(meta.body_limit) + " shown)"));
  }
  function bodyView(parent, body, label) {
    if (!body) { add(parent, el("p", "zl-faint", "No body")); return; }
    if (body.kind === "empty") { add(parent, el("p", "zl-faint", "Empty body")); return; }
    add(parent, el("pre", "zl-pre zl-body", body.text));
    if (body.kind === "binary") {
      if (body.truncated > 0) add(parent, el("p", "zl-trunc", "Binary: " + fmtInt(body.truncated) + " more bytes not shown"));
    } else truncNote(parent, body.truncated, label);
  }
  function bodyNote(body) {
    if (!body) return "";
    var kinds = { json: "JSON", text: "text", binary: "binary", empty: "" };
    return [kinds[body.kind], fmtBytes(body.size)].filter(Boolean).join(" \u00b7 ");
  }
  function waterfall(parent, t, answered) {
    if (!t.end) return;
    var wrapEl = add(parent, el("div", "zl-wf"));
    var bar = add(wrapEl, el("div", "zl-waterfall"));
    var legend = add(wrapEl, el("div", "zl-legend"));
    var marks = [[t.request_sent, "w-send", "sending"], [t.headers_received, "w-wait", "waiting for headers"],
      [t.first_byte, "w-head", "waiting for the body"],
      answered ? [t.end, "w-body", "receiving the body"] : [t.end, "w-wait", "no response"]];
    var prev = 0;
    marks.forEach(function (m) {
      if (m[0] === null || m[0] === undefined || m[0] < prev) return;
      var s = add(bar, el("span", m[1]));
      s.style.width = (100 * (m[0] - prev) / t.end) + "%";
      s.title = m[2] + ": " + fmtNs(m[0] - prev);
      var item = add(legend, el("span", null, m[2] + " " + fmtNs(m[0] - prev)));
      item.insertBefore(el("i", m[1]), item.firstChild);
      prev = m[0];
    });
  }

  function renderDetail(r) {
    var x = detailOf(r);
    var box = el("div", "zl-detail-box");
    if (x.error) add(box, el("p", "zl-error", x.error));
    var t = x.timing;
    kv(box, [
      ["Exchange", x.id + (x.logical_id !== x.id ? "  (retry/redirect of " + x.logical_id + ")" : "")],
      ["Started", x.started],
      ["Outcome", x.outcome],
      ["Timing", "sent " + fmtNs(t.request_sent) + " \u00b7 headers " + fmtNs(t.headers_received) + " \u00b7 first byte " + fmtNs(t.first_byte) + " \u00b7 end " + fmtNs(t.end)],
      ["Model", r.model],
      ["Tokens", r.tokens_in === null && r.tokens_out === null ? null :
        "input " + fmtInt(r.tokens_in) + " \u00b7 cache read " + fmtInt(r.tokens_cache_read) + " \u00b7 cache write " + fmtInt(r.tokens_cache_write) + " \u00b7 output " + fmtInt(r.tokens_out)],
      ["Source", x.source]
    ]);
    waterfall(box, t, !!x.response);

    var rq = x.request;
    var req = section(box, "Request", rq.method + " " + rq.http_version + " \u00b7 " + rq.headers.length + " headers" + (rq.body ? " \u00b7 " + bodyNote(rq.body) : ""));
    add(req, el("p", "zl-mono zl-reqline", rq.method + " " + rq.url));
    headersTable(req, rq.headers);
    var rqb = section(box, "Request body", [bodyNote(rq.body),
      rq.body && rq.body.encoding ? "decoded from " + rq.body.encoding + " (" + fmtBytes(rq.body.raw_size) + " sent)" : "",
      rq.body && rq.body.decode_note].filter(Boolean).join(" \u00b7 "));
    bodyView(rqb, rq.body, "the request body");

    if (x.message) {
      var msg = section(box, "Message", [x.message.blocks.length + (x.message.blocks.length === 1 ? " block" : " blocks"),
        x.message.stop ? "stop: " + x.message.stop : ""].filter(Boolean).join(" \u00b7 "));
      if (!x.message.blocks.length) add(msg, el("p", "zl-faint", "No content"));
      var labels = { text: "Text", thinking: "Thinking", tool_use: "Tool call", error: "Error", other: "" };
      x.message.blocks.forEach(function (b) {
        var blk = add(msg, el("div", "zl-block " + b.kind));
        var lab = add(blk, el("p", "zl-block-label", labels[b.kind] || b.name || b.kind));
        if (b.kind === "tool_use" && b.name) add(lab, el("span", "zl-tool-name", b.name));
        add(blk, el("pre", "zl-pre", b.text));
        truncNote(blk, b.truncated, "this block");
      });
    }

    var rs = x.response;
    if (rs) {
      var resp = section(box, "Response", rs.status + " " + rs.reason + " \u00b7 " + rs.http_version + " \u00b7 " + rs.headers.length + " headers");
      headersTable(resp, rs.headers);
      if (x.sse) {
        var evs = section(box, x.sse.title || "SSE events", fmtInt(x.sse.count) + (x.sse.count === 1 ? " event" : " events"));
        var et = add(evs, el("table", "zl-events"));
        var eh = add(et, el("tr"));
        ["#", "event", "data", "id"].forEach(function (h) { add(eh, el("th", null, h)); });
        x.sse.events.forEach(function (e, k) {
          var tr = add(et, el("tr"));
          add(tr, el("td", "ev-n", k + 1));
          add(tr, el("td", "ev-name", e.event));
          var dtd = add(tr, el("td", "ev-data", e.data));
          if (e.truncated > 0) add(dtd, el("span", "zl-trunc", "  \u2026 " + fmtInt(e.truncated) + " bytes truncated"));
          add(tr, el("td", "zl-faint", e.id === null ? "" : e.id));
        });
        if (x.sse.count > x.sse.events.length) add(evs, el("p", "zl-trunc", fmtInt(x.sse.count - x.sse.events.length) + " more events not shown (first " + fmtBytes(meta.body_limit) + " of data shown)"));
      }
      var rsb = section(box, x.sse ? "Raw response body" : "Response body",
        [bodyNote(rs.body), rs.framing, rs.decode_note].filter(Boolean).join(" \u00b7 "), !x.sse);
      bodyView(rsb, rs.body, "the response body");
    } else {
      add(box, el("p", "zl-faint", "No response was received."));
    }
    return box;
  }

  function openDetail(r) {
    var tr = byId("zl-row-" + r.i);
    if (!tr) return;
    var dtr = el("tr", "zl-detail");
    dtr.id = "zl-detail-" + r.i;
    var td = add(dtr, el("td"));
    td.colSpan = COLS.length;
    add(td, renderDetail(r));
    tr.parentNode.insertBefore(dtr, tr.nextSibling);
    tr.classList.add("open");
    tr.setAttribute("aria-expanded", "true");
  }
  function closeDetail(r) {
    var dtr = byId("zl-detail-" + r.i), tr = byId("zl-row-" + r.i);
    if (dtr) dtr.parentNode.removeChild(dtr);
    if (tr) { tr.classList.remove("open"); tr.setAttribute("aria-expanded", "false"); }
  }
  // The URL's hash holds the filters and the expanded exchange: #status=4xx&expand=<id>.
  var FILTERS = ["host", "path", "status", "model"];
  var lastOpen = null;
  function writeHash() {
    var parts = [];
    FILTERS.forEach(function (k) {
      var v = k === "path" ? pathIn.value : state[k];
      if (v) parts.push(k + "=" + encodeURIComponent(v));
    });
    if (lastOpen !== null) parts.push("expand=" + encodeURIComponent(lastOpen));
    try {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname + location.search);
    } catch (e) { /* some file: URLs refuse; the page works without */ }
  }
  function toggle(r) {
    if (state.open[r.i]) { delete state.open[r.i]; closeDetail(r); if (lastOpen === r.id) lastOpen = null; }
    else { state.open[r.i] = true; openDetail(r); lastOpen = r.id; }
    writeHash();
  }
  // Opens r's detail, first making its row visible (clearing filters or paging as needed).
  function expand(r, scroll) {
    if (view.indexOf(r) < 0) clear.click();
    var pos = view.indexOf(r);
    if (pos >= state.shown) { state.shown = pos + 1; renderRows(); }
    if (!state.open[r.i]) toggle(r);
    if (scroll) { var tr = byId("zl-row-" + r.i); if (tr && tr.scrollIntoView) tr.scrollIntoView({ block: "start" }); }
  }
  function params() {
    var out = {};
    [location.search, location.hash].forEach(function (part) {
      part.replace(/^[#?]/, "").split("&").forEach(function (kv) {
        var eq = kv.indexOf("=");
        if (eq <= 0) return;
        try { out[kv.slice(0, eq)] = decodeURIComponent(kv.slice(eq + 1)); } catch (e) { /* skip it */ }
      });
    });
    return out;
  }
  function readFilters(p) {
    var controls = { host: hostSel, path: pathIn, status: statusSel, model: modelSel };
    FILTERS.forEach(function (k) {
      if (typeof p[k] !== "string") return;
      controls[k].value = p[k];
      if (controls[k].value !== p[k]) { controls[k].value = ""; return; }  // no such option
      state[k] = k === "path" ? p[k].toLowerCase() : p[k];
    });
  }
  function expandFrom(p) {
    var want = p.expand, r = null;
    if (typeof want !== "string") return;
    if (want === "first") r = view[0] || null;
    else if (want === "last") r = view[view.length - 1] || null;
    else for (var k = 0; k < rows.length && !r; k++) if (rows[k].id === want) r = rows[k];
    if (r) expand(r, false);
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawCharts, 150);
  });

  var initial = params();
  readFilters(initial);
  refresh();
  expandFrom(initial);
})();
