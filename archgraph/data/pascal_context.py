"""Pascal-Context: VOC 2010 images with whole-scene labels, 59 or 60 classes.

Two label layouts are accepted (``data.root`` = the VOC2010 folder holding ``JPEGImages``)::

    # (a) the detail-api conversion (checked first)
    root/JPEGImages/{id}.jpg
    root/SegmentationClassContext/{id}.png
    root/ImageSets/SegmentationContext/{train,val}.txt     one image id per line

    # (b) a folder per split
    root/JPEGImages/{id}.jpg
    root/Context/{train,val}/{id}.png                      the split is the folder's PNGs

Label PNGs hold 0..59, 0 = background (single-channel or palette indices).
``num_classes=59`` (default, the usual benchmark): background -> :data:`IGNORE_INDEX`, k -> k-1.
``num_classes=60``: values used as they are, background is class 0. Raw 255 is ignored in both.
"""

from __future__ import annotations

import numpy as np

from .base import DatasetError, Sample, SegmentationDataset, make_lut, read_split_file

CONTEXT_CLASSES_59 = [
    "aeroplane",
    "bag",
    "bed",
    "bedclothes",
    "bench",
    "bicycle",
    "bird",
    "boat",
    "book",
    "bottle",
    "building",
    "bus",
    "cabinet",
    "car",
    "cat",
    "ceiling",
    "chair",
    "cloth",
    "computer",
    "cow",
    "cup",
    "curtain",
    "dog",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "horse",
    "keyboard",
    "light",
    "motorbike",
    "mountain",
    "mouse",
    "person",
    "plate",
    "platform",
    "pottedplant",
    "road",
    "rock",
    "sheep",
    "shelves",
    "sidewalk",
    "sign",
    "sky",
    "snow",
    "sofa",
    "table",
    "track",
    "train",
    "tree",
    "truck",
    "tvmonitor",
    "wall",
    "water",
    "window",
    "wood",
]
CONTEXT_CLASSES_60 = ["background"] + CONTEXT_CLASSES_59


class PascalContext(SegmentationDataset):
    """Pascal-Context. Splits: train, val. Option ``num_classes``: 59 (default) or 60."""

    name = "pascal_context"
    class_names = CONTEXT_CLASSES_59  # the default variant; an instance may switch to 60
    splits = ("train", "val")
    root_hint = "VOC2010 (the folder holding JPEGImages/)"

    def _check_num_classes(self, num_classes: int | None) -> None:
        n = int(num_classes) if num_classes else 59  # None / 0: the default
        if n not in (59, 60):
            raise DatasetError(f"{self.name}: num_classes={num_classes} is not a Pascal-Context variant; use 59 (background ignored) or 60 (background is class 0)")
        # An instance attribute shadows the (absent) class attribute: the variant picks the names.
        self.class_names = CONTEXT_CLASSES_59 if n == 59 else CONTEXT_CLASSES_60

    def _index(self) -> list[Sample]:
        assert self.root is not None
        list_file = self.root / "ImageSets" / "SegmentationContext" / f"{self.split}.txt"
        split_dir = self.root / "Context" / self.split
        images = self.root / "JPEGImages"
        if not list_file.is_file() and not split_dir.is_dir():
            raise DatasetError(f"{self.name}: neither split list {list_file} nor label folder {split_dir} exists; set data.root to the VOC2010 folder holding the Pascal-Context labels")
        if list_file.is_file():
            rows = read_split_file(list_file, self.name)
            pairs = [(images / f"{r[0]}.jpg", self.root / "SegmentationClassContext" / f"{r[0]}.png") for r in rows]
        else:
            pairs = [(images / f"{lbl.stem}.jpg", lbl) for lbl in sorted(split_dir.glob("*.png"))]
        return self._pair_existing(pairs)

    def _lut(self) -> np.ndarray:
        if self.num_classes == 60:
            return make_lut({k: k for k in range(60)})
        return make_lut({k: k - 1 for k in range(1, 60)}, ignore_raw=(0, 255))
