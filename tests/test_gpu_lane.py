"""The GPU lane: every command on tiny settings on one CUDA GPU (`pytest -m gpu tests/test_gpu_lane.py`).

Skipped without CUDA (the default suite on CPU CI only collects these). On a GPU it runs, in a few
minutes: a search with each strategy (bf16 and channels-last on, as `auto` gives on CUDA; two loader
workers with pinned memory), a search's step path under ``torch.cuda.set_sync_debug_mode`` (the
synchronisations tests/test_sync_points.py counts on the CPU), a training (``train.compile`` on),
an evaluation with scales and flip, an export and its reload, ``compare --jobs 1`` with its worker
on the GPU, and a search under torchrun with one process. benchmarks/gpu_lane.sh runs this lane
and benchmarks/gpu_step.py in one call. Written and run on CPU only so far: ready, untested on hardware.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from archgraph.core.measure import peak_memory_of

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the gpu lane)")]

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "device=cuda",
    "space.layers=2",
    "space.base_channels=8",
    "data.num_samples=8",
    "data.crop=[64,64]",
    "data.batch_size=2",
    "data.val_limit=2",
    "data.workers=2",
    "search.epochs=2",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "train.epochs=1",
    "train.steps_per_epoch=2",
]
STRATEGIES = {
    "dcnas": [],
    "darts": [],
    "pc_darts": ["strategy.k=2"],
    "p_darts": ["strategy.stages=2", "strategy.drop=[1]", "strategy.dropout=[0.0,0.3]"],
    "proxylessnas": ["strategy.arch_every=1"],
    "spos": ["strategy.population=2", "strategy.generations=1", "strategy.select=1", "strategy.mutation=1", "strategy.crossover=1", "strategy.recalib_batches=1"],
}


def cli(*args: str) -> None:
    from archgraph.cli import main

    assert main([*args]) == 0, args


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu") / "search"
    cli("search", "--out", str(out), "--no-progress", "--set", *TINY)
    return out


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_search_each_strategy_on_the_gpu(tmp_path, strategy):
    out = tmp_path / strategy
    cli("search", "--out", str(out), "--no-progress", "--set", *TINY, f"strategy.name={strategy}", *STRATEGIES[strategy])
    final = json.loads((out / "final.json").read_text())
    lines = [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
    assert (out / "arch.yaml").is_file() and lines[-1].get("precision") == "bf16+channels_last", lines[-1]
    assert (peak_memory_of(final) or peak_memory_of(lines[-1])).mb > 0  # peak_cuda_allocated_mb (older logs: peak_mem_mb)


def test_the_search_step_waits_for_the_gpu_a_fixed_number_of_times(tmp_path):
    """torch.cuda.set_sync_debug_mode("warn") warns at every synchronisation; per step they must not
    grow with the nodes (L=2 vs L=4), as the CPU emulation in tests/test_sync_points.py checks."""
    from archgraph.config import load_config
    from archgraph.engine import search as search_module

    real = search_module._search_step
    counts: dict[int, list[int]] = {}

    for layers in (2, 4):

        def counted(*args, layers=layers):
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    real(*args)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            counts.setdefault(layers, []).append(sum("synchroniz" in str(w.message) for w in caught))

        search_module._search_step = counted
        try:
            cfg = load_config(None, [*TINY, f"space.layers={layers}", "search.epochs=1", "search.warmup_epochs=0", "search.eval_every=0", "data.workers=0"])
            search_module.run_search(cfg, tmp_path / f"L{layers}", progress=False)
        finally:
            search_module._search_step = real
    assert max(counts[4]) == max(counts[2]) <= 12, counts


def test_train_compiled_evaluate_scales_flip_export_reload(searched, tmp_path):
    trained = tmp_path / "train"
    cli("train", str(searched), "--out", str(trained), "--no-progress", "--set", *TINY, "train.compile=true")
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0 <= metrics["miou"] <= 1
    state = torch.load(trained / "best.pt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("_orig_mod.") for k in state["net"]), "checkpoints hold the plain module's weights"
    cli("evaluate", str(trained), "--set", "device=cuda", "train.multi_scale_eval=[0.75,1.0,1.25]", "train.flip_eval=true")
    model = tmp_path / "model.pt2"
    cli("export", str(trained), "-o", str(model), "--frame", "64x64")
    program = torch.export.load(str(model))
    y = program.module()(torch.randn(1, 3, 64, 64))
    assert y.shape[-2:] == (64, 64)


def test_compare_jobs_1_runs_its_worker_on_the_gpu(tmp_path):
    out = tmp_path / "cmp"
    cli("compare", "--strategies", "dcnas", "--seeds", "1", "--baselines", "none", "--jobs", "1", "--out", str(out), "--no-progress", "--set", *TINY)
    assert (out / "results.json").is_file()


def test_torchrun_one_process_search_on_the_gpu(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=1",
        "--master_addr=127.0.0.1",
        "--master_port=29533",
        "-m",
        "archgraph",
        "search",
        "--out",
        str(tmp_path / "ddp"),
        "--no-progress",
        "--set",
        *TINY,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ddp" / "final.json").is_file()
