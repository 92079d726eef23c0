"""What a run config builds before any engine runs: its dataset splits and its space, sized for
its dataset. One place, so the search, the stand-alone training, the studies and the presets build
them alike (a search and a training of the same config see the same data and the same head)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import networkx as nx

from archgraph.config import Config


def dataset_split(cfg: Config, split: str, train: bool, check: bool = True) -> Any:
    """One split of ``cfg.data`` (a :class:`archgraph.data.SegmentationDataset`).

    With ``check`` its labels are read first (:meth:`~archgraph.data.SegmentationDataset.check_labels`),
    so a bad label of either split stops a search or training before its first step, not after an
    epoch; a training crop larger than the images is warned about on stderr.
    """
    from archgraph.data import build_dataset

    d = cfg.data
    ds = build_dataset(
        d.name,
        split,
        train=train,
        root=d.root,
        crop=tuple(d.crop),
        scale=d.scale,
        num_samples=d.num_samples,
        seed=cfg.seed,
        num_classes=d.num_classes or None,
        **d.options,
    )
    if check:
        warning = ds.crop_warning(ds.check_labels())
        if warning and os.environ.get("RANK", "0") == "0":
            print(f"warning: {warning}", file=sys.stderr)
    return ds


def dataset_classes(cfg: Config) -> int:
    """How many classes ``cfg``'s dataset has (read from its validation split)."""
    return int(dataset_split(cfg, cfg.data.val_split, train=False, check=False).num_classes)


def space_for_training(cfg: Config) -> nx.DiGraph:
    """The config's space, with the head sized for the dataset (as a search sizes it)."""
    from archgraph.core.spaces_api import build_space

    params = dict(cfg.space_params)
    if not params.get("num_classes"):
        params["num_classes"] = dataset_classes(cfg)
    return build_space(cfg.space_name, params)


def preset_for_config(name: str, cfg: Config, op: str | None = None) -> nx.DiGraph:
    """Preset ``name`` of ``cfg``'s space, its head sized for ``cfg``'s dataset (for training)."""
    from archgraph.core.spaces_api import build_preset

    return build_preset(name, space_for_training(cfg), op)


def write_preset(name: str, config_path: str | None, overrides: list[str], out: str | Path) -> Path:
    """``archgraph train --preset NAME``: write the preset to ``OUT/preset.yaml`` and return the path."""
    from archgraph.config import load_config
    from archgraph.core.graph import save

    return save(preset_for_config(name, load_config(config_path, overrides)), Path(out) / "preset.yaml")
