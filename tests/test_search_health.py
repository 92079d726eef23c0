"""Search health: what a search logs about its architecture parameters, and what it says at the end.

- every epoch records decisions changed, decision margins, architecture steps and gradient SNR;
- the margins and decision counts are computed right (hand-made scores);
- a search whose schedule takes no architecture step is refused before it runs;
- a search that could not move its parameters ends with a warning naming the knob;
- a strategy that picks the architecture at the end (SPOS) reports *that* architecture.
"""

from __future__ import annotations

import json
import math

import pytest

from archgraph.cli import main
from archgraph.core.archstats import changed_decisions, decision_margin, mean_margins
from archgraph.core.graph import graph_hash, load

TINY = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=3",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=4",
    "search.bn_recalib_batches=1",
    "data.val_limit=4",
]


def search(out, *extra) -> int:
    return main(["search", "--out", str(out), "--no-progress", "--set", *TINY, *extra])


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]


def test_margins_and_changes_on_hand_made_scores():
    assert decision_margin([0.5, 0.3, 0.2], keep=1) == pytest.approx(0.2)
    assert decision_margin([0.1, 0.4, 0.3, 0.2], keep=2) == pytest.approx(0.1)  # 0.3 kept, 0.2 dropped
    assert decision_margin([0.6, 0.4], keep=2) is None  # everything kept: nothing decided
    assert decision_margin([1.0], keep=1) is None
    m = mean_margins({"a": [0.5, 0.3, 0.2], "b": [0.25, 0.25, 0.5]}, {"n": [0.1, 0.4, 0.3, 0.2]}, {"n": 2})
    assert m == pytest.approx({"margin_alpha": (0.2 + 0.25) / 2, "margin_beta": 0.1})
    before = ({"a": 0, "b": 2}, {"n": [1, 2], "m": [0]})
    after = ({"a": 1, "b": 2}, {"n": [2, 1], "m": [1]})
    assert changed_decisions(before, after) == {"changed_ops": 1, "changed_inputs": 1}  # order within a kept set is no change


@pytest.mark.numeric  # asserts on learned margins: .ci/run runs it again on another CPU path
def test_every_epoch_records_the_health_of_the_search(tmp_path, capsys):
    out = tmp_path / "run"
    assert search(out, "search.arch_lr=0.2") == 0  # margins well clear of the warning's 0.01 on any CPU path
    printed = capsys.readouterr().out
    rows = records(out)
    assert [r["arch_steps"] for r in rows] == [0, 4, 4]  # one weight-only warm-up epoch, then one arch step per step
    for r in rows:
        assert {"margin_alpha", "margin_beta", "changed_ops", "changed_inputs"} <= set(r)
    assert rows[0]["changed_ops"] == 0 and rows[0]["changed_inputs"] == 0  # warm-up: alpha/beta untouched
    assert all(r["arch_grad_snr"] > 0 for r in rows[1:]) and "arch_grad_snr" not in rows[0]
    assert rows[-1]["arch_grad_snr_noise"] == pytest.approx(math.sqrt(2 / (math.pi * 4)))
    assert rows[-1]["margin_alpha"] > rows[0]["margin_alpha"] * 10  # a large arch lr moves them
    # --no-progress still prints one line per epoch, numbered from 1
    assert "search epoch 1/3" in printed and "search epoch 3/3" in printed and "margin alpha" in printed
    final = json.loads((out / "final.json").read_text())
    assert final["arch_hash"] == graph_hash(load(out / "arch.yaml"))
    assert final["arch_steps_total"] == 8 and "warning" not in final


def test_a_search_that_cannot_learn_says_so(tmp_path, capsys):
    out = tmp_path / "frozen"
    assert search(out, "search.arch_lr=1e-7") == 0
    final = json.loads((out / "final.json").read_text())
    assert "cannot be told from the initialisation" in final["warning"] and "search.arch_lr" in final["warning"]
    assert "cannot be told from the initialisation" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0  # the page says it too, next to how the margins moved
    page = (out / "report.html").read_text()
    assert "Search health" in page and "cannot be told from the initialisation" in page and "decision margin of alpha" in page


@pytest.mark.parametrize(
    "extra, why",
    [
        (["search.epochs=2", "search.warmup_epochs=2"], "warm-up"),
        (["strategy.name=proxylessnas", "strategy.arch_every=20", "search.warmup_epochs=1"], "strategy.arch_every"),
    ],
)
def test_a_budget_without_architecture_steps_is_refused_before_it_runs(tmp_path, capsys, extra, why):
    out = tmp_path / "none"
    assert search(out, *extra) == 2
    err = capsys.readouterr().err
    assert "no architecture step" in err and why in err and "Traceback" not in err
    assert not (out / "checkpoint.pt").exists()


def test_steps_per_epoch_beyond_one_pass_is_said(tmp_path, capsys):
    out = tmp_path / "long"
    assert search(out, "search.steps_per_epoch=50", "search.epochs=2") == 0
    assert "more than one pass over trainA" in capsys.readouterr().err
    assert records(out)[-1]["arch_steps"] == 4  # 8 of 16 images in trainA, batch 2: 4 steps really ran


def test_spos_reports_the_architecture_its_evolution_picked(tmp_path):
    out = tmp_path / "spos"
    opts = ["strategy.name=spos", "strategy.population=4", "strategy.generations=1", "strategy.select=2", "strategy.mutation=2", "strategy.crossover=2", "strategy.recalib_batches=1"]
    assert search(out, *opts) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["derived_by"] == "on_search_end"
    assert final["arch_hash"] == graph_hash(load(out / "arch.yaml"))
    assert final["arch_hash"] != records(out)[-1]["arch_hash"]  # not the placeholder of the last epoch
    scores = json.loads((out / "scores.json").read_text())
    assert all(sorted(v)[-1] == 1.0 for v in scores["ops"].values())  # one-hot: the evolution's pick
    assert "warning" not in final  # no gradient steps is SPOS's design, not a failure
