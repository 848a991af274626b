/* The review queue and the case page: case rows follow every analyst's claims and verdicts live. */
(function () {
  "use strict";

  const MAX_INSERTS_PER_MESSAGE = 20;

  function start() {
    const desk = window.FraudDesk;
    const config = JSON.parse(document.getElementById("queue-config").textContent);
    const queue = document.getElementById("queue"); // only on the queue page
    const audit = document.getElementById("audit"); // only on the case page (its id never changes)
    // The part of the page's server-side filter a pushed case can be checked against (null on the case page).
    const filter = queue ? config.filter : null;
    const news = document.getElementById("queue-news");
    const unseen = new Set(); // pushed cases that may belong in this view but are not on the page

    const rowUrl = (id) => config.case_row_url.replace("/0/", `/${id}/`);

    // --- the filter bar ------------------------------------------------------------------------------

    // Fields left empty are not sent: a bookmarked URL says only what was chosen.
    const form = document.getElementById("queue-filters");
    if (form) {
      form.addEventListener("formdata", (event) => {
        for (const [name, value] of Array.from(event.formData.entries())) {
          if (value === "") event.formData.delete(name);
        }
      });
    }

    /** Whether a case, as a push or its row describes it, passes what the browser can check of the filter. */
    function passes(c) {
      if (!filter) return false;
      if (filter.status !== "any" && c.status !== filter.status) return false;
      if (filter.decision && c.decision !== filter.decision) return false;
      if (filter.score_min !== null && c.score < filter.score_min) return false;
      if (filter.score_max !== null && c.score > filter.score_max) return false;
      if (filter.overturned && c.overturned === false) return false;
      if (c.card_id !== undefined && !cardOrNumber(c.card_id, c.id)) return false;
      const who = c.assignee || "";
      if (filter.assignee === "unclaimed") return who === "";
      if (filter.assignee === "mine") return who === queue.dataset.user;
      return !filter.assignee || who === filter.assignee;
    }

    /** The filter's `q`: a card id's beginning (compared by code point, as the server's range is) or a case number. */
    function cardOrNumber(cardId, caseId) {
      if (!filter.q) return true;
      return String(cardId).startsWith(filter.q) || String(caseId) === filter.q.replace(/^#/, "");
    }

    function described(row) {
      const decision = ["block", "review", "approve"].find((d) => row.classList.contains(`tx-${d}`));
      return {
        status: row.dataset.status,
        decision,
        score: Number(row.dataset.score),
        assignee: row.dataset.assignee || "",
      };
    }

    /** A new alert of a case can only raise its score and decision, and a push names who held it then: rule out
     * only what that makes certain (the row, fetched, is checked in full). */
    function mayPass(item) {
      // Its case is open: not a verdict, let alone an overturned one.
      if (!filter || filter.overturned || (filter.status !== "any" && filter.status !== "open")) return false;
      if (filter.decision === "review" && item.decision === "block") return false;
      if (filter.score_max !== null && item.score > filter.score_max) return false;
      if (!cardOrNumber(item.card_id, item.case_id)) return false;
      const unclaimed = !item.state || item.state === "unclaimed";
      if (filter.assignee === "unclaimed") return unclaimed;
      return !filter.assignee || !unclaimed;
    }

    /** A row whose case has changed so that it no longer matches stays (the analyst sees what happened), marked. */
    function markRow(row) {
      if (!filter || !row.classList || !row.classList.contains("case-row")) return;
      const outside = !passes(described(row));
      row.classList.toggle("is-outside", outside);
      if (outside) row.title = "Changed since the page loaded: no longer matches these filters";
      else row.removeAttribute("title");
    }

    function refreshEmpty() {
      const empty = document.getElementById("queue-empty");
      if (!queue || !empty) return;
      empty.hidden = queue.querySelector(".case-row") !== null;
    }

    /** Cases this page cannot place itself: say how many, and offer the refresh that asks the server. */
    function noteUnseen(id) {
      if (!news || unseen.has(id)) return;
      unseen.add(id);
      const n = unseen.size;
      document.getElementById("queue-news-text").textContent =
        `${desk.number(n)} new or changed ${n === 1 ? "case" : "cases"} may match these filters.`;
      news.hidden = false;
    }

    // A row swapped in by htmx (after a click or a push) is checked against the filter too.
    document.addEventListener("htmx:load", (event) => {
      const row = event.detail.elt;
      if (queue && row.parentElement === queue) {
        markRow(row);
        refreshEmpty();
      }
    });

    // --- rows follow pushed changes ------------------------------------------------------------------

    function refreshRow(event) {
      const row = document.getElementById(`case-${event.id}`);
      if (!row) {
        if (passes(event)) offer(event.id, event.score || 0);
        return;
      }
      // An open row already showing this state (e.g. our own click's answer): keep it and any note being typed.
      // A resolved row has nothing to type in, and may have changed without changing state (overturned).
      const same = row.dataset.status === event.status && row.dataset.assignee === (event.assignee || "");
      if (same && event.status === "open") return;
      window.htmx.ajax("GET", rowUrl(event.id), { target: row, swap: "outerHTML" });
    }

    /** A pushed case not on the page that may match: placed here when the page can place it, else counted. */
    function offer(id, score) {
      if (filter && filter.insert) insertRow(id, score);
      else if (filter) noteUnseen(id);
    }

    async function insertRow(id, score) {
      const limit = Number(queue.dataset.limit || config.limit);
      const rows = queue.querySelectorAll(".case-row");
      // A full page whose last case outranks it: the case belongs on a later page.
      if (rows.length >= limit && score <= Number(rows[rows.length - 1].dataset.score)) return;
      const response = await fetch(rowUrl(id), { headers: { "HX-Request": "true" }, credentials: "same-origin" });
      if (!response.ok || document.getElementById(`case-${id}`)) return;
      const holder = document.createElement("template");
      holder.innerHTML = (await response.text()).trim();
      const row = holder.content.firstElementChild;
      if (!row || !passes(described(row))) return;
      const rank = Number(row.dataset.score);
      // Riskiest first, as the server orders them: by score, then by id.
      let before = queue.firstElementChild;
      while (
        before &&
        (Number(before.dataset.score) > rank ||
          (Number(before.dataset.score) === rank && Number(before.dataset.caseId) < id))
      ) {
        before = before.nextElementSibling;
      }
      queue.insertBefore(row, before);
      row.classList.add("is-new");
      window.htmx.process(row);
      desk.enhance(row);
      // The page keeps its size: the case it pushed out is the next page's first.
      const all = queue.querySelectorAll(".case-row");
      if (all.length > limit) all[all.length - 1].remove();
      refreshEmpty();
    }

    /** On the case page: re-read the page once and take its audit trail and label (markup stays in case.html). */
    async function refreshCasePage(event) {
      if (!audit || String(event.id) !== audit.dataset.caseId) return;
      const response = await fetch(window.location.pathname, { credentials: "same-origin" });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const id of ["audit", "tx-label", "case-verdict", "case-alerts"]) {
        const fresh = page.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current) {
          keepChoices(current, fresh);
          current.replaceWith(fresh);
          desk.enhance(fresh);
        }
      }
    }

    /** Labels the analyst picked in a piece being replaced (the case's transactions) stay picked. */
    function keepChoices(current, fresh) {
      for (const select of current.querySelectorAll("select[id]")) {
        const twin = fresh.querySelector(`#${CSS.escape(select.id)}`);
        if (twin) twin.value = select.value;
      }
    }

    function onMessage(message) {
      if (message.type === "transactions" && audit && Array.isArray(message.items)) {
        // On a case page: a transaction that joined this case changes its transactions and figures.
        const joined = message.items.find((item) => String(item.case_id) === audit.dataset.caseId);
        if (joined) {
          refreshCasePage({ id: joined.case_id });
          const row = document.getElementById(`case-${joined.case_id}`);
          if (row) window.htmx.ajax("GET", rowUrl(joined.case_id), { target: row, swap: "outerHTML" });
        }
      }
      if (message.type === "case") {
        refreshRow(message);
        refreshCasePage(message);
      } else if (message.type === "transactions" && filter && Array.isArray(message.items)) {
        message.items
          .filter((item) => item.case_id && item.decision !== "approve")
          .sort((a, b) => b.score - a.score)
          .slice(0, MAX_INSERTS_PER_MESSAGE)
          .forEach((item) => {
            // A transaction that joined a case already shown changes its count and figures: fetch the row again.
            const row = document.getElementById(`case-${item.case_id}`);
            if (row) window.htmx.ajax("GET", rowUrl(item.case_id), { target: row, swap: "outerHTML" });
            else if (mayPass(item)) offer(item.case_id, item.score);
          });
      } else if (message.type === "stats" && filter && filter.unfiltered && typeof message.open_cases === "number") {
        // Only the unfiltered queue counts every open case.
        const count = document.getElementById("queue-count");
        if (count) {
          count.dataset.number = message.open_cases;
          count.textContent = desk.number(message.open_cases);
        }
      }
    }

    if (queue) queue.querySelectorAll(".case-row").forEach(markRow);
    desk.connect({ onMessage });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
