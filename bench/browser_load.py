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
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from browser_report import figures, main_thread_ms, summary
from ingest_sender import load, prime
from page_driver import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BenchFailure,
    catch_up_ms,
    click_filter,
    drive,
    log_in,
    main_thread_seconds,
    open_page,
    performance_session,
    rows_in_feed,
    start_recording,
    stop_recording,
    wait_for,
)
from playwright.sync_api import Page, sync_playwright


def parse_args() -> argparse.Namespace:
    """The command line (see bench/run.sh), with the base URL trimmed and the batch no bigger than the rate."""
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


def show_rows(page: Page, *, pool: ThreadPoolExecutor, args: argparse.Namespace) -> None:
    """Wait for the socket, post a priming batch, and wait for its newest row to be pushed into the feed."""
    wait_for(page, "#conn-status[data-state=live]", what="the dashboard socket did not connect")
    primed = pool.submit(asyncio.run, prime(base=args.base, key=args.key, run_id=args.run_id)).result()
    if not primed.acked:
        raise BenchFailure(f"the ingest API refused the priming batch: {dict(primed.error_kinds)}")
    wait_for(page, f"#feed #tx-{primed.max_id}", what="the page never showed the pushed rows")


def measure(page: Page, *, pool: ThreadPoolExecutor, args: argparse.Namespace) -> dict[str, Any]:
    """Run the load against the open live page and return the figures."""
    cdp = performance_session(page)
    before = main_thread_seconds(cdp)
    start_recording(page)
    sender = load(
        base=args.base, key=args.key, run_id=args.run_id, rate=args.rate, duration=args.duration, batch=args.batch
    )
    running = pool.submit(asyncio.run, sender)
    rtts, clicks = drive(page, running=running, duration=args.duration, screenshot=args.screenshot)
    ingested = running.result()
    load_ended = time.perf_counter()
    page_stats = stop_recording(page)
    busy = main_thread_ms(before=before, after=main_thread_seconds(cdp))
    if clicks % 2:
        click_filter(page)  # leave every decision shown, so the row count below is the whole feed
    catch_up = catch_up_ms(page, last_id=ingested.max_id, load_ended=load_ended) if ingested.max_id else None
    rows = rows_in_feed(page)
    result = figures(args=args, ingest=ingested, page_stats=page_stats, rtts=rtts, rows=rows, catch_up=catch_up)
    return {**result, "load_s": round(ingested.elapsed_s, 2), **busy}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Launch the browser, log in, show rows, and measure the page under load."""
    with sync_playwright() as playwright, ThreadPoolExecutor(max_workers=1) as pool:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = open_page(browser)
            log_in(page, base=args.base, user=args.user, password=args.password)
            show_rows(page, pool=pool, args=args)
            return measure(page, pool=pool, args=args)
        finally:
            browser.close()


def main() -> int:
    """Measure, print the summary and BROWSERJSON, and return the exit status."""
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
