"""Eager against ``torch.compile`` (``train.compile``) for stand-alone training steps of a derived network.

A derived DCSS architecture (a seeded uniform sample of the space, as ``archgraph sample`` makes; the
same one for both modes) trains with the SGD step ``archgraph train`` runs (forward, cross-entropy,
backward, SGD with momentum); the step is timed after ``--warmup`` untimed steps (the compiled mode's
first step also compiles: reported separately as the compile time). Reported: the median step time
of each mode over ``--steps`` steps, the ratio eager / compiled (above 1: compiled is faster) and the
compile time. One process, ``--threads`` intra-op threads (1 by default: the shared 2-core machine).

    OMP_NUM_THREADS=1 python benchmarks/train_compile.py --layers 8 --channels 16 --crop 128 128 --batch 4
    python benchmarks/train_compile.py --device cuda --layers 14 --channels 64 --crop 512 1024 --batch 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F


def measure(layers: int, channels: int, crop: tuple[int, int], batch: int, steps: int, warmup: int, device: torch.device, compiled: bool, classes: int = 11) -> dict[str, float]:
    """Median step seconds (and the first step's, which compiles) of one mode."""
    from archgraph import build_space, compile_graph
    from archgraph.core.decode import sample_architecture
    from archgraph.core.measure import Timer

    torch.manual_seed(0)
    arch = sample_architecture(build_space("dcss", {"layers": layers, "base_channels": channels, "num_classes": classes}), 0)
    net = compile_graph(arch).to(device).train()
    run = torch.compile(net) if compiled else net
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    x = torch.randn(batch, 3, *crop, device=device)
    y = torch.randint(0, classes, (batch, *crop), device=device)

    def step() -> float:
        clock = Timer(device)
        loss = F.cross_entropy(run(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return clock.read()

    first = step()
    for _ in range(max(warmup - 1, 0)):
        step()
    times = [step() for _ in range(steps)]
    return {"first_step_s": first, "step_s": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--crop", type=int, nargs=2, default=[128, 128])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setting = dict(layers=args.layers, channels=args.channels, crop=tuple(args.crop), batch=args.batch, steps=args.steps, warmup=args.warmup, device=device)
    eager = measure(**setting, compiled=False)
    print(f"eager: {eager['step_s'] * 1e3:.0f} ms per step; compiling ...", flush=True)
    from archgraph.core.measure import Timer

    clock = Timer()
    compiled = measure(**setting, compiled=True)
    print(f"compiled: {compiled['step_s'] * 1e3:.0f} ms per step ({clock.read():.0f} s in all)", flush=True)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({args.threads} thread(s))",
        "torch": torch.__version__,
        "layers": args.layers,
        "channels": args.channels,
        "crop": list(args.crop),
        "batch": args.batch,
        "eager_step_s": eager["step_s"],
        "compiled_step_s": compiled["step_s"],
        "ratio_eager_over_compiled": eager["step_s"] / compiled["step_s"],
        "compile_s": compiled["first_step_s"] - compiled["step_s"],  # the first step's time beyond a normal step
        "eager_images_per_s": args.batch / eager["step_s"],
        "compiled_images_per_s": args.batch / compiled["step_s"],
    }
    print(json.dumps(result, indent=1))
    print(
        f"| {result['device']} | L={args.layers} F={args.channels} {args.crop[0]}x{args.crop[1]} b{args.batch} | "
        f"{eager['step_s'] * 1e3:.0f} ms | {compiled['step_s'] * 1e3:.0f} ms | {result['ratio_eager_over_compiled']:.2f}x | {result['compile_s']:.0f} s |"
    )
    if args.json:
        from archgraph.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
