"""Semantic-segmentation datasets behind one constructor, :func:`build_dataset`.

Every dataset returns ``(image, label)``: a float ``3xHxW`` tensor normalised with the ImageNet
mean/std and a long ``HxW`` tensor of class ids, :data:`IGNORE_INDEX` (255) marking pixels that
count in neither loss nor metrics. Layouts, class mappings and options: ``docs/datasets.md``.

Batching: ``torch.utils.data.default_collate`` works whenever all samples of a batch have the same
size (training with ``crop``); for whole-image evaluation with batches > 1 use :func:`pad_collate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .ade20k import ADE20K
from .base import DatasetError, SegmentationDataset, suggest
from .camvid import CamVid
from .cityscapes import Cityscapes
from .pascal_context import PascalContext
from .synthetic import Synthetic
from .transforms import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, pad_collate, pad_to_multiple
from .voc import VOC

DATASETS: dict[str, type[SegmentationDataset]] = {
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "voc": VOC,
    "ade20k": ADE20K,
    "pascal_context": PascalContext,
    "synthetic": Synthetic,
}


def build_dataset(
    name: str,
    split: str,
    *,
    root: str | Path | None = None,
    crop: tuple[int, int] | None = None,
    scale: float = 1.0,
    train: bool = False,
    num_samples: int = 64,
    seed: int = 0,
    num_classes: int | None = None,
    **options: Any,
) -> SegmentationDataset:
    """The dataset ``name`` for ``split``.

    ``crop`` is (height, width) and used only when ``train`` (evaluation runs on whole images;
    for ``synthetic`` it is also the image size). ``scale`` resizes every sample first (the
    low-resolution proxy). ``num_samples`` is used by ``synthetic`` only; ``num_classes`` picks the
    variant where there is one (``pascal_context``: 59/60, ``synthetic``: any >= 2) and is checked
    against the fixed count elsewhere. Other ``options`` go to the dataset (``scale_range``,
    ``flip``, ``limit``, ``sbd`` for voc, ``noise`` for synthetic); unknown ones raise
    :class:`DatasetError`.
    """
    key = str(name).lower().replace("-", "_")
    if key not in DATASETS:
        raise DatasetError(
            f"unknown dataset '{name}'{suggest(key, DATASETS)} "
            f"(set data.name to one of: {', '.join(DATASETS)})"
        )
    return DATASETS[key](
        split, root=root, crop=crop, scale=scale, train=train, num_samples=num_samples,
        seed=seed, num_classes=num_classes, **options,
    )


__all__ = [
    "ADE20K", "CamVid", "Cityscapes", "DATASETS", "DatasetError", "IGNORE_INDEX", "IMAGENET_MEAN",
    "IMAGENET_STD", "PascalContext", "SegmentationDataset", "Synthetic", "VOC", "build_dataset",
    "pad_collate", "pad_to_multiple",
]
