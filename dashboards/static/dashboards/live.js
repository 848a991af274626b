/* The live page: pushed transactions into the feed, figures and charts, the open-cases panel. */
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";

  function start() {
    const desk = window.FraudDesk;
    const config = JSON.parse(document.getElementById("feed-config").textContent);
    const feed = document.getElementById("feed");
    const template = document.getElementById("tx-row-template");
    const filters = document.getElementById("feed-filters");
    const minScore = document.getElementById("filter-min-score");
    const maxRows = config.max_rows || 200;
    const seen = new Set();
    let maxId = 0;

    for (const row of feed.querySelectorAll("tr.tx")) {
      const id = Number(row.dataset.id);
      seen.add(id);
      maxId = Math.max(maxId, id);
    }

    // --- filters (client-side, for server rows and pushed rows alike) ---------------------------

    function wanted() {
      const decisions = new Set(
        Array.from(filters.querySelectorAll('input[name="decision"]:checked')).map((box) => box.value),
      );
      const floor = Number.parseFloat(minScore.value);
      return { decisions, floor: Number.isFinite(floor) ? floor : 0 };
    }

    function applyFilter(row, want) {
      row.hidden = !(want.decisions.has(row.dataset.decision) && Number(row.dataset.score) >= want.floor);
    }

    function refreshCount() {
      const total = feed.rows.length;
      let shown = 0;
      for (const row of feed.rows) if (!row.hidden) shown += 1;
      document.getElementById("feed-count").textContent =
        shown === total ? `${desk.number(total)} shown` : `${desk.number(shown)} of ${desk.number(total)} shown`;
      const empty = document.getElementById("feed-empty");
      empty.hidden = shown > 0;
      for (const el of empty.querySelectorAll("[data-empty]")) {
        el.hidden = (el.dataset.empty === "filtered") !== (total > 0);
      }
    }

    function filterAll() {
      const want = wanted();
      for (const row of feed.rows) applyFilter(row, want);
      refreshCount();
    }

    filters.addEventListener("input", filterAll);
    filters.addEventListener("change", filterAll);
    filters.addEventListener("submit", (event) => event.preventDefault());

    // --- rows --------------------------------------------------------------------------------------

    function fill(row, item) {
      const field = (name) => row.querySelector(`[data-field="${name}"]`);
      row.id = `tx-${item.id}`;
      row.className = `tx tx-${item.decision}`;
      row.dataset.id = item.id;
      row.dataset.decision = item.decision;
      row.dataset.score = item.score;
      const time = field("timestamp");
      time.setAttribute("datetime", item.timestamp);
      desk.formatTime(time);
      field("external_id").textContent = item.external_id;
      field("card_id").textContent = item.card_id;
      field("merchant_id").textContent = item.merchant_id;
      const amount = field("amount");
      amount.dataset.money = item.amount;
      amount.dataset.currency = item.currency;
      amount.textContent = desk.money(item.amount, item.currency);
      field("score").textContent = Number(item.score).toFixed(3);
      field("scorebar").style.width = `${Math.round(Number(item.score) * 100)}%`;
      const badge = field("decision");
      badge.className = `badge badge-${item.decision}`;
      badge.textContent = item.decision.charAt(0).toUpperCase() + item.decision.slice(1);
      field("reasons").textContent = item.reason_text;
      const link = field("case");
      link.hidden = !item.case_id;
      if (item.case_id) {
        link.href = config.case_url.replace("/0/", `/${item.case_id}/`);
        link.textContent = `#${item.case_id}`;
        field("case_state").textContent = item.case_state;
      }
    }

    // Rows highlighted in the last HIGHLIGHT_MS: at most HIGHLIGHT_MAX at once. Under heavy load, animating every
    // new row kept hundreds of animations running and the page's frame rate fell (bench/browser_load.py).
    const HIGHLIGHT_MS = 1600;
    const HIGHLIGHT_MAX = 12;
    let highlighted = [];

    function highlight(row) {
      const now = performance.now();
      highlighted = highlighted.filter((at) => now - at < HIGHLIGHT_MS);
      if (highlighted.length >= HIGHLIGHT_MAX) return;
      highlighted.push(now);
      row.classList.add("is-new");
      row.addEventListener("animationend", () => row.classList.remove("is-new"), { once: true });
    }

    /** Insert pushed items (newest first), once each, keeping the table at most `maxRows` long. */
    function addItems(items) {
      const fresh = items.filter((item) => !seen.has(item.id)).sort((a, b) => a.id - b.id).slice(-maxRows);
      if (!fresh.length) return;
      const want = wanted();
      for (const item of fresh) {
        seen.add(item.id);
        maxId = Math.max(maxId, item.id);
        const row = template.content.firstElementChild.cloneNode(true);
        fill(row, item);
        applyFilter(row, want);
        highlight(row);
        let before = feed.firstElementChild;
        while (before && Number(before.dataset.id) > item.id) before = before.nextElementSibling;
        feed.insertBefore(row, before);
      }
      while (feed.rows.length > maxRows) {
        const last = feed.lastElementChild;
        seen.delete(Number(last.dataset.id));
        last.remove();
      }
      refreshCount();
    }

    function updateCase(event) {
      // A case's message names its newest alerts: the feed rows whose case state it changes.
      for (const id of event.alert_ids || []) {
        const row = document.getElementById(`tx-${id}`);
        const state = row && row.querySelector('[data-field="case_state"]');
        if (state) state.textContent = event.state;
      }
    }

    // --- figures and charts ----------------------------------------------------------------------

    function setNumber(id, value) {
      const el = document.getElementById(id);
      if (!el || value === undefined || value === null) return;
      el.dataset.number = value;
      el.textContent = desk.number(value, {
        digits: Number(el.dataset.digits || 0),
        style: el.dataset.style === "percent" ? "percent" : "decimal",
      });
    }

    // The open-case count comes from two places: the socket's stats (the process counts once a second)
    // and the panel, re-fetched when a case changes. The freshest count wins, so the figure agrees with
    // the panel the moment the panel changes and an older stats count never puts it back.
    let openCasesAt = 0;
    function setOpenCases(count, countedAt) {
      if (count === undefined || count === null) return;
      if (typeof countedAt === "number") {
        if (countedAt < openCasesAt) return;
        openCasesAt = countedAt;
      }
      setNumber("stat-open-cases", count);
    }

    function updateFigures(stats) {
      setNumber("stat-rate", stats.rate);
      setNumber("stat-count", stats.count_15m);
      setNumber("stat-flagged", stats.flagged_share);
      setNumber("stat-blocked", stats.blocked_count);
      setNumber("stat-blocked-amount", stats.blocked_amount);
      setOpenCases(stats.open_cases, stats.open_cases_at);
      if (Array.isArray(stats.histogram)) drawHistogram(stats.histogram);
      if (Array.isArray(stats.volume)) drawVolume(stats.volume);
    }

    function el(name, attrs, parent) {
      const node = document.createElementNS(SVG, name);
      for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
      if (parent) parent.appendChild(node);
      return node;
    }

    function canvas(container, label) {
      const svg = el("svg", { viewBox: "0 0 320 140", preserveAspectRatio: "none", class: "chart-svg" });
      svg.setAttribute("aria-label", label);
      svg.setAttribute("role", "img");
      container.replaceChildren(svg);
      return svg;
    }

    function niceMax(value) {
      if (value <= 5) return 5;
      const magnitude = 10 ** Math.floor(Math.log10(value));
      for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * magnitude) return step * magnitude;
      return 10 * magnitude;
    }

    const PLOT = { left: 36, right: 312, top: 8, bottom: 118 };

    function axes(svg, top) {
      const mid = PLOT.top + (PLOT.bottom - PLOT.top) / 2;
      for (const [y, value] of [[PLOT.top, top], [mid, top / 2], [PLOT.bottom, 0]]) {
        el("line", { x1: PLOT.left, x2: PLOT.right, y1: y, y2: y, class: "grid" }, svg);
        const text = el("text", { x: PLOT.left - 5, y: y + 3, class: "tick", "text-anchor": "end" }, svg);
        text.textContent = desk.number(value, { digits: Number.isInteger(value) ? 0 : 1 });
      }
    }

    function drawHistogram(bins) {
      const container = document.getElementById("chart-histogram");
      const total = bins.reduce((a, b) => a + b, 0);
      const svg = canvas(container, `Score histogram of ${total} transactions`);
      const top = niceMax(Math.max(...bins, 1));
      axes(svg, top);
      const width = (PLOT.right - PLOT.left) / bins.length;
      bins.forEach((count, i) => {
        const low = i / bins.length;
        const high = (i + 1) / bins.length;
        const kind = low >= config.block_threshold ? "block" : high > config.review_threshold ? "review" : "approve";
        const h = ((PLOT.bottom - PLOT.top) * count) / top;
        const bar = el("rect", {
          x: PLOT.left + i * width + 2, y: PLOT.bottom - h, width: width - 4, height: Math.max(h, 0),
          rx: 2, class: `bar bar-${kind}`,
        }, svg);
        el("title", {}, bar).textContent = `score ${low.toFixed(1)}–${high.toFixed(1)}: ${desk.number(count)}`;
      });
      for (const [x, label] of [[PLOT.left, "0"], [(PLOT.left + PLOT.right) / 2, "0.5"], [PLOT.right, "1"]]) {
        el("text", { x, y: 134, class: "tick", "text-anchor": "middle" }, svg).textContent = label;
      }
    }

    function drawVolume(minutes) {
      const container = document.getElementById("chart-volume");
      const counts = minutes.map((m) => m.count || 0);
      const svg = canvas(container, `Transactions per minute, last ${minutes.length} minutes`);
      const top = niceMax(Math.max(...counts, 1));
      axes(svg, top);
      const width = (PLOT.right - PLOT.left) / minutes.length;
      const scale = (PLOT.bottom - PLOT.top) / top;
      const now = Date.now();
      const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
      minutes.forEach((m, i) => {
        const x = PLOT.left + i * width + 2;
        const all = (m.count || 0) * scale;
        const flagged = (m.flagged || 0) * scale;
        const group = el("g", {}, svg);
        el("rect", { x, y: PLOT.bottom - all, width: width - 4, height: all, rx: 2, class: "bar bar-volume" }, group);
        el("rect", { x, y: PLOT.bottom - flagged, width: width - 4, height: flagged, rx: 2, class: "bar bar-flagged" }, group);
        const at = clock.format(new Date(now - (minutes.length - 1 - i) * 60000));
        el("title", {}, group).textContent =
          `${at}: ${desk.number(m.count || 0)} transactions, ${desk.number(m.flagged || 0)} flagged`;
      });
      const left = `−${minutes.length - 1} min`;
      el("text", { x: PLOT.left, y: 134, class: "tick", "text-anchor": "start" }, svg).textContent = left;
      el("text", { x: PLOT.right, y: 134, class: "tick", "text-anchor": "end" }, svg).textContent = "now";
    }

    // --- open cases panel: re-fetched (at most once a second) when cases change -------------------

    let panelTimer = null;
    function refreshPanel() {
      if (panelTimer !== null || !window.htmx) return;
      panelTimer = window.setTimeout(() => {
        panelTimer = null;
        window.htmx.ajax("GET", config.open_cases_url, { target: "#open-cases", swap: "outerHTML" });
      }, 1000);
    }

    document.body.addEventListener("htmx:afterSwap", () => {
      const panel = document.getElementById("open-cases");
      if (panel && panel.dataset.openCount !== undefined) {
        setOpenCases(Number(panel.dataset.openCount), Number(panel.dataset.countedAt));
      }
    });

    // --- the socket --------------------------------------------------------------------------------

    // Pushed rows are drawn in an animation frame, at most every DRAW_MS (BUSY_DRAW_MS while draws carry
    // BUSY_ROWS or more: nobody reads a thousand rows a second), however many messages arrived since. So
    // under load the table is laid out a few times a second, not once per message, and the rest of the
    // page keeps its frame rate and answers clicks. A lone transaction still shows at once. Only the
    // newest maxRows wait (a hidden tab draws nothing, and keeps nothing more).
    const DRAW_MS = 100;
    const BUSY_DRAW_MS = 250;
    const BUSY_ROWS = 50;
    let waiting = [];
    let drawing = false;
    let lastDraw = -BUSY_DRAW_MS;
    let drawEvery = DRAW_MS;

    function scheduleDraw() {
      if (drawing) return;
      drawing = true;
      const wait = lastDraw + drawEvery - performance.now();
      if (wait > 0) window.setTimeout(() => window.requestAnimationFrame(draw), wait);
      else window.requestAnimationFrame(draw);
    }

    function draw() {
      drawing = false;
      lastDraw = performance.now();
      const items = waiting;
      waiting = [];
      drawEvery = items.length >= BUSY_ROWS ? BUSY_DRAW_MS : DRAW_MS;
      addItems(items);
      if (items.some((item) => item.case_id)) refreshPanel();
    }

    function onMessage(message) {
      if (message.type === "transactions" && Array.isArray(message.items)) {
        for (const item of message.items) maxId = Math.max(maxId, item.id);
        waiting = waiting.concat(message.items).slice(-maxRows);
        scheduleDraw();
      } else if (message.type === "stats") {
        updateFigures(message);
      } else if (message.type === "case") {
        updateCase(message);
        refreshPanel();
      }
    }

    updateFigures(JSON.parse(document.getElementById("initial-stats").textContent));
    filterAll();
    desk.connect({ onMessage, resumeFrom: () => maxId });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
