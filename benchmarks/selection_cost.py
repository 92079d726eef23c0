"""Cost of scoring a candidate in selection: seconds per candidate against the forward passes it needs.

A candidate's shared-weight score needs ``search.bn_recalib_batches`` forward passes (BN
recalibration on trainA batches) and one pass over the selection split, through the supernet in
subnet mode. This script times, side by side in one process on the same supernet and candidates:

- **forward passes**: exactly those passes and nothing else (batches already in memory, no BN reset,
  no confusion matrix): the floor;
- **selection stage**: :class:`archgraph.engine.selection.splitcache.SubnetScorer` over the
  :class:`~archgraph.engine.selection.splitcache.SplitCache` built once (its build time is reported
  apart, and per candidate when spread over the candidates);
- **score_subnet**: :func:`archgraph.engine.smiou.score_subnet`, the one-candidate path (a loader
  and the split's images read again per candidate, BN buffers copied per candidate).

and prints seconds per candidate and the ratio to the forward passes (target: at most 1.2x).

    OMP_NUM_THREADS=1 python benchmarks/selection_cost.py                  # tiny defaults, about a minute
    OMP_NUM_THREADS=1 python benchmarks/selection_cost.py --layers 4 --channels 8 --size 64 --candidates 8
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategy", default="dcnas")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="synthetic image side")
    ap.add_argument("--images", type=int, default=48, help="synthetic training images (half become the selection split)")
    ap.add_argument("--recalib", type=int, default=4, help="search.bn_recalib_batches")
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    args = ap.parse_args(argv)

    from archgraph.config import load_config
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.measure import Timer
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space
    from archgraph.engine.selection.candidates import draw_candidates
    from archgraph.engine.selection.splitcache import SplitCache, SubnetScorer
    from archgraph.engine.smiou import build_search_data, score_subnet

    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "data.name=synthetic",
            f"data.crop=[{args.size},{args.size}]",
            "data.batch_size=4",
            f"data.num_samples={args.images}",
            f"search.bn_recalib_batches={args.recalib}",
            f"space.layers={args.layers}",
            f"space.base_channels={args.channels}",
            f"strategy.name={args.strategy}",
        ],
    )
    data = build_search_data(cfg)
    info = get_strategy(cfg.strategy_name)
    strategy = info.cls(build_space(cfg.space_name, {**cfg.space_params, "num_classes": data.num_classes}), dataclass_from_dict(info.params, cfg.strategy_params, "strategy"), cfg.search, cfg.seed)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    device = torch.device("cpu")
    candidates = draw_candidates(net.choices, args.candidates, seed=0)

    with Timer(device) as clock:
        cache = SplitCache.build(data, cfg, device)
    build_s = clock.seconds
    passes = cache.forward_passes

    def floor() -> float:
        clock = Timer(device)
        with torch.no_grad():
            for op_idx, input_idx in candidates:
                with strategy.relaxation.fixed_subnet(op_idx, input_idx):
                    net.train()
                    for x in cache.recalib:
                        net(x)
                    net.eval()
                    for x, _ in cache.select:
                        net(x)
        return clock.read() / len(candidates)

    def stage() -> float:
        clock = Timer(device)
        with SubnetScorer(net, strategy.relaxation, cache) as scorer:
            scorer.score_all(candidates)
        return clock.read() / len(candidates)

    def one_by_one() -> float:
        clock = Timer(device)
        for op_idx, input_idx in candidates:
            score_subnet(net, strategy.relaxation, op_idx, input_idx, data, cfg, device)
        return clock.read() / len(candidates)

    times = {name: statistics.median(fn() for _ in range(args.repeats)) for name, fn in (("forward passes", floor), ("selection stage", stage), ("score_subnet", one_by_one))}
    base = times["forward passes"]
    print(
        f"{args.strategy}, L={args.layers}, F={args.channels}, {args.size}x{args.size}, {len(data.select)} selection images, "
        f"{args.recalib} recalibration batches: {passes} forward passes of <= 4 images per candidate, {len(candidates)} candidates, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print("| scoring | s / candidate | x forward passes |")
    print("|---|---|---|")
    for name, sec in times.items():
        print(f"| {name} | {sec:.4f} | {sec / base:.2f} |")
    print(
        f"| selection stage incl. building the cache once, spread over {len(candidates)} | "
        f"{times['selection stage'] + build_s / len(candidates):.4f} | {(times['selection stage'] + build_s / len(candidates)) / base:.2f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
