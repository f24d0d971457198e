// The walkthrough page of `coconut-lm analyze --html`: plain DOM and inline SVG, no library, no network.
// It reads the JSON in #report-data and exposes window.coconutReport (show, step, selftest) for tests.
"use strict";
(function () {
  var SVG_NS = "http://www.w3.org/2000/svg";
  var errors = [];

  function showErrors() {
    var box = document.getElementById("errors");
    box.textContent = "Errors in this page:\n" + errors.join("\n");
    box.hidden = false;
  }
  window.addEventListener("error", function (e) { errors.push(String(e.message || e)); showErrors(); });

  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var byId = function (id) { return document.getElementById(id); };
  var state = { example: null, t: 0, colorBy: "value", edgeBy: "gold", shown: [] };
  var NODE_COLORS = { target: "#ffb300", optimal: "#2e7d32", frontier: "#1e88e5", reachable: "#8e24aa", unreachable: "#9e9e9e" };
  var EDGE_COLORS = { optimal: "#2e7d32", frontier: "#1e88e5", reachable: "#8e24aa", other: "#bdbdbd" };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function sv(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    for (var k in attrs || {}) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { node.textContent = ""; return node; }
  function fmt(x, d) { return (x === null || x === undefined) ? "-" : Number(x).toFixed(d === undefined ? 3 : d); }
  function pct(x) { return (x === null || x === undefined) ? "-" : (100 * x).toFixed(0); }
  function row(table, cells, header) {
    var tr = el("tr");
    cells.forEach(function (c) {
      var cell = el(header ? "th" : "td", typeof c === "number" ? { "class": "num" } : {}, c);
      tr.appendChild(cell);
    });
    table.appendChild(tr);
  }
  function catLabel(key) {
    var c = (DATA.categories || []).filter(function (x) { return x.key === key; })[0];
    return c ? c.label : (key || "-");
  }

  // ------------------------------------------------------------------------------ example list

  function fillFilters() {
    var hops = {}, cats = {};
    DATA.examples.forEach(function (ex) { hops[ex.target_hops] = true; if (ex.category) cats[ex.category] = true; });
    Object.keys(hops).map(Number).sort(function (a, b) { return a - b; }).forEach(function (h) {
      byId("f-hops").appendChild(el("option", { value: String(h) }, h + " hops"));
    });
    (DATA.categories || []).forEach(function (c) {
      if (cats[c.key]) byId("f-cat").appendChild(el("option", { value: c.key }, c.label));
    });
    ["f-correct", "f-hops", "f-cat"].forEach(function (id) { byId(id).addEventListener("change", renderList); });
  }

  function filtered() {
    var fc = byId("f-correct").value, fh = byId("f-hops").value, fk = byId("f-cat").value;
    return DATA.examples.filter(function (ex) {
      if (fc !== "" && Boolean(ex.correct) !== (fc === "1")) return false;
      if (fh !== "" && String(ex.target_hops) !== fh) return false;
      if (fk !== "" && ex.category !== fk) return false;
      return true;
    });
  }

  function renderList() {
    var list = clear(byId("example-list"));
    state.shown = filtered();
    byId("count").textContent = state.shown.length + " of " + DATA.examples.length + " examples";
    state.shown.forEach(function (ex) {
      var mark = ex.correct === null || ex.correct === undefined ? "" : (ex.correct ? " \u2713" : " \u2717");
      var li = el("li", { "data-index": String(ex.index) }, "#" + ex.index + " \u00b7 " + ex.target_hops + " hops \u00b7 " + catLabel(ex.category) + mark);
      li.className = (state.example && state.example.index === ex.index ? "selected " : "") + (ex.correct ? "ok" : "bad");
      li.addEventListener("click", function () { show(ex.index); });
      list.appendChild(li);
    });
  }

  // ------------------------------------------------------------------------------ one example

  function find(index) { return DATA.examples.filter(function (ex) { return ex.index === index; })[0] || null; }

  function show(index) {
    var ex = find(index);
    if (!ex) throw new Error("no example " + index + " in this report");
    state.example = ex;
    var maxT = ex.n_thoughts[ex.n_thoughts.length - 1];
    var slider = byId("thought");
    slider.setAttribute("max", String(maxT));
    byId("ex-title").textContent = "Example " + ex.index + " (question " + ex.question_id + ")";
    var gold = ex.gold_path.length ? ex.gold_path.join(" \u2192 ") : "-";
    byId("ex-meta").textContent = "root " + ex.names[ex.root] + ", target " + ex.names[ex.target] +
      ", other option " + ex.names[ex.neg_target] + "; " + ex.target_hops + " hops; gold chain " + gold +
      (ex.category ? "; " + (DATA.main_setting || "Coconut") + ": " + catLabel(ex.category) + (ex.correct ? " (correct)" : " (wrong)") : "");
    byId("question").textContent = ex.question;
    renderWrites(ex);
    renderList();
    step(Math.min(state.t, maxT));
  }

  function step(t) {
    var ex = state.example;
    if (!ex) return;
    var maxT = ex.n_thoughts[ex.n_thoughts.length - 1];
    t = Math.max(0, Math.min(maxT, Number(t)));
    state.t = t;
    byId("thought").value = String(t);
    var p = ex.probes;
    var hop = p && t > 0 ? p.hops[t - 1] : 0;
    byId("thought-label").textContent = t === 0 ? "before any thought" : "after thought " + t + " of " + maxT + " (hop " + hop + ")";
    drawGraph(ex, t);
    renderTopNodes(ex, t);
    renderProbes(ex, t);
  }

  function goldEdges(ex) {
    var idx = {};
    ex.names.forEach(function (n, i) { idx[n] = i; });
    var out = {};
    for (var i = 0; i + 1 < ex.gold_path.length; i++) out[idx[ex.gold_path[i]] + ">" + idx[ex.gold_path[i + 1]]] = true;
    return out;
  }

  function cosColor(c) {  // blue for positive, red for negative, white at 0
    var a = Math.max(-1, Math.min(1, c));
    var s = Math.round(255 * (1 - Math.abs(a)));
    return a >= 0 ? "rgb(" + s + "," + s + ",255)" : "rgb(255," + s + "," + s + ")";
  }
  function valueColor(v) {  // white to dark blue by sqrt(value)
    var a = Math.sqrt(Math.max(0, Math.min(1, v)));
    return "rgb(" + Math.round(255 - 230 * a) + "," + Math.round(255 - 180 * a) + "," + Math.round(255 - 60 * a) + ")";
  }

  function drawGraph(ex, t) {
    var svg = clear(byId("graph"));
    var layers = Math.max.apply(null, ex.layout.map(function (xy) { return xy[1]; })) + 1;
    var W = 900, H = 70 + 90 * layers;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var defs = sv("defs");
    var marker = sv("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(sv("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#616161" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    var values = ex.values[ex.n_thoughts.indexOf(t)];
    var p = ex.probes;
    var cos = p && t > 0 ? p.cos[t - 1] : null;
    var cats = p && t > 0 ? p.node_categories[t - 1] : null;
    var pos = ex.layout.map(function (xy) { return [40 + xy[0] * (W - 80), 40 + xy[1] * 90]; });
    var radius = values.map(function (v) { return state.colorBy === "value" ? 9 + 15 * Math.sqrt(Math.max(0, v)) : 13; });
    var gold = goldEdges(ex);
    var att = p && t > 0 && p.attention ? p.attention[t - 1] : null;
    var ecats = p && t > 0 ? p.edge_categories[t - 1] : null;
    ex.edges.forEach(function (e, i) {
      var a = pos[e[0]], b = pos[e[1]];
      var dx = b[0] - a[0], dy = b[1] - a[1], len = Math.sqrt(dx * dx + dy * dy) || 1;
      var r0 = radius[e[0]] + 1, r1 = radius[e[1]] + 3;
      var onGold = gold[e[0] + ">" + e[1]];
      var color = "#9e9e9e", width = 1;
      if (state.edgeBy === "attention" && att) {
        color = EDGE_COLORS[ecats[i]] || "#9e9e9e";
        width = 0.5 + 40 * att[i];
      } else if (onGold) {
        color = "#2e7d32"; width = 3.5;
      }
      var line = sv("line", { x1: a[0] + dx / len * r0, y1: a[1] + dy / len * r0, x2: b[0] - dx / len * r1, y2: b[1] - dy / len * r1,
        stroke: color, "stroke-width": width.toFixed(2), "marker-end": "url(#arrow)", "data-edge": i,
        "data-attention": att ? String(att[i]) : "" });
      svg.appendChild(line);
    });
    ex.names.forEach(function (name, n) {
      var xy = pos[n], v = values[n];
      var fill = state.colorBy === "cos" && cos ? cosColor(cos[n]) : valueColor(v);
      var stroke = "#757575", sw = 1, dash = "";
      if (n === ex.root) { stroke = "#1565c0"; sw = 3; }
      if (n === ex.target) { stroke = "#ff8f00"; sw = 4; }
      if (n === ex.neg_target) { stroke = "#c62828"; sw = 3; dash = "4 2"; }
      var c = sv("circle", { cx: xy[0].toFixed(1), cy: xy[1].toFixed(1), r: radius[n].toFixed(1), fill: fill, stroke: stroke,
        "stroke-width": sw, "stroke-dasharray": dash, "data-node": n, "data-value": String(v), "data-t": t,
        "data-category": cats ? cats[n] : "" });
      c.appendChild(sv("title", {}, name + ": value " + fmt(v, 4) + (cos ? ", cos " + fmt(cos[n], 3) : "") + (cats ? ", " + cats[n] : "")));
      svg.appendChild(c);
      svg.appendChild(sv("text", { x: xy[0].toFixed(1), y: (xy[1] - radius[n] - 3).toFixed(1), "text-anchor": "middle" }, name));
      var shown = state.colorBy === "cos" && cos ? cos[n] : v;
      svg.appendChild(sv("text", { x: xy[0].toFixed(1), y: (xy[1] + 4).toFixed(1), "text-anchor": "middle", "font-size": "9" },
        shown >= 0.005 || state.colorBy === "cos" ? fmt(shown, 2) : ""));
    });
    byId("legend").textContent = "Node fill and size: " + (state.colorBy === "cos" && cos ? "cosine of thought " + t + " with the node's embedding (blue +, red \u2212)" :
      "value after " + t + " thoughts = P(node named next | question, " + t + " thoughts), a node at hop " + valueHop(ex, t)) +
      ". Rings: blue root, orange target, dashed red the other option. Edges: " +
      (state.edgeBy === "attention" && att ? "width = last-layer attention from the position writing thought " + t + "; colour = edge category." : "green = gold chain.");
  }

  // The hop whose node a value after t thoughts names: in the symbolic form a step is the node it
  // reaches, so after t thoughts (t / c whole hops) the next one written is at hop t / c + 1; in the
  // word form the step "Every {node} is a ..." names the node at hop ceil(t / c) (latent_search docs).
  function valueHop(ex, t) {
    var p = ex.probes, c = p ? Math.max(1, p.hops.filter(function (h) { return h === 1; }).length) : 1;
    return ex.symbolic ? Math.floor(t / c) + 1 : Math.ceil(t / c);
  }

  function valueCategories(ex, t) {
    var p = ex.probes;
    if (!p) return null;
    var i = p.hops.indexOf(valueHop(ex, t));
    return i >= 0 ? p.node_categories[i] : null;
  }

  function renderTopNodes(ex, t) {
    var table = clear(byId("top-nodes"));
    var values = ex.values[ex.n_thoughts.indexOf(t)];
    var cats = valueCategories(ex, t);  // the categories of the hop these values name
    row(table, ["node", "value", "category"], true);
    values.map(function (v, n) { return [v, n]; }).sort(function (a, b) { return b[0] - a[0]; }).slice(0, 8).forEach(function (vn) {
      row(table, [ex.names[vn[1]], Number(fmt(vn[0], 4)), cats ? cats[vn[1]] : "-"]);
    });
    row(table, ["P(step prefix)", Number(fmt(ex.prefix_prob[ex.n_thoughts.indexOf(t)], 4)), ""]);
  }

  function renderProbes(ex, t) {
    var p = ex.probes;
    var dec = clear(byId("decoded")), lens = clear(byId("lens")), sim = clear(byId("sim-cats"));
    if (!p || t === 0) {
      var why = p ? "Step to a thought to see its probes." : "No probes for this example.";
      row(dec, [why]); return;
    }
    var lensRows = p.lens[t - 1];
    row(dec, ["token", "prob"], true);
    (lensRows.length ? lensRows[lensRows.length - 1] : []).forEach(function (tp) { row(dec, [JSON.stringify(tp[0]), Number(fmt(tp[1], 3))]); });
    row(lens, ["layer", "top tokens"], true);
    lensRows.forEach(function (top, l) {
      row(lens, [p.lens_layers[l], top.slice(0, 3).map(function (tp) { return JSON.stringify(tp[0]) + " " + fmt(tp[1], 2); }).join(", ")]);
    });
    row(sim, ["category", "nodes", "mean cos", "mean dot"], true);
    var cats = p.node_categories[t - 1];
    ["target", "optimal", "frontier", "reachable", "unreachable"].forEach(function (cat) {
      var ns = [];
      cats.forEach(function (c, n) { if (c === cat) ns.push(n); });
      if (!ns.length) return;
      var mean = function (arr) { return ns.reduce(function (s, n) { return s + arr[n]; }, 0) / ns.length; };
      row(sim, [cat, ns.length, Number(fmt(mean(p.cos[t - 1]), 3)), Number(fmt(mean(p.dot[t - 1]), 3))]);
    });
  }

  function renderWrites(ex) {
    var box = clear(byId("writes"));
    if (!ex.writes.length) { box.appendChild(el("div", { "class": "write" }, "No predictions for this example.")); return; }
    ex.writes.forEach(function (w) {
      var d = el("div", { "class": "write" });
      d.appendChild(el("strong", {}, w.label + (w.correct ? " \u2713 correct" : " \u2717 wrong") + (w.category ? " \u00b7 " + catLabel(w.category) : "")));
      d.appendChild(el("pre", {}, w.text));
      box.appendChild(d);
    });
  }

  // ------------------------------------------------------------------------------ other views

  function renderSummary() {
    var s = DATA.probes_summary;
    if (!s) { byId("probes-note").textContent = "No probes in this analysis."; return; }
    byId("probes-note").textContent = s.n_examples + " examples, " + s.n_thoughts + " thoughts. Categories are those after hop ceil(t / c) of thought t; each example's mean over a category counts once.";
    var t1 = byId("probe-sim");
    row(t1, ["thought"].concat(s.node_categories), true);
    for (var t = 1; t <= s.n_thoughts; t++) {
      row(t1, [t].concat(s.node_categories.map(function (c) {
        var r = s.similarity.filter(function (x) { return x.thought === t && x.category === c; })[0];
        return r && r.n ? fmt(r.mean_cos, 3) + " (" + fmt(r.mean_dot, 2) + ")" : "-";
      })));
    }
    var t2 = byId("probe-attn");
    row(t2, ["thought"].concat(s.edge_categories), true);
    for (t = 1; t <= s.n_thoughts; t++) {
      row(t2, [t].concat(s.edge_categories.map(function (c) {
        var r = s.attention.filter(function (x) { return x.thought === t && x.category === c; })[0];
        return r && r.n ? fmt(r.mean_per_edge, 4) : "-";
      })));
    }
    var t3 = byId("probe-lens");
    var layers = [];
    s.lens.forEach(function (r) { if (layers.indexOf(r.layer) < 0) layers.push(r.layer); });
    row(t3, ["layer"].concat(Array.from({ length: s.n_thoughts }, function (_, i) { return "thought " + (i + 1); })), true);
    layers.forEach(function (l) {
      row(t3, [l === 0 ? "inputs" : "layer " + l].concat(Array.from({ length: s.n_thoughts }, function (_, i) {
        var r = s.lens.filter(function (x) { return x.thought === i + 1 && x.layer === l; })[0];
        return r ? pct((r.optimal || 0) + (r.frontier || 0)) + " (" + pct(r.any_node) + ")" : "-";
      })));
    });
  }

  function renderFigures() {
    var box = byId("figures");
    var names = Object.keys(DATA.figures || {});
    if (!names.length) box.appendChild(el("p", {}, "No figures."));
    names.forEach(function (name) {
      box.appendChild(el("h3", {}, name));
      box.appendChild(el("img", { src: "data:image/png;base64," + DATA.figures[name], alt: name }));
    });
  }

  function setView(view) {
    ["walk", "probes", "figures"].forEach(function (v) {
      byId("view-" + v).hidden = v !== view;
      byId("tab-" + v).className = "tab" + (v === view ? " active" : "");
    });
  }

  // ------------------------------------------------------------------------------ self test

  // Step through every thought of the first listed examples and check the drawn node values against the data.
  function selftest(maxExamples) {
    var result = { checked: 0, mismatches: [], changed: false, examples: [], errors: errors };
    var list = state.shown.length ? state.shown : DATA.examples;
    list.slice(0, maxExamples || 3).forEach(function (ex) {
      show(ex.index);
      result.examples.push(ex.index);
      var previous = null;
      ex.n_thoughts.forEach(function (t, ti) {
        step(t);
        var drawn = [];
        var circles = byId("graph").getElementsByTagName("circle");
        for (var i = 0; i < circles.length; i++) {
          var n = Number(circles[i].getAttribute("data-node"));
          var v = Number(circles[i].getAttribute("data-value"));
          drawn[n] = v;
          result.checked++;
          if (Number(circles[i].getAttribute("data-t")) !== t || Math.abs(v - ex.values[ti][n]) > 1e-12) {
            result.mismatches.push({ example: ex.index, t: t, node: n, drawn: v, data: ex.values[ti][n] });
          }
        }
        if (drawn.length !== ex.names.length) result.mismatches.push({ example: ex.index, t: t, drawnNodes: drawn.length });
        if (previous && drawn.some(function (v, n) { return v !== previous[n]; })) result.changed = true;
        previous = drawn;
      });
    });
    result.ok = result.checked > 0 && result.mismatches.length === 0 && errors.length === 0;
    var out = byId("selftest-result");
    out.textContent = JSON.stringify(result);
    out.hidden = false;
    return result;
  }

  // ------------------------------------------------------------------------------ start

  function start() {
    byId("title").textContent = "Coconut latent search: " + DATA.checkpoint;
    byId("subtitle").textContent = "data " + DATA.data + " \u00b7 " + DATA.examples.length + " of " + DATA.n_examples +
      " analysed examples in this page \u00b7 " + DATA.settings.map(function (s) { return s.label + " " + (100 * s.accuracy).toFixed(1) + "%"; }).join(", ");
    ["walk", "probes", "figures"].forEach(function (v) { byId("tab-" + v).addEventListener("click", function () { setView(v); }); });
    byId("thought").addEventListener("input", function () { step(byId("thought").value); });
    byId("prev").addEventListener("click", function () { step(state.t - 1); });
    byId("next").addEventListener("click", function () { step(state.t + 1); });
    byId("color-by").addEventListener("change", function () { state.colorBy = byId("color-by").value; step(state.t); });
    byId("edge-by").addEventListener("change", function () { state.edgeBy = byId("edge-by").value; step(state.t); });
    window.addEventListener("keydown", function (e) {
      if (e.key === "ArrowLeft") step(state.t - 1);
      if (e.key === "ArrowRight") step(state.t + 1);
    });
    fillFilters();
    renderList();
    renderSummary();
    renderFigures();
    var hash = {};
    String(window.location.hash || "").replace(/^#/, "").split("&").forEach(function (kv) {
      if (kv) { var p = kv.split("="); hash[p[0]] = p.length > 1 ? decodeURIComponent(p[1]) : "1"; }
    });
    if (DATA.examples.length) {
      var first = hash.example !== undefined && find(Number(hash.example)) ? Number(hash.example) : DATA.examples[0].index;
      state.t = hash.t !== undefined ? Number(hash.t) : 1;
      show(first);
    }
    if (hash.view) setView(hash.view);
    if (hash.selftest) selftest(Number(hash.selftest) > 1 ? Number(hash.selftest) : 3);
  }

  window.coconutReport = { data: DATA, state: state, show: show, step: step, selftest: selftest, errors: errors, setView: setView };
  start();
})();
