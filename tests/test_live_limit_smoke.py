"""Smoke test of benchmarks/live_limit.py: its quickest setting runs and reports every variant (no timings checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "live_limit.py"


def test_quick_run_reports_limit_and_live_fraction(tmp_path):
    out = tmp_path / "live.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out), "--markdown"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    (row,) = data["depths"]
    assert row["layers"] == 2 and row["fusion"] == 8  # DCSS L=2: 4 scales x 2 layers
    assert 0 < row["live_fusion"] <= row["fusion"] and row["live_fraction"] == row["live_fusion"] / row["fusion"]
    for v in ("pruned", "unpruned", "limit", "fixed", "full"):
        assert row[f"{v}_s"] > 0 and row[f"{v}_saved_tensors_mb"] >= 0
    assert row["full_saved_tensors_mb"] > row["pruned_saved_tensors_mb"]  # the full relaxation saves every path for backward
    assert row["unpruned_saved_tensors_mb"] >= row["pruned_saved_tensors_mb"]
    (epoch,) = data["search"]  # one search epoch, its live fraction from search.jsonl
    assert 0 < epoch["live_fraction"] <= 1
    assert "| L | live fusion nodes |" in proc.stdout


def test_live_fraction_of_a_finished_search_folder(tmp_path):
    """--runs: the start draws (tau_max, initial beta) and the end draws (the checkpoint's beta) of a real run."""
    from helpers import search_run, load_benchmark

    run = search_run(tmp_path / "run", "search.epochs=3")
    live = load_benchmark("live_limit")
    row = live.run_live_fraction(run, draws=20)
    assert 0 < row["live_end"] <= 1 and 0 < row["live_start"] <= 1
    assert row["tau_start"] == 5.0 and row["tau_end"] == 0.5  # the exponential schedule's last epoch
    assert 0 < row["derived_share"] <= 1
