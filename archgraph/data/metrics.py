"""Segmentation metrics from one accumulated confusion matrix.

Why a confusion matrix: every usual metric (IoU per class, mIoU, pixel accuracy, mean class
accuracy) is a function of it, it is exact under any batching, and merging results of several
processes or workers is a sum (:meth:`ConfusionMatrix.reduce_`). Accumulation uses
``torch.bincount`` over ``target * C + pred``, one pass on the device holding the predictions.

Conventions: rows are ground truth, columns are predictions. Pixels whose target is
``ignore_index`` are skipped. A class with no pixel in either ground truth or prediction has IoU
``None`` (JSON ``null``) and does not count in the mIoU; a class absent from the ground truth but
predicted somewhere has IoU 0 and does count (its false positives are real errors).
"""

from __future__ import annotations

from typing import Sequence

import torch


def _show(values: torch.Tensor, limit: int = 10) -> str:
    vals = [int(v) for v in torch.unique(values).tolist()]
    if len(vals) > limit:
        return "[" + ", ".join(map(str, vals[:limit])) + f", ... (+{len(vals) - limit} more)]"
    return "[" + ", ".join(map(str, vals)) + "]"


class ConfusionMatrix:
    """Accumulates a ``C x C`` confusion matrix and derives the segmentation metrics from it."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes={num_classes} must be >= 1")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long, device=device)

    # ---- accumulation -----------------------------------------------------------------------------

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. ``pred``: class ids shaped like ``target`` (N,H,W), or logits (N,C,H,W).

        Raises ``ValueError`` when shapes disagree or ``target`` holds values outside
        ``[0, C)`` other than ``ignore_index`` (usually a wrong ``num_classes`` or label mapping).
        """
        c = self.num_classes
        if pred.dim() == target.dim() + 1:
            if pred.shape[1] != c:
                raise ValueError(f"logits have {pred.shape[1]} channels but the matrix has {c} classes")
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
        device = self.matrix.device
        pred = pred.detach().to(device=device, dtype=torch.long).reshape(-1)
        target = target.detach().to(device=device, dtype=torch.long).reshape(-1)
        keep = target != self.ignore_index
        bad = keep & ((target < 0) | (target >= c))
        if bad.any():
            raise ValueError(f"target has values {_show(target[bad])} outside [0, {c}) that are not the ignore label {self.ignore_index}; check num_classes and the dataset's label mapping")
        target, pred = target[keep], pred[keep]
        bad_pred = (pred < 0) | (pred >= c)
        if bad_pred.any():
            raise ValueError(f"prediction has class ids {_show(pred[bad_pred])} outside [0, {c})")
        counts = torch.bincount(target * c + pred, minlength=c * c)
        self.matrix += counts.reshape(c, c)

    def reduce_(self) -> "ConfusionMatrix":
        """Sum the matrices of all ``torch.distributed`` processes in place (no-op when not initialised).

        With the NCCL backend the matrix must live on the GPU (pass ``device`` at construction).
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)
        return self

    def merge_(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix (e.g. from a data-loader shard) in place."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def reset(self) -> None:
        self.matrix.zero_()

    # ---- metrics ------------------------------------------------------------------------------------

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.matrix.detach().to("cpu", torch.float64)
        tp = m.diagonal()
        return tp, m.sum(dim=1), m.sum(dim=0)  # true positives, ground-truth count, predicted count

    @property
    def total(self) -> int:
        """Number of (non-ignored) pixels accumulated."""
        return int(self.matrix.sum().item())

    def per_class_iou(self) -> list[float | None]:
        """IoU per class; ``None`` where the class is in neither ground truth nor prediction."""
        tp, gt, pr = self._stats()
        union = gt + pr - tp
        return [float(t / u) if u > 0 else None for t, u in zip(tp.tolist(), union.tolist())]

    def miou(self) -> float:
        """Mean IoU over the classes present (union > 0); 0.0 when nothing was accumulated."""
        ious = [v for v in self.per_class_iou() if v is not None]
        return sum(ious) / len(ious) if ious else 0.0

    def pixel_accuracy(self) -> float:
        """Correct pixels / all non-ignored pixels; 0.0 when nothing was accumulated."""
        tp, gt, _ = self._stats()
        total = float(gt.sum())
        return float(tp.sum()) / total if total > 0 else 0.0

    def mean_class_accuracy(self) -> float:
        """Mean per-class recall over the classes present in the ground truth."""
        tp, gt, _ = self._stats()
        present = gt > 0
        if not present.any():
            return 0.0
        return float((tp[present] / gt[present]).mean())

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready dict: ``miou``, ``pixel_acc``, ``mean_class_acc``, ``per_class_iou`` by name."""
        if class_names is None:
            class_names = [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names given for {self.num_classes} classes")
        return {
            "miou": self.miou(),
            "pixel_acc": self.pixel_accuracy(),
            "mean_class_acc": self.mean_class_accuracy(),
            "per_class_iou": dict(zip(map(str, class_names), self.per_class_iou())),
        }

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={self.total}, miou={self.miou():.4f})"
