"""Drives the live page in headless Chromium: the in-page recorder, logging in, clicks and timed queries."""

from __future__ import annotations

import math
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, CDPSession, Page
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 15_000
CATCH_UP_WAIT_MS = 30_000
# Chromium's own main-thread accounting (CDP Performance.getMetrics, seconds), reported as ms over the load.
MAIN_THREAD = {
    "ScriptDuration": "script",
    "RecalcStyleDuration": "style",
    "LayoutDuration": "layout",
}

# Installed before any page script runs; records only between __bench.start() and __bench.stop().
INSTRUMENTATION = """
(() => {
  if (window.__bench) return;
  const b = { recording: false };
  let last = null;
  function reset() {
    Object.assign(b, { gaps: [], longtasks: [], interactions: [], slowClicks: [], scripts: {}, loafs: 0 });
    last = null;
  }
  reset();
  function frame(now) {
    if (b.recording && last !== null) b.gaps.push(now - last);
    last = now;
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
  new PerformanceObserver((list) => {
    if (b.recording) for (const e of list.getEntries()) b.longtasks.push(e.duration);
  }).observe({ type: "longtask" });
  new PerformanceObserver((list) => {
    if (!b.recording) return;
    for (const e of list.getEntries()) {
      b.loafs += 1;
      for (const s of e.scripts) {
        const file = (s.sourceURL || "").split("/").pop();
        const key = `${s.invoker} ${s.sourceFunctionName || "?"} ${file}:${s.sourceCharPosition}`;
        const row = b.scripts[key] || (b.scripts[key] = { ms: 0, count: 0, layout_ms: 0 });
        row.ms += s.duration;
        row.count += 1;
        row.layout_ms += s.forcedStyleAndLayoutDuration || 0;
      }
    }
  }).observe({ type: "long-animation-frame" });
  new PerformanceObserver((list) => {
    if (b.recording) for (const e of list.getEntries()) if (e.name === "click") b.slowClicks.push(e.duration);
  }).observe({ type: "event", durationThreshold: 16 });
  document.addEventListener("click", (event) => {
    if (!b.recording || !(event.target instanceof HTMLInputElement) || !event.target.closest("#feed-filters")) return;
    const at = event.timeStamp;
    requestAnimationFrame(() => b.interactions.push(performance.now() - at));
  }, true);
  b.start = () => { reset(); b.recording = true; };
  b.stop = () => {
    b.recording = false;
    const { gaps, longtasks, interactions, slowClicks, scripts, loafs } = b;
    return { gaps, longtasks, interactions, slowClicks, scripts, loafs };
  };
  window.__bench = b;
})();
"""


class BenchFailure(Exception):
    """The page could not be measured (login, socket or rows): reported and exit 2."""


def open_page(browser: Browser) -> Page:
    """A new page in its own context, with the recorder installed before any of the page's scripts."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script(INSTRUMENTATION)
    return context.new_page()


def log_in(page: Page, *, base: str, user: str, password: str) -> None:
    """Sign in through the real login form and land on the live page."""
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login-form button[type=submit]")
    try:
        page.wait_for_url(f"{base}/", timeout=WAIT_MS)
    except PlaywrightError as exc:
        raise BenchFailure(f"login failed for {user!r}: still at {page.url}") from exc


def wait_for(page: Page, selector: str, *, what: str, state: str = "attached") -> None:
    """Wait for `selector`, or fail the benchmark saying `what` went wrong."""
    try:
        page.wait_for_selector(selector, state=state, timeout=WAIT_MS)
    except PlaywrightError as exc:
        raise BenchFailure(f"{what} within {WAIT_MS / 1000:.0f} s ({selector})") from exc


def click_filter(page: Page) -> None:
    """Toggle the Block decision filter with a real click (the handler re-filters every row)."""
    page.click("#filter-block", timeout=WAIT_MS)


def rows_in_feed(page: Page) -> int:
    """How many transaction rows the feed holds (whether shown or filtered out)."""
    return page.evaluate("() => document.querySelectorAll('#feed tr.tx').length")


def evaluate_rtt_ms(page: Page) -> float:
    """Round trip of a tiny DOM query: how soon the page's main thread answers from outside."""
    started = time.perf_counter()
    rows_in_feed(page)
    return (time.perf_counter() - started) * 1000


def start_recording(page: Page) -> None:
    """Clear what the recorder holds and start recording."""
    page.evaluate("() => window.__bench.start()")


def stop_recording(page: Page) -> dict[str, Any]:
    """Stop recording and return the frame gaps, long tasks, clicks and scripts seen since the start."""
    return page.evaluate("() => window.__bench.stop()")


def drive(page: Page, *, running: Future[Any], duration: float, screenshot: Path | None) -> tuple[list[float], int]:
    """Once a second while the load runs: click the filter, time an evaluate, maybe take the screenshot."""
    rtts: list[float] = []
    clicks = 0
    shot_after = time.monotonic() + duration * 0.6
    next_tick = time.monotonic() + 1.0
    while not running.done():
        time.sleep(max(0.0, min(next_tick - time.monotonic(), 0.1)))
        if running.done() or time.monotonic() < next_tick:
            continue
        next_tick += 1.0
        click_filter(page)
        clicks += 1
        rtts.append(evaluate_rtt_ms(page))
        if screenshot and clicks % 2 == 0 and time.monotonic() >= shot_after:
            page.screenshot(path=str(screenshot))
            shot_after = math.inf
    if screenshot and shot_after != math.inf:
        page.screenshot(path=str(screenshot))  # a load too short for the mid-load shot
    return rtts, clicks


def catch_up_ms(page: Page, *, last_id: int, load_ended: float) -> float | None:
    """Time from the end of the load until the newest acknowledged transaction is in the feed (None: never)."""
    try:
        page.wait_for_selector(f"#feed #tx-{last_id}", state="attached", timeout=CATCH_UP_WAIT_MS)
    except PlaywrightError:
        return None
    return (time.perf_counter() - load_ended) * 1000


def performance_session(page: Page) -> CDPSession:
    """A DevTools session on the page with Chromium's performance counters switched on."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    return cdp


def main_thread_seconds(cdp: CDPSession) -> dict[str, float]:
    """Chromium's cumulative script, style and layout time for the page so far, in seconds."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return {MAIN_THREAD[m["name"]]: m["value"] for m in metrics if m["name"] in MAIN_THREAD}
