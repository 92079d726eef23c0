"""S-mIoU, the search's own measure of quality: the currently derived architecture evaluated inside
the supernet (its subnet mode), with the supernet's weights and BatchNorm statistics re-estimated on
training batches first. Also the search's data: trainA (weights), trainB (architecture), the
selection split (what anything that picks an architecture scores on) and val (reports only).
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
    """The search's splits. ``select`` is the split every decision that picks an architecture scores
    on (SPOS's evolution, selectors; :func:`score_subnet`): carved from the training images, so that
    ``val``, which reports the result, is never read by a choice (Lindauer & Hutter's checklist)."""

    train_a: Dataset  # weights (augmented)
    train_b: Dataset  # architecture parameters (augmented)
    val: Dataset  # reports only: S-mIoU per epoch, stand-alone T-mIoU
    num_classes: int
    class_names: list[str]
    select: Dataset  # selection: training images without augmentation (search.select_split)


def build_search_data(cfg: Config) -> SearchData:
    """trainA / trainB: a seeded random split of the training set; the selection split (trainB's
    images, or a seeded holdout removed from both first); val: the validation split.

    The selection split reads the training images with the evaluation transforms (whole images, no
    random crop or flip), as val is read: a candidate's score must not change with the augmentation."""
    from archgraph.builders import dataset_split

    d, s = cfg.data, cfg.search
    train = dataset_split(cfg, d.train_split, train=True)
    val = dataset_split(cfg, d.val_split, train=False)
    if not 0 < s.split_ratio < 1:
        raise ConfigError(f"search.split_ratio must be in (0, 1), got {s.split_ratio}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    held: list[int] = []
    if s.select_split == "holdout":
        size = int(round(len(order) * s.holdout_fraction))
        if size < 1:
            raise ConfigError(f"search.holdout_fraction={s.holdout_fraction} of {len(order)} training images holds none; raise it or use search.select_split=trainB")
        held, order = order[len(order) - size :], order[: len(order) - size]
    elif s.select_split != "trainB":
        raise ConfigError(f"search.select_split must be trainB or holdout, got {s.select_split!r}")
    cut = int(round(len(order) * s.split_ratio))
    if cut < d.batch_size or len(order) - cut < d.batch_size:
        raised = " (after the selection holdout; lower search.holdout_fraction)" if held else ""
        raise ConfigError(f"the training split has {len(order)} images{raised}: too few for two halves of at least data.batch_size={d.batch_size}; lower data.batch_size or use more data")
    plain = dataset_split(cfg, d.train_split, train=False, check=False)  # the same images, evaluation transforms
    select = Subset(plain, held or order[cut:])
    if d.val_limit:
        val = Subset(val, range(min(d.val_limit, len(val))))
    return SearchData(Subset(train, order[:cut]), Subset(train, order[cut:]), val, train.num_classes, list(train.class_names), select)


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
def recalibrated_subnet(
    net: CompiledNetwork, relaxation, op_idx: dict[str, int], input_idx: dict[str, list[int]], data: SearchData, cfg: Config, device: torch.device, recalib_batches: int | None = None
) -> Iterator[None]:
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


def subnet_miou(
    net: CompiledNetwork,
    relaxation,
    op_idx: dict[str, int],
    input_idx: dict[str, list[int]],
    data: SearchData,
    cfg: Config,
    device: torch.device,
    on: Dataset,
    recalib_batches: int | None = None,
    then: Callable[[], None] | None = None,
) -> float:
    """mIoU on ``on`` of one architecture inside the supernet (its subnet mode), with the BN
    statistics re-estimated on trainA batches first; the supernet's own BN state is restored.
    ``then`` runs after the evaluation, still inside that architecture with its recalibrated
    statistics (the search's TensorBoard prediction pictures: one recalibration serves both)."""
    from archgraph.engine.evaluate import evaluate

    with recalibrated_subnet(net, relaxation, op_idx, input_idx, data, cfg, device, recalib_batches):
        cm = evaluate(net, on, data.num_classes, progress=False, shard=True)
        if then is not None:
            then()
    return float(cm.miou())


def score_subnet(
    net: CompiledNetwork,
    relaxation,
    op_idx: dict[str, int],
    input_idx: dict[str, list[int]],
    data: SearchData,
    cfg: Config,
    device: torch.device,
    recalib_batches: int | None = None,
    then: Callable[[], None] | None = None,
) -> float:
    """A candidate's score for anything that picks an architecture: its mIoU on the selection split
    (``data.select``, never ``data.val``) in the supernet's subnet mode, BN recalibrated on trainA."""
    return subnet_miou(net, relaxation, op_idx, input_idx, data, cfg, device, data.select, recalib_batches, then)


def supernet_miou(net: CompiledNetwork, strategy, data: SearchData, cfg: Config, device: torch.device, then: Callable[[], None] | None = None) -> float:
    """S-mIoU, a REPORT: the currently derived architecture, evaluated with the supernet's weights on
    ``data.val`` (search.jsonl labels it ``s_miou_split: val``); nothing decides on it (``then``: as in
    :func:`subnet_miou`)."""
    ops, inputs = strategy.scores(net)
    op_idx, input_idx = decisions(net.choices, ops, inputs)
    return subnet_miou(net, strategy.relaxation, op_idx, input_idx, data, cfg, device, data.val, then=then)
