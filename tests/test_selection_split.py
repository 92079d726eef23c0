"""Nothing that picks an architecture reads data.val: every built-in strategy derives the same
arch.yaml, byte for byte, when val's labels are replaced by noise; the selection split is carved from
the training images (trainB's, or a seeded holdout removed from trainA/trainB)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

import archgraph.engine.search as engine
from archgraph.config import load_config
from archgraph.core.registry import list_strategies
from archgraph.engine.smiou import build_search_data
from archgraph.errors import ConfigError
from test_budgets import TINY, _options


class NoisyLabels(Dataset):
    """``ds`` with every label replaced by seeded uniform noise over the classes."""

    def __init__(self, ds: Dataset, num_classes: int):
        self.ds, self.num_classes = ds, num_classes

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        x, y = self.ds[i]
        noise = torch.randint(self.num_classes, y.shape, generator=torch.Generator().manual_seed(1000 + i))
        return x, noise.to(y.dtype)


@pytest.mark.parametrize("name", [info.name for info in list_strategies()])
def test_noisy_val_labels_change_no_architecture(name, tmp_path, monkeypatch):
    special = {"p_darts": ["strategy.stages=2", "strategy.drop=[2]", "strategy.dropout=[0.0,0.4]"], "proxylessnas": ["strategy.arch_every=1"]}
    opts = special.get(name) or _options(name)
    # 2 epochs (the first weight-only); S-mIoU, the val report, at the end only
    cfg = lambda: load_config(None, TINY + ["search.epochs=2", "search.eval_every=100", f"strategy.name={name}", *opts])
    engine.run_search(cfg(), tmp_path / "clean", progress=False)

    def noisy(c):
        data = build_search_data(c)
        data.val = NoisyLabels(data.val, data.num_classes)
        return data

    monkeypatch.setattr(engine, "build_search_data", noisy)
    engine.run_search(cfg(), tmp_path / "noisy", progress=False)
    assert (tmp_path / "clean" / "arch.yaml").read_bytes() == (tmp_path / "noisy" / "arch.yaml").read_bytes()
    reports = [json.loads((tmp_path / d / "final.json").read_text()) for d in ("clean", "noisy")]
    assert reports[0]["s_miou_split"] == "val"
    assert reports[0]["s_miou"] != reports[1]["s_miou"]  # val was read, for the report only


def test_the_selection_split_comes_from_the_training_images():
    cfg = load_config(None, TINY)
    data = build_search_data(cfg)
    assert sorted(data.select.indices) == sorted(data.train_b.indices)  # trainB's images ...
    assert not data.select.dataset.train and data.select.dataset.split == cfg.data.train_split  # ... without augmentation

    held = build_search_data(load_config(None, TINY + ["search.select_split=holdout", "search.holdout_fraction=0.25"]))
    idx = set(held.select.indices)
    assert len(idx) == 4 and not idx & set(held.train_a.indices) and not idx & set(held.train_b.indices)
    assert len(idx) + len(held.train_a) + len(held.train_b) == 16
    again = build_search_data(load_config(None, TINY + ["search.select_split=holdout", "search.holdout_fraction=0.25"]))
    assert list(again.select.indices) == list(held.select.indices)  # seeded


def test_a_holdout_that_leaves_too_little_is_refused():
    with pytest.raises(ConfigError, match="holdout_fraction"):
        build_search_data(load_config(None, TINY + ["search.select_split=holdout", "search.holdout_fraction=0.9"]))
    with pytest.raises(ConfigError, match="select_split"):
        load_config(None, ["search.select_split=val"])
