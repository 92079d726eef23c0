"""ADE20K, SceneParsing challenge release (``ADEChallengeData2016``): 150 classes.

Layout (``data.root`` = ``ADEChallengeData2016`` or the folder holding it)::

    root/images/{training,validation}/{stem}.jpg
    root/annotations/{training,validation}/{stem}.png     single-channel, 0 = other/unlabeled

Split names ``train``/``val`` map to ``training``/``validation`` (the long names work too).
Raw 0 -> :data:`IGNORE_INDEX`, raw k (1..150) -> k-1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DatasetError, Sample, SegmentationDataset, make_lut, require_dir

ADE20K_CLASSES = [
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
]

SPLIT_FOLDERS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


class ADE20K(SegmentationDataset):
    """ADE20K SceneParsing (150 classes). Splits: train, val (aliases training, validation)."""

    name = "ade20k"
    class_names = ADE20K_CLASSES
    splits = tuple(SPLIT_FOLDERS)
    root_hint = "ADEChallengeData2016 (or the folder holding it)"

    def _find_root(self, root: Path) -> Path:
        for candidate in (root, root / "ADEChallengeData2016"):
            if (candidate / "images").is_dir():
                return candidate
        raise DatasetError(f"{self.name}: {root} has no images/ folder (nor ADEChallengeData2016/images/); set data.root=/path/to/ADEChallengeData2016")

    def _index(self) -> list[Sample]:
        assert self.root is not None
        folder = SPLIT_FOLDERS[self.split]
        fix = "set data.root to ADEChallengeData2016 and extract both images/ and annotations/"
        img_dir = require_dir(self.root / "images" / folder, self.name, "image folder", fix)
        lbl_dir = require_dir(self.root / "annotations" / folder, self.name, "label folder", fix)
        images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return self._pair_existing((img, lbl_dir / f"{img.stem}.png") for img in images)

    def _lut(self) -> np.ndarray:
        return make_lut({k: k - 1 for k in range(1, len(ADE20K_CLASSES) + 1)}, ignore_raw=(0, 255))
