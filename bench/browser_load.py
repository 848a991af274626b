"""Does the live page stay responsive while the service ingests ~1,000 transactions a second?

Logs a headless Chromium (Debian's, never a downloaded one) into an already running server, opens the live
page, and while this script POSTs batches to the ingest API at a fixed rate it records, inside the page:
  * frame gaps: the time between successive requestAnimationFrame callbacks (60 Hz idle means ~16.7 ms);
  * long tasks (PerformanceObserver "longtask", main-thread tasks over 50 ms) and, for attribution, the
    scripts of long animation frames ("long-animation-frame");
  * interaction latency, once a second: a real (CDP-dispatched) click on the "Block" decision filter, from
    the click event's timestamp to the next animation frame callback. That covers input delay, the filter
    handler and the wait for a frame, not the frame's own style/layout/paint; slow clicks (>= 16 ms) are
    also reported with their Event Timing duration, which does include the paint;
  * the round trip of a tiny `page.evaluate` DOM query, i.e. how soon the main thread answers from outside.
After the load it waits for the newest acknowledged transaction to show up in the feed (catch-up time).

Prints a summary line, then `BROWSERJSON {...}`. Exits 2 if the browser cannot log in or never shows rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from playwright.sync_api import CDPSession, Page, sync_playwright
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
CARDS = 300
MERCHANTS = 200
PRIME_ROWS = 20
# Chromium's own main-thread accounting (CDP Performance.getMetrics, seconds), reported as ms over the load.
MAIN_THREAD = {
    "ScriptDuration": "script",
    "RecalcStyleDuration": "style",
    "LayoutDuration": "layout",
}
MAX_IN_FLIGHT = 16  # open loop up to this many outstanding batches; past it the sender falls behind
CURRENCIES = ["EUR", "USD", "GBP"]
COUNTRIES = ["NL", "DE", "FR", "GB", "US", "ES", "IT", "BR"]
CHANNELS = ["pos", "ecom", "atm"]
MCCS = ["5411", "5812", "5999", "4111", "5732", "6011", "7995", "5912"]

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


@dataclass
class LoadResult:
    """What the ingest API acknowledged during the load."""

    acked: int = 0
    sent: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    batch_ms: list[float] = field(default_factory=list)
    max_id: int = 0
    elapsed_s: float = 0.0
    sender_late_ms: float = 0.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="server root, e.g. http://127.0.0.1:8100")
    parser.add_argument("--key", required=True, help="ingest API key")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--rate", type=int, default=1000, help="transactions per second, overall")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--run-id", required=True, help="prefix of every external_id this run posts")
    parser.add_argument("--batch", type=int, default=50, help="transactions per batch request")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the page under load here")
    args = parser.parse_args()
    args.base = args.base.rstrip("/")
    args.batch = max(1, min(args.batch, args.rate))
    return args


def tx_body(*, external_id: str, rnd: random.Random) -> dict[str, Any]:
    """One valid transaction (API.md) stamped now, on one of a few hundred cards and merchants."""
    return {
        "external_id": external_id,
        "card_id": f"card-{rnd.randrange(CARDS):03d}",
        "merchant_id": f"merch-{rnd.randrange(MERCHANTS):03d}",
        "amount": f"{min(rnd.lognormvariate(3.6, 1.3), 50_000.0) + 0.01:.2f}",
        "currency": rnd.choice(CURRENCIES),
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "country": rnd.choice(COUNTRIES),
        "channel": rnd.choice(CHANNELS),
        "mcc": rnd.choice(MCCS),
    }


async def post_batch(session: aiohttp.ClientSession, *, url: str, bodies: list[dict], result: LoadResult) -> None:
    """POST one batch and count what it acknowledged (or why it failed)."""
    started = time.perf_counter()
    result.sent += len(bodies)
    try:
        async with session.post(url, json={"transactions": bodies}) as response:
            payload = await response.json(content_type=None)
            if 200 <= response.status < 300:
                result.acked += len(payload["results"])
                result.max_id = max([result.max_id, *(item["id"] for item in payload["results"])])
            else:
                result.errors += 1
                result.error_kinds[f"{response.status} {str(payload.get('error', ''))[:60]}"] += 1
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        result.errors += 1
        result.error_kinds[type(exc).__name__] += 1
    result.batch_ms.append((time.perf_counter() - started) * 1000)


def session_for(key: str) -> aiohttp.ClientSession:
    """An HTTP session that carries the ingest key and allows MAX_IN_FLIGHT connections."""
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT),
    )


async def prime(*, base: str, key: str, run_id: str) -> LoadResult:
    """Post a small batch before measuring, so there are rows to wait for and the socket is proven."""
    result = LoadResult()
    rnd = random.Random(f"{run_id}-prime")
    bodies = [tx_body(external_id=f"{run_id}-prime-{n:03d}", rnd=rnd) for n in range(PRIME_ROWS)]
    async with session_for(key) as session:
        await post_batch(session, url=f"{base}/api/v1/transactions/batch", bodies=bodies, result=result)
    return result


async def load(*, base: str, key: str, run_id: str, rate: int, duration: float, batch: int) -> LoadResult:
    """Open-loop load: a batch every batch/rate seconds for `duration`, at most MAX_IN_FLIGHT outstanding."""
    result = LoadResult()
    rnd = random.Random(run_id)
    url = f"{base}/api/v1/transactions/batch"
    interval = batch / rate
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []

    async def send(bodies: list[dict]) -> None:
        try:
            await post_batch(session, url=url, bodies=bodies, result=result)
        finally:
            slots.release()

    async with session_for(key) as session:
        start = time.perf_counter()
        for i in range(max(1, round(duration / interval))):
            due = start + i * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await slots.acquire()
            result.sender_late_ms = max(result.sender_late_ms, (time.perf_counter() - due) * 1000)
            bodies = [tx_body(external_id=f"{run_id}-{i * batch + n:07d}", rnd=rnd) for n in range(batch)]
            tasks.append(asyncio.create_task(send(bodies)))
        await asyncio.gather(*tasks)
        # Each batch stands for one interval of the schedule, so an on-time run measures exactly the target.
        result.elapsed_s = max(time.perf_counter() - start, len(tasks) * interval)
    return result


def ms1(value: float) -> float:
    """Milliseconds to one decimal, as reported."""
    return round(value, 1)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


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


def show_rows(page: Page, *, pool: ThreadPoolExecutor, args: argparse.Namespace) -> None:
    """Wait for the socket, post a priming batch, and wait for its newest row to be pushed into the feed."""
    wait_for(page, "#conn-status[data-state=live]", what="the dashboard socket did not connect")
    primed = pool.submit(asyncio.run, prime(base=args.base, key=args.key, run_id=args.run_id)).result()
    if not primed.acked:
        raise BenchFailure(f"the ingest API refused the priming batch: {dict(primed.error_kinds)}")
    wait_for(page, f"#feed #tx-{primed.max_id}", what="the page never showed the pushed rows")


def click_filter(page: Page) -> None:
    """Toggle the Block decision filter with a real click (the handler re-filters every row)."""
    page.click("#filter-block", timeout=WAIT_MS)


def evaluate_rtt_ms(page: Page) -> float:
    """Round trip of a tiny DOM query: how soon the page's main thread answers from outside."""
    started = time.perf_counter()
    page.evaluate("() => document.querySelectorAll('#feed tr.tx').length")
    return (time.perf_counter() - started) * 1000


def drive(page: Page, *, running: Future[LoadResult], args: argparse.Namespace) -> tuple[list[float], int]:
    """Once a second while the load runs: click the filter, time an evaluate, maybe take the screenshot."""
    rtts: list[float] = []
    clicks = 0
    shot_after = time.monotonic() + args.duration * 0.6
    next_tick = time.monotonic() + 1.0
    while not running.done():
        time.sleep(max(0.0, min(next_tick - time.monotonic(), 0.1)))
        if running.done() or time.monotonic() < next_tick:
            continue
        next_tick += 1.0
        click_filter(page)
        clicks += 1
        rtts.append(evaluate_rtt_ms(page))
        if args.screenshot and clicks % 2 == 0 and time.monotonic() >= shot_after:
            page.screenshot(path=str(args.screenshot))
            shot_after = math.inf
    if args.screenshot and shot_after != math.inf:
        page.screenshot(path=str(args.screenshot))  # a load too short for the mid-load shot
    return rtts, clicks


def catch_up_ms(page: Page, *, last_id: int, load_ended: float) -> float | None:
    """Time from the end of the load until the newest acknowledged transaction is in the feed (None: never)."""
    try:
        page.wait_for_selector(f"#feed #tx-{last_id}", state="attached", timeout=30_000)
    except PlaywrightError:
        return None
    return (time.perf_counter() - load_ended) * 1000


def main_thread_seconds(cdp: CDPSession) -> dict[str, float]:
    """Chromium's cumulative script, style and layout time for the page so far, in seconds."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return {MAIN_THREAD[m["name"]]: m["value"] for m in metrics if m["name"] in MAIN_THREAD}


def top_scripts(scripts: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The three scripts that spent the most time inside long animation frames."""
    ranked = sorted(scripts.items(), key=lambda kv: -kv[1]["ms"])[:3]
    return [
        {"script": k, "ms": round(v["ms"], 1), "count": int(v["count"]), "layout_ms": round(v["layout_ms"], 1)}
        for k, v in ranked
    ]


def measure(page: Page, *, pool: ThreadPoolExecutor, args: argparse.Namespace) -> dict[str, Any]:
    """Run the load against the open live page and return the figures."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    before = main_thread_seconds(cdp)
    page.evaluate("() => window.__bench.start()")
    running = pool.submit(
        asyncio.run,
        load(
            base=args.base, key=args.key, run_id=args.run_id, rate=args.rate, duration=args.duration, batch=args.batch
        ),
    )
    rtts, clicks = drive(page, running=running, args=args)
    ingest = running.result()
    load_ended = time.perf_counter()
    page_stats = page.evaluate("() => window.__bench.stop()")
    busy = {f"main_{k}_ms": round((v - before[k]) * 1000, 1) for k, v in main_thread_seconds(cdp).items()}
    if clicks % 2:
        click_filter(page)  # leave every decision shown, so the row count below is the whole feed
    catch_up = catch_up_ms(page, last_id=ingest.max_id, load_ended=load_ended) if ingest.max_id else None
    rows = page.evaluate("() => document.querySelectorAll('#feed tr.tx').length")
    result = figures(args=args, ingest=ingest, page_stats=page_stats, rtts=rtts, rows=rows, catch_up=catch_up)
    return {**result, "load_s": round(ingest.elapsed_s, 2), **busy}


def figures(
    *,
    args: argparse.Namespace,
    ingest: LoadResult,
    page_stats: dict[str, Any],
    rtts: list[float],
    rows: int,
    catch_up: float | None,
) -> dict[str, Any]:
    """The BROWSERJSON object."""
    gaps, longtasks, clicks = page_stats["gaps"], page_stats["longtasks"], page_stats["interactions"]
    return {
        "rate_target": args.rate,
        "duration_s": args.duration,
        "ingest_tx_per_s": ms1(ingest.acked / ingest.elapsed_s) if ingest.elapsed_s else 0.0,
        "acked": ingest.acked,
        "sent": ingest.sent,
        "errors": ingest.errors,
        "error_kinds": dict(ingest.error_kinds),
        "batch_size": args.batch,
        "batch_p50_ms": ms1(percentile(ingest.batch_ms, 50)),
        "batch_p99_ms": ms1(percentile(ingest.batch_ms, 99)),
        "sender_late_max_ms": ms1(ingest.sender_late_ms),
        "rows_in_feed": rows,
        "frames": len(gaps),
        "frame_gap_p50_ms": ms1(percentile(gaps, 50)),
        "frame_gap_p99_ms": ms1(percentile(gaps, 99)),
        "frame_gap_max_ms": ms1(max(gaps, default=0.0)),
        "longtasks": len(longtasks),
        "longtask_total_ms": ms1(sum(longtasks)),
        "longtask_max_ms": ms1(max(longtasks, default=0.0)),
        "interactions": len(clicks),
        "interaction_p50_ms": ms1(percentile(clicks, 50)),
        "interaction_max_ms": ms1(max(clicks, default=0.0)),
        "slow_clicks_event_timing_ms": [ms1(d) for d in page_stats["slowClicks"]],
        "evaluate_rtt_p50_ms": ms1(percentile(rtts, 50)),
        "evaluate_rtt_max_ms": ms1(max(rtts, default=0.0)),
        "catch_up_ms": None if catch_up is None else ms1(catch_up),
        "long_animation_frames": page_stats["loafs"],
        "top_scripts": top_scripts(page_stats["scripts"]),
    }


def summary(result: dict[str, Any]) -> str:
    """One human-readable line."""
    parts = [
        f"ingest {result['ingest_tx_per_s']:.0f}/{result['rate_target']} tx/s ({result['errors']} failed batches)",
        f"frames {result['frames']}, gap p50/p99/max {result['frame_gap_p50_ms']}/{result['frame_gap_p99_ms']}/"
        f"{result['frame_gap_max_ms']} ms",
        f"long tasks {result['longtasks']} (total {result['longtask_total_ms']}, max {result['longtask_max_ms']} ms)",
        f"click->frame p50/max {result['interaction_p50_ms']}/{result['interaction_max_ms']} ms",
        f"evaluate p50 {result['evaluate_rtt_p50_ms']} ms",
        f"main thread script/style/layout {result.get('main_script_ms')}/{result.get('main_style_ms')}/"
        f"{result.get('main_layout_ms')} ms in {result.get('load_s')} s",
        f"{result['rows_in_feed']} rows in feed, catch-up {result['catch_up_ms']} ms",
    ]
    return "browser under load: " + "; ".join(parts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Launch the browser, log in, show rows, and measure the page under load."""
    with sync_playwright() as playwright, ThreadPoolExecutor(max_workers=1) as pool:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.add_init_script(INSTRUMENTATION)
            page = context.new_page()
            log_in(page, base=args.base, user=args.user, password=args.password)
            show_rows(page, pool=pool, args=args)
            return measure(page, pool=pool, args=args)
        finally:
            browser.close()


def main() -> int:
    args = parse_args()
    if not CHROMIUM.exists():
        print(f"browser_load: needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except BenchFailure as exc:
        print(f"browser_load: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    print("BROWSERJSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
