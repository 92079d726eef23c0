"""Evaluation on whole images: one confusion matrix over a validation set.

Why whole images, one at a time by default: segmentation papers report mIoU on the full frame, not
on crops, and validation images may differ in size. The network pads its input to a multiple of its
coarsest scale and crops the logits back (see :class:`~archgraph.core.compile.CompiledNetwork`), so any
size works. Multi-scale + flip testing (as DeepLab and DCNAS report it) averages the softmax
probabilities of the image resized by each scale, and of its mirror image, at the original size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from archgraph.data.transforms import IGNORE_INDEX, same_size_batches
from archgraph.data.metrics import ConfusionMatrix


@torch.no_grad()
def predict_probs(net: nn.Module, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False) -> torch.Tensor:
    """Class probabilities ``N x C x H x W`` averaged over ``scales`` (and horizontal flips)."""
    h, w = images.shape[-2:]
    total: torch.Tensor | None = None
    count = 0
    for s in scales:
        x = images if s == 1.0 else F.interpolate(images, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", align_corners=False)
        variants = [(x, False), (x.flip(-1), True)] if flip else [(x, False)]
        for inp, flipped in variants:
            logits = net(inp)
            if flipped:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            probs = torch.softmax(logits.float(), dim=1)
            total = probs if total is None else total + probs
            count += 1
    assert total is not None, "scales must not be empty"
    return total / count


@torch.no_grad()
def evaluate(
    net: nn.Module,
    dataset: Dataset,
    num_classes: int,
    *,
    progress: bool = False,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    description: str = "evaluate",
    shard: bool = False,
) -> ConfusionMatrix:
    """Confusion matrix of ``net`` over ``dataset`` (whole images; pixels labelled 255 ignored).

    The network is put in eval mode for the pass and restored afterwards. ``batch_size > 1`` batches
    consecutive images of one size (:func:`~archgraph.data.transforms.same_size_batches`), so the
    result is the one of ``batch_size=1``: padding a smaller image to a larger one's size would
    change what the network predicts near its edges, although the padding itself is never scored.

    ``shard=True`` under ``torchrun``: each rank evaluates a disjoint share of ``dataset`` and the
    confusion matrices are summed, so every rank returns the matrix of the whole set (the same as one
    process). Every rank must then call it (it is a collective); progress is drawn on rank 0 only.
    """
    from torch.utils.data import Subset

    from archgraph.engine import distributed as D

    sharded = shard and D.is_distributed()
    if sharded:
        dataset = Subset(dataset, D.shard_indices(len(dataset)))  # type: ignore[arg-type]
        progress = progress and D.is_main()
    if device is None:
        first = next(iter(net.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = net.training
    net.eval()
    cm = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX, device=device)
    batches = same_size_batches((dataset[i] for i in range(len(dataset))), batch_size)
    bar = None
    try:
        if progress:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(description, total=len(dataset))
        for images, labels in batches:
            images, labels = images.to(device), labels.to(device)
            probs = predict_probs(net, images, scales, flip)
            cm.update(probs.argmax(dim=1), labels)
            if bar is not None:
                bar.advance(task, images.shape[0])
    finally:
        if bar is not None:
            bar.stop()
        net.train(was_training)
    if sharded:
        cm.reduce_()
    return cm
