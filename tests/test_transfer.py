"""The paper's protocol end to end: search once, retrain wider, on datasets with other class counts.

One architecture searched at F=4 on synthetic data (3 classes) trains and evaluates on tiny fixtures
of Cityscapes (19 classes), VOC (21) and ADE20K (150) in their real on-disk layouts, at F=8: the head
is rebuilt for each dataset, every width doubles, the topology stays. Also: the search folder's data
settings carry into `train`, topology keys are refused, `train.init_from` keeps all but the classifier,
and `sample` sizes the head for `data.*`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from archgraph.cli import main
from archgraph.core.graph import inputs_of, load, node_spec
from test_data import write_image, write_label

SIZE = (32, 40)
SEARCH = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_classes=3",
    "data.num_samples=12",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=2",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "data.val_limit=2",
]
TRAIN = ["data.crop=[32,32]", "data.batch_size=2", "train.epochs=1", "train.steps_per_epoch=1"]


def cityscapes(root: Path) -> Path:
    for split, city in (("train", "aachen"), ("val", "lindau")):
        for j in range(2):
            stem = f"{city}_000000_{j:06d}"
            write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=j, size=SIZE)
            write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", [7, 26, 0, 33], size=SIZE)
    return root


def voc(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    ids = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000063", "2007_000068"]}
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    for split, stems in ids.items():
        for i, stem in enumerate(stems):
            write_image(base / "JPEGImages" / f"{stem}.jpg", seed=i, size=SIZE)
            write_label(base / "SegmentationClass" / f"{stem}.png", [0, 15, 20, 255], mode="P", size=SIZE)
        (sets / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


def ade20k(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for split in ("training", "validation"):
        for i in range(2):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write_image(base / "images" / split / f"{stem}.jpg", seed=i, size=SIZE)
            write_label(base / "annotations" / split / f"{stem}.png", [0, 1, 150, 13], size=SIZE)
    return base


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("protocol") / "search"
    assert main(["search", "--out", str(out), "--no-progress", "--set", *SEARCH]) == 0
    return out


def topology(graph) -> set:
    return {(p, n) for n in graph.nodes for p in inputs_of(graph, n)}


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("name, build, classes", [("cityscapes", cityscapes, 19), ("voc", voc, 21), ("ade20k", ade20k, 150)])
def test_one_search_retrains_wider_on_other_datasets(searched, tmp_path, capsys, name, build, classes):
    root = build(tmp_path / name)
    narrow = tmp_path / "narrow"
    assert main(["train", str(searched), "--out", str(narrow), "--no-progress", "--set", *TRAIN, f"data.name={name}", f"data.root={root}"]) == 0
    wide = tmp_path / "wide"
    assert main(["train", str(searched), "--out", str(wide), "--no-progress", "--set", *TRAIN, f"data.name={name}", f"data.root={root}", "space.base_channels=8"]) == 0
    printed = capsys.readouterr().out
    assert f"space.num_classes: 3 -> {classes}" in printed and "space.base_channels: 4 -> 8" in printed
    source, trained = load(searched / "arch.yaml"), load(wide / "arch.yaml")
    assert topology(trained) == topology(source)  # same connections and ...
    assert all(node_spec(trained, n).ops == node_spec(source, n).ops for n in source if node_spec(source, n).kind != "head")  # ... ops
    assert node_spec(trained, "head").channels == classes
    assert all(node_spec(trained, n).channels == 2 * node_spec(source, n).channels for n in source if node_spec(source, n).kind in ("stem", "fusion"))
    assert metrics(wide)["params"] > 2.5 * metrics(narrow)["params"]  # about 4x: convolutions scale with width squared
    saved = yaml.safe_load((wide / "config.yaml").read_text())
    assert saved["space"]["base_channels"] == 8 and saved["space"]["num_classes"] == classes
    evaluated = tmp_path / "eval.json"
    assert main(["evaluate", str(wide), "-o", str(evaluated)]) == 0
    result = json.loads(evaluated.read_text())
    assert result["dataset"] == name and len(result["per_class_iou"]) == classes and "pixel_acc" in result


def test_the_search_folder_carries_its_data_settings(searched, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(searched), "--out", str(run), "--no-progress", "--set", "train.epochs=1", "train.steps_per_epoch=1"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["num_classes"] == 3 and saved["data"]["crop"] == [32, 32] and saved["data"]["num_samples"] == 12
    assert node_spec(load(run / "arch.yaml"), "head").channels == 3  # nothing retargeted
    other = tmp_path / "other"  # --set still wins
    assert main(["train", str(searched), "--out", str(other), "--no-progress", "--set", "train.epochs=1", "train.steps_per_epoch=1", "data.num_classes=4"]) == 0
    assert node_spec(load(other / "arch.yaml"), "head").channels == 4


def test_topology_keys_are_refused_with_the_reason(searched, tmp_path, capsys):
    assert main(["train", str(searched), "--out", str(tmp_path / "run"), "--no-progress", "--set", *TRAIN, "space.layers=3"]) == 2
    err = capsys.readouterr().err
    assert "space.layers=3" in err and "topology" in err and "space.base_channels" in err and "Traceback" not in err


def test_init_from_keeps_every_weight_but_the_classifier(searched, tmp_path, capsys):
    from archgraph.core.compile import compile_graph
    from archgraph.engine.train import init_weights, load_checkpoint

    first = tmp_path / "three"
    assert main(["train", str(searched), "--out", str(first), "--no-progress", "--set", *TRAIN]) == 0
    second = tmp_path / "voc"
    root = voc(tmp_path / "vocdata")
    assert main(["train", str(searched), "--out", str(second), "--no-progress", "--set", *TRAIN, "data.name=voc", f"data.root={root}", f"train.init_from={first}"]) == 0
    assert "initialised" in capsys.readouterr().out
    net = compile_graph(load(second / "arch.yaml"))
    copied, total = init_weights(net, first)
    source = load_checkpoint(first / "best.pt")["net"]
    mismatched = [k for k, v in net.state_dict().items() if k not in source or source[k].shape != v.shape]
    assert mismatched and all(k.startswith("nodes.head.") for k in mismatched)  # only the classifier starts fresh
    assert copied == total - len(mismatched)
    stem = next(k for k in source if k.startswith("nodes.stem_s4.") and k.endswith("weight"))
    assert torch.equal(net.state_dict()[stem], source[stem])


def test_sample_sizes_the_head_for_the_data(tmp_path):
    root = cityscapes(tmp_path / "cs")
    out = tmp_path / "arch.yaml"
    assert main(["sample", "--set", "space.layers=2", "data.name=cityscapes", f"data.root={root}", "-o", str(out)]) == 0
    assert node_spec(load(out), "head").channels == 19
    assert main(["sample", "--set", "space.layers=2", "space.num_classes=7", "-o", str(out)]) == 0
    assert node_spec(load(out), "head").channels == 7
