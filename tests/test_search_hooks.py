"""Hooks of the search loop: a user's hook sees every moment in order, adds to the record, keeps its
state across a resume, can stop the search early; bad hook specs are refused before data is read."""

from __future__ import annotations

import json

import pytest

from archgraph.config import load_config
from archgraph.engine.hooks import Hook
from archgraph.engine.search import run_search
from archgraph.errors import ConfigError, RegistryError

TINY = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=12",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=3",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "data.val_limit=2",
    "search.eval_every=0",
]


class Recorder(Hook):
    """Writes down every moment it is called at, and adds a field of its own to each epoch's record."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple] = []
        self.epochs_seen = 0  # state: survives a resume through the checkpoint

    def before_run(self, loop):
        self.seen.append(("before_run", loop.kind))

    def before_stage(self, loop, stage):
        self.seen.append(("before_stage", stage.index))

    def before_epoch(self, loop, stage, epoch):
        self.seen.append(("before_epoch", epoch))

    def after_step(self, loop, stage, epoch, step, losses):
        assert isinstance(losses["loss"], float)
        self.seen.append(("after_step", epoch, step))

    def fill_record(self, loop, stage, epoch, record):
        record["recorder_epochs"] = self.epochs_seen + 1

    def after_epoch(self, loop, stage, epoch, record):
        self.epochs_seen += 1
        self.seen.append(("after_epoch", epoch))

    def after_run(self, loop, result):
        self.seen.append(("after_run", "arch_hash" in result))

    def state_dict(self):
        return {"epochs_seen": self.epochs_seen}

    def load_state_dict(self, state):
        self.epochs_seen = state["epochs_seen"]


def records(out):
    return [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]


def test_a_user_hook_sees_every_moment_in_order_and_adds_to_the_record(tmp_path):
    hook = Recorder()
    run_search(load_config(None, TINY), tmp_path / "run", progress=False, hooks=[hook])
    expected = [("before_run", "search"), ("before_stage", 0)]
    for epoch in range(3):
        expected += [("before_epoch", epoch), ("after_step", epoch, 0), ("after_step", epoch, 1), ("after_epoch", epoch)]
    expected.append(("after_run", True))
    assert hook.seen == expected
    assert [r["recorder_epochs"] for r in records(tmp_path / "run")] == [1, 2, 3]


def test_a_named_hooks_state_survives_a_resume(tmp_path, monkeypatch):
    from archgraph.engine.search_hooks import CheckpointHook

    original = CheckpointHook.after_epoch

    def die_after_epoch_2(self, run, stage, epoch, record):
        original(self, run, stage, epoch, record)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointHook, "after_epoch", die_after_epoch_2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_search(load_config(None, TINY), out, progress=False, hooks=[Recorder()])
    monkeypatch.undo()
    resumed = Recorder()
    run_search(load_config(None, TINY), out, resume=True, progress=False, hooks=[resumed])
    assert resumed.epochs_seen == 3  # 2 restored from the checkpoint + the one it ran
    assert [r["recorder_epochs"] for r in records(out)] == [1, 2, 3]


def test_early_stopping_by_name_ends_the_search_as_a_finished_one(tmp_path):
    # min_delta larger than any loss change: the second epoch cannot improve, so patience=1 stops there
    cfg = load_config(None, [*TINY, "search.eval_every=3", "search.hooks=[early_stopping:metric=loss:mode=min:patience=1:min_delta=1000]"])
    final = run_search(cfg, tmp_path / "run", progress=False)
    assert [r["epoch"] for r in records(tmp_path / "run")] == [0, 1]
    assert (tmp_path / "run" / "final.json").is_file() and (tmp_path / "run" / "arch.yaml").is_file()
    assert "early_stopping" in final["stopped_early"]
    assert 0.0 <= final["s_miou"] <= 1.0 and final["s_miou_split"] == "val"  # measured at the stop, not only every 3rd epoch


@pytest.mark.parametrize(
    "spec, error",
    [
        ("nope", RegistryError),
        ("early_stopping:patience", ConfigError),
        ("early_stopping:patience=x", ConfigError),
        ("early_stopping:colour=red", ConfigError),
    ],
)
def test_a_bad_hook_spec_is_one_line_before_any_data_is_read(tmp_path, spec, error):
    cfg = load_config(None, [*TINY, f"search.hooks=[{spec!r}]"])
    with pytest.raises(error) as info:
        run_search(cfg, tmp_path / "run", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_the_docs_hook_example_writes_its_csv(tmp_path):
    """docs/plugins.md's CsvLog, run as written: one row per epoch with the record's fields."""
    import re
    import types
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    code = re.search(r"<!-- hook example: csv_log -->\n```python\n(.*?)\n```", doc, re.S).group(1)
    module = types.ModuleType("plugins_md_hook")
    exec(compile(code, "docs/plugins.md:csv_log", "exec"), module.__dict__)
    out = tmp_path / "run"
    run_search(load_config(None, [*TINY, "search.eval_every=3"]), out, progress=False, hooks=[module.CsvLog()])
    rows = (out / "search-log.csv").read_text().splitlines()
    assert rows[0] == "stage,epoch,loss,s_miou" and len(rows) == 4
    assert rows[1].split(",")[3] == "" and 0.0 <= float(rows[3].split(",")[3]) <= 1.0  # S-mIoU on the last epoch only
