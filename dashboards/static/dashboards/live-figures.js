/* The live page's figures and charts, drawn from the socket's `stats` messages (live.js hands them over). */
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const TOP_CURRENCIES = 3; // blocked amounts shown before "more" (live.html's first render shows as many)

  /** The page's figures and charts; `config` gives the score thresholds. */
  function liveFigures(config) {
    const desk = window.FraudDesk;

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
      if (Array.isArray(stats.blocked_amounts)) showBlockedAmounts(stats.blocked_amounts);
      setOpenCases(stats.open_cases, stats.open_cases_at);
      if (Array.isArray(stats.histogram)) drawHistogram(stats.histogram);
      if (Array.isArray(stats.volume)) drawVolume(stats.volume);
    }

    const currencyTemplate = document.getElementById("blocked-currency-template");
    let blockedShown = "";

    /** Blocked amounts per currency (never added together): the most often blocked first, the rest behind "more". */
    function showBlockedAmounts(rows) {
      const key = JSON.stringify(rows);
      if (key === blockedShown) return; // once a second, and mostly unchanged: leave the DOM (and an open "more") be
      blockedShown = key;
      const item = (row) => {
        const li = currencyTemplate.content.firstElementChild.cloneNode(true);
        li.dataset.currency = row.currency;
        li.title = `${desk.number(row.count)} blocked in ${row.currency}`;
        const amount = li.querySelector('[data-field="amount"]');
        amount.dataset.money = row.amount;
        amount.dataset.currency = row.currency;
        amount.textContent = desk.money(row.amount, row.currency);
        return li;
      };
      document.getElementById("blocked-top").replaceChildren(...rows.slice(0, TOP_CURRENCIES).map(item));
      document.getElementById("blocked-rest").replaceChildren(...rows.slice(TOP_CURRENCIES).map(item));
      document.getElementById("blocked-more-count").textContent = rows.length - TOP_CURRENCIES;
      document.getElementById("blocked-more").hidden = rows.length <= TOP_CURRENCIES;
      document.getElementById("blocked-none").hidden = rows.length > 0;
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

    const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
    const MIN_BAR = 3; // a bin with anything in it is never drawn flat

    /** Scores on a log scale (powers of ten on the axis): at a thousand payments a second with one in twenty
     * flagged, the flagged bins hold a few thousand beside the approvals' hundreds of thousands, and a linear
     * scale draws them less than a pixel high. Each bar is labeled with its count. */
    function drawHistogram(bins) {
      const container = document.getElementById("chart-histogram");
      const total = bins.reduce((a, b) => a + b, 0);
      const svg = canvas(container, `Score histogram of ${total} transactions, log scale`);
      const decades = Math.max(1, Math.ceil(Math.log10(Math.max(...bins, 1))));
      const span = PLOT.bottom - PLOT.top;
      const y = (count) => PLOT.bottom - (span * Math.log10(1 + count)) / Math.log10(1 + 10 ** decades);
      const every = decades > 4 ? 2 : 1;
      for (let power = 0; power <= decades; power += 1) {
        const at = y(10 ** power);
        el("line", { x1: PLOT.left, x2: PLOT.right, y1: at, y2: at, class: "grid" }, svg);
        if ((decades - power) % every === 0) {
          el("text", { x: PLOT.left - 5, y: at + 3, class: "tick", "text-anchor": "end" }, svg)
            .textContent = compact.format(10 ** power);
        }
      }
      el("line", { x1: PLOT.left, x2: PLOT.right, y1: PLOT.bottom, y2: PLOT.bottom, class: "grid" }, svg);
      const width = (PLOT.right - PLOT.left) / bins.length;
      bins.forEach((count, i) => {
        const low = i / bins.length;
        const high = (i + 1) / bins.length;
        const kind = low >= config.block_threshold ? "block" : high > config.review_threshold ? "review" : "approve";
        const h = count > 0 ? Math.max(PLOT.bottom - y(count), MIN_BAR) : 0;
        const x = PLOT.left + i * width + 2;
        const bar = el("rect", { x, y: PLOT.bottom - h, width: width - 4, height: h, rx: 2, class: `bar bar-${kind}` });
        svg.appendChild(bar);
        el("title", {}, bar).textContent = `score ${low.toFixed(1)}–${high.toFixed(1)}: ${desk.number(count)}`;
        if (count > 0) {
          const at = { x: x + (width - 4) / 2, y: PLOT.bottom - h - 3, "text-anchor": "middle" };
          el("text", { ...at, class: "tick bar-count" }, svg).textContent = compact.format(count);
        }
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

    return { update: updateFigures, setOpenCases };
  }

  window.FraudDesk.liveFigures = liveFigures;
})();
