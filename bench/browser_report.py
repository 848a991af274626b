"""The browser phase's figures: the BROWSERJSON object and its one-line summary."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ingest_sender import LoadResult


def ms1(value: float) -> float:
    """Milliseconds to one decimal, as reported."""
    return round(value, 1)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def top_scripts(scripts: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The three scripts that spent the most time inside long animation frames."""
    ranked = sorted(scripts.items(), key=lambda kv: -kv[1]["ms"])[:3]
    return [
        {"script": k, "ms": round(v["ms"], 1), "count": int(v["count"]), "layout_ms": round(v["layout_ms"], 1)}
        for k, v in ranked
    ]


def main_thread_ms(*, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Chromium's script, style and layout time between two readings, as `main_<part>_ms` figures."""
    return {f"main_{part}_ms": round((after[part] - before[part]) * 1000, 1) for part in after}


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
