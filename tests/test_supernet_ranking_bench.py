"""benchmarks/supernet_ranking.py: another search's supernet scores a finished correlate study's
architectures (no training) and the statistics come out for every search given."""

from __future__ import annotations

import json

import pytest

from helpers import load_benchmark


def test_the_ranking_benchmark_scores_a_study_with_two_supernets(tmp_path, capsys):
    bench = load_benchmark("supernet_ranking")
    assert bench.main(["--smoke", str(tmp_path), "--bootstrap", "20", "--json", str(tmp_path / "rank.json")]) == 0
    out = capsys.readouterr().out
    assert "| oracle |" in out and "Kendall" in out
    ranked = json.loads((tmp_path / "rank.json").read_text())
    assert len(ranked) == 2
    study = json.loads((tmp_path / "study" / "correlation.json").read_text())
    own = ranked[str(tmp_path / "study" / "search")]
    # the study's own supernet gives back the study's own supernet scores, architecture by architecture,
    # up to the rounding of batched convolutions (the scorer batches, the study scored one at a time:
    # an argmax flipped at a near-tie on another CPU moves mIoU by a pixel's share; tests/test_scoring.py)
    assert own["scores"] == pytest.approx([a["supernet_miou"] for a in study["archs"]], abs=5e-3)
    assert all(len(r["scores"]) == 4 and r["stats"]["n"] == 4 and r["arch_steps"] > 0 for r in ranked.values())
