"""S-mIoU does not depend on the epoch the dataset's augmentation is in: the score at the end of a
search equals the score of the same architecture when `correlate` loads the finished supernet."""

from __future__ import annotations

import pytest
import torch

from archgraph.config import load_config
from archgraph.core.decode import decisions
from archgraph.core.registry import get_strategy
from archgraph.configtools import dataclass_from_dict
from archgraph.core.spaces_api import build_space
from archgraph.engine.loop import set_dataset_epoch
from archgraph.engine.smiou import build_search_data, score_subnet
from test_data import write_image, write_label


def test_the_score_ignores_the_augmentation_epoch(tmp_path):
    root = tmp_path / "camvid"
    for split, count in (("train", 8), ("val", 2)):
        lines = []
        for i in range(count):
            name = f"0001TP_{i:06d}.png"
            write_image(root / split / name, seed=i, size=(40, 48))
            write_label(root / f"{split}annot" / name, [0, 3, 10, 5], size=(40, 48))
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    cfg = load_config(
        None,
        [
            "data.name=camvid",
            f"data.root={root}",
            "data.crop=[32,32]",
            "data.batch_size=2",
            "data.options={scale_range: [0.5, 2.0]}",
            "space.layers=2",
            "space.base_channels=4",
            "space.num_classes=11",
            "search.bn_recalib_batches=2",
        ],
    )
    data = build_search_data(cfg)
    info = get_strategy("dcnas")
    strategy = info.cls(build_space("dcss", cfg.space_params), dataclass_from_dict(info.params, {}, "strategy"), cfg.search, 0)
    net = strategy.build_supernet()
    op_idx, input_idx = decisions(net.choices, *strategy.scores(net))
    score = lambda: score_subnet(net, strategy.relaxation, op_idx, input_idx, data, cfg, torch.device("cpu"))
    fresh = score()
    set_dataset_epoch(data.train_a, 5)  # where a search's last epoch leaves it
    assert score() == pytest.approx(fresh, abs=1e-12)
    assert data.train_a.dataset.epoch == 5  # and it is left there
