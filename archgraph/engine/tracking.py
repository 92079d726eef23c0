"""Experiment tracking: what the search and the training loop report while they run, and TensorBoard as
the first place it goes (``search.tensorboard`` / ``train.tensorboard``, docs/training.md).

Why a hook and not TensorBoard calls in the loops: the loops talk to a :class:`RunLogger` (scalars,
histograms, images, flush, close), so MLflow or Weights & Biases can come later as one more backend
here, without touching the loops. The base class records nothing: it is what a run gets with
tracking off, and what every process but rank 0 gets under torchrun.

**One run folder = one TensorBoard run.** The event files go into the run folder itself, so
``tensorboard --logdir runs/`` lists every search and training under its folder name (a compare's
searches as ``CMP/ENTRY/search``) and overlays their curves.

**Steps.** The x-axis is the number of optimisation steps taken since the run began (all stages of a
multi-stage search together, counted from 1): per-step losses sit at their step, per-epoch figures
at the last step of their epoch. A resumed run continues the count from its checkpoint and opens
its event file with TensorBoard's purge marker at that point (``SummaryWriter(purge_step=...)``), so
whatever a killed run logged after its last checkpoint is hidden, exactly as ``search.jsonl`` and
``train.jsonl`` are trimmed; a fresh run in the same folder hides everything before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from archgraph.core.measure import PEAK_MEMORY_KEYS
from archgraph.data.transforms import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from archgraph.errors import ConfigError

INSTALL = 'pip install "archgraph[tensorboard]"'
PANELS = 3  # validation images shown at each evaluation
PANEL_HEIGHT = 256  # panels of taller images are scaled down to this height

# Per-epoch record keys -> TensorBoard section (the part of a tag before "/"). Losses and their parts
# (``arch_ce``, ``arch_flops_reg``: a name with a part "loss", "ce" or "reg") go to "loss", any
# other number to the loop's own section ("search" or "train").
GROUPS = {
    "metrics": ("s_miou", "miou", "pixel_acc", "best_miou", "train_pixel_acc"),
    "schedule": ("lr", "arch_lr", "tau", "arch_active"),
    "arch": ("entropy_alpha", "entropy_beta"),
    "health": ("margin_alpha", "margin_beta", "changed_ops", "changed_inputs", "arch_steps", "arch_grad_snr", "arch_grad_snr_noise"),
    "system": ("step_time", "seconds", "eval_seconds", "peak_mem_mb", *PEAK_MEMORY_KEYS),
}
_GROUP_OF = {key: group for group, keys in GROUPS.items() for key in keys}
_LOSS_PARTS = {"loss", "ce", "reg"}
_NOT_LOGGED = ("stage", "epoch", "steps", "world_size")  # where a record sits, not what it measures


# --------------------------------------------------------------------------------------------------
# the hook and its TensorBoard backend


class RunLogger:
    """Where a run reports as it goes. This base records nothing; a backend overrides the methods."""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Record ``{tag: value}`` at ``step``."""

    def histogram(self, tag: str, values: Sequence[float], step: int) -> None:
        """Record the distribution of ``values`` at ``step``."""

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Record an ``H x W x 3`` ``uint8`` picture at ``step``."""

    def flush(self) -> None:
        """Put everything recorded so far on disk (the loops call it before each checkpoint)."""

    def close(self) -> None:
        """Flush and release the backend."""

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _summary_writer(option: str):
    """``torch.utils.tensorboard.SummaryWriter``, or the install command when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"{option}=true writes TensorBoard event files and needs the tensorboard package, which is not installed (or too old to import): {INSTALL}, or set {option}=false") from None
    return SummaryWriter


def require_backend(enabled: bool, option: str) -> None:
    """Fail before a run starts (nothing written, nothing lost) when ``option`` asks for a backend
    this environment lacks."""
    if enabled:
        _summary_writer(option)


class TensorBoardLogger(RunLogger):
    """Event files in ``folder`` through ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, folder: Path, purge_step: int, option: str):
        writer_class = _summary_writer(option)
        # purge_step: TensorBoard hides what earlier files logged from that step on (module docstring).
        self.writer = writer_class(log_dir=str(folder), purge_step=purge_step, max_queue=100, flush_secs=30)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def histogram(self, tag: str, values: Sequence[float], step: int) -> None:
        if len(values):
            self.writer.add_histogram(tag, np.asarray(values, dtype=np.float64), step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_logger(enabled: bool, folder: Path, purge_step: int, option: str) -> RunLogger:
    """The run's logger: TensorBoard event files in ``folder`` when ``enabled``, else one that records
    nothing. ``purge_step``: the first step this process will log (0 for a fresh run)."""
    return TensorBoardLogger(Path(folder), purge_step, option) if enabled else RunLogger()


# --------------------------------------------------------------------------------------------------
# what the loops log


def tag(key: str, section: str) -> str:
    """The TensorBoard tag of a per-epoch record key: ``"health/margin_alpha"``, ``"loss/arch_loss"``."""
    group = _GROUP_OF.get(key) or ("loss" if _LOSS_PARTS & set(key.split("_")) else section)
    return f"{group}/{key}"


def epoch_scalars(record: Mapping[str, Any], section: str) -> dict[str, float]:
    """Every number of a per-epoch record (``search.jsonl`` / ``train.jsonl`` line), tagged by
    :func:`tag`; flags become 0/1, text (hashes, precision) is left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in _NOT_LOGGED or not isinstance(value, (int, float)):
            continue
        out[tag(key, section)] = float(value)
    return out


def step_scalars(losses: Mapping[str, float], **extra: float) -> dict[str, float]:
    """One step's losses (and e.g. its learning rate) under ``step/``."""
    return {f"step/{k}": float(v) for k, v in {**losses, **extra}.items()}


def final_scalars(record: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float]:
    """The run's end result (``final.json`` / ``metrics.json``) under ``final/``: what a table of
    runs compares."""
    return {f"final/{k}": float(record[k]) for k in keys if isinstance(record.get(k), (int, float))}


def log_arch(logger: RunLogger, net, step: int) -> None:
    """Histograms of softmax(alpha) and softmax(beta) over all choice points (the probabilities the
    decoder ranks; group-normalised where the space asks for it, as in Auto-DeepLab)."""
    if net.arch is None:
        return
    scores = net.arch.scores()
    for name, key in (("softmax_alpha", "ops"), ("softmax_beta", "inputs")):
        logger.histogram(f"arch/{name}", [p for probs in scores[key].values() for p in probs], step)


def log_panels(logger: RunLogger, panels: Sequence[np.ndarray], step: int) -> None:
    for i, picture in enumerate(panels):
        logger.image(f"predictions/{i}", picture, step)


# --------------------------------------------------------------------------------------------------
# validation predictions as pictures


def palette() -> np.ndarray:
    """256 x 3 ``uint8`` class colours: the PASCAL VOC colour map (class ``c``'s bits spread over
    the high bits of R, G and B), which also gives the ignore label 255 VOC's cream boundary colour."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    for c in range(256):
        rgb, rest = [0, 0, 0], c
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((rest >> channel) & 1) << bit
            rest >>= 3
        colours[c] = rgb
    return colours


_PALETTE = palette()


def colourize(label: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class ids (``H x W``; 255 = ignored) as an ``H x W x 3`` picture."""
    ids = np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label).astype(np.int64)
    return _PALETTE[np.clip(ids, 0, IGNORE_INDEX)]


def denormalise(image: torch.Tensor) -> np.ndarray:
    """A normalised ``3 x H x W`` input back to ``H x W x 3`` ``uint8`` (the ImageNet statistics
    :mod:`archgraph.data.transforms` normalises with)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * std + mean).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def panel(image: torch.Tensor, label: torch.Tensor, prediction: torch.Tensor, height: int = PANEL_HEIGHT) -> np.ndarray:
    """Input | ground truth | prediction side by side, scaled down to ``height`` when taller."""
    from PIL import Image

    parts = [denormalise(image), colourize(label), colourize(prediction)]
    h, w = parts[0].shape[:2]
    if h > height:
        size = (max(1, round(w * height / h)), height)
        parts = [np.asarray(Image.fromarray(p).resize(size, Image.BILINEAR if i == 0 else Image.NEAREST)) for i, p in enumerate(parts)]
    gap = np.full((parts[0].shape[0], 2, 3), 255, dtype=np.uint8)
    return np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)


@torch.no_grad()
def prediction_panels(net: nn.Module, dataset: Dataset, device: torch.device, count: int = PANELS) -> list[np.ndarray]:
    """:func:`panel` of the first ``count`` images of ``dataset``, predicted on whole images as the
    evaluation does; ``net`` goes back to its train/eval mode afterwards."""
    from archgraph.engine.evaluate import predict_probs

    was_training = net.training
    net.eval()
    try:
        panels = []
        for i in range(min(count, len(dataset))):
            image, label = dataset[i]
            prediction = predict_probs(net, image[None].to(device)).argmax(1)[0]
            panels.append(panel(image, label, prediction))
        return panels
    finally:
        net.train(was_training)
