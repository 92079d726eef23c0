"""Cityscapes, fine annotations, mapped from the 34 label ids to the 19 training ids.

Layout (``data.root`` = the folder holding ``leftImg8bit`` and ``gtFine``)::

    root/leftImg8bit/{train,val,test}/{city}/{stem}_leftImg8bit.png
    root/gtFine/{train,val,test}/{city}/{stem}_gtFine_labelIds.png

The mapping is the official ``labels.py`` table (``trainId``): every label id that is not one of
the 19 evaluated classes, including 0 (unlabeled), becomes :data:`IGNORE_INDEX`. Raw 255 is accepted
as ignore too; raw values 34..254 are invalid (they are not Cityscapes label ids).
"""

from __future__ import annotations

import numpy as np

from .base import Sample, SegmentationDataset, make_lut, require_dir

CITYSCAPES_CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]

# label id -> train id for the 19 evaluated classes (official table); all other ids -> ignore.
LABEL_ID_TO_TRAIN_ID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
NUM_LABEL_IDS = 34  # label ids 0..33 exist in *_gtFine_labelIds.png

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(SegmentationDataset):
    """Cityscapes fine (19 classes). Splits: train, val, test (test labels are all ignore)."""

    name = "cityscapes"
    class_names = CITYSCAPES_CLASSES
    splits = ("train", "val", "test")
    root_hint = "cityscapes (the folder holding leftImg8bit/ and gtFine/)"

    def _index(self) -> list[Sample]:
        assert self.root is not None
        fix = "set data.root to the folder holding leftImg8bit/ and gtFine/"
        img_dir = require_dir(self.root / "leftImg8bit" / self.split, self.name, "image folder", fix)
        lbl_dir = require_dir(self.root / "gtFine" / self.split, self.name, "label folder", fix)
        pairs: list[Sample] = []
        for image in sorted(img_dir.glob(f"*/*{IMAGE_SUFFIX}")):
            stem = image.name[: -len(IMAGE_SUFFIX)]
            pairs.append((image, lbl_dir / image.parent.name / f"{stem}{LABEL_SUFFIX}"))
        return self._pair_existing(pairs)

    def _lut(self) -> np.ndarray:
        lut = make_lut(LABEL_ID_TO_TRAIN_ID)
        lut[:NUM_LABEL_IDS][lut[:NUM_LABEL_IDS] < 0] = 255  # the other label ids: ignored
        return lut
