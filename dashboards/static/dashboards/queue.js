/* The review queue and the case page: case rows follow every analyst's claims and verdicts live. */
(function () {
  "use strict";

  const MAX_INSERTS_PER_MESSAGE = 20;

  function start() {
    const desk = window.FraudDesk;
    const config = JSON.parse(document.getElementById("queue-config").textContent);
    const queue = document.getElementById("queue"); // only on the queue page
    const openQueue = queue && queue.dataset.view === "open" ? queue : null; // not the overturned verdicts
    const audit = document.getElementById("audit"); // only on the case page (its id never changes)
    const filter = document.getElementById("queue-filter");

    const rowUrl = (id) => config.case_row_url.replace("/0/", `/${id}/`);

    // --- queue filter: all / unclaimed / mine -----------------------------------------------------

    function applyFilter(row) {
      const show = filter ? filter.querySelector("input:checked").value : "all";
      const assignee = row.dataset.assignee || "";
      row.hidden =
        (show === "unclaimed" && assignee !== "") || (show === "mine" && assignee !== queue.dataset.user);
    }

    function refreshEmpty() {
      const empty = document.getElementById("queue-empty");
      if (!queue || !empty) return;
      empty.hidden = Array.from(queue.children).some((row) => !row.hidden);
    }

    function filterAll() {
      if (!queue) return;
      for (const row of queue.children) applyFilter(row);
      refreshEmpty();
    }

    if (filter) filter.addEventListener("change", filterAll);
    // A row swapped in by htmx (after a click or a push) gets the current filter too.
    document.addEventListener("htmx:load", (event) => {
      const row = event.detail.elt;
      if (queue && row.parentElement === queue) {
        applyFilter(row);
        refreshEmpty();
      }
    });

    // --- rows follow pushed changes ------------------------------------------------------------------

    function refreshRow(event) {
      const row = document.getElementById(`case-${event.id}`);
      if (!row) {
        if (openQueue && event.status === "open") insertRow(event.id, event.score || 0);
        return;
      }
      // An open row already showing this state (e.g. our own click's answer): keep it and any note being typed.
      // A resolved row has nothing to type in, and may have changed without changing state (overturned).
      const same = row.dataset.status === event.status && row.dataset.assignee === (event.assignee || "");
      if (same && event.status === "open") return;
      window.htmx.ajax("GET", rowUrl(event.id), { target: row, swap: "outerHTML" });
    }

    async function insertRow(id, score) {
      const limit = Number(queue.dataset.limit || config.limit || 200);
      const rows = queue.querySelectorAll(".case-row");
      if (rows.length >= limit && score <= Number(rows[rows.length - 1].dataset.score)) return;
      const response = await fetch(rowUrl(id), { headers: { "HX-Request": "true" }, credentials: "same-origin" });
      if (!response.ok || document.getElementById(`case-${id}`)) return;
      const holder = document.createElement("template");
      holder.innerHTML = (await response.text()).trim();
      const row = holder.content.firstElementChild;
      if (!row) return;
      // Riskiest first, as the server orders them: by score, then by id.
      let before = queue.firstElementChild;
      while (
        before &&
        (Number(before.dataset.score) > score ||
          (Number(before.dataset.score) === score && Number(before.dataset.caseId) < id))
      ) {
        before = before.nextElementSibling;
      }
      queue.insertBefore(row, before);
      row.classList.add("is-new");
      window.htmx.process(row);
      desk.enhance(row);
      applyFilter(row);
      refreshEmpty();
    }

    /** On the case page: re-read the page once and take its audit trail and label (markup stays in case.html). */
    async function refreshCasePage(event) {
      if (!audit || String(event.id) !== audit.dataset.caseId) return;
      const response = await fetch(window.location.pathname, { credentials: "same-origin" });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const id of ["audit", "tx-label", "case-verdict"]) {
        const fresh = page.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current) {
          current.replaceWith(fresh);
          desk.enhance(fresh);
        }
      }
    }

    function onMessage(message) {
      if (message.type === "case") {
        refreshRow(message);
        refreshCasePage(message);
      } else if (message.type === "transactions" && openQueue && Array.isArray(message.items)) {
        message.items
          .filter((item) => item.case_id && item.decision !== "approve")
          .sort((a, b) => b.score - a.score)
          .slice(0, MAX_INSERTS_PER_MESSAGE)
          .forEach((item) => {
            // A transaction that joined a case already shown changes its count and figures: fetch the row again.
            const row = document.getElementById(`case-${item.case_id}`);
            if (row) window.htmx.ajax("GET", rowUrl(item.case_id), { target: row, swap: "outerHTML" });
            else insertRow(item.case_id, item.score);
          });
      } else if (message.type === "stats" && typeof message.open_cases === "number") {
        const count = document.getElementById("queue-count");
        if (count) {
          count.dataset.number = message.open_cases;
          count.textContent = desk.number(message.open_cases);
        }
      }
    }

    filterAll();
    desk.connect({ onMessage });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
