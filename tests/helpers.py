"""Assertions several test files share."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch

from archgraph import compile_graph


def assert_architecture_trains(arch: nx.DiGraph, steps: int = 10, classes: int = 5) -> None:
    """A derived architecture compiles alone and a few SGD steps on a fixed batch lower its loss."""
    net = compile_graph(arch)
    torch.manual_seed(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, classes, (2, 32, 32))
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


# Tiny run folders made through the CLI, as a user makes them (a few seconds each on one core).
TINY_SEARCH = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=8",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.val_limit=2",
    "search.epochs=2",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "train.epochs=1",
    "train.steps_per_epoch=2",  # train.*: for trainings of its arch
]
# Tiny searches through the CLI: two epochs of three steps (search, proxylessnas), and one epoch
# without S-mIoU (spos and its evolution's resume, which add their strategy options).
TINY_CLI_SEARCH = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=2",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=3",
    "search.bn_recalib_batches=1",
    "data.val_limit=4",
]
TINY_ONE_EPOCH_SEARCH = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=1",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=3",
    "search.bn_recalib_batches=1",
    "data.val_limit=2",
    "search.eval_every=0",
]
# A tiny comparison: one epoch of two search steps and a two-step training per entry (compare, executors).
TINY_COMPARE = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=8",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.val_limit=2",
    "search.epochs=1",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "train.epochs=1",
    "train.steps_per_epoch=2",
]
TINY_TRAIN = ["data.crop=[32,32]", "data.batch_size=2", "data.num_samples=8", "data.val_limit=2", "train.epochs=2", "train.steps_per_epoch=2"]


def search_run(out: Path, *extra: str) -> Path:
    """A finished tiny search in ``out`` (its train section set for quick trainings of its arch)."""
    from archgraph.cli import main

    assert main(["search", "--out", str(out), "--no-progress", "--set", *TINY_SEARCH, *extra]) == 0
    return out


def trained_run(out: Path, num_classes: int = 5) -> Path:
    """A finished tiny training in ``out`` of a sampled 2-layer DCSS architecture (with best.pt and last.pt)."""
    from archgraph import build_space, save_graph
    from archgraph.cli import main
    from archgraph.core.decode import sample_architecture

    out = Path(out)
    arch = out.with_name(out.name + "-arch.yaml")
    save_graph(sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": num_classes}), 0), arch)
    assert main(["train", str(arch), "--out", str(out), "--no-progress", "--set", *TINY_TRAIN]) == 0
    return out


def load_benchmark(name: str):
    """A script of benchmarks/ imported as a module (they are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
