"""Measure the two DCNAS choices the paper leaves open: n (paths drawn per node) and the tau schedule.

Each variant runs a complete small search (same seed, same data, same budget) and reports the final
S-mIoU, the mean search-step time, and how decisive beta became (mean entropy), side by side in one
run. Quality on a small synthetic budget is noisy: several seeds are run and the mean and spread are
printed; read the differences against that spread.

    python benchmarks/dcnas_choices.py                      # defaults: synthetic data, L=4, F=8
    python benchmarks/dcnas_choices.py --seeds 3 --epochs 6 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

VARIANTS = {
    "default: n=4 tau exp 5->0.5": [],
    "n=2": ["strategy.paths=2"],
    "n=8": ["strategy.paths=8"],
    "tau constant 5": ["strategy.tau_schedule=constant"],
    "tau linear 5->0.5": ["strategy.tau_schedule=linear"],
    "tau exp 1->0.1": ["strategy.tau_max=1.0", "strategy.tau_min=0.1"],
}


def run_variant(overrides: list[str], seed: int, args: argparse.Namespace) -> dict:
    from archgraph.config import load_config
    from archgraph.core.measure import Timer
    from archgraph.engine.search import run_search

    base = [
        f"seed={seed}",
        f"space.layers={args.layers}",
        f"space.base_channels={args.channels}",
        f"data.crop=[{args.size},{args.size}]",
        f"data.num_samples={args.samples}",
        f"search.epochs={args.epochs}",
        "search.warmup_epochs=1",
        "data.batch_size=4",
    ]
    cfg = load_config(None, base + overrides)
    with tempfile.TemporaryDirectory() as tmp:
        with Timer(cfg.device) as clock:
            record = run_search(cfg, Path(tmp) / "run", progress=False)
        wall = clock.seconds
    return {"s_miou": record["s_miou"], "step_time": record["step_time"], "entropy_beta": record["entropy_beta"], "wall": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from: " + ", ".join(VARIANTS))
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps runs comparable on a shared machine)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    results = {}
    for name in names:
        runs = [run_variant(VARIANTS[name], seed, args) for seed in range(args.seeds)]
        results[name] = {
            "s_miou_mean": statistics.mean(r["s_miou"] for r in runs),
            "s_miou_std": statistics.pstdev(r["s_miou"] for r in runs),
            "step_time": statistics.mean(r["step_time"] for r in runs),
            "entropy_beta": statistics.mean(r["entropy_beta"] for r in runs),
            "runs": runs,
        }
        r = results[name]
        print(f"{name:28s} S-mIoU {r['s_miou_mean']:.4f} ± {r['s_miou_std']:.4f}   step {r['step_time'] * 1000:7.1f} ms   H(beta) {r['entropy_beta']:.3f}", flush=True)
    ref = results.get("default: n=4 tau exp 5->0.5")
    if ref:
        print("\nstep time relative to the default:")
        for name, r in results.items():
            print(f"  {name:28s} {r['step_time'] / ref['step_time']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
