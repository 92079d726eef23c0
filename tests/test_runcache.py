"""The stand-alone run cache: keyed by (architecture, recipe, seed), trained once, resumed after a kill."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import yaml

import archgraph.engine.train as engine
from archgraph import build_space
from archgraph.config import load_config
from archgraph.core.decode import sample_architecture
from archgraph.errors import GraphError
from archgraph.studies.runcache import cache_key, cached_metrics, entry_dir, recipe_hash, status, trained_metrics

TINY = [
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.num_samples=4",
    "data.val_limit=2",
    "train.epochs=2",
    "train.steps_per_epoch=1",
    "train.eval_every=1",
]


@pytest.fixture
def space():
    return build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5})


@pytest.fixture
def calls(monkeypatch):
    """Every call of the training engine, as (resume flag, folder); the real engine still runs."""
    seen: list[tuple[bool, str]] = []
    real = engine.run_training

    def counting(cfg, graph, out, resume=False, **kw):
        seen.append((resume, str(out)))
        return real(cfg, graph, out, resume=resume, **kw)

    monkeypatch.setattr(engine, "run_training", counting)
    return seen


def test_key_follows_arch_recipe_and_seed_only(space):
    a, b = sample_architecture(space, 0), sample_architecture(space, 1)
    cfg = load_config(None, TINY)
    k = cache_key(a, cfg, 0)
    assert k == cache_key(sample_architecture(space, 0), cfg, 0)  # same architecture, rebuilt
    assert k.arch != cache_key(b, cfg, 0).arch
    assert k.relpath.as_posix() == f"{k.arch}/{k.recipe}-s0"
    assert cache_key(a, cfg, 1) != k
    # search, strategy, space, device and loader workers are not part of the recipe
    same = load_config(None, TINY + ["search.epochs=9", "strategy.name=pc_darts", "data.workers=2", "device=cpu", "seed=5"])
    assert recipe_hash(same) == recipe_hash(cfg)
    for change in ("train.lr=0.1", "train.epochs=3", "data.crop=[64,64]", "data.scale=0.5"):
        assert recipe_hash(load_config(None, TINY + [change])) != recipe_hash(cfg), change
    # ... but on a GPU train.amp/channels_last=auto mean bf16 and channels-last: another numeric recipe
    gpu = load_config(None, TINY + ["device=cuda"])
    assert recipe_hash(gpu) != recipe_hash(cfg)
    assert recipe_hash(load_config(None, TINY + ["device=cuda", "train.amp=bf16", "train.channels_last=channels_last"])) == recipe_hash(gpu)
    with pytest.raises(GraphError, match="choice points"):
        cache_key(space, cfg, 0)


def test_second_call_trains_nothing(space, tmp_path, calls):
    arch = sample_architecture(space, 0)
    cfg = load_config(None, TINY)
    assert status(arch, cfg, 0, tmp_path) == "missing" and cached_metrics(arch, cfg, 0, tmp_path) is None
    first = trained_metrics(arch, cfg, 0, tmp_path)
    assert len(calls) == 1 and calls[0][0] is False
    entry = entry_dir(tmp_path, cache_key(arch, cfg, 0))
    assert calls[0][1] == str(entry)
    assert json.loads((entry / "metrics.json").read_text()) == first
    key = json.loads((entry / "key.json").read_text())
    assert key["seed"] == 0 and key["recipe"]["train"]["epochs"] == 2 and "workers" not in key["recipe"]["data"]
    # the same architecture rebuilt, another config object with the same recipe (e.g. another strategy): cached
    again = trained_metrics(sample_architecture(space, 0), load_config(None, TINY + ["strategy.name=spos"]), 0, tmp_path)
    assert again == first and len(calls) == 1
    assert status(arch, cfg, 0, tmp_path) == "done"
    # another seed is another entry
    trained_metrics(arch, cfg, 1, tmp_path)
    assert len(calls) == 2
    assert yaml.safe_load((entry_dir(tmp_path, cache_key(arch, cfg, 1)) / "config.yaml").read_text())["seed"] == 1


def test_killed_training_resumes_and_matches(space, tmp_path, calls, monkeypatch):
    arch = sample_architecture(space, 2)
    cfg = load_config(None, TINY)
    full = trained_metrics(arch, cfg, 0, tmp_path / "a")
    real_save = engine.save_checkpoint

    def killed_after_epoch_0(path, obj):
        real_save(path, obj)
        if Path(path).name == engine.LAST and obj["epoch"] == 0:
            raise KeyboardInterrupt  # the process dies right after epoch 0's checkpoint

    monkeypatch.setattr(engine, "save_checkpoint", killed_after_epoch_0)
    with pytest.raises(KeyboardInterrupt):
        trained_metrics(arch, cfg, 0, tmp_path / "b")
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    entry = entry_dir(tmp_path / "b", cache_key(arch, cfg, 0))
    assert status(arch, cfg, 0, tmp_path / "b") == "partial"
    damaged = entry_dir(tmp_path / "c", cache_key(arch, cfg, 0))
    shutil.copytree(entry, damaged)
    (damaged / engine.LAST).write_bytes(b"truncated")
    calls.clear()
    resumed = trained_metrics(arch, cfg, 0, tmp_path / "b")
    assert calls == [(True, str(entry))]  # resumed, not started again
    assert [json.loads(l)["epoch"] for l in (entry / "train.jsonl").read_text().splitlines()] == [0, 1]
    assert resumed["miou"] == pytest.approx(full["miou"], abs=1e-6)
    # an unusable checkpoint: trained again from the start, not a crash and not a wrong result
    calls.clear()
    redone = trained_metrics(arch, cfg, 0, tmp_path / "c")
    assert calls == [(True, str(damaged)), (False, str(damaged))]
    assert redone["miou"] == pytest.approx(full["miou"], abs=1e-6)


def test_corrupt_result_is_redone_and_threads_train_once(space, tmp_path, calls):
    arch = sample_architecture(space, 3)
    cfg = load_config(None, TINY)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(trained_metrics(arch, cfg, 0, tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 3 and all(r == results[0] for r in results)
    entry = entry_dir(tmp_path, cache_key(arch, cfg, 0))
    (entry / "metrics.json").write_text("{not json")
    assert status(arch, cfg, 0, tmp_path) == "partial"
    assert trained_metrics(arch, cfg, 0, tmp_path)["miou"] == pytest.approx(results[0]["miou"])
    assert len(calls) == 2 and calls[-1][0] is True
