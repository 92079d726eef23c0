"""Does the loader keep up with the step? CamVid at full resolution through ``data.workers`` 0/1/2 vs a search step.

Loader: images per second of the CamVid training split at full resolution (360x480 PNGs: decode,
label mapping, random scale, crop, flip, normalisation), read through the loader the search uses
(:func:`archgraph.engine.distributed.sharded_loader`, persistent workers inside a
:func:`archgraph.data.workers.loader_scope`) with each ``--workers`` count, over ``--batches``
batches after the workers' first batch (their start-up is reported apart). Step: images per second of
a DCNAS search step (two batches: trainA and trainB) of a small DCSS at the paper's crop on tensors
already in memory, so the two rates compare the producer and the consumer. On a GPU the step's rate
is tens to hundreds of times higher: what workers must deliver then is the step's rate measured there.

    OMP_NUM_THREADS=1 python benchmarks/loader_throughput.py --root ../shared/datasets/camvid
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch


def loader_rate(root: str, crop: tuple[int, int], batch: int, workers: int, batches: int) -> dict[str, float]:
    from archgraph.core.measure import Timer
    from archgraph.data import build_dataset
    from archgraph.data.workers import loader_scope
    from archgraph.engine.distributed import sharded_loader

    ds = build_dataset("camvid", "train", root=root, crop=crop, train=True, seed=0)
    with loader_scope():
        it = iter(sharded_loader(ds, batch, 0, workers, torch.device("cpu")))
        with Timer() as first:
            next(it)
        clock = Timer()
        for _ in range(batches):
            next(it)
        elapsed = clock.read()
    return {"workers": workers, "first_batch_s": first.seconds, "images_per_s": batches * batch / elapsed}


def step_rate(crop: tuple[int, int], batch: int, layers: int, channels: int, steps: int) -> float:
    from archgraph.config import load_config
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.measure import Timer
    from archgraph.engine.driver import StrategyDriver

    cfg = load_config(None, [f"space.layers={layers}", f"space.base_channels={channels}", "space.num_classes=11", "search.warmup_epochs=0"])
    info = get_strategy("dcnas")
    strategy = info.cls(build_space("dcss", cfg.space_params), dataclass_from_dict(info.params, cfg.strategy_params, "strategy"), cfg.search, 0)
    driver = StrategyDriver(strategy, cfg.search, steps=steps + 1)  # the search's own driver (search.w_* optimiser)
    stage = driver.begin_stage(0)
    stage.net.train()
    driver.begin_epoch(stage, 0)  # search.warmup_epochs=0: an architecture epoch
    batch_of = lambda: (torch.randn(batch, 3, *crop), torch.randint(0, 11, (batch, *crop)))
    driver.step(stage, 0, batch_of(), batch_of())  # warm-up
    times = []
    for i in range(1, steps + 1):
        bw, ba = batch_of(), batch_of()
        clock = Timer()  # the CPU: the step is done when it returns
        driver.step(stage, i, bw, ba)
        times.append(clock.read())
    return 2 * batch / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/datasets/camvid")
    p.add_argument("--crop", type=int, nargs=2, default=[360, 480], help="the paper's CamVid crop: the full frame")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not Path(args.root).is_dir():
        print(f"CamVid not found at {args.root}; pass --root", file=sys.stderr)
        return 2
    crop = (args.crop[0], args.crop[1])
    rows = [loader_rate(args.root, crop, args.batch, w, args.batches) for w in args.workers]
    step = step_rate(crop, args.batch, args.layers, args.channels, args.steps)
    result = {"crop": list(crop), "batch": args.batch, "loader": rows, "step": {"strategy": "dcnas", "layers": args.layers, "channels": args.channels, "images_per_s": step}}
    print(json.dumps(result, indent=1))
    for r in rows:
        print(f"| loader, data.workers={r['workers']} | {r['images_per_s']:.1f} | first batch {r['first_batch_s']:.2f} s |")
    print(f"| dcnas step, L={args.layers} F={args.channels} | {step:.1f} | two batches of {args.batch} per step |")
    if args.json:
        from archgraph.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
