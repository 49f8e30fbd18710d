// The live page of a penguiflow flow. Plain JavaScript, no library, no build step.
//
// Every value that comes from the server is put into the page with textContent or as an
// attribute value: nothing received is ever parsed as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const NODE_W = 200;
  const NODE_H = 100;
  const END_W = 96;
  const END_H = 36;
  const COL_GAP = 70;
  const ROW_GAP = 26;
  const PAD = 16;
  const TRACE_REFRESH_MS = 2000;

  const state = {
    control: false,
    boxes: new Map(), // node name -> {group, fields}
    edgeLabels: [], // [{source, target, label, path}]
    selected: null, // trace id shown in the timeline
  };

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function getJSON(path) {
    const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  // ---------------------------------------------------------------- graph layout

  // Ranks by longest path from the sources, after dropping the edges that close a cycle
  // (found by a depth-first walk). The Rookery goes last.
  function rank(nodes, edges) {
    const out = new Map(nodes.map((n) => [n.name, []]));
    for (const e of edges) out.get(e.source).push(e.target);
    const back = new Set();
    const mark = new Map();
    const visit = (name) => {
      mark.set(name, "open");
      for (const next of out.get(name)) {
        if (mark.get(next) === "open") back.add(name + "\u0000" + next);
        else if (!mark.has(next)) visit(next);
      }
      mark.set(name, "done");
    };
    for (const n of nodes) if (!mark.has(n.name)) visit(n.name);
    const forward = edges.filter((e) => !back.has(e.source + "\u0000" + e.target));
    const indegree = new Map(nodes.map((n) => [n.name, 0]));
    for (const e of forward) indegree.set(e.target, indegree.get(e.target) + 1);
    const ranks = new Map(nodes.map((n) => [n.name, 0]));
    const queue = nodes.filter((n) => indegree.get(n.name) === 0).map((n) => n.name);
    while (queue.length) {
      const name = queue.shift();
      for (const e of forward) {
        if (e.source !== name) continue;
        ranks.set(e.target, Math.max(ranks.get(e.target), ranks.get(name) + 1));
        indegree.set(e.target, indegree.get(e.target) - 1);
        if (indegree.get(e.target) === 0) queue.push(e.target);
      }
    }
    let last = 0;
    for (const [name, r] of ranks) if (name !== "Rookery") last = Math.max(last, r);
    if (ranks.has("Rookery")) ranks.set("Rookery", last + 1);
    return ranks;
  }

  function layout(graph) {
    const ranks = rank(graph.nodes, graph.edges);
    const columns = [];
    for (const n of graph.nodes) {
      const r = ranks.get(n.name);
      (columns[r] = columns[r] || []).push(n);
    }
    const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
    const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP;
    const places = new Map();
    columns.forEach((column, r) => {
      if (!column) return;
      const used = column.length * NODE_H + (column.length - 1) * ROW_GAP;
      column.forEach((n, i) => {
        const x = PAD + r * (NODE_W + COL_GAP);
        const y = (height - used) / 2 + i * (NODE_H + ROW_GAP);
        places.set(n.name, { x, y, node: n });
      });
    });
    const width = PAD * 2 + columns.length * NODE_W + (columns.length - 1) * COL_GAP;
    return { places, width, height };
  }

  function drawGraph(graph) {
    const root = document.getElementById("graph");
    root.replaceChildren();
    const { places, width, height } = layout(graph);
    root.setAttribute("viewBox", "0 0 " + width + " " + height);
    root.setAttribute("width", String(width));
    root.setAttribute("height", String(height));
    const defs = svg("defs");
    const marker = svg("marker", {
      id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    });
    marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }));
    defs.appendChild(marker);
    root.appendChild(defs);
    const edgeLayer = svg("g");
    const nodeLayer = svg("g");
    root.append(edgeLayer, nodeLayer);
    state.edgeLabels = [];
    for (const e of graph.edges) drawEdge(edgeLayer, e, places);
    state.boxes.clear();
    for (const { x, y, node } of places.values()) {
      if (node.kind === "node") drawNode(nodeLayer, node, x, y);
      else drawEndpoint(nodeLayer, node, x, y);
    }
  }

  function box(place) {
    const endpoint = place.node.kind !== "node";
    const w = endpoint ? END_W : NODE_W;
    const h = endpoint ? END_H : NODE_H;
    const x = place.x + (NODE_W - w) / 2;
    const y = place.y + (NODE_H - h) / 2;
    return { x, y, w, h };
  }

  function drawEdge(layer, e, places) {
    const a = box(places.get(e.source));
    const b = box(places.get(e.target));
    let d;
    let lx;
    let ly;
    if (e.source === e.target) {
      const cx = a.x + a.w / 2;
      d = `M ${cx - 30} ${a.y} C ${cx - 50} ${a.y - 45}, ${cx + 50} ${a.y - 45}, ${cx + 30} ${a.y}`;
      lx = cx;
      ly = a.y - 36;
    } else if (b.x > a.x) {
      const x1 = a.x + a.w;
      const y1 = a.y + a.h / 2;
      const x2 = b.x;
      const y2 = b.y + b.h / 2;
      const mid = (x1 + x2) / 2;
      d = `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`;
      lx = mid;
      ly = (y1 + y2) / 2 - 5;
    } else {
      // An edge back to an earlier column: a loop under the boxes.
      const x1 = a.x + a.w / 2;
      const y1 = a.y + a.h;
      const x2 = b.x + b.w / 2;
      const y2 = b.y + b.h;
      const low = Math.max(y1, y2) + 40;
      d = `M ${x1} ${y1} C ${x1} ${low}, ${x2} ${low}, ${x2} ${y2}`;
      lx = (x1 + x2) / 2;
      ly = low - 8;
    }
    const path = svg("path", { d, class: "edge", "marker-end": "url(#arrow)" });
    const label = svg("text", { x: lx, y: ly, class: "edge-label", "text-anchor": "middle" });
    label.textContent = capacityText(0, e.capacity);
    layer.append(path, label);
    state.edgeLabels.push({ source: e.source, target: e.target, label, path });
  }

  function drawNode(layer, node, x, y) {
    const group = svg("g", { class: "node", transform: `translate(${x} ${y})` });
    group.setAttribute("data-node", node.name);
    group.appendChild(svg("rect", { width: NODE_W, height: NODE_H, rx: 6 }));
    const name = svg("text", { x: 10, y: 18, class: "name" });
    name.textContent = node.name;
    group.appendChild(name);
    const fields = {};
    ["queue", "rate", "outcomes", "workers"].forEach((field, i) => {
      const line = svg("text", { x: 10, y: 38 + i * 16, class: "figure" });
      line.setAttribute("data-field", field);
      group.appendChild(line);
      fields[field] = line;
    });
    const title = svg("title");
    title.textContent = node.name;
    group.appendChild(title);
    layer.appendChild(group);
    state.boxes.set(node.name, { group, fields, title });
  }

  function drawEndpoint(layer, node, x, y) {
    const group = svg("g", { class: "endpoint", transform: `translate(${x} ${y})` });
    group.setAttribute("data-endpoint", node.name);
    group.appendChild(svg("ellipse", { cx: NODE_W / 2, cy: NODE_H / 2, rx: END_W / 2, ry: END_H / 2 }));
    const label = svg("text", { x: NODE_W / 2, y: NODE_H / 2 + 4, "text-anchor": "middle" });
    label.textContent = node.name;
    group.appendChild(label);
    layer.appendChild(group);
  }

  function capacityText(depth, capacity) {
    return capacity ? depth + "/" + capacity : String(depth);
  }

  // ---------------------------------------------------------------- live figures

  function updateFigures(snapshot) {
    const health = snapshot.health;
    const badge = document.getElementById("health");
    badge.textContent = health.running ? health.status : "not running";
    badge.className = "badge " + health.status;
    badge.setAttribute("data-status", health.status);
    const parts = ["traces in flight " + health.traces_in_flight];
    if (health.results_capacity) parts.push("results " + health.results_waiting + "/" + health.results_capacity);
    if (health.store_status) parts.push("store " + health.store_status);
    document.getElementById("summary").textContent = parts.join(" \u00b7 ");
    document.getElementById("updated").textContent =
      "updated " + new Date(snapshot.ts * 1000).toLocaleTimeString();
    for (const [name, f] of Object.entries(snapshot.nodes)) {
      const entry = state.boxes.get(name);
      if (!entry) continue;
      const q = f.queue_capacity === null ? f.queue_depth + "/\u221e" : capacityText(f.queue_depth, f.queue_capacity);
      entry.fields.queue.textContent = "queue " + q + " \u00b7 busy " + f.in_flight + "/" + f.workers;
      entry.fields.rate.textContent = f.rate.toFixed(1) + " ok/s";
      entry.fields.outcomes.textContent =
        "ok " + f.succeeded + " \u00b7 err " + f.errors + " \u00b7 failed " + f.failed;
      entry.fields.workers.textContent =
        "alive " + f.workers_alive + "/" + f.workers + (f.breaker ? " \u00b7 breaker " + f.breaker : "");
      let cls = "node";
      if (f.workers_alive === 0 || f.breaker === "open") cls += " down";
      else if (f.errors + f.failed > 0 || f.breaker === "half_open") cls += " erring";
      if (f.in_flight > 0) cls += " busy";
      entry.group.setAttribute("class", cls);
      const err = f.last_error;
      entry.title.textContent = err ? name + "\nlast error: " + err.code + ": " + err.message : name;
    }
    for (const e of snapshot.edges) {
      const shown = state.edgeLabels.find((x) => x.source === e.source && x.target === e.target);
      if (!shown) continue;
      shown.label.textContent = capacityText(e.depth, e.capacity);
      shown.path.setAttribute("class", e.capacity && e.depth >= e.capacity ? "edge full" : "edge");
    }
  }

  function listen() {
    const source = new EventSource("/api/events");
    source.addEventListener("stats", (message) => updateFigures(JSON.parse(message.data)));
    source.addEventListener("error", () => {
      const badge = document.getElementById("health");
      badge.textContent = "disconnected";
      badge.className = "badge disconnected";
      badge.setAttribute("data-status", "disconnected");
    });
  }

  // ---------------------------------------------------------------- traces

  function time(ts) {
    return ts ? new Date(ts * 1000).toLocaleTimeString() : "";
  }

  async function refreshTraces() {
    let listing;
    try {
      listing = await getJSON("/api/traces?limit=50");
    } catch (error) {
      document.getElementById("traces-source").textContent = String(error.message);
      return;
    }
    document.getElementById("traces-source").textContent = "(from " + listing.source + ")";
    const notes = document.getElementById("notes");
    notes.replaceChildren(...listing.notes.map((note) => el("li", {}, note)));
    const body = document.querySelector("#traces tbody");
    body.replaceChildren(...listing.traces.map(traceRow));
    document.getElementById("traces-empty").hidden = listing.traces.length > 0;
    if (state.selected !== null) {
      const current = listing.traces.find((t) => t.trace_id === state.selected);
      if (current && current.status === "running") showTimeline(state.selected);
    }
  }

  function traceRow(trace) {
    const row = el("tr", { "data-trace": trace.trace_id });
    if (trace.trace_id === state.selected) row.className = "selected";
    row.appendChild(el("td", { class: "trace-id", title: trace.trace_id }, trace.trace_id));
    const status = el("td");
    status.appendChild(el("span", { class: "chip " + trace.status }, trace.status));
    row.append(status, el("td", {}, time(trace.started_at)), el("td", {}, time(trace.updated_at)));
    row.addEventListener("click", () => {
      state.selected = trace.trace_id;
      for (const other of document.querySelectorAll("#traces tbody tr")) other.className = "";
      row.className = "selected";
      document.getElementById("cancel-result").textContent = "";
      showTimeline(trace.trace_id);
    });
    return row;
  }

  async function showTimeline(traceId) {
    let timeline;
    try {
      timeline = await getJSON("/api/traces/" + encodeURIComponent(traceId));
    } catch (error) {
      document.getElementById("timeline-hint").textContent = String(error.message);
      return;
    }
    if (state.selected !== traceId) return; // another trace was clicked meanwhile
    document.getElementById("timeline-hint").hidden = true;
    document.getElementById("timeline-body").hidden = false;
    document.getElementById("timeline-title").textContent = traceId;
    const status = document.getElementById("timeline-status");
    status.textContent = timeline.status || "status unknown";
    status.className = "chip " + (timeline.status || "");
    document.getElementById("trace-input").textContent =
      timeline.input === null ? "(not kept: no state store)" : timeline.input;
    const omitted = document.getElementById("timeline-omitted");
    omitted.hidden = !timeline.omitted;
    omitted.textContent = timeline.omitted ? timeline.omitted + " earlier events not shown" : "";
    document.getElementById("cancel").hidden = !(timeline.control && timeline.status === "running");
    const start = timeline.events.length ? timeline.events[0].ts : 0;
    const rows = timeline.events.map((event) => {
      const row = el("tr", { "data-kind": event.kind });
      row.append(
        el("td", {}, ((event.ts - start) * 1000).toFixed(1)),
        el("td", {}, event.node || ""),
        el("td", {}, event.kind),
        el("td", {}, event.attempt),
        el("td", {}, event.latency_ms === null ? "" : event.latency_ms.toFixed(2)),
        el("td", { class: "detail" }, event.detail || ""),
      );
      return row;
    });
    document.querySelector("#timeline tbody").replaceChildren(...rows);
  }

  async function cancelSelected() {
    const traceId = state.selected;
    if (traceId === null) return;
    const result = document.getElementById("cancel-result");
    const response = await fetch("/api/cancel", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ trace_id: traceId }),
    });
    const body = await response.json();
    result.textContent = response.ok
      ? (body.cancelled ? "cancelled" : "nothing left to cancel")
      : "refused: " + body.error;
    await refreshTraces();
    await showTimeline(traceId);
  }

  async function start() {
    const graph = await getJSON("/api/graph");
    state.control = graph.control;
    drawGraph(graph);
    document.getElementById("cancel").addEventListener("click", cancelSelected);
    listen();
    await refreshTraces();
    setInterval(refreshTraces, TRACE_REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => {
      const badge = document.getElementById("health");
      badge.textContent = "error: " + error.message;
      badge.className = "badge failing";
    });
  });
})();
