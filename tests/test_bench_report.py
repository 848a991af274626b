"""make bench's verdicts on issue 5's targets, from phase results as benchlib.py writes them."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_report", Path(__file__).parent.parent / "bench" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def wrk(rps: float, p99: float, items: int = 1) -> dict:
    return {
        "result": {"tool": "wrk", "rps": rps, "items_per_req": items, "errors": {}, "lat_ms": {"p50": 1, "p99": p99}}
    }


def e2e(p99: float, missed: int, rate: float = 500) -> dict:
    result = {"tool": "e2e_ws", "achieved_rate": rate, "clients": 20, "missed_total": missed, "e2e_ms": {"p99": p99}}
    return {"result": result}


def test_each_target_is_met_only_by_a_phase_that_reaches_it():
    ours = {
        "uvicorn_c16": wrk(2_900, p99=10),
        "uvicorn_c64": wrk(3_100, p99=30),
        "uvicorn_batch100": wrk(80, p99=90, items=100),
        "uvicorn_e2e_500": e2e(p99=49.0, missed=0),
        "daphne_e2e_500": e2e(p99=20.0, missed=1),
        "uvicorn_x2_c64": wrk(9_000, p99=20),  # two processes: not a one-core figure
    }
    peer = {"c16": wrk(2_000, p99=80), "c64": wrk(2_000, p99=20)}

    lines = report.targets(ours, peer)

    assert lines[0].startswith("met") and "best 3,100 (uvicorn_c64)" in lines[0]
    assert lines[1].startswith("NOT met") and "best 8,000 (uvicorn_batch100)" in lines[1]
    assert lines[2].startswith("met") and "uvicorn_e2e_500" in lines[2]
    assert lines[3].startswith("NOT met") and "daphne_e2e_500" in lines[3]  # a missed push
    assert lines[4].startswith("NOT met") and "uvicorn_c16 1.45x" in lines[4]  # under 1.5x
    assert lines[5].startswith("NOT met") and "uvicorn_c64 1.55x" in lines[5]  # p99 worse than the yardstick's
    assert len(lines) == 6


def test_the_table_shows_the_servers_and_postgresqls_cpu_a_transaction(tmp_path, capsys):
    row = wrk(100, p99=50, items=100) | {"server_cpu_ms_per_item": 0.061, "pg_cpu_ms_per_item": 0.068}
    (tmp_path / "results.jsonl").write_text(json.dumps({"phase": "uvicorn_batch100", **row}) + "\n")

    report.main(tmp_path)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[7:11] == ["CPU", "ms/tx", "PG", "ms/tx"]
    assert lines[2].split()[:7] == ["uvicorn_batch100", "10000", "1.0", "50.0", "0", "0.061", "0.068"]


def test_the_table_shows_the_share_of_each_phases_transactions_that_was_flagged(tmp_path, capsys):
    row = wrk(100, p99=50, items=100) | {"server_cpu_ms_per_item": 0.061, "pg_cpu_ms_per_item": 0.068}
    phases = ["uvicorn_batch100", "uvicorn_c16", "uvicorn_c64"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps({"phase": p, **row}) + "\n" for p in phases))
    (tmp_path / "uvicorn_batch100.flagged.json").write_text('{"stored": 8000, "flagged": 3680}')
    (tmp_path / "uvicorn_c16.flagged.json").write_text('{"stored": 0, "flagged": 0}')  # nothing stored: no share

    report.main(tmp_path)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[11] == "flagged"
    assert [line.split()[7] for line in lines[2:5]] == ["46%", "-", "-"]  # the last phase has no file


def test_the_table_shows_the_live_page_line_from_the_browser_tools_figures(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "bench"))
    browser_report = importlib.import_module("browser_report")
    ingest_sender = importlib.import_module("ingest_sender")
    ingest = ingest_sender.LoadResult(acked=10_000, sent=10_000, max_id=10_020, elapsed_s=10.0)
    page_stats = {"gaps": [16.0, 17.0, 40.0], "longtasks": [60.0, 1_440.0], "interactions": [3.0]}
    page_stats |= {"slowClicks": [], "scripts": {}, "loafs": 0}
    args = argparse.Namespace(rate=1000, duration=10.0, batch=50)
    figures = browser_report.figures(
        args=args, ingest=ingest, page_stats=page_stats, rtts=[2.0], rows=500, catch_up=None
    )
    (tmp_path / "browser.txt").write_text(
        browser_report.summary(figures) + "\nBROWSERJSON " + json.dumps(figures) + "\n"
    )

    report.main(tmp_path)

    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("live page in chromium"))
    shown = "1000 frame gap p50 17 / p99 40 ms, click to frame p50 3 ms, long tasks 1.5 s in 10 s, 500 rows"
    assert line.removeprefix("live page in chromium").split() == shown.split()


def test_the_rules_cost_is_judged_by_the_medians_of_the_alternating_passes(capsys):
    ours = {
        "plain1_c64": wrk(3_000, p99=30) | {"server_cpu_ms_per_item": 0.30},
        "rules2_c64": wrk(2_400, p99=30) | {"server_cpu_ms_per_item": 0.40},
        "plain2_c64": wrk(2_600, p99=30) | {"server_cpu_ms_per_item": 0.34},
        "rules3_c64": wrk(2_500, p99=30) | {"server_cpu_ms_per_item": 0.42},
        "plain3_c64": wrk(2_800, p99=30) | {"server_cpu_ms_per_item": 0.32},
        "plain1_batch100": wrk(300, p99=90, items=100),
        "rules2_batch100": wrk(280, p99=90, items=100),
        "plain2_batch100": wrk(300, p99=90, items=100),
        "rules_e2e_500": wrk(500, p99=20),
    }
    report.whatif(ours)
    lines = capsys.readouterr().out.splitlines()
    met = "met     c64: 2,450 tx/s with them against 2,800 without (-12%, server CPU a transaction +28%; medians of 2"
    assert any(line.strip().startswith(met) for line in lines)
    assert any(line.strip().startswith("met     batch100: 28,000 tx/s") and "(-7%;" in line for line in lines)
    assert not any("e2e" in line for line in lines)
    report.whatif(ours | {"rules2_c64": wrk(2_000, p99=30), "rules3_c64": wrk(2_100, p99=30)})
    assert any(line.strip().startswith("NOT met c64") for line in capsys.readouterr().out.splitlines())
