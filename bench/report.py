"""Print `make bench`'s table from the phase results (benchlib.py's results.jsonl) of ours and the yardstick's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def rows(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["phase"]] = row
    return out


def figures(row: dict) -> tuple[float, float, float, int]:
    """(transactions/s, p50 ms, p99 ms, errors) of one phase."""
    res = row["result"]
    if res.get("tool") == "wrk":
        errors = sum(res["errors"].values())
        return res["rps"] * res.get("items_per_req", 1), res["lat_ms"]["p50"], res["lat_ms"]["p99"], errors
    http = res.get("http_ms", {})
    return (
        res.get("achieved_rate", 0),
        http.get("p50", 0),
        http.get("p99", 0),
        res.get("sent", 0) - res.get("ok_2xx", 0),
    )


def main(out: Path) -> None:
    ours, peer = rows(out / "results.jsonl"), rows(out / "peer" / "results.jsonl")
    peer_by_kind = {re.sub(r"^wrk_", "", name): row for name, row in peer.items()}
    head = f"{'phase':<22}{'tx/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU ms/tx':>11}"
    print(head + f"{'yardstick tx/s':>16}{'ratio':>7}")
    print("-" * 91)
    for name, row in ours.items():
        rate, p50, p99, errors = figures(row)
        kind = name.split("_", 1)[1]
        line = f"{name:<22}{rate:>9.0f}{p50:>9.1f}{p99:>9.1f}{errors:>8}{row['server_cpu_ms_per_item'] or 0:>11.2f}"
        if kind in peer_by_kind:
            peer_rate = figures(peer_by_kind[kind])[0]
            line += f"{peer_rate:>16.0f}{rate / peer_rate if peer_rate else 0:>6.2f}x"
        print(line)
        res = row["result"]
        if res.get("tool") == "e2e_ws":
            e2e = res["e2e_ms"]
            print(
                f"{'  POST → dashboard':<22}{res['clients']:>6} ws{e2e['p50']:>9.1f}{e2e['p99']:>9.1f}"
                f"   missed pushes: {res['missed_total']}"
            )
    browser = out / "browser.txt"
    if browser.exists():
        lines = [line for line in browser.read_text().splitlines() if line.startswith("BROWSERJSON ")]
        if lines:
            b = json.loads(lines[-1].removeprefix("BROWSERJSON "))
            print(
                f"{'live page in chromium':<22}{b['ingest_tx_per_s']:>9.0f}   "
                f"frame gap p50 {b['frame_gap_p50_ms']:.0f} / p99 {b['frame_gap_p99_ms']:.0f} ms, "
                f"click to frame p50 {b['interaction_p50_ms']:.0f} ms, "
                f"long tasks {b['longtask_total_ms'] / 1000:.1f} s in {b['duration_s']:.0f} s, {b['rows_in_feed']} rows"
            )
    imported = out / "import.txt"
    if imported.exists():
        summary = imported.read_text().strip().splitlines()[-1]  # "N rows read, N stored, ... (S s, R rows/s)"
        match = re.search(r"([\d,]+) stored.*\(([\d.]+) s, ([\d,]+) rows/s\)", summary)
        if match:
            stored, seconds, rate = match.groups()
            where = "PostgreSQL, one pass, one transaction"
            print(f"{'import_transactions':<22}{rate:>9}   rows/s ({stored} rows in {seconds} s, {where})")
    print("tx/s: wrk closed loop (achieved); e2e: open loop at a fixed rate, latency from the scheduled send.")
    print("CPU ms/tx: server process CPU per transaction (steadier than rates on a shared machine).")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
