"""Procedural segmentation scenes, generated on the fly: tests, smoke runs and CI need no files.

Why this design: a search or training loop must be exercised end to end without any download, and
the task must be learnable (so a broken training loop shows as a flat loss) but not trivial (so a
model that only looks at one pixel's colour does not solve it). Hence:

- a background (class 0) with a colour gradient and smooth blotches;
- 3..8 objects of classes 1..C-1, shaped as rotated rectangles, ellipses or striped bands, at sizes
  from a few pixels to more than half the image (log-uniform), drawn large first so tiny ones stay
  visible, each image holding at least ``min(3, C-1)`` distinct object classes;
- each class has a fixed appearance (base colour + texture: flat, stripes of a given frequency and
  orientation, checkerboard or dots), jittered per object, plus pixel noise, so colours of
  different classes may be close and texture/shape context matters.

A sample depends only on ``(seed, split, index)``: the same triple gives the same scene, and the
split name is part of the seed so ``train`` and ``val`` differ. Class appearances depend only on
``num_classes``, so they are shared between splits (otherwise validation would be unlearnable).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .base import DatasetError, Sample, SegmentationDataset, make_lut

DEFAULT_SIZE = (64, 64)
_APPEARANCE_SEED = 20_240_601


@dataclass(frozen=True)
class _Look:
    """Fixed appearance of one class."""

    colour: np.ndarray  # (3,) float, 0..255
    texture: str  # flat | stripes | checker | dots
    period: float  # pixels
    angle: float  # radians
    amplitude: float  # grey levels
    tint: np.ndarray  # (3,) direction of the texture's colour modulation


def _looks(num_classes: int) -> list[_Look]:
    rng = np.random.default_rng([_APPEARANCE_SEED, num_classes])
    textures = ["flat", "stripes", "checker", "dots"]
    looks = []
    for c in range(num_classes):
        tint = rng.normal(size=3)
        looks.append(
            _Look(
                colour=rng.uniform(40, 215, size=3),
                texture="flat" if c == 0 else textures[c % len(textures)],
                period=float(rng.uniform(3.0, 9.0)),
                angle=float(rng.uniform(0, np.pi)),
                amplitude=float(rng.uniform(20, 45)),
                tint=tint / np.linalg.norm(tint),
            )
        )
    return looks


def _pattern(look: _Look, yy: np.ndarray, xx: np.ndarray, phase: float) -> np.ndarray:
    """Texture in [-1, 1] over the whole grid (masked later)."""
    if look.texture == "flat":
        return np.zeros_like(yy)
    u = xx * np.cos(look.angle) + yy * np.sin(look.angle)
    v = -xx * np.sin(look.angle) + yy * np.cos(look.angle)
    w = 2 * np.pi / look.period
    if look.texture == "stripes":
        return np.sign(np.sin(w * u + phase))
    if look.texture == "checker":
        return np.sign(np.sin(w * u + phase) * np.sin(w * v + phase))
    # dots: bright spots on a regular lattice
    return np.where((np.cos(w * u + phase) + np.cos(w * v + phase)) > 1.2, 1.0, -0.4)


class Synthetic(SegmentationDataset):
    """Procedural scenes. Splits: train, val, test. Options: num_classes (default 5), num_samples
    (default 64), crop = image size (default 64x64), noise (pixel noise std, default 12)."""

    name = "synthetic"
    class_names = ["background", "object1", "object2", "object3", "object4"]  # default num_classes=5
    splits = ("train", "val", "test")
    needs_root = False

    def __init__(self, split: str, *, noise: float = 12.0, **kwargs) -> None:
        self.noise = float(noise)
        super().__init__(split, **kwargs)
        self.size = self.crop or DEFAULT_SIZE
        self._looks = _looks(self.num_classes)
        self._split_key = zlib.crc32(split.encode())

    def _check_num_classes(self, num_classes: int | None) -> None:
        n = int(num_classes) if num_classes else 5  # None / 0: the default
        if n < 2:
            raise DatasetError(f"{self.name}: num_classes={num_classes} must be >= 2 (background + objects)")
        if n > 255:
            raise DatasetError(f"{self.name}: num_classes={num_classes} must be <= 255 (255 is the ignore label)")
        self.class_names = ["background"] + [f"object{c}" for c in range(1, n)]

    def _index(self) -> list[Sample]:
        n = 64 if self.num_samples is None else int(self.num_samples)
        if n < 1:
            raise DatasetError(f"{self.name}: num_samples={self.num_samples} must be >= 1")
        self._count = n
        return []

    def __len__(self) -> int:
        return self._count if self.limit is None else min(self._count, self.limit)

    def _lut(self) -> np.ndarray:
        return make_lut({k: k for k in range(self.num_classes)})

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self._split_key, int(index), 1])
        return render_scene(rng, self.size, self._looks, self.noise)

    def __repr__(self) -> str:
        return f"Synthetic(split={self.split!r}, samples={len(self)}, classes={self.num_classes}, size={self.size}, seed={self.seed}, {'train' if self.train else 'eval'})"


def render_scene(rng: np.random.Generator, size: tuple[int, int], looks: list[_Look], noise: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``uint8`` HxWx3 image and ``uint8`` HxW label with values < ``len(looks)``."""
    h, w = size
    num_classes = len(looks)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    # background: class colour, a linear gradient and a few smooth blotches
    bg = looks[0]
    g = rng.normal(size=2)
    gradient = (g[0] * (yy / h - 0.5) + g[1] * (xx / w - 0.5)) * 40.0
    blotch = np.zeros((h, w))
    for _ in range(3):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.15, 0.4) * max(h, w)
        blotch += rng.uniform(-25, 25) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    image = bg.colour + (gradient + blotch)[..., None] * np.array([1.0, 0.9, 0.8])
    label = np.zeros((h, w), dtype=np.uint8)

    # objects: distinct classes first, then random ones; large drawn first so small stay on top
    n_obj = int(rng.integers(3, 9))
    object_classes = np.arange(1, num_classes)
    distinct = rng.permutation(object_classes)[: min(3, num_classes - 1)]
    extra = rng.choice(object_classes, size=max(0, n_obj - len(distinct)))
    classes = np.concatenate([distinct, extra]).astype(int)
    side = min(h, w)
    radii = side * np.exp(rng.uniform(np.log(0.03), np.log(0.35), size=len(classes)))
    for i in np.argsort(-radii):
        c, r = int(classes[i]), max(1.5, float(radii[i]))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        theta = rng.uniform(0, np.pi)
        aspect = rng.uniform(0.4, 1.0)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        ry = max(1.5, r * aspect)
        shape = rng.choice(["rect", "ellipse", "stripes"]) if r >= 4 else rng.choice(["rect", "ellipse"])
        if shape == "ellipse":
            mask = (u / r) ** 2 + (v / ry) ** 2 <= 1.0
        else:
            mask = (np.abs(u) <= r) & (np.abs(v) <= ry)
            if shape == "stripes":
                period = 2 * r / rng.integers(2, 5)
                mask &= np.sin(2 * np.pi * u / period) > -0.2
        if not mask.any():  # a centre between pixel centres: paint the nearest pixel
            mask[min(int(cy), h - 1), min(int(cx), w - 1)] = True
        look = looks[c]
        colour = look.colour + rng.normal(scale=12.0, size=3)
        texture = _pattern(look, yy, xx, phase=float(rng.uniform(0, 2 * np.pi)))
        obj = colour + (look.amplitude * texture)[..., None] * (0.5 + 0.5 * np.abs(look.tint))
        image[mask] = obj[mask]
        label[mask] = c

    image = image + rng.normal(scale=noise, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label
