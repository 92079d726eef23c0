"""TensorBoard event files of `archgraph search` / `train` (search.tensorboard, train.tensorboard), read
back with TensorBoard's own EventAccumulator: the figures of search.jsonl / train.jsonl at the right
steps, histograms of softmax(alpha)/softmax(beta), prediction pictures, resume, and the missing package."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

from archgraph.cli import main
from archgraph.engine.tracking import INSTALL, colourize, palette, tag
from helpers import TINY_SEARCH, TINY_TRAIN

STEPS = 2  # steps per epoch of TINY_SEARCH and TINY_TRAIN
NOT_FIGURES = ("stage", "epoch", "steps")


def events(folder):
    pytest.importorskip("tensorboard", reason='needs the tensorboard extra: pip install "archgraph[tensorboard]"')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    return acc


def scalars(acc, name):
    steps = [e.step for e in acc.Scalars(name)]
    assert len(steps) == len(set(steps)), (name, steps)  # a step shown twice: a resume that hid nothing
    return {e.step: e.value for e in acc.Scalars(name)}


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def search(out, *extra, resume=False):
    return main(["search", "--out", str(out), "--no-progress", "--set", *TINY_SEARCH, *extra, *(["--resume"] if resume else [])])


def assert_figures_match(acc, records, section):
    """Every number of every log line is a scalar at the last step of its epoch, with its value."""
    for i, record in enumerate(records):
        for key, value in record.items():
            if key in NOT_FIGURES or not isinstance(value, (int, float)) or (key == "best_miou" and value < 0):
                continue  # best_miou -1: nothing evaluated yet, not logged
            logged = scalars(acc, tag(key, section))
            assert logged.get((i + 1) * STEPS) == pytest.approx(float(value), rel=1e-6, abs=1e-12), (key, i)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "search"
    assert search(out, "search.tensorboard=true") == 0
    return out


def test_search_events_hold_the_log_histograms_and_predictions(searched):
    assert len(list(searched.glob("events.out.tfevents.*"))) == 1  # in the run folder itself: one run
    acc = events(searched)
    records = jsonl(searched / "search.jsonl")
    assert len(records) == 2
    assert_figures_match(acc, records, "search")
    for name in (
        "loss/loss",
        "loss/arch_loss",
        "metrics/s_miou",
        "schedule/tau",
        "schedule/lr",
        "schedule/arch_lr",
        "arch/entropy_alpha",
        "health/margin_alpha",
        "health/margin_beta",
        "health/changed_ops",
        "health/changed_inputs",
        "health/arch_steps",
        "health/arch_grad_snr",
    ):
        assert sorted(scalars(acc, name)) == [2, 4], name
    assert sorted(scalars(acc, "step/loss")) == [1, 2, 3, 4]  # every step, counted from 1
    final = json.loads((searched / "final.json").read_text())
    assert scalars(acc, "final/s_miou") == {4: pytest.approx(final["s_miou"], rel=1e-6)}
    for name, choices in (("arch/softmax_alpha", 8), ("arch/softmax_beta", 8)):  # L=2: 8 fusion nodes
        hist = acc.Histograms(name)
        assert [h.step for h in hist] == [2, 4]
        value = hist[-1].histogram_value
        assert value.sum == pytest.approx(choices, rel=1e-5)  # each choice's probabilities sum to 1
        assert 0 <= value.min <= value.max <= 1


def test_prediction_pictures_show_input_ground_truth_and_prediction(searched):
    from PIL import Image

    from archgraph.config import load_config
    from archgraph.engine.smiou import build_search_data

    acc = events(searched)
    assert sorted(acc.Tags()["images"]) == ["predictions/0", "predictions/1"]  # data.val_limit=2
    shot = acc.Images("predictions/1")
    assert [s.step for s in shot] == [2, 4]
    picture = np.asarray(Image.open(io.BytesIO(shot[-1].encoded_image_string)).convert("RGB"))
    assert picture.shape == (32, 3 * 32 + 4, 3)  # input | truth | prediction, 2-pixel gaps
    _, label = build_search_data(load_config(searched / "config.yaml")).val[1]
    assert np.array_equal(picture[:, 34:66], colourize(label))
    colours = {tuple(c) for c in palette()}
    assert {tuple(c) for c in picture[:, 68:].reshape(-1, 3)} <= colours  # a class map in the palette
    assert tuple(palette()[1]) == (128, 0, 0) and tuple(palette()[255]) == (224, 224, 192)  # VOC's map


def test_tensorboard_changes_nothing_in_the_search(searched, tmp_path):
    plain = tmp_path / "plain"
    assert search(plain) == 0
    assert not list(plain.glob("events.out.tfevents.*"))
    assert (plain / "arch.yaml").read_text() == (searched / "arch.yaml").read_text()
    for a, b in zip(jsonl(plain / "search.jsonl"), jsonl(searched / "search.jsonl")):
        assert {k: a[k] for k in ("loss", "arch_loss", "margin_alpha", "s_miou")} == {k: b[k] for k in ("loss", "arch_loss", "margin_alpha", "s_miou")}


def test_a_resumed_search_continues_its_steps_and_hides_what_the_kill_lost(searched, tmp_path, monkeypatch):
    """Killed after step 3 (not checkpointed: the last checkpoint is epoch 1's), resumed: step 3 is
    logged again and shows once, steps do not restart at 0, values are the uninterrupted run's."""
    from archgraph.engine.search_hooks import TrackingHook

    original = TrackingHook.after_step

    def die_after_step_3(self, run, stage, epoch, step, losses):
        original(self, run, stage, epoch, step, losses)  # the step is logged, then the process dies
        if (epoch, step) == (1, 0):
            raise KeyboardInterrupt

    monkeypatch.setattr(TrackingHook, "after_step", die_after_step_3)
    out = tmp_path / "killed"
    assert search(out, "search.tensorboard=true") == 130
    assert sorted(scalars(events(out), "step/loss")) == [1, 2, 3]
    monkeypatch.undo()
    assert search(out, resume=True) == 0
    assert len(list(out.glob("events.out.tfevents.*"))) == 2  # appended: a second file in the same run
    acc, full = events(out), events(searched)
    assert scalars(acc, "step/loss") == pytest.approx(scalars(full, "step/loss"), rel=1e-6)
    assert sorted(scalars(acc, "step/loss")) == [1, 2, 3, 4]
    assert scalars(acc, "metrics/s_miou") == pytest.approx(scalars(full, "metrics/s_miou"), rel=1e-6)
    assert_figures_match(acc, jsonl(out / "search.jsonl"), "search")
    assert [h.step for h in acc.Histograms("arch/softmax_beta")] == [2, 4]


def test_train_events_continue_after_a_resume(tmp_path, monkeypatch):
    import archgraph.engine.train as engine
    from archgraph import build_space, save_graph
    from archgraph.core.decode import sample_architecture

    arch = tmp_path / "arch.yaml"
    save_graph(sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), 0), arch)

    original = engine._train_step

    def die_before_step_4(run, images, labels, epoch, step):  # step 3 is logged, last.pt holds epoch 1
        if (epoch, step) == (1, 1):
            raise KeyboardInterrupt
        return original(run, images, labels, epoch, step)

    out = tmp_path / "train"
    monkeypatch.setattr(engine, "_train_step", die_before_step_4)
    assert main(["train", str(arch), "--out", str(out), "--no-progress", "--set", *TINY_TRAIN, "train.tensorboard=true"]) == 130
    assert sorted(scalars(events(out), "step/loss")) == [1, 2, 3]
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--no-progress", "--resume"]) == 0
    acc = events(out)
    assert sorted(scalars(acc, "step/loss")) == [1, 2, 3, 4]
    lrs = scalars(acc, "step/lr")
    assert lrs[1] == pytest.approx(0.05) and lrs[1] > lrs[2] > lrs[3] > lrs[4] > 0  # the rate each step used (poly)
    records = jsonl(out / "train.jsonl")
    assert_figures_match(acc, records, "train")
    assert sorted(scalars(acc, "metrics/miou")) == [2, 4] and sorted(scalars(acc, "metrics/train_pixel_acc")) == [2, 4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert scalars(acc, "final/miou") == {4: pytest.approx(metrics["miou"], rel=1e-6)}
    assert [s.step for s in acc.Images("predictions/0")] == [2, 4]


def test_missing_tensorboard_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    from archgraph import build_space, save_graph
    from archgraph.core.decode import sample_architecture

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails, as when not installed
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    assert search(tmp_path / "s", "search.tensorboard=true") == 2
    err = capsys.readouterr().err
    assert "search.tensorboard" in err and INSTALL in err
    assert not (tmp_path / "s").exists()  # nothing started, nothing to clean up
    arch = tmp_path / "arch.yaml"
    save_graph(sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), 0), arch)
    assert main(["train", str(arch), "--out", str(tmp_path / "t"), "--no-progress", "--set", *TINY_TRAIN, "train.tensorboard=true"]) == 2
    err = capsys.readouterr().err
    assert "train.tensorboard" in err and INSTALL in err
    assert not (tmp_path / "t").exists()
