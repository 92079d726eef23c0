"""The dataset base class, its error type and the file helpers every loader shares.

Why one base class: every dataset differs only in *where* its files are and *how* raw label values
map to training ids. Reading, checking, resizing, augmenting and normalising are the same for all of
them, so they live here once, and a loader is a list of ``(image, label)`` paths plus a lookup table.

Labels are mapped through a lookup table (LUT) indexed by the raw value: the entry is the training
id, :data:`IGNORE_INDEX` for pixels excluded from loss and metrics, or ``-1`` for raw values that
must not occur. A ``-1`` hit raises :class:`DatasetError` naming the file, so a wrong dataset or a
colour rendering passed as annotation is reported when the sample is read instead of silently
training on garbage.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from archgraph.configtools import key_suggestion
from archgraph.errors import ArchgraphError

from . import transforms as T
from .transforms import IGNORE_INDEX  # label value excluded from loss and metrics (one definition)

Sample = tuple[Path, Path]


class DatasetError(ArchgraphError):
    """A dataset root, split or file is missing or malformed. A subclass of ``ValueError``.

    Messages are one line: what is wrong, which file or folder, and the fix.
    """


# --------------------------------------------------------------------------------------------------
# helpers


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def format_values(values: Sequence[int], limit: int = 10) -> str:
    """Compact list of values for an error message: ``[3, 12, 40]`` or ``[3, 12, ... (+7 more)]``."""
    values = [int(v) for v in values]
    if len(values) <= limit:
        return "[" + ", ".join(map(str, values)) + "]"
    head = ", ".join(map(str, values[:limit]))
    return f"[{head}, ... (+{len(values) - limit} more)]"


def format_ranges(values: Sequence[int]) -> str:
    """``[0,1,2,3,11]`` -> ``"0..3, 11"``: how valid raw values are shown in error messages."""
    values = sorted(int(v) for v in values)
    if not values:
        return "(none)"
    parts: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def make_lut(mapping: dict[int, int], size: int = 256, ignore_raw: Iterable[int] = (IGNORE_INDEX,)) -> np.ndarray:
    """Lookup table raw value -> training id; unlisted raw values are ``-1`` (invalid).

    ``ignore_raw`` values map to :data:`IGNORE_INDEX` (by default the raw value 255 itself, which
    most tools use to mark "don't care" pixels).
    """
    lut = np.full(size, -1, dtype=np.int16)
    for raw in ignore_raw:
        lut[raw] = IGNORE_INDEX
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def read_image(path: Path) -> np.ndarray:
    """An RGB image as ``uint8`` HxWx3 (grey, palette or RGBA inputs are converted)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"image {path} does not exist; check data.root and the split list") from None
    except OSError as e:
        raise DatasetError(f"cannot read image {path} ({e}); re-extract or delete the file") from None


def read_label(path: Path) -> np.ndarray:
    """A label map as HxW integers: palette indices for ``P`` PNGs (never the RGB colours).

    Why no conversion: converting a palette PNG to ``L`` would turn class indices into grey levels.
    An RGB label is refused because its colours are a rendering, not class ids.
    """
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA"):
                raise DatasetError(
                    f"label {path} is a colour ({im.mode}) image; expected a single-channel or palette PNG holding class ids (use the *labelIds / palette annotations, not colour renderings)"
                )
            if im.mode == "LA":
                im = im.getchannel("L")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"label {path} does not exist; check data.root and the split list") from None
    except DatasetError:
        raise
    except OSError as e:
        raise DatasetError(f"cannot read label {path} ({e}); re-extract or delete the file") from None
    if arr.ndim != 2:
        raise DatasetError(f"label {path} has shape {arr.shape}; expected a single-channel HxW map")
    return arr


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except FileNotFoundError:
        raise DatasetError(f"image {path} does not exist; check data.root and the split list") from None
    except OSError as e:
        raise DatasetError(f"cannot read image {path} ({e}); re-extract or delete the file") from None


def require_dir(path: Path, dataset: str, what: str, fix: str) -> Path:
    """``path`` if it is a folder, else a :class:`DatasetError` naming it and ``fix``."""
    if not path.is_dir():
        raise DatasetError(f"{dataset}: {what} {path} does not exist; {fix}")
    return path


def read_split_file(path: Path, dataset: str) -> list[list[str]]:
    """Non-empty, non-comment lines of a split list, split on whitespace."""
    if not path.is_file():
        raise DatasetError(f"{dataset}: split file {path} is missing; check data.root or pick another split")
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split())
    return rows


# --------------------------------------------------------------------------------------------------
# the base class


class SegmentationDataset(Dataset):
    """Base of every dataset: ``ds[i] -> (image 3xHxW float, label HxW long)``.

    Subclasses set :attr:`name`, :attr:`class_names`, :attr:`splits` and implement
    :meth:`_index` (the sample list) and :meth:`_lut` (raw label -> training id), or override
    :meth:`load_raw` for data that is not on disk (see :mod:`.synthetic`).

    Common options (any loader):

    - ``crop`` (height, width): training crop size; ignored when ``train=False``.
    - ``scale``: resize factor applied to every sample first (the low-resolution proxy setting).
    - ``train``: random scale (``scale_range``), random crop with ignore padding, random flip (``flip``).
    - ``seed``: with the index and :meth:`set_epoch`'s epoch, seeds the training augmentation.
    - ``limit``: use only the first ``limit`` samples of the split (quick runs; 0 = all).
    - ``num_classes``: ``None`` or 0 = the dataset's own count; other values are checked against it
      (or pick the variant, for the datasets that have several).
    """

    name: str = "dataset"
    class_names: list[str] = []
    splits: tuple[str, ...] = ("train", "val")
    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        split: str,
        *,
        root: str | Path | None = None,
        crop: tuple[int, int] | None = None,
        scale: float = 1.0,
        train: bool = False,
        seed: int = 0,
        num_classes: int | None = None,
        num_samples: int | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        limit: int | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            known = sorted(self.option_names())
            bad = sorted(unknown)
            hint = key_suggestion(bad[0], unknown[bad[0]], known)  # `{flipp:false}` is one YAML key
            raise DatasetError(f"{self.name}: unknown option(s) {', '.join(bad)}{hint} (known: {', '.join(known)})")
        if split not in self.splits:
            raise DatasetError(f"{self.name}: unknown split '{split}'{suggest(split, self.splits)} (choose one of: {', '.join(self.splits)})")
        self.split = split
        self.crop = T.check_crop(crop, self.name)
        self.scale = T.check_scale(scale, self.name)
        self.scale_range = T.check_scale_range(scale_range, self.name)
        self.train = bool(train)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.epoch = 0
        self.num_samples = num_samples  # used by procedural datasets only
        self._check_num_classes(num_classes)
        self.class_names = list(self.class_names)  # a copy: callers may edit theirs freely
        self.root = self._resolve_root(root) if self.needs_root else None
        if limit is not None and int(limit) < 0:
            raise DatasetError(f"{self.name}: limit={limit} must be >= 0 (0 = all samples)")
        self.limit = int(limit) if limit else None  # None / 0: the whole split
        self.samples: list[Sample] = self._index()
        if self.limit is not None:
            self.samples = self.samples[: self.limit]
        if len(self) == 0:
            raise DatasetError(f"{self.name}: split '{split}' under {self.root} is empty; check data.root and that the split's files were extracted")
        self._lut_table = self._lut()

    # ---- hooks for subclasses ---------------------------------------------------------------------

    needs_root: bool = True
    root_hint: str = "the dataset folder"

    def _index(self) -> list[Sample]:
        """The ``(image path, label path)`` pairs of ``self.split``, in a stable order."""
        raise NotImplementedError

    def _lut(self) -> np.ndarray:
        """Raw label value -> training id / :data:`IGNORE_INDEX` / ``-1`` (invalid)."""
        raise NotImplementedError

    def _find_root(self, root: Path) -> Path:
        """Hook to accept alternative root folders (e.g. the parent of the real one)."""
        return root

    # ---- common machinery -------------------------------------------------------------------------

    @classmethod
    def option_names(cls) -> set[str]:
        """Every keyword option some ``__init__`` along the MRO accepts (for error messages)."""
        names: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.kind is inspect.Parameter.KEYWORD_ONLY:
                    names.add(p.name)
        return names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _check_num_classes(self, num_classes: int | None) -> None:
        if num_classes and int(num_classes) != len(self.class_names):  # None / 0: the default
            raise DatasetError(f"{self.name}: num_classes={num_classes} was requested but {self.name} has {len(self.class_names)} classes; drop num_classes or set it to {len(self.class_names)}")

    def _resolve_root(self, root: str | Path | None) -> Path:
        if root is None or str(root) == "":
            raise DatasetError(f"{self.name}: no dataset root given; set data.root=/path/to/{self.root_hint}")
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DatasetError(f"{self.name}: dataset root {path} does not exist; set data.root=/path/to/{self.root_hint}")
        return self._find_root(path)

    def _pair_existing(self, pairs: Iterable[Sample]) -> list[Sample]:
        """Check both files of every pair exist; one error for all, naming the first problem."""
        pairs = list(pairs)
        missing_img = [img for img, _ in pairs if not img.is_file()]
        if missing_img:
            raise DatasetError(f"{self.name}: {len(missing_img)} image(s) of split '{self.split}' are missing, e.g. {missing_img[0]}; check data.root and the split list")
        missing_lbl = [(img, lbl) for img, lbl in pairs if not lbl.is_file()]
        if missing_lbl:
            img, lbl = missing_lbl[0]
            raise DatasetError(f"{self.name}: {len(missing_lbl)} image(s) of split '{self.split}' have no label, e.g. {img} has no {lbl}; extract the annotations next to the images")
        return pairs

    # Labels read by check_labels(): every one for splits up to LABEL_CHECK_ALL samples, else this
    # many spread evenly over the split (the docstring of check_labels says why).
    LABEL_CHECK_ALL = 500
    LABEL_CHECK_SPREAD = 100

    def check_labels(self) -> list[tuple[int, int]]:
        """Read the split's labels before any training, so a bad one fails now, naming the file.

        Each checked label is decoded and mapped (a value outside the class range, a colour
        rendering, an unreadable file raise :class:`DatasetError` with the file, the values and the
        valid range), and its image's header is read (a missing image or a size mismatch fail too).
        Returns the checked images' (height, width).

        How many: every label of a split of up to :attr:`LABEL_CHECK_ALL` samples (each of CamVid's
        splits: about a second); for larger splits (VOC's 1464, Cityscapes' 2975, ADE20K's 20k at
        full resolution: up to minutes for a full pass at every start) :attr:`LABEL_CHECK_SPREAD` samples spread
        evenly from the first to the last, which catches what is wrong with a whole split (the wrong
        dataset, colour renderings, another class numbering). A single bad file elsewhere is still
        reported by name when it is read. Procedural datasets (no files) have nothing to check.
        """
        n = len(self.samples)
        if n == 0:
            return []
        if n <= self.LABEL_CHECK_ALL:
            indices: list[int] = list(range(n))
        else:
            k = self.LABEL_CHECK_SPREAD
            indices = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
        sizes = []
        for i in indices:
            img_path, lbl_path = self.samples[i]
            raw = read_label(lbl_path)
            self.map_label(raw, lbl_path)
            size = image_size(img_path)
            if size != raw.shape:
                raise DatasetError(f"{self.name}: image {img_path} is {size[1]}x{size[0]} but its label {lbl_path} is {raw.shape[1]}x{raw.shape[0]}; image and label must have the same size")
            sizes.append(size)
        return sizes

    def crop_warning(self, sizes: Sequence[tuple[int, int]]) -> str | None:
        """A warning when the training crop is larger than every image in ``sizes`` (after
        ``scale``): each crop would then be padded with ignored pixels."""
        if not self.train or self.crop is None or not sizes:
            return None
        h = max(T.scaled_size(hh, ww, self.scale)[0] for hh, ww in sizes)
        w = max(T.scaled_size(hh, ww, self.scale)[1] for hh, ww in sizes)
        ch, cw = self.crop
        if ch <= h and cw <= w:
            return None
        return (
            f"data.crop=[{ch}, {cw}] is larger than the {self.name} {self.split} images ({h}x{w} at most, at "
            f"data.scale={self.scale:g}): every training crop is padded with ignored pixels before the random rescale "
            f"fills it; lower data.crop to at most [{min(ch, h)}, {min(cw, w)}] or raise data.scale"
        )

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream: the same (seed, index, epoch) gives the same sample."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``uint8`` HxWx3 and *mapped* label ``uint8`` HxW, checked, before any transform."""
        img_path, lbl_path = self.samples[index]
        image = read_image(img_path)
        raw = read_label(lbl_path)
        if image.shape[:2] != raw.shape:
            raise DatasetError(f"{self.name}: image {img_path} is {image.shape[1]}x{image.shape[0]} but its label {lbl_path} is {raw.shape[1]}x{raw.shape[0]}; image and label must have the same size")
        return image, self.map_label(raw, lbl_path)

    def map_label(self, raw: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
        """Apply the LUT; raw values the LUT marks invalid raise a :class:`DatasetError`."""
        lut = self._lut_table
        values = raw.astype(np.int64, copy=False)
        out_of_table = (values < 0) | (values >= len(lut))
        mapped = lut[np.clip(values, 0, len(lut) - 1)]
        bad = out_of_table | (mapped < 0)
        if bad.any():
            valid = np.flatnonzero(lut >= 0)
            raise DatasetError(
                f"{self.name}: label {path} has values {format_values(np.unique(values[bad]))} outside "
                f"the valid range {format_ranges(valid)} (mapped to {self.num_classes} classes, "
                f"{IGNORE_INDEX} = ignore); fix the annotation or use the right dataset"
            )
        return mapped.astype(np.uint8)

    def rng(self, index: int) -> np.random.Generator:
        """Generator for the training augmentation of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        image, label = self.load_raw(index)
        if self.train:
            return T.train_transform(
                image,
                label,
                rng=self.rng(index),
                crop=self.crop,
                scale=self.scale,
                scale_range=self.scale_range,
                flip=self.flip,
            )
        return T.eval_transform(image, label, scale=self.scale)

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return (
            f"{type(self).__name__}(split={self.split!r}, root={str(self.root) if self.root else None!r}, "
            f"samples={len(self)}, classes={self.num_classes}, {mode}, crop={self.crop}, scale={self.scale})"
        )
