"""Datasets: each loader on a tiny fixture in its real layout, error messages, transforms, synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from archgraph.data import DATASETS, IGNORE_INDEX, DatasetError, build_dataset, pad_collate, pad_to_multiple
from archgraph.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize

H, W = 6, 8


# ---- fixture writers ------------------------------------------------------------------------------


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)  # .jpg -> JPEG (lossy), .png -> exact
    return arr


def write_label(path: Path, values: list[int], mode: str = "L", size: tuple[int, int] = (H, W)) -> np.ndarray:
    """A label whose pixels cycle through ``values`` (so every value is present)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.resize(np.array(values, dtype=np.uint8), size[0] * size[1]).reshape(size)
    if mode == "P":  # palette indices = the values, with colours that differ from them
        im = Image.frombytes("P", (size[1], size[0]), arr.tobytes())
        im.putpalette([(i * 37) % 256 for i in range(768)])
    else:
        im = Image.fromarray(arr)
    im.save(path)
    return arr


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def loaded_label(ds, i: int = 0) -> np.ndarray:
    return ds[i][1].numpy()


def expect_mapped(ds, raw: np.ndarray, table: dict[int, int]) -> None:
    assert np.array_equal(loaded_label(ds), np.vectorize(table.__getitem__)(raw))


@pytest.fixture()
def camvid(tmp_path: Path) -> Path:
    root = tmp_path / "camvid"
    for split in ("train", "val"):
        lines = []
        for i in range(3 if split == "train" else 2):
            name = f"0001TP_{i:06d}.png"
            write_image(root / split / name, seed=i)
            write_label(root / f"{split}annot" / name, [0, 3, 10, 11, 5])
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


# ---- loaders, class mappings --------------------------------------------------------------------------


def test_camvid_layout_and_mapping(camvid: Path):
    ds = build_dataset("camvid", "train", root=str(camvid))
    assert len(ds) == 3 and ds.num_classes == 11 and ds.class_names[0] == "Sky"
    image, label = ds[1]
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert label.dtype == torch.long and label.shape == (H, W)
    raw = read_png(camvid / "trainannot" / "0001TP_000001.png")
    expect_mapped(ds, raw, {0: 0, 3: 3, 10: 10, 5: 5, 11: IGNORE_INDEX})
    # ImageNet normalisation of the exact PNG pixels
    rgb = read_png(camvid / "train" / "0001TP_000001.png").astype(np.float64) / 255
    want = (rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(image.permute(1, 2, 0).numpy(), want, atol=1e-5)


def test_cityscapes_label_ids_to_train_ids(tmp_path: Path):
    root = tmp_path / "cs"
    for split, cities in (("train", ["aachen", "bonn"]), ("val", ["lindau"])):
        for j, city in enumerate(cities):
            stem = f"{city}_000000_{j:06d}"
            write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=j)
            write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", [7, 26, 0, 33, 5, 255])
    ds = build_dataset("cityscapes", "train", root=root)
    assert len(ds) == 2 and ds.num_classes == 19 and ds.class_names[13] == "car"
    raw = read_png(root / "gtFine/train/aachen/aachen_000000_000000_gtFine_labelIds.png")
    expect_mapped(ds, raw, {7: 0, 26: 13, 0: 255, 33: 18, 5: 255, 255: 255})
    assert len(build_dataset("cityscapes", "val", root=root)) == 1


def test_voc_palette_indices_and_sbd(tmp_path: Path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    ids = ["2007_000032", "2007_000039"]
    for i, stem in enumerate(ids):
        write_image(root / "JPEGImages" / f"{stem}.jpg", seed=i)
        write_label(root / "SegmentationClass" / f"{stem}.png", [0, 15, 20, 255], mode="P")
        write_label(root / "SegmentationClassAug" / f"{stem}.png", [0, 1, 255], mode="L")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(ids) + "\n")
    (sets / "train_aug.txt").write_text("".join(f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png\n" for s in ids))
    with Image.open(root / "SegmentationClass" / f"{ids[0]}.png") as im:
        assert im.mode == "P"

    ds = build_dataset("voc", "train", root=tmp_path)  # the folder holding VOCdevkit is accepted
    assert ds.root == root and ds.num_classes == 21 and len(ds) == 2
    assert set(np.unique(loaded_label(ds))) == {0, 15, 20, 255}  # indices, not palette colours

    aug = build_dataset("voc", "train", root=root, sbd=True)
    assert set(np.unique(loaded_label(aug))) == {0, 1, 255}
    with pytest.raises(DatasetError, match="sbd"):
        build_dataset("voc", "train_aug", root=root)


@pytest.mark.parametrize("point_at_parent", [False, True])
def test_ade20k_shift_and_root(tmp_path: Path, point_at_parent: bool):
    base = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        for i in range(2):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write_image(base / "images" / split / f"{stem}.jpg", seed=i)
            write_label(base / "annotations" / split / f"{stem}.png", [0, 1, 150, 13])
    ds = build_dataset("ade20k", "val", root=tmp_path if point_at_parent else base)
    assert len(ds) == 2 and ds.num_classes == 150 and ds.class_names[0] == "wall"
    raw = read_png(base / "annotations/validation/ADE_valid_00000000.png")
    expect_mapped(ds, raw, {0: 255, 1: 0, 150: 149, 13: 12})


@pytest.mark.parametrize("layout", ["lists", "folders"])
def test_pascal_context_59_and_60(tmp_path: Path, layout: str):
    root = tmp_path / "VOC2010"
    ids = ["2008_000002", "2008_000003"]
    for i, stem in enumerate(ids):
        write_image(root / "JPEGImages" / f"{stem}.jpg", seed=i)
        if layout == "lists":
            write_label(root / "SegmentationClassContext" / f"{stem}.png", [0, 1, 59, 30])
        else:
            write_label(root / "Context" / "val" / f"{stem}.png", [0, 1, 59, 30])
    if layout == "lists":
        (root / "ImageSets" / "SegmentationContext").mkdir(parents=True)
        (root / "ImageSets" / "SegmentationContext" / "val.txt").write_text("\n".join(ids))
        raw_path = root / "SegmentationClassContext" / f"{ids[0]}.png"
    else:
        raw_path = root / "Context" / "val" / f"{ids[0]}.png"
    raw = read_png(raw_path)

    ds59 = build_dataset("pascal_context", "val", root=root)
    assert ds59.num_classes == 59 and len(ds59.class_names) == 59 and len(ds59) == 2
    expect_mapped(ds59, raw, {0: 255, 1: 0, 59: 58, 30: 29})

    ds60 = build_dataset("pascal_context", "val", root=root, num_classes=60)
    assert ds60.num_classes == 60 and ds60.class_names[0] == "background"
    expect_mapped(ds60, raw, {0: 0, 1: 1, 59: 59, 30: 30})

    with pytest.raises(DatasetError, match="59"):
        build_dataset("pascal_context", "val", root=root, num_classes=21)


def test_registry_names_and_class_counts():
    assert set(DATASETS) == {"camvid", "cityscapes", "voc", "ade20k", "pascal_context", "synthetic"}
    counts = {"camvid": 11, "cityscapes": 19, "voc": 21, "ade20k": 150, "pascal_context": 59, "synthetic": 5}
    for name, n in counts.items():
        assert len(DATASETS[name].class_names) == n
        assert len(set(DATASETS[name].class_names)) == n
    assert issubclass(DatasetError, ValueError)


# ---- bad input -------------------------------------------------------------------------------------------


def test_missing_root_names_the_key(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"data\.root="):
        build_dataset("camvid", "train")
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=r"data\.root=") as e:
        build_dataset("cityscapes", "train", root=missing)
    assert str(missing) in str(e.value)


def test_missing_split_file_and_folders(camvid: Path, tmp_path: Path):
    with pytest.raises(DatasetError) as e:
        build_dataset("camvid", "test", root=camvid)
    assert str(camvid / "test.txt") in str(e.value)
    (tmp_path / "cs").mkdir()
    with pytest.raises(DatasetError) as e:
        build_dataset("cityscapes", "val", root=tmp_path / "cs")
    assert str(tmp_path / "cs" / "leftImg8bit" / "val") in str(e.value)


def test_image_without_label(camvid: Path):
    (camvid / "trainannot" / "0001TP_000002.png").unlink()
    with pytest.raises(DatasetError) as e:
        build_dataset("camvid", "train", root=camvid)
    assert "no label" in str(e.value) and str(camvid / "trainannot" / "0001TP_000002.png") in str(e.value)


def test_size_mismatch(camvid: Path):
    write_label(camvid / "trainannot" / "0001TP_000000.png", [0, 1], size=(H + 1, W))
    ds = build_dataset("camvid", "train", root=camvid)
    with pytest.raises(DatasetError, match="same size") as e:
        ds[0]
    assert "0001TP_000000.png" in str(e.value)


def test_label_value_out_of_range(camvid: Path):
    write_label(camvid / "trainannot" / "0001TP_000001.png", [0, 40, 12])
    ds = build_dataset("camvid", "train", root=camvid)
    ds[0]  # other samples are fine
    with pytest.raises(DatasetError) as e:
        ds[1]
    msg = str(e.value)
    assert str(camvid / "trainannot" / "0001TP_000001.png") in msg and "[12, 40]" in msg and "0..11" in msg


def test_colour_label_refused(camvid: Path):
    write_image(camvid / "trainannot" / "0001TP_000000.png")
    with pytest.raises(DatasetError, match="colour"):
        build_dataset("camvid", "train", root=camvid)[0]


def test_empty_split(camvid: Path):
    (camvid / "val.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty"):
        build_dataset("camvid", "val", root=camvid)


def test_unknown_names(camvid: Path):
    with pytest.raises(DatasetError, match="did you mean 'camvid'"):
        build_dataset("camvd", "train", root=camvid)
    with pytest.raises(DatasetError, match="did you mean 'train'"):
        build_dataset("camvid", "trian", root=camvid)
    with pytest.raises(DatasetError, match="scale_range"):
        build_dataset("camvid", "train", root=camvid, scale_rang=(1, 2))
    with pytest.raises(DatasetError, match="11 classes"):
        build_dataset("camvid", "train", root=camvid, num_classes=19)
    with pytest.raises(DatasetError, match="crop"):
        build_dataset("synthetic", "train", crop=(0, 4))


# ---- transforms -------------------------------------------------------------------------------------------


def test_nearest_resize_creates_no_new_values():
    rng = np.random.default_rng(0)
    label = rng.choice(np.array([0, 7, 255], dtype=np.uint8), size=(13, 17))
    image = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    for size in [(5, 9), (29, 31), (13, 40)]:
        _, out = resize(image, label, size)
        assert out.shape == size and set(np.unique(out)) <= {0, 7, 255}


def test_train_transform_keeps_label_values(camvid: Path):
    ds = build_dataset("camvid", "train", root=camvid, crop=(5, 7), train=True, scale_range=(0.3, 3.0))
    allowed = {0, 3, 5, 10, 255}
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, label = ds[i]
            assert image.shape == (3, 5, 7) and label.shape == (5, 7)
            assert set(label.unique().tolist()) <= allowed


def test_crop_padding_is_ignore(camvid: Path):
    ds = build_dataset("camvid", "train", root=camvid, crop=(16, 20), train=True, scale_range=(1, 1), flip=False)
    image, label = ds[0]
    assert image.shape == (3, 16, 20)
    assert (label[H:, :] == IGNORE_INDEX).all() and (label[:, W:] == IGNORE_INDEX).all()
    assert (image[:, H:, :] == 0).all() and (image[:, :, W:] == 0).all()
    assert (label[:H, :W] != IGNORE_INDEX).any()
    batch = default_collate([ds[0], ds[1]])
    assert batch[0].shape == (2, 3, 16, 20) and batch[1].shape == (2, 16, 20)


def test_eval_is_deterministic_and_uncropped(camvid: Path):
    ds = build_dataset("camvid", "val", root=camvid, crop=(3, 3))
    a, b = ds[0], ds[0]
    ds.set_epoch(5)
    c = ds[0]
    assert a[0].shape == (3, H, W)  # no crop at evaluation
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], c[1]) and torch.equal(a[0], c[0])
    half = build_dataset("camvid", "val", root=camvid, scale=0.5)
    image, label = half[0]
    assert image.shape == (3, H // 2, W // 2) and set(label.unique().tolist()) <= {0, 3, 5, 10, 255}


def test_training_randomness_is_seeded(camvid: Path):
    def sample(seed: int, epoch: int = 0):
        ds = build_dataset("camvid", "train", root=camvid, crop=(4, 4), train=True, seed=seed)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(len(ds))]

    def same(x, y):
        return all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(x, y))

    assert same(sample(3), sample(3))
    assert same(sample(3, epoch=2), sample(3, epoch=2))
    assert not same(sample(3), sample(4))
    assert not same(sample(3), sample(3, epoch=1))


def test_collate_helpers():
    a = (torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.long))
    b = (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.long))
    images, labels = pad_collate([a, b])
    assert images.shape == (2, 3, 6, 5) and labels.shape == (2, 6, 5)
    assert (labels[0, 4:] == IGNORE_INDEX).all() and (images[1, :, :, 3:] == 0).all()
    img, lbl = pad_to_multiple(*a, multiple=8)
    assert img.shape == (3, 8, 8) and (lbl[:, 5:] == IGNORE_INDEX).all()


# ---- synthetic -----------------------------------------------------------------------------------------------


def test_synthetic_is_seeded_and_varied():
    ds = build_dataset("synthetic", "train", num_samples=8, seed=1)
    again = build_dataset("synthetic", "train", num_samples=8, seed=1)
    val = build_dataset("synthetic", "val", num_samples=8, seed=1)
    other = build_dataset("synthetic", "train", num_samples=8, seed=2)
    assert len(ds) == 8 and ds.num_classes == 5
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 64, 64) and y.shape == (64, 64)
        assert torch.equal(x, again[i][0]) and torch.equal(y, again[i][1])
        assert not torch.equal(x, val[i][0]) and not torch.equal(x, other[i][0])
        assert len(y.unique()) >= 3 and int(y.max()) < 5
    present = torch.cat([ds[i][1].flatten() for i in range(len(ds))]).unique()
    assert present.tolist() == [0, 1, 2, 3, 4]


def test_synthetic_options():
    ds = build_dataset("synthetic", "val", crop=(24, 40), num_classes=8, num_samples=3)
    assert len(ds) == 3 and ds.num_classes == 8 and len(ds.class_names) == 8
    x, y = ds[2]
    assert x.shape == (3, 24, 40) and int(y.max()) < 8
    tr = build_dataset("synthetic", "train", crop=(24, 40), train=True, num_samples=2)
    assert tr[0][0].shape == (3, 24, 40)
    small = build_dataset("synthetic", "val", scale=0.5, num_samples=2)
    assert small[0][0].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match="num_samples"):
        build_dataset("synthetic", "train", num_samples=0)
    with pytest.raises(DatasetError, match="num_classes"):
        build_dataset("synthetic", "train", num_classes=1)
