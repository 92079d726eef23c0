"""rsws (random search with weight sharing): the strategy check, and a search whose architecture is
the selection stage's best of N uniform candidates."""

from __future__ import annotations

import json

import pytest

from archgraph.config import load_config
from archgraph.core.registry import get_strategy
from archgraph.engine.search import run_search
from archgraph.testing import check_strategy

TINY = [
    "data.name=synthetic",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.val_limit=2",
    "space.layers=2",
    "space.base_channels=4",
    "search.bn_recalib_batches=1",
    "search.epochs=1",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=2",
    "strategy.name=rsws",
]


@pytest.mark.numeric  # asserts on learned margins: .ci/run runs it again on another CPU path
def test_rsws_passes_the_strategy_check():
    report = check_strategy("rsws", checks=("subnet", "gradients", "planted"), planted_seeds=3)  # 2 of 3 must find it: one seed leads by 0.075 of 0.06 needed
    assert report.ok, [r.line() for r in report.failed()]
    assert report["planted"].status == "PASS"


def test_rsws_picks_the_best_of_n_uniform_candidates(tmp_path):
    assert get_strategy("rsws").cls.name == "rsws"
    out = tmp_path / "run"
    run_search(load_config(None, TINY + ["strategy.candidates=3"]), out, progress=False)
    final = json.loads((out / "final.json").read_text())
    sel = final["selection"]
    assert sel["selector"] == "topk:3:uniform" and sel["drawn_from"] == "uniform"
    assert sel["candidates"] == 3 and sel["scores"][sel["picked"]] == max(sel["scores"])
    assert final["derived_by"] == "selection topk:3:uniform"


def test_search_select_overrides_rsws_own_rule(tmp_path):
    out = tmp_path / "run"
    run_search(load_config(None, TINY + ["search.select=argmax"]), out, progress=False)
    assert json.loads((out / "final.json").read_text())["selection"]["selector"] == "argmax"
