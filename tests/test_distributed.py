"""Multi-process search and evaluation on torch.distributed (gloo, 2 CPU processes, 127.0.0.1 only).

What "equal" means here (docs/distributed.md): with SyncBatchNorm (the default) and the loss
weighted by each rank's share of labelled pixels, two ranks with per-rank batch B/2 compute the same
loss and gradients as one process with batch B over the same samples, up to summation order. So the
sampled paths are *identical* (same draws from the same seeded generators), alpha/beta and weights
are *bit-identical across ranks*, and equal to the single-process run up to rounding. In float32,
Adam's per-coordinate normalisation amplifies rounding of near-zero gradient coordinates (measured:
|d alpha/beta| up to ~6e-3 after 4 steps with annealed tau); the comparison with one process is
therefore run in float64 (default dtype and batches), where the two agree to ~1e-12.

This file is also the worker script: ``torchrun ... tests/test_distributed.py search OUT DUMP -- ARGS``
runs ``archgraph search`` in each rank (in float64), recording every DCNAS path draw and the final
state.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=4",
    "search.epochs=2",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "data.val_limit=4",
    "search.grad_clip=5.0",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", PYTHONPATH=str(ROOT))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(key, None)
    return env


def torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=local_env(), capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------------------------
# worker side (runs inside each process)


def _record_search(out: str, dump: str, overrides: list[str]) -> None:
    """Run `archgraph search` here, recording path draws and the final alpha/beta of this rank."""
    import archgraph.engine.search as search_mod
    from archgraph.cli import main
    from archgraph.strategies.dcnas import DCNASRelaxation

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # weights and alpha/beta built in float64 ...
    make_loader = search_mod.loader

    class Float64Batches:  # ... and batches too (re-iterable, as the loop cycles trainB)
        def __init__(self, loader):
            self.loader = loader

        def __iter__(self):
            for x, y in self.loader:
                yield x.double(), y

    import archgraph.engine.smiou as smiou_mod

    search_mod.loader = smiou_mod.loader = lambda ds, cfg, seed: Float64Batches(make_loader(ds, cfg, seed))
    import archgraph.engine.evaluate as evaluate_mod

    predict = evaluate_mod.predict_probs
    evaluate_mod.predict_probs = lambda net, images, *a, **k: predict(net, images.double(), *a, **k)  # S-mIoU
    picks: list[tuple[str, list[int]]] = []
    DCNASRelaxation.record = lambda self, label, idx: picks.append((label, list(idx)))  # every draw, in order
    final: dict[str, torch.Tensor] = {}
    original = search_mod._check_ranks_agree

    def capture(net, strategy, stage, epoch):
        original(net, strategy, stage, epoch)
        final.clear()
        final.update({k: v.detach().clone() for k, v in net.state_dict().items()})

    search_mod._check_ranks_agree = capture
    code = main(["search", "--out", out, "--no-progress", "--set", *overrides])
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"code": code, "picks": picks, "state": final}, f"{dump}.rank{rank}.pt")


# --------------------------------------------------------------------------------------------------
# tests


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny DCNAS search: 2 processes x batch 2 (torchrun) and 1 process x batch 4."""
    tmp = tmp_path_factory.mktemp("dist")
    two = torchrun(str(Path(__file__)), "search", str(tmp / "two"), str(tmp / "two"), "--", *TINY)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(Path(__file__)), "search", str(tmp / "one"), str(tmp / "one"), "--", *TINY], cwd=ROOT, env=local_env(), capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    load = lambda p: torch.load(p, weights_only=False)
    return tmp, [load(tmp / "two.rank0.pt"), load(tmp / "two.rank1.pt")], load(tmp / "one.rank0.pt")


def _arch(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("arch.")}


def test_two_ranks_keep_alpha_beta_and_paths_identical(runs):
    _, (r0, r1), _ = runs
    assert r0["code"] == r1["code"] == 0
    a0, a1 = _arch(r0["state"]), _arch(r1["state"])
    assert a0 and a0.keys() == a1.keys()
    for k in a0:
        assert torch.equal(a0[k], a1[k]), k  # bit-identical, not merely close
    assert r0["picks"] and r0["picks"] == r1["picks"]
    # the weights too (DDP-averaged gradients, same SGD steps, SyncBatchNorm running statistics)
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k


def test_two_ranks_equal_one_process_over_the_same_global_batches(runs):
    _, (r0, _), one = runs
    # Same draws in the same order: same global batches and same alpha/beta at every draw.
    assert r0["picks"] == one["picks"]
    a2, a1 = _arch(r0["state"]), _arch(one["state"])
    moved = max((v - 0).abs().max().item() for v in a1.values())
    assert moved > 5e-3  # alpha/beta moved far beyond the 1e-3 init: the comparison means something
    for k in a1:
        torch.testing.assert_close(a2[k], a1[k], rtol=0, atol=1e-9, msg=k)
    for k, v in one["state"].items():
        if v.is_floating_point():
            torch.testing.assert_close(r0["state"][k], v, rtol=1e-9, atol=1e-9, msg=k)
        else:
            assert torch.equal(r0["state"][k], v), k  # channel masks, BN batch counters


def test_only_rank_zero_writes_and_logs_are_global(runs):
    tmp, _, _ = runs
    two, one = tmp / "two", tmp / "one"
    for name in ("arch.yaml", "search.jsonl", "scores.json", "checkpoint.pt", "final.json"):
        assert (two / name).is_file(), name
    rec2 = [json.loads(l) for l in (two / "search.jsonl").read_text().splitlines()]
    rec1 = [json.loads(l) for l in (one / "search.jsonl").read_text().splitlines()]
    assert len(rec2) == len(rec1) == 2  # one line per epoch: rank 1 wrote nothing
    assert rec2[-1]["world_size"] == 2 and "world_size" not in rec1[-1]
    for key in ("loss", "arch_loss", "s_miou"):  # losses averaged over ranks; S-mIoU from summed matrices
        assert rec2[-1][key] == pytest.approx(rec1[-1][key], rel=1e-6, abs=1e-8), key
    assert rec2[-1]["arch_hash"] == rec1[-1]["arch_hash"]  # the same derived architecture


def test_torchrun_module_cli_trains_like_one_process(runs, tmp_path):
    """`torchrun -m archgraph train`: DDP weights, sharded data and evaluation, rank 0's files."""
    from archgraph.cli import main

    tmp, _, _ = runs
    arch = tmp / "one" / "arch.yaml"
    data = [a for a in TINY if a.startswith("data.")] + ["train.epochs=1", "train.steps_per_epoch=2"]
    two = torchrun("-m", "archgraph", "train", str(arch), "--out", str(tmp_path / "two"), "--no-progress", "--set", *data)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert main(["train", str(arch), "--out", str(tmp_path / "one"), "--no-progress", "--set", *data]) == 0
    m2, m1 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("two", "one"))
    log2 = [json.loads(l) for l in (tmp_path / "two" / "train.jsonl").read_text().splitlines()]
    log1 = [json.loads(l) for l in (tmp_path / "one" / "train.jsonl").read_text().splitlines()]
    assert len(log2) == 1 and log2[0]["world_size"] == 2  # one line: only rank 0 logs
    assert log2[0]["loss"] == pytest.approx(log1[0]["loss"], rel=1e-4)  # the global batches' loss
    assert log2[0]["train_pixel_acc"] == pytest.approx(log1[0]["train_pixel_acc"], abs=2e-3)
    assert m2["images"] == m1["images"] == 4
    assert m2["miou"] == pytest.approx(m1["miou"], abs=2e-3)  # matrices summed over both ranks' shares


def _cm_worker(rank: int, port: int, preds: torch.Tensor, labels: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    from archgraph.data.metrics import ConfusionMatrix

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        cm = ConfusionMatrix(5)
        cm.update(preds[rank::2], labels[rank::2])  # disjoint halves
        cm.reduce_()
        torch.save(cm.matrix, f"{out}.{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_reduced_confusion_matrix_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    from archgraph.data.metrics import ConfusionMatrix

    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 5, (6, 8, 8), generator=g)
    labels[:, 0, :3] = 255  # ignored pixels stay ignored
    preds = torch.randint(0, 5, (6, 8, 8), generator=g)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    mp.spawn(_cm_worker, args=(free_port(), preds, labels, str(tmp_path / "cm")), nprocs=2, join=True)
    single = ConfusionMatrix(5)
    single.update(preds, labels)
    for rank in (0, 1):
        m = torch.load(tmp_path / f"cm.{rank}.pt")
        assert torch.equal(m, single.matrix)
    half = ConfusionMatrix(5)
    half.update(preds[0::2], labels[0::2])
    assert not torch.equal(half.matrix, single.matrix)  # the reduction is what made them equal


def test_precision_switches_resolve_and_validate():
    from archgraph.config import load_config
    from archgraph.engine.distributed import resolve_precision
    from archgraph.errors import ConfigError

    cfg = load_config(None, [])
    assert (cfg.search.amp, cfg.search.channels_last, cfg.search.sync_bn) == ("auto", "auto", True)
    cpu = resolve_precision(cfg.search.amp, cfg.search.channels_last, torch.device("cpu"), "search")
    assert cpu.amp_dtype is None and not cpu.channels_last and cpu.label is None  # CPU default: off
    forced = resolve_precision("bf16", "channels_last", torch.device("cpu"), "train")
    assert forced.amp_dtype == torch.bfloat16 and forced.channels_last and forced.label == "bf16+channels_last"
    off = resolve_precision("fp32", "contiguous", torch.device("cpu"), "train")
    assert off.amp_dtype is None and not off.channels_last
    with pytest.raises(ConfigError, match="search.amp"):
        load_config(None, ["search.amp=fp16"])
    with pytest.raises(ConfigError, match="train.channels_last"):
        load_config(None, ["train.channels_last=nhwc"])


def test_bf16_channels_last_search_runs_on_cpu_and_is_logged(tmp_path):
    """The plumbing of the GPU defaults, forced on CPU: autocast forward, channels-last batches."""
    from archgraph.cli import main

    out = tmp_path / "amp"
    args = ["search", "--out", str(out), "--no-progress", "--set", *TINY, "search.epochs=1", "search.eval_every=0", "search.amp=bf16", "search.channels_last=channels_last"]
    assert main(args) == 0
    record = json.loads((out / "search.jsonl").read_text().splitlines()[-1])
    assert record["precision"] == "bf16+channels_last"
    assert all(v == v for v in (record["loss"], record["arch_loss"]))  # finite


def test_global_batch_must_split_over_the_processes(monkeypatch):
    import torch.distributed as dist

    from archgraph.engine import distributed as D
    from archgraph.errors import ConfigError

    monkeypatch.setattr(D, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    assert D.local_batch_size(4) == 2
    with pytest.raises(ConfigError, match="data.batch_size=3"):
        D.local_batch_size(3)


def test_sync_bn_false_keeps_each_processs_own_batchnorm(monkeypatch):
    """``search.sync_bn`` / ``train.sync_bn = false`` must leave BatchNorm per process (it once
    synchronised whatever the setting), and the batch BN trains on follows the same rule."""
    import torch.distributed as dist
    from torch import nn

    from archgraph.engine import distributed as D

    monkeypatch.setattr(D, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    kept = D.sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), torch.device("cpu"), enabled=False)
    assert type(kept[0]) is nn.BatchNorm2d
    synced = D.sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), torch.device("cpu"), enabled=True)
    assert type(synced[0]) is D.GlooSyncBatchNorm2d
    assert (D.batchnorm_batch(4, sync_bn=True), D.batchnorm_batch(4, sync_bn=False)) == (4, 2)


if __name__ == "__main__":  # worker mode, see the module docstring
    mode, out, dump, sep, *rest = sys.argv[1:]
    assert mode == "search" and sep == "--"
    _record_search(out, dump, rest)
