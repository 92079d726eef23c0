"""Runs that survive kills, Ctrl-C and numerical faults (docs/reliability.md has the table these back).

The kill tests run real `archgraph search` processes and kill them with SIGKILL at points spread over
the run (right after a checkpoint write, or a random moment later); the resumed search must end with
exactly the architecture and the alpha/beta of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from archgraph.engine.checkpoint import load_checkpoint, previous_path, save_checkpoint
from archgraph.cli import main
from archgraph.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=3",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=3",
    "search.bn_recalib_batches=1",
    "data.val_limit=2",
    "search.checkpoint_every=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _argv(out: Path, resume: bool) -> list[str]:
    argv = [sys.executable, "-m", "archgraph.cli", "search", "--out", str(out), "--no-progress"]
    return argv + ["--resume"] if resume else argv + ["--set", *TINY]


def _arch_params(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    return {k: v for k, v in state["net"].items() if k.startswith("arch.")}


def _checkpoint_count(out: Path) -> int:
    index = out / "checkpoint.pt.sha256.json"
    try:
        return len(json.loads(index.read_text())["sha256"]) + 10 * index.stat().st_mtime_ns
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reliability") / "reference"
    subprocess.run(_argv(out, False), env=ENV, check=True, capture_output=True, timeout=600, cwd=ROOT)
    return out


def _assert_same_result(out: Path, reference: Path) -> None:
    assert (out / "final.json").is_file()
    assert (out / "arch.yaml").read_text() == (reference / "arch.yaml").read_text()
    ref, got = _arch_params(reference), _arch_params(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k  # bit-identical on CPU in deterministic mode
    lines = [json.loads(l) for l in (out / "search.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in lines] == [(0, 0), (0, 1), (0, 2)]  # no duplicated epochs


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_result(reference, tmp_path):
    out = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    while kills < 3:
        resume = (out / "checkpoint.pt").exists() or (out / "checkpoint.prev.pt").exists()
        proc = subprocess.Popen(_argv(out, resume), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        seen = _checkpoint_count(out)
        wait_for = rng.randint(1, 3)  # kill after this many new checkpoint writes...
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if _checkpoint_count(out) != seen:
                wait_for -= 1
                seen = _checkpoint_count(out)
                if wait_for == 0:
                    time.sleep(rng.uniform(0.0, 0.4))  # ...plus a random moment: mid-step, mid-write
                    break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if (out / "final.json").is_file():
            break
    if not (out / "final.json").is_file():
        done = subprocess.run(_argv(out, True), env=ENV, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
    assert kills >= 1
    _assert_same_result(out, reference)


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(reference, tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(_argv(out, False), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 300
    while _checkpoint_count(out) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "checkpoint saved" in err and "--resume" in err and "Traceback" not in err
    state = load_checkpoint(out / "checkpoint.pt")
    assert not (state["finished_epoch"] and state["epoch"] == 2)  # it stopped before the end
    done = subprocess.run(_argv(out, True), env=ENV, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_result(out, reference)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 0})
    save_checkpoint(path, {"epoch": 1})
    assert previous_path(path).is_file()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: still a loadable zip for torch, but not what was written
    path.write_bytes(bytes(data))
    warnings = []
    assert load_checkpoint(path, warn=warnings.append)["epoch"] == 0
    assert "previous good checkpoint" in warnings[0]
    path.write_bytes(b"")  # truncated to nothing
    assert load_checkpoint(path)["epoch"] == 0
    previous_path(path).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_checkpoint(path)


def test_a_save_killed_while_writing_leaves_the_newest_checkpoint_in_place(tmp_path, monkeypatch):
    """The new bytes go to a temporary file before the current checkpoint moves to .prev, so a kill
    during the (long) write leaves ``<name>`` itself, not only ``<name>.prev``."""
    from pathlib import Path

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 0})
    save_checkpoint(path, {"epoch": 1})
    original = Path.write_bytes

    def killed(self, data):
        original(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and load_checkpoint(previous_path(path))["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt", "checkpoint.pt.sha256.json"]  # no temporary file left


def _inject_nan_at(monkeypatch, call: int) -> None:
    from archgraph.strategies.base import Strategy

    original = Strategy.loss
    calls = {"n": 0}

    def loss(self, net, logits, target, with_regularisers):
        calls["n"] += 1
        if calls["n"] == call:
            logits = logits * float("nan")
        return original(self, net, logits, target, with_regularisers)

    monkeypatch.setattr(Strategy, "loss", loss)


FAST = [s for s in TINY if not s.startswith("search.checkpoint_every")]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    _inject_nan_at(monkeypatch, call=5)  # epoch 1 (warm-up ends after 3 weight steps)
    out = tmp_path / "nan"
    assert main(["search", "--out", str(out), "--no-progress", "--set", *FAST]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "search.on_nonfinite=skip" in err and "Traceback" not in err
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 0 and state["finished_epoch"]  # the last good one: after epoch 0
    for k, v in state["net"].items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k
    # The suggested fix works when typed (the NaN is still injected: skipping gets past it).
    suggested = err[err.index("archgraph search ") :].split()[1:]
    _inject_nan_at(monkeypatch, call=5)
    assert main([*suggested, "--no-progress"]) == 0
    assert (Path(str(out) + "-retry") / "final.json").is_file()


def test_nan_loss_can_skip_the_batch_instead(tmp_path, monkeypatch, capsys):
    _inject_nan_at(monkeypatch, call=5)
    out = tmp_path / "skip"
    assert main(["search", "--out", str(out), "--no-progress", "--set", *FAST, "search.on_nonfinite=skip"]) == 0
    assert "batch skipped" in capsys.readouterr().err
    records = [json.loads(l) for l in (out / "search.jsonl").read_text().splitlines()]
    assert sum(r.get("skipped", 0) for r in records) > 0
    for k, v in _arch_params(out).items():
        assert torch.isfinite(v).all(), k


# ---- issue 29: one writer per run folder; a full disk mid-run ---------------------------------------

HOLD = """
import sys, time
from archgraph.runfolder import run_lock
with run_lock(sys.argv[1], "search"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_into_a_locked_run_folder_is_refused_naming_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=ENV, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["search", "--out", str(out), "--no-progress"], ["train", str(tmp_path / "a.yaml"), "--out", str(out)]):
            capsys.readouterr()
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and f"pid {holder.pid}" in err and "is being written by another process" in err, err
            assert "use another folder, e.g." in err
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops the lock of a killed holder: the folder is free again, with nothing stale to clean up
    from archgraph.runfolder import folder_lock

    with folder_lock(out, wait=False):
        pass


def test_a_full_disk_mid_search_is_one_line_and_resumable_with_each_epoch_logged_once(tmp_path, capsys, monkeypatch):
    """ENOSPC from f.write (no file name) while a checkpoint is written: one line naming the file; then
    both ways on are consistent: --resume (here: before any checkpoint existed) and a fresh start."""
    import errno

    real = Path.write_bytes
    budget = {"left": 0}

    def full_disk(self, data):
        if self.name.startswith(".checkpoint.pt."):
            if budget["left"] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")  # as f.write raises it: no file name
            budget["left"] -= 1
        return real(self, data)

    argv = ["search", "--no-progress", "--set", *TINY[:-1]]  # checkpoints at the ends of epochs only
    for resume, saved in ((True, 0), (False, 0), (True, 1)):
        out = tmp_path / f"run-{int(resume)}-{saved}"
        budget["left"] = saved  # the disk fills up after `saved` checkpoints
        monkeypatch.setattr(Path, "write_bytes", full_disk)
        capsys.readouterr()
        assert main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: {out / 'checkpoint.pt'}: No space left on device; the disk is full"), err
        monkeypatch.setattr(Path, "write_bytes", real)  # space freed
        again = ["search", "--out", str(out), "--no-progress"] + (["--resume"] if resume else ["--set", *TINY[:-1]])
        assert main(again) == 0
        lines = [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
        assert [(r["stage"], r["epoch"]) for r in lines] == [(0, 0), (0, 1), (0, 2)], (resume, saved)
        starts = [r for r in map(json.loads, (out / "history.jsonl").read_text().splitlines()) if r.get("epoch") == -1]
        assert len(starts) == 1


def test_yaml_bombs_are_refused_fast_everywhere_yaml_comes_in(tmp_path, capsys):
    import time

    from archgraph import build_space, save_graph
    from archgraph.core.decode import sample_architecture

    save_graph(sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), 0), tmp_path / "arch.yaml")
    chain = ", ".join(["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)])
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text((tmp_path / "arch.yaml").read_text().replace("graph:\n", f"graph:\n  lol: [{chain}]\n", 1).replace("num_classes: 5", "num_classes: *a9"))
    config = tmp_path / "config.yaml"
    config.write_text(f"lol: [{chain}]\nspace: {{num_classes: *a9}}\n")
    t0 = time.perf_counter()
    for argv in (["train", str(bomb), "--out", str(tmp_path / "t")], ["search", str(config), "--out", str(tmp_path / "s")], ["inspect", str(bomb)]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "aliases" in err and "billion laughs" in err, err
    assert time.perf_counter() - t0 < 60  # seconds, not the minutes and gigabytes of an expansion
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("name, nan_in", [("dcnas", "weight"), ("proxylessnas", "arch")])
def test_a_skipped_step_applies_no_update_of_either_kind(monkeypatch, name, nan_in):
    """A search step makes two updates; with search.on_nonfinite=skip a non-finite loss in the second
    undoes the first too (the DARTS family's architecture step came through a NaN weight loss, and
    ProxylessNAS's weight step a NaN architecture loss), so "skipped" means what it says."""
    from archgraph.config import SearchConfig
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space
    from archgraph.engine.driver import StrategyDriver
    from archgraph.errors import NonFiniteLoss
    from archgraph.strategies.base import Strategy

    info = get_strategy(name)
    options = {"arch_every": 1} if name == "proxylessnas" else {}
    graph = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
    strategy = info.cls(graph, dataclass_from_dict(info.params, options, "strategy"), SearchConfig(epochs=2, warmup_epochs=0, on_nonfinite="skip"), 0)
    driver = StrategyDriver(strategy, strategy.search, steps=4)
    stage = driver.begin_stage(0, build_seed=0)
    stage.net.train()
    driver.begin_epoch(stage, 0)
    gen = torch.Generator().manual_seed(0)
    batch = lambda: (torch.randn(2, 3, 32, 32, generator=gen), torch.randint(0, 3, (2, 32, 32), generator=gen))  # noqa: E731
    driver.step(stage, 0, batch(), batch())  # one good step: the optimisers have state to keep
    before = {k: v.clone() for k, v in stage.net.state_dict().items()}
    moments = {id(p): {k: v.clone() for k, v in st.items() if torch.is_tensor(v)} for o in (stage.w_opt, stage.a_opt) for p, st in o.state.items()}
    original = Strategy.loss

    def nan_second(self, net, logits, target, with_regularisers):
        total, parts = original(self, net, logits, target, with_regularisers)
        if with_regularisers == (nan_in == "arch"):
            raise NonFiniteLoss("architecture loss" if with_regularisers else "weight loss")
        return total, parts

    monkeypatch.setattr(Strategy, "loss", nan_second)
    with pytest.raises(NonFiniteLoss):
        driver.step(stage, 1, batch(), batch())
    after = stage.net.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    for o in (stage.w_opt, stage.a_opt):
        for p, st in o.state.items():
            for k, v in moments[id(p)].items():
                assert torch.equal(st[k], v), k


def test_the_nan_message_names_the_learning_rate_key_the_strategy_reads():
    """pc_darts, p_darts and ProxylessNAS read strategy.arch_lr; the message told them to lower
    search.arch_lr, which they ignore, and showed that key's value instead of theirs."""
    from types import SimpleNamespace

    from archgraph.config import Config, SearchConfig
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space
    from archgraph.engine.search import nan_fix

    graph = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
    cases = (("pc_darts", {"arch_lr": 0.0006}, SearchConfig(), "strategy.arch_lr (now 0.0006)"), ("dcnas", {}, SearchConfig(arch_lr=0.003), "search.arch_lr (now 0.003)"))
    for name, options, search, says in cases:
        info = get_strategy(name)
        strategy = info.cls(graph, dataclass_from_dict(info.params, options, "strategy"), search, 0)
        message = nan_fix(SimpleNamespace(cfg=Config(), strategy=strategy, out=Path("runs/x")))
        assert says in message, message
