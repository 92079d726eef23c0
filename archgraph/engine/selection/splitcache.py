"""The selection split, loaded once, and candidate scoring that reuses it.

Selection scores many architectures with the same data: ``search.bn_recalib_batches`` trainA batches
to re-estimate the BN statistics (epoch 0's augmentation, the loader of
:func:`archgraph.engine.smiou.recalibrated_subnet`), then one pass over the selection split
(``data.select``: training images, never ``data.val``). Reading and decoding those images again for
every candidate costs more than the candidate's own forward passes at small sizes (benchmarks/
selection_cost.py), so :class:`SplitCache` loads them once as tensors and :class:`SubnetScorer`
runs nothing per candidate but the forward passes it needs: the same number
:func:`~archgraph.engine.smiou.score_subnet` computes, batched where images share a size.

The supernet's BN state is saved once for a whole selection and restored at its end (a candidate
only resets the statistics it then re-estimates), instead of being copied around every candidate.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from archgraph.config import Config
from archgraph.core.compile import CompiledNetwork
from archgraph.data.transforms import same_size_batches
from archgraph.data.metrics import ConfusionMatrix
from archgraph.data.transforms import IGNORE_INDEX
from archgraph.engine.smiou import SearchData, _fixed_augmentation, _preserved_batchnorm, cycle, loader

Candidate = tuple[dict[str, int], dict[str, list[int]]]

# Beyond this many bytes of cached images the selection split is read again for every candidate
# instead (slower, same numbers): a large split must not exhaust memory.
CACHE_LIMIT_BYTES = 1 << 30


@dataclass
class SplitCache:
    """The tensors a candidate's score needs, loaded once: recalibration inputs and the selection
    split's (image, label) batches (consecutive images of one size stacked, up to ``batch_size``)."""

    recalib: list[torch.Tensor]
    select: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    streamed: Dataset | None = None  # set when the split was too large to cache: read per candidate
    batch_size: int = 1
    num_classes: int = 2

    @classmethod
    def build(cls, data: SearchData, cfg: Config, device: torch.device, recalib_batches: int | None = None) -> "SplitCache":
        batches = cfg.search.bn_recalib_batches if recalib_batches is None else recalib_batches
        with _fixed_augmentation(data.train_a):
            recalib = [x.to(device) for x, _ in itertools.islice(cycle(loader(data.train_a, cfg, cfg.seed + 7)), max(batches, 1))]
        split = data.select
        out = cls(recalib, batch_size=cfg.data.batch_size, num_classes=data.num_classes)
        first = split[0][0] if len(split) else None
        if first is not None and first.numel() * first.element_size() * len(split) > CACHE_LIMIT_BYTES:
            out.streamed = split
            return out
        out.select = [(x.to(device), y.to(device)) for x, y in same_size_batches((split[i] for i in range(len(split))), cfg.data.batch_size)]
        return out

    def select_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.streamed is None:
            return iter(self.select)
        device = self.recalib[0].device
        ds = self.streamed
        return ((x.to(device), y.to(device)) for x, y in same_size_batches((ds[i] for i in range(len(ds))), self.batch_size))

    @property
    def forward_passes(self) -> int:
        """Forward passes one candidate needs: its recalibration batches and the selection batches."""
        n = len(self.select) if self.streamed is None else -(-len(self.streamed) // self.batch_size)  # streamed: at least
        return len(self.recalib) + n


class SubnetScorer:
    """Shared-weight mIoU of candidates on the selection split: subnet mode, BN recalibrated.

    Use as a context manager around a batch of calls: the supernet's BN buffers, momenta and train
    mode are saved on entry and restored on exit."""

    def __init__(self, net: CompiledNetwork, relaxation, cache: SplitCache):
        self.net, self.relaxation, self.cache = net, relaxation, cache
        self._stack = contextlib.ExitStack()
        self.bns: list[nn.modules.batchnorm._BatchNorm] = []

    def __enter__(self) -> "SubnetScorer":
        self._was_training = self.net.training
        self.bns = self._stack.enter_context(_preserved_batchnorm(self.net))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self.net.train(self._was_training)

    @torch.no_grad()
    def recalibrate(self) -> None:
        """Re-estimate every BN statistic on the cached recalibration batches (cumulative average)."""
        for m in self.bns:
            m.reset_running_stats()
            m.momentum = None
        self.net.train()
        for x in self.cache.recalib:
            self.net(x)
        self.net.eval()

    @torch.no_grad()
    def miou(self) -> float:
        """mIoU of what the network computes now (eval mode) on the selection split."""
        if self.net.training:  # after recalibrate() it is in eval mode already: no second walk over every module
            self.net.eval()
        cm = ConfusionMatrix(self.cache.num_classes, ignore_index=IGNORE_INDEX, device=self.cache.recalib[0].device)
        for x, y in self.cache.select_batches():
            cm.update(self.net(x).max(1).indices, y)  # the argmax over classes; max(1) is several times faster on CPU
        return float(cm.miou())

    def score(self, candidate: Candidate) -> float:
        op_idx, input_idx = candidate
        with self.relaxation.fixed_subnet(op_idx, input_idx):
            self.recalibrate()
            return self.miou()

    def score_all(self, candidates: Sequence[Candidate]) -> list[float]:
        return [self.score(c) for c in candidates]


def plain(candidate: Candidate) -> dict[str, Mapping]:
    """A candidate as JSON: {"ops": ..., "inputs": ...}."""
    return {"ops": dict(candidate[0]), "inputs": {k: list(v) for k, v in candidate[1].items()}}
