"""Smoke test of benchmarks/search_cost.py: the per-variant workers run and report JSON (no timings checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import load_benchmark

from archgraph.core.measure import GROWTH_OF

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_cost.py"
TINY = ["--layers", "2", "--channels", "4", "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "0", "--threads", "1"]
ROW_KEYS = {
    "variant",
    "strategy",
    "params",
    "layers",
    "connections",
    "connections_formula",
    "arch_step",
    "step_s",
    "step_s_all",
    "baseline_mb",
    "memory_source",
    "branches_run",
    "ops_run",
    "saved_tensors_mb",
}


def _load_module():
    return load_benchmark("search_cost")


def test_two_variants_report_json(tmp_path):
    out = tmp_path / "cost.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--variants", "full,dcnas", "--depths", "", "--json", str(out), "--markdown"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = {r["variant"]: r for r in data["variants"]}
    assert set(rows) == {"full", "dcnas"}
    for name, row in rows.items():
        assert "error" not in row, row
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert len(set(GROWTH_OF.values()) & set(row)) == 1, row  # the peak's growth, named for the quantity this machine measured
        assert row["arch_step"] is True  # epoch past warm-up: the architecture step ran
        assert row["connections"] == row["connections_formula"] == 48  # 8L(L+1) at L=2
        assert len(row["step_s_all"]) == 1
    assert rows["full"]["strategy"] == "darts" and rows["dcnas"]["params"]["channel_ratio"] == 0.25
    assert rows["full"]["branches_run"] == 48  # the full relaxation runs every candidate connection
    assert rows["dcnas"]["branches_run"] < 48  # path sampling runs at most n=4 per node
    assert {"speedup_vs_full", "mem_vs_full"} <= set(rows["dcnas"])
    assert "| variant |" in proc.stdout  # the Markdown table


def test_variant_names_resolve():
    sc = _load_module()
    assert sc.resolve_variant("dcnas-channels-only")[:2] == ("dcnas", {"paths": 10**6})
    assert sc.resolve_variant("dcnas:paths=3,channel_ratio=0.5")[:2] == ("dcnas", {"paths": 3, "channel_ratio": 0.5})
    assert sc.resolve_variant("darts")[:2] == ("darts", {})
    names = sc.default_variants()
    assert names[: len(sc.VARIANTS)] == list(sc.VARIANTS)
    assert "darts" not in names and "dcnas" not in names[len(sc.VARIANTS) :]  # already covered by full / dcnas
