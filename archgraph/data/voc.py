"""Pascal VOC 2012 segmentation (21 classes incl. background), optionally with the SBD augmentation.

Layout (``data.root`` = ``VOC2012``; its parent ``VOCdevkit`` or the folder holding
``VOCdevkit`` are accepted too)::

    root/JPEGImages/{id}.jpg
    root/SegmentationClass/{id}.png              palette PNGs: the palette *indices* are the classes
    root/ImageSets/Segmentation/{train,val,trainval}.txt     one image id per line

With ``sbd=True`` (the 10,582-image "train_aug" set)::

    root/SegmentationClassAug/{id}.png           single-channel or palette PNGs, same values
    root/ImageSets/Segmentation/train_aug.txt    used for split "train" (also selectable as "train_aug")

and every split reads its labels from ``SegmentationClassAug``. Split lines may be an image id or
the two-path form ``/JPEGImages/{id}.jpg /SegmentationClassAug/{id}.png`` (paths relative to root).
Values 0..20 are classes, 255 (the object boundaries) is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DatasetError, Sample, SegmentationDataset, make_lut, read_split_file

VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


class VOC(SegmentationDataset):
    """Pascal VOC 2012. Splits: train, val, trainval, train_aug (``sbd=True`` only)."""

    name = "voc"
    class_names = VOC_CLASSES
    splits = ("train", "val", "trainval", "train_aug")
    root_hint = "VOC2012 (the folder holding JPEGImages/)"

    def __init__(self, split: str, *, sbd: bool = False, **kwargs) -> None:
        self.sbd = bool(sbd)
        super().__init__(split, **kwargs)

    def _find_root(self, root: Path) -> Path:
        for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
            if (candidate / "JPEGImages").is_dir():
                return candidate
        raise DatasetError(f"{self.name}: {root} has no JPEGImages/ folder (nor VOC2012/ or VOCdevkit/VOC2012/); set data.root=/path/to/VOC2012")

    def _index(self) -> list[Sample]:
        assert self.root is not None
        if self.split == "train_aug" and not self.sbd:
            raise DatasetError(f"{self.name}: split 'train_aug' needs the SBD labels; set the dataset option sbd=true")
        list_name = "train_aug" if self.sbd and self.split == "train" else self.split
        label_dir = "SegmentationClassAug" if self.sbd else "SegmentationClass"
        list_file = self.root / "ImageSets" / "Segmentation" / f"{list_name}.txt"
        pairs: list[Sample] = []
        for parts in read_split_file(list_file, self.name):
            if len(parts) >= 2:
                pairs.append((self.root / parts[0].lstrip("/"), self.root / parts[1].lstrip("/")))
            else:
                stem = parts[0]
                pairs.append((self.root / "JPEGImages" / f"{stem}.jpg", self.root / label_dir / f"{stem}.png"))
        return self._pair_existing(pairs)

    def _lut(self) -> np.ndarray:
        return make_lut({k: k for k in range(len(VOC_CLASSES))})
