"""S-mIoU, the search's own measure of quality: the currently derived architecture evaluated inside
the supernet (its subnet mode), with the supernet's weights and BatchNorm statistics re-estimated on
training batches first. Also the search's data: trainA (weights), trainB (architecture), val.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from archgraph.config import Config
from archgraph.core.compile import CompiledNetwork
from archgraph.core.decode import decisions
from archgraph.engine import distributed as D
from archgraph.engine.loop import set_dataset_epoch
from archgraph.errors import ConfigError


@dataclass
class SearchData:
    train_a: Dataset  # weights
    train_b: Dataset  # architecture
    val: Dataset
    num_classes: int
    class_names: list[str]


def build_search_data(cfg: Config) -> SearchData:
    """trainA / trainB: a seeded random split of the training set; val: the validation split."""
    from archgraph.builders import dataset_split

    d = cfg.data
    train = dataset_split(cfg, d.train_split, train=True)
    val = dataset_split(cfg, d.val_split, train=False)
    if not 0 < cfg.search.split_ratio < 1:
        raise ConfigError(f"search.split_ratio must be in (0, 1), got {cfg.search.split_ratio}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    cut = int(round(len(order) * cfg.search.split_ratio))
    if cut < d.batch_size or len(order) - cut < d.batch_size:
        raise ConfigError(
            f"the training split has {len(train)} images: too few for two halves of at least data.batch_size={d.batch_size}; "
            "lower data.batch_size or use more data"
        )
    if d.val_limit:
        val = Subset(val, range(min(d.val_limit, len(val))))
    return SearchData(Subset(train, order[:cut]), Subset(train, order[cut:]), val, train.num_classes, list(train.class_names))


def loader(ds: Dataset, cfg: Config, seed: int) -> DataLoader:
    """Shuffled batches of ``data.batch_size``; under torchrun this rank's share of each global batch."""
    return D.sharded_loader(ds, cfg.data.batch_size, seed, cfg.data.workers)


def cycle(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


# --------------------------------------------------------------------------------------------------
# S-mIoU: the derived architecture evaluated with the supernet's weights


@contextlib.contextmanager
def _preserved_batchnorm(net: nn.Module) -> Iterator[list[nn.modules.batchnorm._BatchNorm]]:
    """Recalibration must not leak into the search: restore every BN buffer afterwards."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, {k: v.clone() for k, v in m.named_buffers()}) for m in bns]
    try:
        yield bns
    finally:
        for m, (momentum, buffers) in zip(bns, saved):
            m.momentum = momentum
            for k, v in buffers.items():
                getattr(m, k).copy_(v)


@contextlib.contextmanager
def _fixed_augmentation(ds: Dataset) -> Iterator[None]:
    """Recalibrate on the augmentation of epoch 0, whatever epoch the search is in, then put the
    dataset's epoch back: the same architecture gets the same score at the end of a search, after a
    resume, and when ``archgraph correlate`` loads the finished supernet (random crops depend on
    the epoch)."""
    base = ds.dataset if isinstance(ds, Subset) else ds
    previous = getattr(base, "epoch", None)
    set_dataset_epoch(ds, 0)
    try:
        yield
    finally:
        if previous is not None:
            set_dataset_epoch(ds, previous)


@contextlib.contextmanager
def recalibrated_subnet(net: CompiledNetwork, relaxation, op_idx: dict[str, int], input_idx: dict[str, list[int]], data: SearchData,
                        cfg: Config, device: torch.device, recalib_batches: int | None = None) -> Iterator[None]:
    """Inside: the supernet computes one architecture (its subnet mode) in eval mode, with the BN
    statistics re-estimated first on ``search.bn_recalib_batches`` trainA batches (epoch 0's
    augmentation); on exit the supernet's own BN state and train/eval mode come back. Every rank
    must enter it (synced BN is collective)."""
    batches = cfg.search.bn_recalib_batches if recalib_batches is None else recalib_batches
    was_training = net.training
    with _preserved_batchnorm(net) as bns, relaxation.fixed_subnet(op_idx, input_idx), _fixed_augmentation(data.train_a), torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the recalibration batches
        net.train()
        recalib = loader(data.train_a, cfg, cfg.seed + 7)
        for x, _ in itertools.islice(cycle(recalib), max(batches, 1)):
            net(x.to(device))
        net.eval()
        try:
            yield
        finally:
            net.train(was_training)


def score_subnet(net: CompiledNetwork, relaxation, op_idx: dict[str, int], input_idx: dict[str, list[int]], data: SearchData, cfg: Config, device: torch.device,
                 recalib_batches: int | None = None, then: Callable[[], None] | None = None) -> float:
    """Validation mIoU of one architecture inside the supernet (its subnet mode), with the BN
    statistics re-estimated on training batches first; the supernet's own BN state is restored.
    ``then`` runs after the evaluation, still inside that architecture with its recalibrated
    statistics (the search's TensorBoard prediction pictures: one recalibration serves both)."""
    from archgraph.engine.evaluate import evaluate

    with recalibrated_subnet(net, relaxation, op_idx, input_idx, data, cfg, device, recalib_batches):
        cm = evaluate(net, data.val, data.num_classes, progress=False, shard=True)
        if then is not None:
            then()
    return float(cm.miou())


def supernet_miou(net: CompiledNetwork, strategy, data: SearchData, cfg: Config, device: torch.device, then: Callable[[], None] | None = None) -> float:
    """S-mIoU: the currently derived architecture, evaluated with the supernet's weights (``then``:
    as in :func:`score_subnet`)."""
    ops, inputs = strategy.scores(net)
    op_idx, input_idx = decisions(net.choices, ops, inputs)
    return score_subnet(net, strategy.relaxation, op_idx, input_idx, data, cfg, device, then=then)
