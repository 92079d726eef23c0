"""ConfusionMatrix: values against hand-computed ones; ignore label, absent classes, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from archgraph.data.metrics import ConfusionMatrix


def t(rows):
    return torch.tensor(rows, dtype=torch.long)


def test_hand_computed_small_case():
    # gt:   0 0 1 1      pred: 0 1 1 1
    cm = ConfusionMatrix(3)
    cm.update(t([[[0, 1, 1, 1]]]), t([[[0, 0, 1, 1]]]))
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    iou = cm.per_class_iou()
    assert iou[0] == pytest.approx(1 / 2)  # tp 1, union 2 + 1 - 1
    assert iou[1] == pytest.approx(2 / 3)  # tp 2, union 2 + 3 - 2
    assert iou[2] is None  # in neither gt nor prediction
    assert cm.miou() == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 2 excluded
    assert cm.pixel_accuracy() == pytest.approx(3 / 4)
    assert cm.mean_class_accuracy() == pytest.approx((1 / 2 + 2 / 2) / 2)


def test_ignore_pixels_are_excluded():
    cm = ConfusionMatrix(2, ignore_index=255)
    target = t([[0, 255, 1, 255]])
    pred = t([[0, 1, 1, 0]])  # both ignored pixels are "wrong": must not count
    cm.update(pred, target)
    assert cm.total == 2
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]
    assert cm.miou() == pytest.approx(1.0)
    assert cm.pixel_accuracy() == pytest.approx(1.0)


def test_predicted_but_absent_class_counts_as_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update(t([[0, 2]]), t([[0, 0]]))  # class 2 predicted, never in gt
    iou = cm.per_class_iou()
    assert iou == [pytest.approx(0.5), None, 0.0]
    assert cm.miou() == pytest.approx(0.25)
    assert cm.mean_class_accuracy() == pytest.approx(0.5)  # only class 0 is in the gt


def test_logits_are_argmaxed():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 2, 0, 0] = 5.0  # pixel 0 -> class 2
    logits[0, 1, 0, 1] = 5.0  # pixel 1 -> class 1
    cm = ConfusionMatrix(3)
    cm.update(logits, t([[[2, 0]]]))
    assert cm.matrix.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_bad_target_values_raise_naming_them():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"\[3, 7\].*\[0, 3\)"):
        cm.update(t([[0, 0, 0, 0]]), t([[0, 3, 7, 255]]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(t([[0, 0]]), t([[0, 0, 0]]))


def test_matches_brute_force_and_batching():
    g = torch.Generator().manual_seed(0)
    c = 5
    target = torch.randint(0, c, (4, 9, 7), generator=g)
    target[target == 4] = 255  # class 4 becomes ignore -> absent
    pred = torch.randint(0, c, (4, 9, 7), generator=g)
    whole = ConfusionMatrix(c)
    whole.update(pred, target)
    parts = ConfusionMatrix(c)
    for i in range(4):
        parts.update(pred[i : i + 1], target[i : i + 1])
    assert torch.equal(whole.matrix, parts.matrix)

    keep = target != 255
    for k in range(c):
        tp = ((pred == k) & (target == k) & keep).sum().item()
        union = (((pred == k) & keep) | (target == k)).sum().item()
        got = whole.per_class_iou()[k]
        assert (got is None) if union == 0 else got == pytest.approx(tp / union)
    assert whole.pixel_accuracy() == pytest.approx(((pred == target) & keep).sum().item() / keep.sum().item())


def test_merge_reset_reduce_and_summary():
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(t([[0, 1]]), t([[0, 1]]))
    b.update(t([[1, 1]]), t([[0, 1]]))
    assert a.merge_(b).matrix.tolist() == [[1, 1], [0, 2]]
    assert a.reduce_() is a  # not distributed: no-op
    assert a.matrix.tolist() == [[1, 1], [0, 2]]
    s = a.summary(["bg", "fg"])
    assert set(s) == {"miou", "pixel_acc", "mean_class_acc", "per_class_iou"}
    assert s["per_class_iou"] == {"bg": pytest.approx(0.5), "fg": pytest.approx(2 / 3)}
    json.dumps(a.summary())
    with pytest.raises(ValueError):
        a.merge_(ConfusionMatrix(3))
    with pytest.raises(ValueError):
        a.summary(["only-one"])
    a.reset()
    assert a.total == 0 and a.miou() == 0.0 and a.pixel_accuracy() == 0.0
    assert a.per_class_iou() == [None, None]
    assert json.loads(json.dumps(a.summary()))["per_class_iou"] == {"0": None, "1": None}
    assert not math.isnan(a.mean_class_accuracy())


def test_evaluating_in_batches_of_mixed_sizes_gives_the_one_at_a_time_result():
    """evaluate(batch_size > 1) batches images of one size: padding a smaller image to a larger one
    changed the network's predictions (here through an image-pooling term, as ASPP has, and a
    strided convolution's upsampled edge), although the padding itself was never scored."""
    import torch.nn.functional as F
    from torch import nn

    from archgraph.engine.evaluate import evaluate

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

        def forward(self, x):
            y = self.conv(x)
            y = y + 3 * y.mean(dim=(2, 3), keepdim=True)
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    torch.manual_seed(0)
    net = Pooled()
    g = torch.Generator().manual_seed(1)
    sizes = [(40, 56), (64, 96), (64, 96), (40, 56), (72, 72)]
    data = [(torch.randn(3, h, w, generator=g) + 0.5, torch.randint(0, 4, (h, w), generator=g)) for h, w in sizes]
    one = evaluate(net, data, 4, batch_size=1, flip=True)
    assert (one.matrix.sum(dim=0) > 0).sum() > 1  # the predictions vary: a difference could show
    for batch in (2, 3, 5):  # padded, about 2,000 of the 24,000 pixels moved; a few may on another CPU's rounding
        moved = int((evaluate(net, data, 4, batch_size=batch, flip=True).matrix - one.matrix).abs().sum()) // 2
        assert moved <= 5, (batch, moved)
