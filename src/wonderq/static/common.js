// WonderQ dashboard: what both pages share. The live statistics stream (/v1/events), rates from successive
// snapshots, the rate chart (hand-written SVG), formatting and DOM building.
//
// Every piece of data (queue names, message bodies, consumers, ...) enters the page as text: through text nodes,
// textContent or attribute values, never parsed as markup. Times are seconds unless a name says otherwise.
"use strict";

const WQ = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const HISTORY_POINTS = 60; // chart points kept per queue: one per snapshot or idle second, about a minute
  const IDLE_AFTER_MS = 1500; // no snapshot for this long: nothing changed on the server, rates are 0
  const RECONNECT_MS = 5000; // after the server refused the stream (it was shutting down), try again after this

  let clockOffset = 0; // seconds: server time minus browser time, from the last snapshot

  /** An element with attributes (`class`, `on<event>` handlers, others as attribute text) and children. */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attributes);
    appendAll(node, children);
    return node;
  }

  function svg(tag, attributes, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attributes);
    appendAll(node, children);
    return node;
  }

  function setAttributes(node, attributes) {
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function appendAll(node, children) {
    for (const child of children) {
      if (child === null || child === undefined) continue;
      if (Array.isArray(child)) appendAll(node, child);
      else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  /** Set a node's text (never HTML), only when it changed. */
  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  // ---- formatting ----

  function count(value) {
    return value === null || value === undefined ? "-" : Number(value).toLocaleString("en-US");
  }

  function rate(value) {
    if (value === null || value === undefined) return "-";
    if (value === 0) return "0";
    return value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString("en-US");
  }

  /** A duration in seconds, as "42s", "3m 05s", "2h 10m", "4d 3h". */
  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "-";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
  }

  /** The server's clock now, in epoch seconds (the browser's, corrected by the last snapshot's time). */
  function serverNow() {
    return Date.now() / 1000 + clockOffset;
  }

  function age(epochSeconds) {
    return epochSeconds === null || epochSeconds === undefined ? "-" : duration(serverNow() - epochSeconds);
  }

  function queueUrl(name) {
    return `/dashboard/queues/${encodeURIComponent(name)}`;
  }

  function apiUrl(name, suffix) {
    return `/v1/queues/${encodeURIComponent(name)}${suffix || ""}`;
  }

  /** Go to the sign-in page, which comes back here once signed in. */
  function toSignIn() {
    location.assign(`/dashboard/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }

  /** A JSON request to the API; resolves to the reply's JSON (null for 204), rejects with its error message.
   * A 401 (no session, or it ended) goes to the sign-in page. */
  async function api(method, url, body) {
    const options = { method, headers: {} };
    if (body !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const reply = await fetch(url, options);
    if (reply.status === 401) toSignIn();
    const data = reply.status === 204 ? null : await reply.json().catch(() => null);
    if (!reply.ok) {
      const error = new Error(data && data.error ? data.error.message : `${reply.status} ${reply.statusText}`);
      error.status = reply.status;
      error.code = data && data.error ? data.error.code : null;
      throw error;
    }
    return data;
  }

  // ---- the live statistics ----

  /** Follow /v1/events: `onSnapshot(snapshot)` for every `stats` event, `onStatus(state)` when the
   * connection changes ("live", "reconnecting", "disconnected"). */
  function followStats(onSnapshot, onStatus) {
    let source = null;
    function connect() {
      source = new EventSource("/v1/events");
      source.addEventListener("open", () => onStatus("live"));
      source.addEventListener("stats", (event) => {
        const snapshot = JSON.parse(event.data);
        clockOffset = snapshot.time - Date.now() / 1000;
        onStatus("live");
        onSnapshot(snapshot);
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) {
          onStatus("disconnected");
          api("GET", "/dashboard/session").catch(() => {}); // refused because the session ended: sign in again
          setTimeout(connect, RECONNECT_MS);
        } else {
          onStatus("reconnecting");
        }
      });
    }
    connect();
  }

  /** Send, ack and redelivery rates per queue, from the counters of successive snapshots. */
  class Rates {
    constructor() {
      this.queues = new Map(); // name -> {time, sent, acked, redelivered, rates, history}
      this.lastSnapshotMs = 0;
    }

    update(snapshot) {
      this.lastSnapshotMs = Date.now();
      const names = new Set();
      for (const queue of snapshot.queues) {
        names.add(queue.name);
        const counts = { sent: queue.sent, acked: queue.acked, redelivered: queue.expired + queue.released };
        const known = this.queues.get(queue.name);
        if (!known) {
          this.queues.set(queue.name, { time: snapshot.time, ...counts, rates: null, history: [] });
          continue;
        }
        const elapsed = snapshot.time - known.time;
        if (elapsed <= 0) continue;
        const per = (key) => Math.max(0, counts[key] - known[key]) / elapsed; // a re-created queue restarts at 0
        known.rates = { send: per("sent"), ack: per("acked"), redeliver: per("redelivered") };
        Object.assign(known, counts, { time: snapshot.time });
        this.push(known, snapshot.time, known.rates);
      }
      for (const name of [...this.queues.keys()]) if (!names.has(name)) this.queues.delete(name);
    }

    /** Call every second: without a snapshot for a while, nothing changed, so every rate is 0 (and the
     * counters are known to be unchanged until about a second ago). */
    idle() {
      if (Date.now() - this.lastSnapshotMs < IDLE_AFTER_MS) return false;
      const now = serverNow();
      for (const known of this.queues.values()) {
        known.time = Math.max(known.time, now - 1);
        known.rates = { send: 0, ack: 0, redeliver: 0 };
        this.push(known, now, known.rates);
      }
      return true;
    }

    push(known, time, rates) {
      known.history.push({ time, ...rates });
      if (known.history.length > HISTORY_POINTS) known.history.splice(0, known.history.length - HISTORY_POINTS);
    }

    of(name) {
      return this.queues.get(name) || null;
    }
  }

  const SERIES = ["send", "ack", "redeliver"];

  /** An SVG line chart of a rate history ({time, send, ack, redeliver} points) over the last minute. */
  function rateChart(history, width, height, withScale) {
    const chart = svg("svg", {
      class: "rate-chart",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": "rates over the last minute",
    });
    const top = withScale ? 14 : 2;
    const bottom = height - 2;
    chart.append(svg("line", { class: "baseline", x1: 0, y1: bottom, x2: width, y2: bottom }));
    if (!history || history.length === 0) return chart;
    const newest = history[history.length - 1].time;
    const span = 60; // seconds shown
    let peak = 1;
    for (const point of history) for (const key of SERIES) peak = Math.max(peak, point[key]);
    const x = (time) => width - ((newest - time) / span) * width;
    const y = (value) => bottom - (value / peak) * (bottom - top);
    for (const key of SERIES) {
      const shown = history.filter((point) => newest - point.time <= span);
      const points = shown.map((point) => `${x(point.time).toFixed(1)},${y(point[key]).toFixed(1)}`);
      if (points.length === 1) points.unshift(`${width - 3},${y(shown[0][key]).toFixed(1)}`); // a dash, not nothing
      chart.append(svg("polyline", { class: `line ${key}`, points: points.join(" ") }));
    }
    const last = history[history.length - 1];
    chart.append(
      svg("title", {}, `now: ${rate(last.send)} sent/s, ${rate(last.ack)} acked/s, ${rate(last.redeliver)} redelivered/s`),
    );
    if (withScale) chart.append(svg("text", { class: "scale", x: 2, y: 10 }, `${rate(peak)}/s`));
    return chart;
  }

  function showStatus(node, state) {
    node.dataset.state = state;
    setText(node, state);
  }

  /** With auth on, "signed in as NAME" and a sign-out button in the page's header. */
  async function showWho() {
    const session = await api("GET", "/dashboard/session").catch(() => null);
    const header = document.querySelector("header.top");
    if (!session || !session.auth || !header) return;
    async function signOut() {
      await fetch("/dashboard/logout", { method: "POST" });
      location.assign("/dashboard/login");
    }
    header.append(el("span", { class: "who" }, `signed in as ${session.principal}`,
      el("button", { class: "small", type: "button", onclick: signOut }, "sign out")));
  }
  document.addEventListener("DOMContentLoaded", showWho);

  return { el, setText, count, rate, duration, age, serverNow, queueUrl, apiUrl, api, followStats, Rates, rateChart, showStatus };
})();
