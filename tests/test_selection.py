"""The selection stage (archgraph.engine.selection): every built-in strategy with every built-in
selector on a tiny supernet; a planted case where argmax of a barely-moved alpha is wrong and topk
is right; selection never reads data.val; the spec parser and the budget rule; a search through the
loop records its selection in final.json."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

from archgraph.config import load_config
from archgraph.core.decode import decode
from archgraph.core.registry import get_strategy
from archgraph.configtools import dataclass_from_dict
from archgraph.core.spaces_api import build_space
from archgraph.engine.scoring import one_hot_scores
from archgraph.engine.search import run_search
from archgraph.engine.selection import auto_k, get_selector, select_after_search, select_with_scorer, selector_names
from archgraph.engine.smiou import build_search_data
from archgraph.errors import ConfigError
from archgraph.testing import PLANTED_INPUT, PLANTED_OP, PLANTED_OPS, build_planted, check_settings, run_planted

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
]
PLANTED_DATA = [
    "data.name=synthetic",
    "data.crop=[16,16]",
    "data.batch_size=2",
    "data.val_limit=2",
    "data.num_classes=2",
    "search.bn_recalib_batches=1",
]  # the planted graph: 2 classes, one op and one input choice of 3
STRATEGIES = ["darts", "dcnas", "pc_darts", "p_darts", "proxylessnas", "spos", "rsws"]
SELECTORS = ["argmax", "topk:3", "topk:2:uniform", "perturb:tune=1", "proxy:params:2"]


class _Forbidden(Dataset):
    """data.val in these tests: reading it is a failure (selection must use the selection split)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        raise AssertionError("selection read data.val")


def _data(overrides):
    cfg = load_config(None, overrides)
    data = build_search_data(cfg)
    data.select = torch.utils.data.Subset(data.select, range(2))  # two images keep every candidate cheap
    data.val = _Forbidden()
    return cfg, data


@pytest.fixture(scope="module")
def tiny_data():
    return _data(TINY)


@pytest.fixture(scope="module")
def planted_data():
    return _data(PLANTED_DATA)


def _supernet(name: str, cfg, classes: int, layers: int = 1):
    info = get_strategy(name)
    params = dataclass_from_dict(info.params, dict(check_settings(info.cls).options), "strategy")
    strategy = info.cls(build_space("dcss", {"layers": layers, "base_channels": 4, "num_classes": classes}), params, cfg.search, 0)
    strategy.begin_stage(0, None)
    return strategy, strategy.build_supernet()


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_with_every_selector(name, planted_data):
    """On the planted graph (one op and one input choice of three): every selector's pick is a
    derivable architecture, recorded, and the supernet is left as it was; data.val is never read."""
    cfg, data = planted_data
    strategy = build_planted(name, seed=0)
    net = strategy.build_supernet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for spec in SELECTORS:
        selection, entry = select_after_search(spec, net, strategy, data, cfg, torch.device("cpu"), weight_steps=4, arch_steps=4)
        op_idx, input_idx = selection.candidate
        assert set(op_idx) == set(net.choices.op_labels) and set(input_idx) == set(net.choices.input_labels), spec
        for c in net.choices.inputs:
            assert len(input_idx[c.label]) == c.keep and len(set(input_idx[c.label])) == c.keep
        decode(strategy.graph, *one_hot_scores(net.choices, op_idx, input_idx))  # a derivable architecture
        assert entry["selector"] == spec and 0 <= entry["picked"] < entry["candidates"] == len(entry["scores"])
        # the selection leaves the supernet as the search left it (perturb's fine-tune included)
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), spec


def test_perturb_decides_every_choice_by_removal(tiny_data):
    """On a small DCSS (every op and input choice decided once, each by its removal's effect)."""
    cfg, data = tiny_data
    strategy, net = _supernet("darts", cfg, data.num_classes)
    selection, entry = select_after_search("perturb:tune=0", net, strategy, data, cfg, torch.device("cpu"), 4, 4)
    decided = sorted(("op", d["op"]) if "op" in d else ("inputs", d["inputs"]) for d in entry["decisions"])
    wanted = sorted({("op", c.label) for c in net.choices.ops if len(c.candidates) > 1} | {("inputs", c.label) for c in net.choices.inputs if len(c.candidates) > c.keep})
    assert decided == wanted and entry["mode"] == "mixture"
    for d in entry["decisions"]:
        if "op" in d:  # the kept op is the one whose removal left the lowest accuracy
            assert d["accuracy_without"][d["kept"]] == min(d["accuracy_without"])


def test_planted_argmax_wrong_topk_right():
    """Shared weights trained with alpha frozen at a tiny tilt toward the wrong op and input: the
    decoder's argmax follows the tilt, the best of the 9 candidates by shared-weight score is planted."""
    strategy = build_planted("darts", seed=0)
    run = run_planted(strategy, seed=0, cut=True)  # architecture gradients cut: only the weights learn
    net = run.net
    in_choice = net.choices.input_choice("pick")
    with torch.no_grad():
        net.arch.alpha["pick"].copy_(torch.tensor([2e-3, 0.0, 1e-3]))  # avg pool first: wrong
        net.arch.beta["pick"].copy_(torch.tensor([2e-3, 0.0, 1e-3]))  # the coarse stem first: wrong
    score = lambda ops, inputs: run.fitness.setdefault((ops["pick"], tuple(inputs["pick"])), _fitness(net, strategy, ops, inputs))
    argmax = select_with_scorer("argmax", net, strategy, score)
    topk = select_with_scorer("topk:9", net, strategy, score)
    planted = (PLANTED_OPS.index(PLANTED_OP), [in_choice.candidates.index(PLANTED_INPUT)])
    assert (argmax.candidate[0]["pick"], argmax.candidate[1]["pick"]) != planted
    assert (topk.candidate[0]["pick"], topk.candidate[1]["pick"]) == planted
    assert topk.candidates == 9 and topk.picked != 0  # the argmax came first and lost


def _fitness(net, strategy, ops, inputs) -> float:
    from archgraph.testing import subnet_accuracy

    return subnet_accuracy(net, strategy.relaxation, torch.Generator().manual_seed(5), {})(ops, inputs)


def test_spec_errors_name_the_fix():
    assert {"argmax", "topk", "perturb", "proxy"} <= set(selector_names())
    for bad, says in (("topq", "did you mean 'topk'"), ("topk:x", "whole number"), ("perturb:fast", "tune=N"), ("proxy", "proxy:NAME"), ("proxy:nonsense", "unknown scorer"), ("topk:0", "at least 1")):
        with pytest.raises(ConfigError, match=says):
            get_selector(bad)
    assert get_selector("topk:5:uniform").k == 5 and get_selector("topk:5:uniform").uniform
    assert get_selector("perturb:tune=0").tune == 0


def test_budget_rule_keeps_selection_within_the_search():
    assert auto_k(weight_steps=100, arch_steps=100, passes_per_candidate=30) == 20  # 600 passes // 30
    assert auto_k(1000, 1000, 10) == 24  # capped
    assert auto_k(1, 0, 50) == 1  # never below the decoder's own pick
    for w, a, p in ((10, 10, 7), (37, 0, 5), (200, 50, 9)):
        k = auto_k(w, a, p)
        assert k * p <= 3 * (w + a) or k == 1


def test_search_records_its_selection(tmp_path):
    cfg = load_config(None, TINY + ["search.steps_per_epoch=2", "search.select=topk:2:uniform"])
    out = tmp_path / "run"
    run_search(cfg, out, progress=False)
    final = json.loads((out / "final.json").read_text())
    sel = final["selection"]
    assert sel["selector"] == "topk:2:uniform" and sel["candidates"] == 2 and len(sel["scores"]) == 2
    assert final["derived_by"] == "selection topk:2:uniform"
    scores = json.loads((out / "scores.json").read_text())  # arch.yaml is the picked candidate, one-hot in scores.json
    assert all(sorted(set(v)) in ([0.0, 1.0], [1.0]) for v in scores["ops"].values())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert "selection" in history[-1].get("label", "")
    from archgraph.outputs.report import write_report

    page = write_report(out).read_text()  # the report says how the architecture was picked and what was spent
    assert "<h2>Selection</h2>" in page and "<code>topk:2:uniform</code> from 2 candidates" in page
    assert "<h2>What the search spent</h2>" in page


def test_bad_select_refused_before_the_search(tmp_path):
    cfg = load_config(None, TINY + ["search.select=topq"])
    with pytest.raises(ConfigError, match="unknown selector"):
        run_search(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("select, evolves", [("topk:2:uniform", False), ("argmax", True)])
def test_a_selector_replaces_spos_evolution_and_argmax_keeps_it(tmp_path, select, evolves):
    """SPOS's evolution is its own rule: `argmax` keeps it, any other selector replaces it (no wasted
    generations: no evolution.jsonl), and the pick is the selector's."""
    small = [f"strategy.{k}={v}" for k, v in (("population", 2), ("generations", 1), ("select", 1), ("mutation", 1), ("crossover", 1), ("recalib_batches", 1))]  # an evolution of a few candidates
    cfg = load_config(None, TINY + ["strategy.name=spos", *small, "search.steps_per_epoch=2", f"search.select={select}"])
    out = tmp_path / "run"
    run_search(cfg, out, progress=False)
    final = json.loads((out / "final.json").read_text())
    assert (out / "evolution.jsonl").is_file() == evolves
    assert final["derived_by"] == f"selection {select}"


def test_archgraph_select_picks_again_from_a_finished_search(tmp_path):
    """`archgraph select RUN --select ...`: the same pick as search.select at the end of that search,
    written to RUN/selected/<spec>/, and a second run with the same selector refused without --force."""
    from archgraph.cli import main
    from archgraph.core.graph import graph_hash, load

    cfg = load_config(None, TINY + ["search.steps_per_epoch=2"])
    run = tmp_path / "run"
    run_search(cfg, run, progress=False)
    assert main(["select", str(run), "--select", "topk:3:uniform"]) == 0
    picked = run / "selected" / "topk-3-uniform"
    record = json.loads((picked / "selection.json").read_text())
    assert record["selector"] == "topk:3:uniform" and record["candidates"] == 3 and len(record["scores"]) == 3

    same = tmp_path / "same"  # the same search with the selector as its own stage picks the same architecture
    run_search(load_config(None, TINY + ["search.steps_per_epoch=2", "search.select=topk:3:uniform"]), same, progress=False)
    assert graph_hash(load(picked / "arch.yaml")) == graph_hash(load(same / "arch.yaml"))
    assert json.loads((same / "final.json").read_text())["selection"]["scores"] == record["scores"]

    assert main(["select", str(run), "--select", "topk:3:uniform"]) == 2  # kept: refused without --force
    assert main(["select", str(run), "--select", "topk:3:uniform", "--force"]) == 0
