"""Hooks around the stand-alone training loop (archgraph.engine.hooks, archgraph.engine.train): a
user's hook sees every moment in order and adds to the record, a named hook's state survives a kill
and resume, early stopping ends a run as a finished one, and a bad hook spec is one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from archgraph import build_space, save_graph
from archgraph.cli import main
from archgraph.config import load_config
from archgraph.core.decode import sample_architecture
from archgraph.engine.checkpoint import save_checkpoint
from archgraph.engine.hooks import Hook
from archgraph.errors import ConfigError

# 2 steps of 32x32 per epoch, validation on 2 images: only the mechanics.
TINY = ["data.crop=[32,32]", "data.batch_size=2", "data.num_samples=8", "data.val_limit=2", "train.steps_per_epoch=2"]


def arch_graph():
    return sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), 0)


def records(run):
    return [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]


def train_api(out, *sets, resume=False, hooks=()):
    from archgraph.engine.train import run_training

    return run_training(load_config(None, [*TINY, *sets]), arch_graph(), out, resume=resume, progress=False, hooks=hooks)


class Recorder(Hook):
    """Every moment it sees, with the epoch and step; adds ``custom`` to each record."""

    def __init__(self):
        self.seen = []
        self.result = None

    def before_run(self, loop):
        self.seen.append(("before_run", loop.kind))

    def before_stage(self, loop, stage):
        self.seen.append(("before_stage", stage.index, stage.epochs, stage.steps))

    def before_epoch(self, loop, stage, epoch):
        self.seen.append(("before_epoch", epoch))

    def after_step(self, loop, stage, epoch, step, losses):
        assert set(losses) == {"loss", "lr"} and all(isinstance(v, float) for v in losses.values())
        self.seen.append(("after_step", epoch, step))

    def fill_record(self, loop, stage, epoch, record):
        assert record["epoch"] == epoch and "best_miou" in record  # the built-in evaluation filled its fields first
        record["custom"] = 10 * epoch + 1
        self.seen.append(("fill_record", epoch))

    def after_epoch(self, loop, stage, epoch, record):
        assert record["custom"] == 10 * epoch + 1 and "seconds" in record
        self.seen.append(("after_epoch", epoch))

    def after_run(self, loop, result):
        self.result = result
        self.seen.append(("after_run",))


def test_a_custom_hook_sees_every_moment_in_order_and_its_field_lands_in_train_jsonl(tmp_path):
    hook = Recorder()
    metrics = train_api(tmp_path / "run", "train.epochs=2", "train.eval_every=1", hooks=[hook])
    epoch = lambda e: [("before_epoch", e), ("after_step", e, 0), ("after_step", e, 1), ("fill_record", e), ("after_epoch", e)]  # noqa: E731
    assert hook.seen == [("before_run", "train"), ("before_stage", 0, 2, 2), *epoch(0), *epoch(1), ("after_run",)]
    assert [r["custom"] for r in records(tmp_path / "run")] == [1, 11]
    assert hook.result == metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "stopped_early" not in metrics


class EpochCounter(Hook):
    """A named hook with state: how many epochs it has seen, across resumes."""

    name = "epoch_counter"

    def __init__(self):
        self.count = 0
        self.at_start = None

    def before_run(self, loop):
        self.at_start = self.count

    def after_epoch(self, loop, stage, epoch, record):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_a_named_hooks_state_survives_a_kill_and_resume_and_old_checkpoints_resume(tmp_path, monkeypatch):
    import archgraph.engine.train as engine

    def die_after_first_epoch(path, obj):
        save_checkpoint(path, obj)
        if path.name == "last.pt" and obj["epoch"] == 0:
            raise KeyboardInterrupt

    killed = tmp_path / "killed"
    monkeypatch.setattr(engine, "save_checkpoint", die_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_api(killed, "train.epochs=3", hooks=[EpochCounter()])
    monkeypatch.undo()
    assert torch.load(killed / "last.pt", weights_only=False)["hooks"] == {"epoch_counter": {"count": 1}}

    # A checkpoint written before hooks existed (no "hooks" key) resumes too; the hook starts afresh.
    old = tmp_path / "old"
    shutil.copytree(killed, old)
    state = torch.load(old / "last.pt", weights_only=False)
    del state["hooks"], state["stopped_early"]
    save_checkpoint(old / "last.pt", state)

    counter, fresh = EpochCounter(), EpochCounter()
    train_api(killed, "train.epochs=3", resume=True, hooks=[counter])
    train_api(old, "train.epochs=3", resume=True, hooks=[fresh])
    assert (counter.at_start, counter.count) == (1, 3)
    assert (fresh.at_start, fresh.count) == (0, 2)
    assert [r["epoch"] for r in records(killed)] == [r["epoch"] for r in records(old)] == [0, 1, 2]
    a, b = (torch.load(run / "last.pt", weights_only=False)["net"] for run in (killed, old))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the hook's state changes nothing in the training


def cli_train(tmp_path, out, *sets):
    arch = tmp_path / "arch.yaml"
    if not arch.exists():
        save_graph(arch_graph(), arch)
    return main(["train", str(arch), "--out", str(out), "--no-progress", "--set", *TINY, *sets])


def test_early_stopping_from_the_config_ends_the_run_as_a_finished_one(tmp_path):
    out = tmp_path / "run"
    # min_delta=1e9: nothing counts as an improvement, so patience=1 stops after the second evaluated epoch
    assert cli_train(tmp_path, out, "train.epochs=5", "train.eval_every=1", "train.hooks=[early_stopping:patience=1:min_delta=1e9]") == 0
    logged = records(out)
    assert [r["epoch"] for r in logged] == [0, 1]
    assert "stopped_early" not in logged[0] and logged[1]["stopped_early"].startswith("early_stopping: miou has not improved")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_early"] == logged[1]["stopped_early"]
    assert metrics["best_epoch"] in (0, 1) and metrics["miou"] == max(r["miou"] for r in logged)
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["epoch"] == 1 and last["hooks"]["early_stopping"]["waited"] == 1 and last["stopped_early"] == metrics["stopped_early"]
    assert main(["train", "--out", str(out), "--no-progress", "--resume"]) == 2  # finished: nothing to resume
    # killed after last.pt and before metrics.json: the resumed run trains no further, it finishes
    (out / "metrics.json").unlink()
    assert main(["train", "--out", str(out), "--no-progress", "--resume"]) == 0
    assert records(out) == logged and json.loads((out / "metrics.json").read_text()) == metrics


def test_a_run_stopped_before_its_first_evaluation_is_evaluated_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    stop = "train.hooks=[early_stopping:metric=loss:mode=min:patience=1:min_delta=1e9]"
    assert cli_train(tmp_path, out, "train.epochs=5", "train.eval_every=0", stop) == 0  # eval_every=0: only at the last epoch
    logged = records(out)
    assert [r["epoch"] for r in logged] == [0, 1]
    assert "miou" not in logged[0] and logged[1]["miou"] == logged[1]["best_miou"]
    assert logged[1]["stopped_early"].startswith("early_stopping: loss has not improved")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["miou"] == logged[1]["miou"] and metrics["stopped_early"] == logged[1]["stopped_early"]


@pytest.mark.parametrize(
    "spec, says",
    [
        ("nope", "unknown hook in train.hooks 'nope'"),
        ("early_stopping:patience", "argument 'patience' is not key=value"),
        ("early_stopping:patience=x", "patience='x'"),
    ],
)
def test_a_bad_hook_spec_is_one_line_before_any_training(tmp_path, capsys, spec, says):
    out = tmp_path / "run"
    assert cli_train(tmp_path, out, f"train.hooks=[{spec}]") == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert says in err and "\n" not in err
    assert "training" not in captured.out and not (out / "config.yaml").exists()  # refused before the run is announced


def test_a_hook_that_is_not_a_hook_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not an archgraph hook"):
        train_api(tmp_path / "run", "train.epochs=1", hooks=[object()])


def test_early_stopping_in_a_search_watches_s_miou_and_says_when_nothing_carries_its_metric(tmp_path, capsys):
    """A search records s_miou, not miou: the hook's default followed training's and never fired."""
    from helpers import TINY_SEARCH

    hook = "search.hooks=[early_stopping:patience=1:min_delta=1e9]"
    out = tmp_path / "watched"
    assert main(["search", "--out", str(out), "--no-progress", "--set", *TINY_SEARCH, "search.epochs=4", "search.eval_every=1", hook]) == 0
    logged = [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
    assert len(logged) == 2 and json.loads((out / "final.json").read_text())["stopped_early"].startswith("early_stopping: s_miou has not improved")
    capsys.readouterr()
    assert main(["search", "--out", str(tmp_path / "blind"), "--no-progress", "--set", *TINY_SEARCH, "search.eval_every=0", hook]) == 0
    err = capsys.readouterr().err
    assert "early_stopping watched 's_miou', which no epoch record of this run carried" in err and "loss" in err, err
