"""CamVid in the SegNet layout: 11 classes, void (raw 11) ignored.

Layout (``data.root`` = the folder holding the split lists)::

    root/train.txt  val.txt  test.txt     lines "<image path> <label path>"
    root/train/*.png    root/trainannot/*.png
    root/val/...        root/valannot/...
    root/test/...       root/testannot/...

The lists hold the original distribution's absolute paths (``/SegNet/CamVid/train/x.png``); only
their last two components are used, relative to the root, so the lists work wherever the data lives.
Labels are single-channel PNGs with values 0..10, and 11 = void -> :data:`IGNORE_INDEX`.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np

from .base import DatasetError, Sample, SegmentationDataset, make_lut, read_split_file

CAMVID_CLASSES = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
CAMVID_VOID = 11


class CamVid(SegmentationDataset):
    """CamVid (SegNet layout). Splits: train, val, test."""

    name = "camvid"
    class_names = CAMVID_CLASSES
    splits = ("train", "val", "test")
    root_hint = "camvid (the folder holding train.txt)"

    def _index(self) -> list[Sample]:
        assert self.root is not None
        list_file = self.root / f"{self.split}.txt"
        pairs: list[Sample] = []
        for lineno, parts in enumerate(read_split_file(list_file, self.name), 1):
            if len(parts) != 2:
                raise DatasetError(f"{self.name}: {list_file} line {lineno} should be '<image path> <label path>'; fix the split list")
            image, label = (self._local(p) for p in parts)
            pairs.append((image, label))
        return self._pair_existing(pairs)

    def _local(self, listed: str):
        """``/SegNet/CamVid/train/x.png`` -> ``root/train/x.png`` (last two components)."""
        assert self.root is not None
        tail = PurePosixPath(listed.replace("\\", "/")).parts[-2:]
        return self.root.joinpath(*tail)

    def _lut(self) -> np.ndarray:
        return make_lut({k: k for k in range(len(CAMVID_CLASSES))}, ignore_raw=(CAMVID_VOID, 255))
