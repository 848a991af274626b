/* Fraud Desk: what every page shares — local times and numbers, and the dashboard socket. */
(function () {
  "use strict";

  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dayTimeFormat = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  const numberFormats = new Map();
  const moneyFormats = new Map();

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  /** Show a <time datetime="ISO"> in the analyst's timezone: time of day today, date and time otherwise. */
  function formatTime(el) {
    const value = el.getAttribute("datetime");
    if (!value) return;
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return;
    if (el.dataset.format === "datetime") el.textContent = dateTimeFormat.format(date);
    else el.textContent = sameDay(date, new Date()) ? timeFormat.format(date) : dayTimeFormat.format(date);
    el.title = fullFormat.format(date);
  }

  function number(value, { digits = 0, style = "decimal" } = {}) {
    const key = style + digits;
    if (!numberFormats.has(key)) {
      numberFormats.set(key, new Intl.NumberFormat(undefined, {
        style, minimumFractionDigits: digits, maximumFractionDigits: Math.max(digits, style === "percent" ? 1 : 0),
      }));
    }
    const n = Number(value);
    return Number.isFinite(n) ? numberFormats.get(key).format(n) : "—";
  }

  function money(amount, currency) {
    const n = Number(amount);
    if (!Number.isFinite(n)) return "";
    if (!moneyFormats.has(currency)) {
      let format = null;
      try {
        format = new Intl.NumberFormat(undefined, { style: "currency", currency });
      } catch (_) {
        format = null; // not an ISO 4217 code the browser knows: show the plain number and the code
      }
      moneyFormats.set(currency, format);
    }
    const format = moneyFormats.get(currency);
    return format ? format.format(n) : `${number(n, { digits: 2 })} ${currency}`;
  }

  function formatNumber(el) {
    el.textContent = number(el.dataset.number, {
      digits: Number(el.dataset.digits || 0),
      style: el.dataset.style === "percent" ? "percent" : "decimal",
    });
  }

  function formatMoney(el) {
    if (el.dataset.money) el.textContent = money(el.dataset.money, el.dataset.currency);
  }

  /** Format everything under `root` (the page, or content htmx just swapped in). */
  function enhance(root) {
    const scope = root || document;
    const pick = (selector) => {
      const found = Array.from(scope.querySelectorAll(selector));
      if (scope.matches && scope.matches(selector)) found.push(scope);
      return found;
    };
    pick("time[datetime]").forEach(formatTime);
    pick("[data-number]").forEach(formatNumber);
    pick("[data-money]").forEach(formatMoney);
  }

  /**
   * Open the dashboard socket and keep it open: reconnect with backoff (1 s, 2 s, 4 s … 10 s), and right
   * after every (re)connect ask for what was missed when `resumeFrom()` gives an id. Every handled frame
   * is acknowledged (the server's flow control).
   */
  function connect({ onMessage, resumeFrom = null }) {
    const status = document.getElementById("conn-status");
    const label = status && status.querySelector(".conn-text");
    let delay = 1000;
    let opened = false;

    function show(state, text) {
      if (!status) return;
      status.hidden = false;
      status.dataset.state = state;
      label.textContent = text;
    }

    function receive(socket, data) {
      let message;
      try {
        message = JSON.parse(data);
      } catch (_) {
        return;
      }
      if (!message || typeof message.type !== "string") return;
      onMessage(message);
      // Acknowledged once handled: a page too busy to keep up gets no more frames until it catches up,
      // and the server closes (then we resume) rather than queue without bound for it.
      if (Number.isInteger(message.seq) && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "ack", seq: message.seq }));
      }
    }

    function open() {
      const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(`${scheme}${window.location.host}/ws/dashboard/`);
      show(opened ? "reconnecting" : "connecting", opened ? "Reconnecting…" : "Connecting…");
      socket.addEventListener("open", () => {
        opened = true;
        delay = 1000;
        show("live", "Live");
        const afterId = resumeFrom ? resumeFrom() : null;
        if (afterId !== null && afterId !== undefined) socket.send(JSON.stringify({ type: "resume", after_id: afterId }));
      });
      socket.addEventListener("message", (event) => receive(socket, event.data));
      socket.addEventListener("close", () => {
        show("reconnecting", `Reconnecting in ${delay / 1000} s`);
        window.setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      });
    }

    open();
  }

  window.FraudDesk = { enhance, formatTime, number, money, connect };

  document.addEventListener("DOMContentLoaded", () => {
    enhance(document);
    const tz = document.getElementById("footer-tz");
    if (tz) tz.textContent = `Times in ${Intl.DateTimeFormat().resolvedOptions().timeZone}`;
  });
  document.addEventListener("htmx:load", (event) => enhance(event.detail.elt));
  // The rule form: a backtest's answer says whether the condition as typed checks, so the box's red border
  // follows it (a refusal kept from the last save is out of date once the condition backtests).
  document.addEventListener("htmx:afterSettle", (event) => {
    const input = document.getElementById("rule-condition-input");
    if (!input || event.detail.target?.id !== "tried") return;
    if (document.getElementById("tried-refused")) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  });
})();
