// WonderQ dashboard, a queue's page (/dashboard/queues/<name>): its counts, rates and chart live from /v1/events,
// its attributes and counters, the message browser (the peek view of API v1, paged with after / next_after) and
// the actions, each confirmed first: purge, redrive, delete one message.
"use strict";

(() => {
  const { el, setText, count, rate, age, duration, serverNow, queueUrl, apiUrl, api, rateChart } = WQ;
  const name = decodeURIComponent(location.pathname.split("/").pop());
  const $ = (id) => document.getElementById(id);
  const field = (key) => document.querySelector(`#cards [data-field="${key}"]`);
  const PREVIEW_CHARS = 120; // of a body, in the table
  const DETAIL_CHARS = 100000; // of a body, in the expanded row
  const REFRESH_MS = 2000; // the live message browser reloads its page at most this often

  const rates = new WQ.Rates();
  let latest = null; // this queue's stats in the last snapshot
  let latestKey = ""; // its counters as text, to notice changes
  let pages = [null]; // `after` of each page seen so far; the last is the current page
  let loading = false;
  let lastLoadMs = 0;
  let reloadTimer = null;

  document.title = `${name} · WonderQ`;
  setText($("queue-name"), name);

  function notice(text) {
    $("notice").hidden = !text;
    setText($("notice"), text || "");
  }

  function result(text, isError) {
    setText($("action-result"), text);
    $("action-result").classList.toggle("error", Boolean(isError));
  }

  // ---- live statistics ----

  function renderStats(snapshot) {
    const queue = snapshot.queues.find((candidate) => candidate.name === name);
    if (!queue) {
      latest = null;
      notice(`Queue ${name} does not exist (any more).`);
      return;
    }
    notice("");
    latest = { ...queue, oldestSentAt: snapshot.oldest[name] };
    setText(field("ready"), count(queue.ready));
    setText(field("leased"), count(queue.leased));
    setText(field("delayed"), count(queue.delayed));
    setText(field("oldest"), age(snapshot.oldest[name]));
    renderRates();
    const attributes = Object.entries(queue.attributes).map(([key, value]) => [
      key,
      key === "dead_letter_queue" && value ? el("a", { href: queueUrl(value) }, value) : value === null ? "-" : value,
    ]);
    const sources = snapshot.queues.filter((other) => other.attributes.dead_letter_queue === name).map((q) => q.name);
    attributes.push(["dead letters of", sources.length ? sources.join(", ") : "-"]);
    attributes.push(["created", new Date(queue.created_at * 1000).toISOString()]);
    keyValues($("attributes"), attributes);
    const counters = ["sent", "received", "acked", "expired", "released", "dropped", "dead_lettered", "redriven"];
    keyValues($("counters"), counters.map((key) => [key, count(queue[key])]));
    setText(
      $("redrive-hint"),
      sources.length
        ? `Redrive moves this dead-letter queue's ready messages back to ${sources.join(", ")}.`
        : "Redrive moves ready dead letters back to the queues they came from (this queue is no queue's dead-letter queue).",
    );
    const key = JSON.stringify([queue.ready, queue.leased, queue.delayed, queue.sent, queue.received, queue.acked]);
    if (key !== latestKey) {
      latestKey = key;
      if ($("auto").checked) scheduleReload();
    }
  }

  function renderRates() {
    const known = rates.of(name);
    const current = known && known.rates;
    setText(field("send-rate"), rate(current && current.send));
    setText(field("ack-rate"), rate(current && current.ack));
    setText(field("redeliver-rate"), rate(current && current.redeliver));
    $("chart").replaceChildren(rateChart(known ? known.history : [], 1100, 120, true));
  }

  function keyValues(table, pairs) {
    table.replaceChildren(...pairs.map(([key, value]) => el("tr", {}, el("th", {}, key), el("td", {}, value))));
  }

  // ---- the message browser ----

  function preview(message, limit) {
    let text;
    if (message.encoding === "json") text = JSON.stringify(message.body, null, limit > PREVIEW_CHARS ? 2 : 0);
    else if (message.encoding === "text") text = message.body;
    else text = `base64: ${message.body_base64}`;
    return text.length > limit ? `${text.slice(0, limit)}…` : text;
  }

  function leaseEnds(message) {
    if (message.lease_expires_at === null) return message.visible_at === null ? "-" : `visible in ${duration(message.visible_at - serverNow())}`;
    return `in ${duration(message.lease_expires_at - serverNow())}`;
  }

  function details(message) {
    const facts = [
      ["content type", message.content_type],
      ["priority", message.priority],
      ["sent", new Date(message.sent_at * 1000).toISOString()],
      ["first received", message.first_received_at ? new Date(message.first_received_at * 1000).toISOString() : "-"],
      ["group", message.group === null ? "-" : message.group],
      ["dedup id", message.dedup_id === null ? "-" : message.dedup_id],
      ["dead-lettered from", message.source_queue === null ? "-" : message.source_queue],
      ["attributes", Object.keys(message.attributes).length ? JSON.stringify(message.attributes) : "-"],
    ];
    return el(
      "div",
      { class: "details" },
      el("table", { class: "kv" }, facts.map(([key, value]) => el("tr", {}, el("th", {}, key), el("td", {}, value)))),
      el("pre", { class: "body" }, preview(message, DETAIL_CHARS)),
    );
  }

  function messageRow(message) {
    const remove = el(
      "button",
      {
        type: "button",
        class: "small danger",
        title: "delete this message",
        onclick: (event) => {
          event.stopPropagation();
          deleteMessage(message.id);
        },
      },
      "Delete",
    );
    const row = el(
      "tr",
      { class: "message", "data-id": message.id, "data-state": message.state },
      el("td", { class: "id" }, message.id),
      el("td", {}, el("span", { class: `state ${message.state}` }, message.state)),
      el("td", { class: "num" }, count(message.receive_count)),
      el("td", { class: "num", "data-sent-at": message.sent_at }, age(message.sent_at)),
      el("td", { class: "num", "data-lease": "" }, leaseEnds(message)),
      el("td", {}, message.consumer === null ? "-" : message.consumer),
      el("td", { class: "preview", title: preview(message, 2000) }, preview(message, PREVIEW_CHARS)),
      el("td", {}, remove),
    );
    row.message = message;
    row.addEventListener("click", () => {
      const next = row.nextElementSibling;
      if (next && next.classList.contains("expanded")) next.remove();
      else row.after(el("tr", { class: "expanded" }, el("td", { colspan: 8 }, details(message))));
    });
    return row;
  }

  async function load() {
    if (loading) return;
    loading = true;
    lastLoadMs = Date.now();
    const parameters = new URLSearchParams({ limit: $("limit").value });
    if ($("state").value) parameters.set("state", $("state").value);
    const after = pages[pages.length - 1];
    if (after) parameters.set("after", after);
    try {
      const page = await api("GET", apiUrl(name, `/messages?${parameters}`));
      $("message-rows").replaceChildren(...page.messages.map(messageRow));
      $("no-messages").hidden = page.messages.length > 0;
      $("next").disabled = page.next_after === null;
      $("next").dataset.after = page.next_after || "";
      $("previous").disabled = pages.length <= 1;
      $("first").disabled = pages.length <= 1;
      setText($("page-info"), `page ${pages.length} · ${page.messages.length} shown`);
    } catch (error) {
      $("message-rows").replaceChildren();
      setText($("page-info"), `could not load messages: ${error.message}`);
    } finally {
      loading = false;
    }
  }

  function scheduleReload() {
    if (reloadTimer !== null) return;
    const wait = Math.max(0, lastLoadMs + REFRESH_MS - Date.now());
    reloadTimer = setTimeout(() => {
      reloadTimer = null;
      load();
    }, wait);
  }

  function restart() {
    pages = [null];
    load();
  }

  $("state").addEventListener("change", restart);
  $("limit").addEventListener("change", restart);
  $("first").addEventListener("click", restart);
  $("refresh").addEventListener("click", () => load());
  $("next").addEventListener("click", () => {
    if (!$("next").dataset.after) return;
    pages.push($("next").dataset.after);
    load();
  });
  $("previous").addEventListener("click", () => {
    if (pages.length > 1) pages.pop();
    load();
  });

  // ---- actions, each confirmed ----

  async function act(question, perform, describe) {
    if (!window.confirm(question)) return;
    try {
      describe(await perform());
      restart();
    } catch (error) {
      result(`Failed: ${error.message}`, true);
    }
  }

  $("purge").addEventListener("click", () => {
    const total = latest ? latest.ready + latest.leased + latest.delayed : "all";
    act(
      `Purge queue ${name}? This deletes all ${total} messages, leased ones included. It cannot be undone.`,
      () => api("POST", apiUrl(name, "/purge")),
      (reply) => result(`Purged ${count(reply.purged)} messages.`),
    );
  });

  $("redrive").addEventListener("click", () => {
    act(
      `Redrive queue ${name}? Its ready dead letters go back to the queues they came from.`,
      () => api("POST", apiUrl(name, "/redrive")),
      (reply) => result(`Moved ${count(reply.moved)} messages back; ${count(reply.skipped)} had nowhere to go.`),
    );
  });

  function deleteMessage(id) {
    act(
      `Delete message ${id} from queue ${name}? A consumer holding it will not be able to acknowledge it.`,
      () => api("POST", `/dashboard/api/queues/${encodeURIComponent(name)}/messages/${encodeURIComponent(id)}/delete`),
      () => result(`Deleted message ${id}.`),
    );
  }

  // ---- start ----

  WQ.followStats(
    (snapshot) => {
      rates.update(snapshot);
      renderStats(snapshot);
    },
    (state) => WQ.showStatus($("status"), state),
  );

  setInterval(() => {
    if (rates.idle()) renderRates();
    for (const cell of document.querySelectorAll("[data-sent-at]")) setText(cell, age(Number(cell.dataset.sentAt)));
    for (const row of document.querySelectorAll("tr.message")) setText(row.querySelector("[data-lease]"), leaseEnds(row.message));
    if (latest) setText(field("oldest"), age(latest.oldestSentAt));
  }, 1000);

  load();
})();
