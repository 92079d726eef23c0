"""GPU benchmark: images per second and peak memory of one search step at the paper's scale.

DCSS with the paper's best model's L=14, F=64, searched at 512x1024 and at a smaller size (256x512)
with ``dcnas`` (its defaults: n=4 paths, 1/4 channels), and with the full relaxation (``darts``) at
the smaller size only (at 512x1024 it needs several times the memory). Everything runs as
``archgraph search`` runs it on a GPU: channels-last memory format and bf16 autocast of the forward
passes (``archgraph.engine.distributed.parallelize`` with ``amp=bf16``, ``channels_last``; the loss
in float32), cuDNN autotuning on, and the strategy's own ``search_step`` past its warm-up, i.e. an
architecture step on one batch (Adam on alpha/beta) and a weight step on another (SGD).

Reported per run: the median wall time of a search step over ``--steps`` steps after ``--warmup``
untimed ones (``torch.cuda.synchronize`` around each), **images per second** = the two batches a
search step consumes (2 x ``--batch`` images) / step time, and the **peak CUDA allocated memory**
(``peak_cuda_allocated_gib``: ``torch.cuda.max_memory_allocated`` since just before the network was
built, weights, optimiser state, batches and activations; :class:`archgraph.core.measure.MemoryWindow`). Runs share one process (the allocator is emptied and its peak
reset between them); one that runs out of memory or fails is reported in its row, and the next one
goes on (the exit status is then 1).
The whole script stays under ``--time-budget`` seconds (default 270): runs that would start later
are skipped and listed.

Without a CUDA device the script says so and exits with status 2; ``--allow-cpu`` runs a tiny
setting on the CPU instead (L=1, F=2, 64x128 and 32x64, one step, still bf16 autocast and
channels-last: a smoke test of the code path, not a measurement; memory is not measured) and exits 0.

    python benchmarks/gpu_step.py                       # on a GPU machine: the table for benchmarks/README.md
    python benchmarks/gpu_step.py --runs dcnas@512x1024 --batch 4
    python benchmarks/gpu_step.py --allow-cpu           # no GPU: the tiny CPU smoke setting
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peer_nni import git_commit  # noqa: E402  (a sibling script)

NUM_CLASSES = 19
GPU_DEFAULTS = {"layers": 14, "channels": 64, "runs": "dcnas@512x1024,dcnas@256x512,darts@256x512", "steps": 5, "warmup": 2}
CPU_DEFAULTS = {"layers": 1, "channels": 2, "runs": "dcnas@64x128,dcnas@32x64,darts@32x64", "steps": 1, "warmup": 0}
NO_CUDA = (
    "gpu_step.py: no CUDA device is available (torch {torch} reports torch.cuda.is_available() == False), "
    "so there is nothing to measure here. Run it on a machine with a GPU and a CUDA build of torch; "
    "to smoke-test the code path on the CPU at a tiny size, add --allow-cpu."
)


def parse_runs(text: str) -> list[tuple[str, int, int]]:
    """``strategy@HxW,...`` -> [(strategy, H, W)]; sizes must be multiples of 32 (DCSS's coarsest scale)."""
    runs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        strategy, sep, size = item.partition("@")
        h, x, w = size.lower().partition("x")
        if not sep or not x or not h.isdigit() or not w.isdigit():
            raise SystemExit(f"--runs item {item!r}: expected strategy@HxW, e.g. dcnas@512x1024")
        if int(h) % 32 or int(w) % 32 or int(h) == 0 or int(w) == 0:
            raise SystemExit(f"--runs item {item!r}: height and width must be positive multiples of 32")
        runs.append((strategy.strip(), int(h), int(w)))
    if not runs:
        raise SystemExit("--runs is empty; give at least one strategy@HxW")
    return runs


def one_run(strategy_name: str, h: int, w: int, args: argparse.Namespace, device) -> dict[str, Any]:
    """Build the supernet of ``strategy_name`` on ``device`` and time its search steps."""
    import torch

    from archgraph.config import SearchConfig
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.measure import MemoryWindow, Timer
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space
    from archgraph.engine import distributed as D
    from archgraph.engine.driver import StrategyDriver

    cuda = device.type == "cuda"
    row: dict[str, Any] = {"strategy": strategy_name, "height": h, "width": w, "batch": args.batch, "layers": args.layers, "channels": args.channels}
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    window = MemoryWindow(device).open() if cuda else None  # the CPU setting is a smoke test: no memory measured
    torch.manual_seed(args.seed)
    graph = build_space("dcss", {"layers": args.layers, "base_channels": args.channels, "num_classes": NUM_CLASSES})
    info = get_strategy(strategy_name)
    search = SearchConfig()
    strategy = info.cls(graph, dataclass_from_dict(info.params, {}, "strategy"), search, args.seed)
    precision = D.resolve_precision("bf16", "channels_last", device, "search")
    total = args.warmup + args.steps
    driver = StrategyDriver(strategy, search, device=device, precision=precision, steps=total)  # the search's own driver
    stage = driver.begin_stage(0)
    net = stage.net.train()
    driver.begin_epoch(stage, strategy.warmup_epochs())  # the first architecture epoch

    def batch():
        x = torch.randn(args.batch, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, NUM_CLASSES, (args.batch, h, w), device=device)

    batch_w, batch_a = batch(), batch()
    times = []
    for i in range(total):
        clock = Timer(device)
        driver.step(stage, i, batch_w, batch_a)  # the batches are on the device already: its copy is a no-op
        if i >= args.warmup:
            times.append(clock.read())
    step_s = statistics.median(times)
    row.update(
        step_s=step_s,
        step_s_all=times,
        images_per_s=2 * args.batch / step_s,
        precision=precision.label,
        weights_m=sum(p.numel() for p in net.weight_parameters()) / 1e6,
        peak_cuda_allocated_gib=window.close() / 1024 if window is not None else None,
    )
    return row


def run_all(runs: list[tuple[str, int, int]], args: argparse.Namespace, device) -> list[dict[str, Any]]:
    """Every run in turn, within ``--time-budget`` seconds; a run that fails (out of memory, or an
    error) is reported in its row and the next one goes on."""
    import torch

    from archgraph.core.measure import Timer

    rows, clock = [], Timer()
    for strategy, h, w in runs:
        if clock.read() > args.time_budget:
            rows.append({"strategy": strategy, "height": h, "width": w, "batch": args.batch, "error": f"skipped: past --time-budget {args.time_budget:.0f} s"})
            continue
        try:
            row = one_run(strategy, h, w, args, device)
        except torch.cuda.OutOfMemoryError:
            row = {"strategy": strategy, "height": h, "width": w, "batch": args.batch, "error": "out of GPU memory (try a smaller --batch)"}
        except Exception as exc:  # a failing run is a result too: recorded in the table, traceback on stderr
            traceback.print_exc()
            row = {"strategy": strategy, "height": h, "width": w, "batch": args.batch, "error": f"{type(exc).__name__}: {exc}".strip()[:200]}
        rows.append(row)
        text = row.get("error") or f"{row['step_s']:.3f} s/step  {row['images_per_s']:.1f} img/s" + (
            f"  peak {row['peak_cuda_allocated_gib']:.2f} GiB" if row.get("peak_cuda_allocated_gib") is not None else ""
        )
        print(f"  {strategy}@{h}x{w}: {text}", file=sys.stderr, flush=True)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| strategy | size | batch | search step (s) | images / s | peak CUDA allocated (GiB) | weights (M) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = f"{r['height']}x{r['width']}"
        if "error" in r:
            lines.append(f"| {r['strategy']} | {size} | {r['batch']} | {r['error']} | - | - | - |")
            continue
        peak = "-" if r.get("peak_cuda_allocated_gib") is None else f"{r['peak_cuda_allocated_gib']:.2f}"
        lines.append(f"| {r['strategy']} | {size} | {r['batch']} | {r['step_s']:.3f} | {r['images_per_s']:.1f} | {peak} | {r['weights_m']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=None, help="L (default 14 on a GPU, 1 with --allow-cpu)")
    p.add_argument("--channels", type=int, default=None, help="F (default 64 on a GPU, 2 with --allow-cpu)")
    p.add_argument("--runs", default=None, help=f"strategy@HxW,... (default {GPU_DEFAULTS['runs']})")
    p.add_argument("--batch", type=int, default=2, help="images per batch; a search step uses two batches (default 2)")
    p.add_argument("--steps", type=int, default=None, help="timed search steps per run (default 5; 1 on the CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed search steps first (default 2; 0 on the CPU)")
    p.add_argument("--device", default="cuda", help="cuda | cuda:N (default cuda)")
    p.add_argument("--allow-cpu", action="store_true", help="without CUDA: run the tiny CPU setting instead of exiting")
    p.add_argument("--time-budget", type=float, default=270, help="seconds after which no further run starts (default 270)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write settings and rows here")
    args = p.parse_args(argv)
    if args.batch < 2:
        raise SystemExit("--batch must be >= 2: batch norm in training mode needs two values per channel at the 1/32 scale")

    import torch

    cuda = torch.cuda.is_available() and args.device.startswith("cuda")
    if not cuda and not args.allow_cpu:
        print(NO_CUDA.format(torch=torch.__version__), file=sys.stderr)
        return 2
    defaults = GPU_DEFAULTS if cuda else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = torch.device(args.device if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
    runs = parse_runs(args.runs)
    where = torch.cuda.get_device_name(device) if cuda else "CPU (tiny smoke setting, --allow-cpu; memory not measured)"
    commit = git_commit()
    print(
        f"archgraph commit {commit}; torch {torch.__version__}; {where}; DCSS L={args.layers}, F={args.channels}; bf16 autocast + channels-last; "
        f"median of {args.steps} search steps (arch + weight) after {args.warmup} warm-up",
        flush=True,
    )
    from archgraph.core.measure import Timer

    clock = Timer()
    rows = run_all(runs, args, device)
    wall = clock.read()
    print()
    print(markdown_table(rows))
    print(f"\nmeasured in {wall:.0f} s", flush=True)
    if args.json:
        settings = {"commit": commit, "torch": torch.__version__, "device": where, "wall_s": wall, **vars(args)}
        Path(args.json).write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    return 0 if all("error" not in r or r["error"].startswith("skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
