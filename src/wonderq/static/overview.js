// WonderQ dashboard, the overview page (/): every queue with its counts, oldest-message age, rates and a chart,
// live from /v1/events. Rows are keyed by queue name (data-queue) and updated in place.
"use strict";

(() => {
  const { el, setText, count, rate, age, queueUrl, rateChart } = WQ;
  const rows = document.getElementById("queue-rows");
  const empty = document.getElementById("empty");
  const summary = document.getElementById("summary");
  const status = document.getElementById("status");
  const rates = new WQ.Rates();
  const byName = new Map(); // queue name -> its row's cells
  let latest = null;

  function row(name) {
    let cells = byName.get(name);
    if (cells) return cells;
    const cell = (field, extra) => el("td", { class: extra || "num", "data-field": field }, "-");
    cells = {
      ready: cell("ready"),
      leased: cell("leased"),
      delayed: cell("delayed"),
      oldest: cell("oldest"),
      send: cell("send-rate"),
      ack: cell("ack-rate"),
      redeliver: cell("redeliver-rate"),
      chart: cell("chart", "chart"),
    };
    cells.row = el(
      "tr",
      { "data-queue": name },
      el("td", { class: "name" }, el("a", { href: queueUrl(name) }, name)),
      cells.ready,
      cells.leased,
      cells.delayed,
      cells.oldest,
      cells.send,
      cells.ack,
      cells.redeliver,
      cells.chart,
    );
    byName.set(name, cells);
    return cells;
  }

  function render() {
    if (!latest) return;
    const names = new Set();
    let ready = 0;
    let leased = 0;
    for (const queue of latest.queues) {
      names.add(queue.name);
      ready += queue.ready;
      leased += queue.leased;
      const cells = row(queue.name);
      setText(cells.ready, count(queue.ready));
      setText(cells.leased, count(queue.leased));
      setText(cells.delayed, count(queue.delayed));
      setText(cells.oldest, age(latest.oldest[queue.name]));
      const known = rates.of(queue.name);
      const current = known && known.rates;
      setText(cells.send, rate(current && current.send));
      setText(cells.ack, rate(current && current.ack));
      setText(cells.redeliver, rate(current && current.redeliver));
      cells.chart.replaceChildren(rateChart(known ? known.history : [], 200, 26, false));
      rows.append(cells.row); // in the snapshot's order (by name); moves an existing row
    }
    for (const [name, cells] of byName) {
      if (!names.has(name)) {
        cells.row.remove();
        byName.delete(name);
      }
    }
    empty.hidden = latest.queues.length > 0;
    setText(
      summary,
      `${count(latest.queues.length)} queues · ${count(ready)} ready · ${count(leased)} leased · ` +
        `backlog ${count(latest.backlog)} · long polls ${count(latest.parked)}`,
    );
  }

  WQ.followStats(
    (snapshot) => {
      latest = snapshot;
      rates.update(snapshot);
      render();
    },
    (state) => WQ.showStatus(status, state),
  );

  setInterval(() => {
    rates.idle();
    render(); // ages move on every second
  }, 1000);
})();
