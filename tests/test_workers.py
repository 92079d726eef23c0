"""Settings that change speed, never results: data.workers > 0 (the same batches as a loader without
workers, persistent workers told each sample's epoch; byte-identical search and training outputs) and
train.compile (the compiled step trains the same network; checkpoints hold the plain module)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from archgraph.config import load_config
from archgraph.data import build_dataset
from archgraph.data import workers as workers_module
from archgraph.data.workers import loader_scope, set_dataset_epoch, worker_loader
from archgraph.engine import distributed as D
from archgraph.errors import ConfigError

from helpers import TINY_TRAIN, search_run


def _dataset():
    ds = build_dataset("synthetic", "train", crop=(16, 16), train=True, num_samples=12, seed=3)
    return Subset(ds, [0, 2, 3, 5, 7, 8, 9, 11])  # as the search's trainA: a Subset of a training split


def _passes(loader, ds, epochs: tuple[int, ...], passes: int = 2) -> list[torch.Tensor]:
    """Every batch of ``passes`` passes per epoch, the dataset's epoch set before each epoch."""
    out = []
    for epoch in epochs:
        set_dataset_epoch(ds, epoch)
        for _ in range(passes):
            out += [torch.cat([x.flatten(), y.flatten().float()]) for x, y in loader]
    return out


def test_worker_batches_equal_a_loader_without_workers():
    ds = _dataset()
    plain = DataLoader(ds, batch_size=3, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(5))
    expected = _passes(plain, ds, (0, 1))
    with loader_scope():  # persistent workers: the epoch must travel with the indices
        got = _passes(worker_loader(ds, 3, 5, 2, pin=False), ds, (0, 1))
        pools = list(workers_module._SCOPES[-1].values())
        assert len(pools) == 1 and len(pools[0]) == 1  # one set of workers served all four passes
    assert len(got) == len(expected) == 8
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert not torch.equal(expected[0], expected[4])  # epoch 1 augments differently: the epoch reached the workers


def test_sharded_worker_batches_equal_the_step_sampler():
    ds = _dataset()
    g = torch.Generator().manual_seed(2)
    plain = DataLoader(ds, batch_size=2, sampler=D.StepSampler(ds, 2, 1, g), drop_last=True, generator=g)
    expected = [y for _, y in plain]
    got = [y for _, y in worker_loader(ds, 2, 2, 1, pin=False, shard=(2, 1))]
    assert len(got) == len(expected) == 2 and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_two_passes_read_at_once_each_get_their_own_batches():
    """A pass still being read while another over the same dataset begins (a scorer recalibrating
    on trainA in the middle of a loop over it): each pass gives what its own loader would."""
    ds = _dataset()

    def plain(seed):
        return [y for _, y in DataLoader(ds, batch_size=2, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed))]

    with loader_scope():
        first = iter(worker_loader(ds, 2, 0, 1, pin=False))
        got_first = [next(first)[1]]
        got_second = [y for _, y in worker_loader(ds, 2, 1, 1, pin=False)]  # the whole second pass in between
        got_first += [y for _, y in first]
        third = [y for _, y in worker_loader(ds, 2, 0, 1, pin=False)]  # both loaders free again: one is reused
    for got, want in ((got_first, plain(0)), (got_second, plain(1)), (third, plain(0))):
        assert len(got) == len(want) == 4 and all(torch.equal(a, b) for a, b in zip(got, want))


def test_workers_bound_is_checked():
    with pytest.raises(ConfigError, match="data.workers"):
        load_config(None, ["data.workers=-1"])


def test_search_and_training_identical_with_workers(tmp_path):
    from archgraph.cli import main

    runs = {
        w: search_run(
            tmp_path / f"w{w}",
            f"data.workers={w}",
            "strategy.name=spos",
            "strategy.population=2",
            "strategy.generations=1",
            "strategy.select=1",
            "strategy.mutation=1",
            "strategy.crossover=1",
            "strategy.recalib_batches=1",
        )
        for w in (0, 2)
    }
    for name in ("arch.yaml", "scores.json"):
        assert (runs[0] / name).read_bytes() == (runs[2] / name).read_bytes(), name
    metrics = {}
    for w in (0, 2):
        out = tmp_path / f"t{w}"
        assert main(["train", str(runs[0]), "--out", str(out), "--no-progress", "--set", *TINY_TRAIN, f"data.workers={w}"]) == 0
        metrics[w] = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    for a, b in zip(metrics[0], metrics[2]):
        assert (a["loss"], a["train_pixel_acc"], a.get("miou")) == (b["loss"], b["train_pixel_acc"], b.get("miou"))


def test_train_compile_trains_the_same_network(tmp_path, monkeypatch):
    """train.compile goes through torch.compile (its "eager" backend here: the wiring, not inductor's
    minutes of C++ compilation on a CPU); the losses match an eager run and best.pt loads into a plain network."""
    from archgraph.cli import main

    calls = []
    real = torch.compile

    def spy(model, **kwargs):
        calls.append(type(model).__name__)
        return real(model, backend="eager")

    from archgraph import build_space, save_graph
    from archgraph.core.decode import sample_architecture

    monkeypatch.setattr(torch, "compile", spy)
    arch = tmp_path / "arch.yaml"
    save_graph(sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), 0), arch)
    losses = {}
    for flag in ("false", "true"):
        out = tmp_path / f"c{flag}"
        assert main(["train", str(arch), "--out", str(out), "--no-progress", "--set", *TINY_TRAIN, "train.epochs=1", f"train.compile={flag}"]) == 0
        losses[flag] = [json.loads(line)["loss"] for line in (out / "train.jsonl").read_text().splitlines()]
    assert calls == ["CompiledNetwork"]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)
    state = torch.load(tmp_path / "ctrue" / "best.pt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("_orig_mod.") for k in state["net"])
