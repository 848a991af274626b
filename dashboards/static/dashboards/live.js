/* The live page: pushed transactions into the feed, older matching rows from the server, the open-cases panel;
   the figures and charts are live-figures.js's. */
(function () {
  "use strict";

  const ID_TAIL = 6; // the characters of an id always shown (live.html's tx-row keeps the same)
  const OLDER_MAX = 1000; // rows "load older" may add before the analyst is asked to narrow the filters
  const FETCH_DELAY_MS = 250; // typing a minimum score asks the server once, when the typing pauses

  function start() {
    const desk = window.FraudDesk;
    const config = JSON.parse(document.getElementById("feed-config").textContent);
    const figures = desk.liveFigures(config);
    const card = document.getElementById("feed-card");
    const feed = document.getElementById("feed");
    const older = document.getElementById("feed-older");
    const loadOlder = document.getElementById("feed-load-older");
    const olderStatus = document.getElementById("feed-older-status");
    const template = document.getElementById("tx-row-template");
    const filters = document.getElementById("feed-filters");
    const minScore = document.getElementById("filter-min-score");
    const boxes = Array.from(filters.querySelectorAll('input[name="decision"]'));
    const maxRows = config.max_rows || 200;
    const seen = new Set();
    let maxId = 0;
    let oldest = Infinity;

    for (const row of feed.querySelectorAll("tr.tx")) {
      const id = Number(row.dataset.id);
      seen.add(id);
      maxId = Math.max(maxId, id);
      oldest = Math.min(oldest, id);
    }

    // --- filters: at once on the rows held, then the server's matching rows ----------------------

    function wanted() {
      const decisions = new Set(boxes.filter((box) => box.checked).map((box) => box.value));
      const floor = Number.parseFloat(minScore.value);
      return { decisions, floor: Number.isFinite(floor) ? Math.min(Math.max(floor, 0), 1) : 0 };
    }

    function isFiltered(want) {
      return want.decisions.size < boxes.length || want.floor > 0;
    }

    function matches(want, decision, score) {
      return want.decisions.has(decision) && Number(score) >= want.floor;
    }

    function applyFilter(row, want) {
      row.hidden = !matches(want, row.dataset.decision, row.dataset.score);
    }

    function heldRows() {
      return [...feed.rows, ...older.rows];
    }

    function refreshCount() {
      const rows = heldRows();
      let shown = 0;
      for (const row of rows) if (!row.hidden) shown += 1;
      const held = desk.number(rows.length);
      document.getElementById("feed-count").textContent =
        shown === rows.length ? `${held} shown` : `${desk.number(shown)} of ${held} shown`;
      const empty = document.getElementById("feed-empty");
      const filtered = isFiltered(wanted());
      empty.hidden = shown > 0;
      for (const el of empty.querySelectorAll("[data-empty]")) {
        el.hidden = (el.dataset.empty === "filtered") !== filtered;
      }
    }

    function forget(row) {
      seen.delete(Number(row.dataset.id));
      row.remove();
    }

    // Where "load older" goes on: ids below `nextBefore`; null when the server said nothing older is left.
    let nextBefore = Number.isFinite(oldest) ? oldest : null;
    let generation = 0; // a filter change makes every answer still on its way stale
    let fetchTimer = null;

    /** The "load older" button and what it says; called on every draw, so it writes only what changed. */
    function showOlderState(text) {
      const full = older.rows.length >= OLDER_MAX;
      const said = text !== undefined ? text
        : full ? "Narrow the filters to see further back."
        : nextBefore === null && (feed.rows.length || older.rows.length) ? "No older matching transactions." : "";
      const hidden = nextBefore === null || full;
      if (loadOlder.hidden !== hidden) loadOlder.hidden = hidden;
      if (olderStatus.textContent !== said) olderStatus.textContent = said;
      const foot = loadOlder.parentElement;
      if (foot.hidden !== (hidden && !said)) foot.hidden = hidden && !said;
    }

    /** A page of rows matching the filters, ids below `before` (or the newest): {rows, nextBefore}. */
    async function fetchPage(want, before) {
      const query = new URLSearchParams();
      for (const decision of want.decisions) query.append("decision", decision);
      if (want.floor > 0) query.set("min_score", String(want.floor));
      if (before !== null && before !== undefined) query.set("before", String(before));
      // As htmx would: a lapsed session gets a 403 naming the login page, not the login page itself.
      const response = await fetch(`${card.dataset.feedUrl}?${query}`, { headers: { "HX-Request": "true" } });
      const login = response.headers.get("HX-Redirect");
      if (login) window.location.assign(login);
      if (!response.ok) throw new Error(`the feed answered ${response.status}`);
      const holder = document.createElement("template");
      holder.innerHTML = await response.text();
      const body = holder.content.querySelector("tbody");
      const next = body.dataset.nextBefore;
      return { rows: Array.from(body.rows), nextBefore: next ? Number(next) : null };
    }

    /** Put a server row into `body` in id order (newest first), once. */
    function place(body, row) {
      const id = Number(row.dataset.id);
      if (seen.has(id)) return;
      seen.add(id);
      desk.enhance(row);
      let before = body.firstElementChild;
      while (before && Number(before.dataset.id) > id) before = before.nextElementSibling;
      body.insertBefore(row, before);
    }

    /** The filters changed: hide what no longer matches at once, then ask the server for the newest matching
     * rows, older ones included, and keep only what matches. */
    const filterKey = (decisions, floor) => JSON.stringify([[...decisions].sort(), floor]);
    // The filters the rows held were asked for: the server's first rows are of every decision, any score.
    let asking = filterKey(boxes.map((box) => box.value), 0);

    function filtersChanged() {
      const want = wanted();
      // A number field also says "change" when it loses focus (to the "load older" button, say): same filters.
      const key = filterKey(want.decisions, want.floor);
      if (key === asking) return;
      asking = key;
      for (const row of heldRows()) applyFilter(row, want);
      refreshCount();
      generation += 1; // answers still on their way, "load older"'s included, are for the old filters
      loadOlder.disabled = true; // until the first page for these filters says where older rows start
      window.clearTimeout(fetchTimer);
      fetchTimer = window.setTimeout(() => showFirstPage(generation), FETCH_DELAY_MS);
    }

    async function showFirstPage(asked) {
      const want = wanted();
      card.setAttribute("aria-busy", "true");
      try {
        const page = want.decisions.size ? await fetchPage(want, null) : { rows: [], nextBefore: null };
        if (asked !== generation) return;
        for (const row of heldRows()) if (row.hidden) forget(row);
        for (const row of Array.from(older.rows)) forget(row);
        for (const row of page.rows) place(feed, row);
        // Rows held from before below the page would leave a gap above them: "load older" brings them back.
        if (page.nextBefore !== null) {
          for (const row of Array.from(feed.rows)) if (Number(row.dataset.id) < page.nextBefore) forget(row);
        }
        nextBefore = page.nextBefore;
        refreshCount();
        showOlderState();
      } catch (error) {
        if (asked === generation) showOlderState("Could not ask the server for matching transactions.");
      } finally {
        if (asked === generation) {
          card.removeAttribute("aria-busy");
          loadOlder.disabled = false;
        }
      }
    }

    async function showOlder() {
      const asked = generation;
      loadOlder.disabled = true;
      showOlderState("Loading…");
      try {
        const page = await fetchPage(wanted(), nextBefore);
        if (asked !== generation) return;
        for (const row of page.rows) place(older, row);
        nextBefore = page.nextBefore;
        refreshCount();
        showOlderState();
      } catch (error) {
        if (asked === generation) showOlderState("Could not load older transactions. Try again.");
      } finally {
        if (asked === generation) loadOlder.disabled = false;
      }
    }

    filters.addEventListener("input", filtersChanged);
    filters.addEventListener("change", filtersChanged);
    filters.addEventListener("submit", (event) => event.preventDefault());
    loadOlder.addEventListener("click", showOlder);

    // --- rows --------------------------------------------------------------------------------------

    /** An id cut in the middle: the whole id stays in the text (what a copy takes) and in the title. */
    function setId(el, id, title) {
      el.title = title;
      el.firstElementChild.textContent = id.slice(0, -ID_TAIL);
      el.lastElementChild.textContent = id.slice(-ID_TAIL);
    }

    function entityUrl(pattern, id) {
      return pattern.replace("__id__", encodeURIComponent(id).replaceAll("%2F", "/"));
    }

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
      setId(field("external_id"), item.external_id, item.external_id);
      const cardLink = field("card_id");
      setId(cardLink, item.card_id, `Card ${item.card_id}`);
      cardLink.href = entityUrl(card.dataset.cardUrl, item.card_id);
      const merchantLink = field("merchant_id");
      setId(merchantLink, item.merchant_id, `Merchant ${item.merchant_id}`);
      merchantLink.href = entityUrl(card.dataset.merchantUrl, item.merchant_id);
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
      const ruleNames = field("rule_names");
      if (ruleNames) {  // imported history's rows have no decision cell of the model's
        ruleNames.textContent = (item.rules || []).map((rule) => rule.name).join(", ");
        ruleNames.hidden = !ruleNames.textContent;
      }
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

    /** Insert pushed items that match the filters (newest first), once each, keeping the table at most `maxRows`
     * long. Those that do not match are left out: the server gives them back if the filters change. */
    function addItems(items) {
      const want = wanted();
      const fresh = items
        .filter((item) => !seen.has(item.id) && matches(want, item.decision, item.score))
        .sort((a, b) => a.id - b.id)
        .slice(-maxRows);
      if (!fresh.length) return;
      for (const item of fresh) {
        seen.add(item.id);
        maxId = Math.max(maxId, item.id);
        const row = template.content.firstElementChild.cloneNode(true);
        fill(row, item);
        highlight(row);
        let before = feed.firstElementChild;
        while (before && Number(before.dataset.id) > item.id) before = before.nextElementSibling;
        feed.insertBefore(row, before);
      }
      if (feed.rows.length > maxRows) {
        while (feed.rows.length > maxRows) forget(feed.lastElementChild);
        // Nothing loaded below yet: "load older" starts right under the rows still held, the dropped ones first.
        if (!older.rows.length) nextBefore = Number(feed.lastElementChild.dataset.id);
      }
      refreshCount();
      if (!loadOlder.disabled) showOlderState();
    }

    function updateCase(event) {
      // A case's message names its newest alerts: the feed rows whose case state it changes.
      for (const id of event.alert_ids || []) {
        const row = document.getElementById(`tx-${id}`);
        const state = row && row.querySelector('[data-field="case_state"]');
        if (state) state.textContent = event.state;
      }
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
        figures.setOpenCases(Number(panel.dataset.openCount), Number(panel.dataset.countedAt));
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
        figures.update(message);
      } else if (message.type === "case") {
        updateCase(message);
        refreshPanel();
      }
    }

    figures.update(JSON.parse(document.getElementById("initial-stats").textContent));
    filtersChanged(); // asks only for filters the browser kept from before a reload
    refreshCount();
    showOlderState();
    desk.connect({ onMessage, resumeFrom: () => maxId });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
