"""Print `make bench`'s table from the phase results (benchlib.py's results.jsonl) of ours and the yardstick's."""

from __future__ import annotations

import json
import os
import re
import statistics
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


def flagged(out: Path, name: str) -> str:
    """The share of a phase's stored transactions that were flagged (bench/run.sh's NAME.flagged.json)."""
    try:
        counts = json.loads((out / f"{name}.flagged.json").read_text())
    except (OSError, ValueError):
        return "-"
    return f"{counts['flagged'] / counts['stored']:.0%}" if counts.get("stored") else "-"


def main(out: Path) -> None:
    ours, peer = rows(out / "results.jsonl"), rows(out / "peer" / "results.jsonl")
    peer_by_kind = {re.sub(r"^wrk_", "", name): row for name, row in peer.items()}
    head = f"{'phase':<22}{'tx/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU ms/tx':>11}{'PG ms/tx':>10}"
    print(head + f"{'flagged':>9}{'yardstick tx/s':>16}{'ratio':>7}")
    print("-" * 110)
    for name, row in ours.items():
        rate, p50, p99, errors = figures(row)
        kind = name.split("_", 1)[1]
        cpu, pg = row.get("server_cpu_ms_per_item") or 0, row.get("pg_cpu_ms_per_item") or 0
        line = f"{name:<22}{rate:>9.0f}{p50:>9.1f}{p99:>9.1f}{errors:>8}{cpu:>11.3f}{pg:>10.3f}{flagged(out, name):>9}"
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
    print("CPU ms/tx: server process CPU per transaction (steadier than rates on a shared machine);")
    print("PG ms/tx: PostgreSQL's backends' CPU per transaction (the batches wait on it as much as on the server).")
    print("flagged: the phase's transactions the model flagged; each also writes a case and its audit event.")
    whatif(ours)
    verdicts = targets(ours, peer_by_kind)
    if verdicts:
        model = os.environ.get("TRAIN_ARGS", "").strip()
        served = f"train_model {model}; the tx/s goals are for the default model" if model else "the default model"
        print(f"\nIssue 5's targets in this run (server on one core; ours serving {served}):")
        for line in verdicts:
            print(f"  {line}")


def whatif(ours: dict[str, dict]) -> None:
    """Issue 26's cost: each kind of phase with 20 active rules and a challenger against the same kind without
    them, the median of each's passes (plain and with them alternate on one server, in the same run)."""
    lines = []
    for kind in sorted({name.split("_", 1)[1] for name in ours if re.match(r"rules\d+_", name)}):
        rules = [row for name, row in ours.items() if re.fullmatch(rf"rules\d+_{kind}", name)]
        plain = [row for name, row in ours.items() if re.fullmatch(rf"plain\d+_{kind}", name)]
        if not plain:
            continue
        rate, base = (statistics.median(figures(row)[0] for row in rows) for rows in (rules, plain))
        cpu, base_cpu = (
            statistics.median(row.get("server_cpu_ms_per_item") or 0 for row in rows) for rows in (rules, plain)
        )
        change = rate / base - 1 if base else 0
        cpu_change = f", server CPU a transaction {cpu / base_cpu - 1:+.0%}" if base_cpu else ""
        lines.append(
            f"{_verdict(change >= -0.15)} {kind}: {rate:,.0f} tx/s with them against {base:,.0f} without "
            f"({change:+.0%}{cpu_change}; medians of {len(rules)} and {len(plain)} passes)"
        )
    if lines:
        print("\nIssue 26's cost, 20 active rules and a challenger model (within 15 % of the same run without them):")
        for line in lines:
            print(f"  {line}")


def targets(ours: dict[str, dict], peer_by_kind: dict[str, dict]) -> list[str]:
    """Issue 5's speed goals, each as met or not by the phases of this run (one process, one core)."""
    single = {n: r for n, r in ours.items() if re.fullmatch(r"[a-z]+_c\d+", n)}
    batch = {n: r for n, r in ours.items() if re.fullmatch(r"[a-z]+_batch\d+", n)}
    e2e = {n: r["result"] for n, r in ours.items() if r["result"].get("tool") == "e2e_ws"}
    lines = []
    for label, phases, goal in (("single POSTs", single, 3_000), ("batch ingest", batch, 20_000)):
        if phases:
            name = max(phases, key=lambda n: figures(phases[n])[0])
            rate = figures(phases[name])[0]
            lines.append(f"{_verdict(rate >= goal)} {label} >= {goal:,} tx/s: best {rate:,.0f} ({name})")
    for name, res in e2e.items():
        p99, missed, rate = res["e2e_ms"]["p99"], res["missed_total"], res.get("achieved_rate", 0)
        met = p99 <= 50 and missed == 0 and rate >= 500 * 0.98
        lines.append(
            f"{_verdict(met)} POST -> socket p99 <= 50 ms at 500 tx/s, {res['clients']} dashboards, 0 missed: "
            f"{name} p99 {p99:.1f} ms at {rate:.0f} tx/s, {missed} missed"
        )
    for name, row in {**single, **batch}.items():
        peer = peer_by_kind.get(name.split("_", 1)[1])
        if peer is None:
            continue
        (rate, _, p99, _), (peer_rate, _, peer_p99, _) = figures(row), figures(peer)
        met = peer_rate > 0 and rate >= 1.5 * peer_rate and p99 <= peer_p99
        lines.append(
            f"{_verdict(met)} >= 1.5x the yardstick (its own model), HTTP p99 no worse: {name} "
            f"{rate / peer_rate if peer_rate else 0:.2f}x, p99 {p99:.0f} against {peer_p99:.0f} ms"
        )
    return lines


def _verdict(met: bool) -> str:
    return "met    " if met else "NOT met"


if __name__ == "__main__":
    main(Path(sys.argv[1]))
