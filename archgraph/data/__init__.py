"""Semantic-segmentation datasets behind one constructor, :func:`build_dataset`.

Every dataset returns ``(image, label)``: a float ``3xHxW`` tensor normalised with the ImageNet
mean/std and a long ``HxW`` tensor of class ids, :data:`IGNORE_INDEX` (255) marking pixels that
count in neither loss nor metrics. Layouts, class mappings and options: ``docs/datasets.md``.

Datasets are a registry like every other kind (:class:`archgraph.core.registry.Registry`): the
built-ins and plug-ins come in through the entry-point group ``archgraph.datasets``
(``name = "pkg.module:DatasetClass"``, a :class:`SegmentationDataset` subclass; the entry point is the
registration) or :func:`register_dataset` in-process (docs/plugins.md, "A dataset").

Batching: ``torch.utils.data.default_collate`` works whenever all samples of a batch have the same
size (training with ``crop``); for whole-image evaluation with batches > 1 use :func:`same_size_batches`
(:func:`pad_collate` pads to the largest image, which changes predictions near a smaller one's edges).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from archgraph.core.registry import Registry

from .ade20k import ADE20K
from .base import DatasetError, SegmentationDataset, suggest
from .camvid import CamVid
from .cityscapes import Cityscapes
from .pascal_context import PascalContext
from .synthetic import Synthetic
from .transforms import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, pad_collate, pad_to_multiple, same_size_batches
from .voc import VOC


def _adopt(name: str, obj: Any) -> type[SegmentationDataset] | None:
    """An entry point naming a dataset class registers it under the entry point's name."""
    if isinstance(obj, type) and issubclass(obj, SegmentationDataset):
        return obj
    raise DatasetError(f"dataset entry point {name!r} loads {obj!r}, not a SegmentationDataset subclass; point it at the class (name = \"pkg.module:MyDataset\")")


DATASET_REGISTRY: Registry[type[SegmentationDataset]] = Registry(
    "dataset", "archgraph.datasets", adopt=_adopt, hint="set data.name to one of them; a plug-in declares name = \"pkg.module:Class\" in group archgraph.datasets"
)
DATASETS: dict[str, type[SegmentationDataset]] = DATASET_REGISTRY.table


def dataset_key(name: str) -> str:
    """The registry key of a dataset name as people write it (``Pascal-Context`` -> ``pascal_context``)."""
    return str(name).lower().replace("-", "_")


def register_dataset(name: str) -> Callable[[type[SegmentationDataset]], type[SegmentationDataset]]:
    """Register a :class:`SegmentationDataset` subclass as ``data.name=<name>`` in this process (a plug-in
    declares an entry point instead, so that every process finds it)."""

    def deco(cls: type[SegmentationDataset]) -> type[SegmentationDataset]:
        DATASET_REGISTRY.add(dataset_key(name), _adopt(name, cls))
        return cls

    return deco


def dataset_names() -> list[str]:
    """Every dataset name, built-ins and installed plug-ins."""
    return DATASET_REGISTRY.names()


def dataset_class(name: str) -> type[SegmentationDataset]:
    """The registered class of dataset ``name`` (built-in or plug-in); unknown names raise
    :class:`DatasetError` with the close names."""
    key = dataset_key(name)
    if key not in DATASETS:
        DATASET_REGISTRY.load()  # plug-ins, only when the name is not a built-in
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset '{name}'{suggest(key, DATASETS)} (set data.name to one of: {', '.join(DATASETS)})")
    return DATASETS[key]


def dataset_num_classes(name: str, num_classes: int | None = None) -> int:
    """How many classes dataset ``name`` has, without opening its files: ``num_classes`` when the
    config names a variant (pascal_context 59/60, synthetic's any), else the class's own list.

    Commands that build a supernet without reading data (``latency``, ``render``) need it: the head's
    output channels are part of the graph, and a latency table timed for 19 classes lacks the head
    a CamVid (11-class) search compiles."""
    if num_classes:
        return int(num_classes)
    return len(dataset_class(name).class_names)


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
    return dataset_class(name)(
        split,
        root=root,
        crop=crop,
        scale=scale,
        train=train,
        num_samples=num_samples,
        seed=seed,
        num_classes=num_classes,
        **options,
    )


DATASET_REGISTRY.load_builtins()  # the built-ins' entry points (their modules are imported above)

__all__ = [
    "ADE20K",
    "CamVid",
    "Cityscapes",
    "DATASETS",
    "DATASET_REGISTRY",
    "DatasetError",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PascalContext",
    "SegmentationDataset",
    "Synthetic",
    "VOC",
    "build_dataset",
    "dataset_class",
    "dataset_key",
    "dataset_num_classes",
    "dataset_names",
    "pad_collate",
    "same_size_batches",
    "pad_to_multiple",
    "register_dataset",
]
