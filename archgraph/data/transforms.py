"""Sample transforms: resize, training augmentation, normalisation, padding and collation.

Rules that every path here keeps, because metrics silently go wrong otherwise:

- labels are resampled with nearest neighbour only, so no value appears that was not in the label;
- padding puts :data:`IGNORE_INDEX` in the label and 0 in the *normalised* image (the mean colour);
- evaluation is deterministic and never crops: metrics are computed on whole images;
- randomness comes only from the ``numpy.random.Generator`` passed in, so a run is reproducible.

Crop sizes are ``(height, width)``.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _error(msg: str) -> Exception:
    from .base import DatasetError  # local import: base imports this module

    return DatasetError(msg)


# ---- argument checks ---------------------------------------------------------------------------------


def check_crop(crop: Sequence[int] | int | None, dataset: str) -> tuple[int, int] | None:
    """``None``, an int (square) or (height, width) of positive ints -> ``(h, w)``."""
    if crop is None:
        return None
    if isinstance(crop, int):
        crop = (crop, crop)
    try:
        h, w = (int(c) for c in crop)
    except (TypeError, ValueError):
        raise _error(f"{dataset}: crop={crop!r} must be [height, width]") from None
    if h < 1 or w < 1:
        raise _error(f"{dataset}: crop={crop!r} must be positive [height, width]")
    return h, w


def check_scale(scale: float, dataset: str) -> float:
    scale = float(scale)
    if not scale > 0:
        raise _error(f"{dataset}: scale={scale} must be > 0 (1.0 = full resolution)")
    return scale


def check_scale_range(scale_range: Sequence[float], dataset: str) -> tuple[float, float]:
    try:
        lo, hi = (float(s) for s in scale_range)
    except (TypeError, ValueError):
        raise _error(f"{dataset}: scale_range={scale_range!r} must be [low, high]") from None
    if not 0 < lo <= hi:
        raise _error(f"{dataset}: scale_range={scale_range!r} needs 0 < low <= high")
    return lo, hi


# ---- primitives ----------------------------------------------------------------------------------------


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(h, w) times ``scale``, rounded, at least 1 pixel."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size`` (h, w): image bilinear, label nearest (never interpolated)."""
    h, w = size
    if image.shape[:2] == (h, w) and label.shape == (h, w):
        return image, label
    img = Image.fromarray(image).resize((w, h), Image.BILINEAR)
    lbl = Image.fromarray(label).resize((w, h), Image.NEAREST)
    return np.asarray(img), np.asarray(lbl)


def normalize(image: np.ndarray) -> torch.Tensor:
    """``uint8`` HxWx3 -> float 3xHxW standardised with the ImageNet mean and std."""
    t = torch.from_numpy(_own_copy(image)).permute(2, 0, 1).float().div_(255.0)
    return t.sub_(_MEAN).div_(_STD)


def to_label(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(_own_copy(label)).long()


def _own_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable array torch can wrap. ``np.require`` keeps a flipped view whose
    dimensions have length 1 (a 1-pixel crop): NumPy calls it contiguous, torch refuses its negative
    stride, so such a view is copied."""
    array = np.require(array, requirements=["C", "W"])
    return array.copy() if any(s < 0 for s in array.strides) else array


def check_crop_stride(crop: tuple[int, int], stride: int, what: str, batch: int | None = None) -> None:
    """Refuse a training crop smaller than the network's total stride (``what`` names the network):
    its coarsest feature map would be under one pixel of image, padding would be nearly all it sees,
    and batch norm at that scale would have one value per channel.

    ``batch`` (the images one batch-norm layer normalises together: the batch of one process, or the
    global batch under synchronised BN): also refuse a crop and batch whose coarsest map
    holds a single value per channel in the whole batch (a crop of at most ``stride`` pixels with a
    batch of one). Batch norm cannot compute training statistics from one value and PyTorch stops
    the first step with a ValueError that names neither setting."""
    from archgraph.errors import ConfigError

    h, w = (int(v) for v in crop)
    if h < stride or w < stride:
        raise ConfigError(
            f"data.crop=[{h},{w}] is smaller than the total stride {stride} of {what}; the smallest crop that works is [{stride},{stride}] (e.g. --set data.crop=[{max(h, stride)},{max(w, stride)}])"
        )
    coarsest = math.ceil(h / stride) * math.ceil(w / stride)  # stride-2 convs with padding round up
    if batch is not None and batch * coarsest == 1:
        raise ConfigError(
            f"data.crop=[{h},{w}] with batch norm over {batch} image leaves {what}'s coarsest feature map (1/{stride}) one value per channel, "
            f"and batch norm cannot train on one value; raise data.batch_size to 2 or more images per process, or the crop (e.g. --set data.crop=[{2 * stride},{2 * stride}])"
        )


def pad_to(image: torch.Tensor, label: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom/right up to (height, width): image with 0, label with :data:`IGNORE_INDEX`."""
    ph, pw = max(height - image.shape[-2], 0), max(width - image.shape[-1], 0)
    if ph == 0 and pw == 0:
        return image, label
    image = F.pad(image, (0, pw, 0, ph), value=0.0)
    label = F.pad(label, (0, pw, 0, ph), value=IGNORE_INDEX)
    return image, label


def pad_to_multiple(image: torch.Tensor, label: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad so height and width are multiples of ``multiple`` (networks with stride 32, say)."""
    h, w = image.shape[-2:]
    return pad_to(image, label, -(-h // multiple) * multiple, -(-w // multiple) * multiple)


def pad_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate samples of different sizes by padding to the largest.

    The padded pixels are labelled ignore, so they are never scored, but a network still sees them:
    its upsampled logits near a smaller image's bottom and right edges (and an image-pooling branch)
    mix in the padding. To score whole images exactly as one at a time, batch images of one size
    together instead (:func:`same_size_batches`, what :func:`archgraph.engine.evaluate.evaluate` does).
    """
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    padded = [pad_to(img, lbl, h, w) for img, lbl in batch]
    return torch.stack([p[0] for p in padded]), torch.stack([p[1] for p in padded])


def same_size_batches(samples: Iterable[tuple[torch.Tensor, torch.Tensor]], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive samples of one image size stacked into batches of at most ``batch_size``: in eval
    mode a network's output per image does not depend on its batch, so whole images batch without
    padding and score as they would one at a time."""
    group: list[tuple[torch.Tensor, torch.Tensor]] = []
    for x, y in samples:
        if group and (len(group) == batch_size or group[0][0].shape != x.shape):
            yield torch.stack([g[0] for g in group]), torch.stack([g[1] for g in group])
            group = []
        group.append((x, y))
    if group:
        yield torch.stack([g[0] for g in group]), torch.stack([g[1] for g in group])


# ---- the two pipelines ------------------------------------------------------------------------------


def eval_transform(image: np.ndarray, label: np.ndarray, *, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic: resize by ``scale`` only, normalise. No crop, no flip."""
    if scale != 1.0:
        image, label = resize(image, label, scaled_size(*label.shape, scale))
    return normalize(image), to_label(label)


def train_transform(
    image: np.ndarray,
    label: np.ndarray,
    *,
    rng: np.random.Generator,
    crop: tuple[int, int] | None,
    scale: float = 1.0,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale (times ``scale``), horizontal flip, then random crop with ignore padding.

    The proxy ``scale`` and the random factor are applied in one resize so the image is
    interpolated once. Cropping happens before normalisation (cheaper), padding after it, so
    padded image pixels are exactly 0 in normalised space.
    """
    factor = scale * float(rng.uniform(scale_range[0], scale_range[1]))
    image, label = resize(image, label, scaled_size(*label.shape, factor))
    if flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    if crop is not None:
        ch, cw = crop
        h, w = label.shape
        y0 = int(rng.integers(0, h - ch + 1)) if h > ch else 0
        x0 = int(rng.integers(0, w - cw + 1)) if w > cw else 0
        image, label = image[y0 : y0 + ch, x0 : x0 + cw], label[y0 : y0 + ch, x0 : x0 + cw]
        img_t, lbl_t = pad_to(normalize(image), to_label(label), ch, cw)
        return img_t, lbl_t
    return normalize(image), to_label(label)
