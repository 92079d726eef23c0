"""Cost of one search step: DCNAS's path and channel sampling against the full relaxation.

Every variant searches the same DCSS supernet (synthetic batches: images ``randn``, labels over 19
classes) and runs the same thing the search loop runs per step: ``strategy.search_step`` with the
strategy's epoch set past its warm-up, i.e. one architecture step (trainB batch) and one weight step
(trainA batch). Each variant runs in a fresh Python process (this file with ``--worker``, printing
one JSON line), so one variant's allocator state, caches and peak memory never leak into the next.

Reported per variant:

- **step time**: median wall time of ``search_step`` over ``--steps`` steps, after ``--warmup``
  steps that are not timed (first-touch allocations, oneDNN kernel selection);
- **peak memory** (:class:`archgraph.core.measure.MemoryWindow`, named for its quantity): on CPU
  ``peak_rss_growth_mb``, the peak resident set size during the steps minus the resident size just
  before them (net, optimisers and batches already built). The peak is ``VmHWM`` from
  ``/proc/self/status`` after resetting it with ``echo 5 > /proc/self/clear_refs``; where that is not
  available, ``peak_rss_growth_lower_bound_mb``, the growth of ``ru_maxrss``. On CUDA:
  ``peak_cuda_allocated_growth_mb``, ``torch.cuda.max_memory_allocated`` minus the allocation before
  the steps. All include gradients and optimiser state, which the first step allocates;
- **saved activations** (``saved_tensors_mb``): bytes of the distinct tensors autograd keeps for
  backward during one forward pass (parameters excluded): an allocator-independent view of the
  activation memory;
- **branches / ops run** and **forward GFLOPs** (split into alignment branches, candidate ops, and
  the fixed stem and head; `torch.utils.flop_counter`), of that same forward pass at choice points;
  sampling strategies (DCNAS, SPOS, ProxylessNAS) run only the live subgraph of their draw, so these
  count the live nodes' branches and ops, and **live nodes** is how many of the nodes with a choice
  point were on a path to the head in that pass (all of them for the full relaxation);
- ratios against ``full`` (strategy ``darts``: every input, every channel).

A depth sweep repeats ``full`` and ``dcnas`` for several ``L`` (``8L(L+1)`` candidate connections).

    python benchmarks/search_cost.py                        # all variants at L=8, then the depth sweep
    python benchmarks/search_cost.py --depths ""            # variants only
    python benchmarks/search_cost.py --variants "" --depths 4,8,12 --sweep-channels 8 --sweep-size 64
    python benchmarks/search_cost.py --variants full,dcnas,dcnas:paths=3 --markdown --json cost.json

A variant is a name from ``VARIANTS``, a registered strategy name (its defaults), or
``strategy:key=value,key=value`` (values parsed as YAML).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the parent reads its workers' fields with this checkout's archgraph, as they run it
    sys.path.insert(0, str(ROOT))
MARKER = "@@search_cost@@ "
FULL = "full"
NUM_CLASSES = 19

# name -> (strategy, parameter overrides, what it shows)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "full": ("darts", {}, "full relaxation: every input, every channel"),
    "dcnas": ("dcnas", {}, "DCNAS defaults: n=4 paths, r=1/4 channels"),
    "dcnas-paths-only": ("dcnas", {"channel_ratio": 1.0}, "path sampling alone (r=1)"),
    "dcnas-channels-only": ("dcnas", {"paths": 10**6}, "channel sampling alone (every input, r=1/4)"),
    "dcnas-n2": ("dcnas", {"paths": 2}, "n=2 paths, r=1/4"),
    "dcnas-n8": ("dcnas", {"paths": 8}, "n=8 paths, r=1/4"),
}
SWEEP_VARIANTS = ("full", "dcnas")


# --------------------------------------------------------------------------------------------------
# Variants


def resolve_variant(name: str) -> tuple[str, dict[str, Any], str]:
    """(strategy, overrides, description) of a variant name."""
    if name in VARIANTS:
        return VARIANTS[name]
    if ":" in name:
        import yaml

        strategy, _, rest = name.partition(":")
        overrides = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, sep, raw = item.partition("=")
            if not sep:
                raise SystemExit(f"variant {name!r}: expected strategy:key=value,key=value")
            overrides[key.strip()] = yaml.safe_load(raw)
        return strategy.strip(), overrides, "custom"
    return name, {}, "registered strategy, its defaults"


def default_variants() -> list[str]:
    """The fixed variants, then every other registered strategy with its defaults."""
    from archgraph.core.registry import list_strategies

    covered = {strategy for strategy, overrides, _ in VARIANTS.values() if not overrides}
    return list(VARIANTS) + [s.name for s in list_strategies() if s.name not in covered]


# --------------------------------------------------------------------------------------------------
# Worker: one variant, measured in this (fresh) process


class _Probe:
    """Counts alignment branches and candidate ops run in a forward pass, and the bytes autograd saves."""

    def __init__(self, net):
        self.net = net
        self.branches = 0
        self.ops = 0
        self.handles = []

    def _count(self, kind: str):
        def hook(module, args, output):
            setattr(self, kind, getattr(self, kind) + 1)

        return hook

    def run(self, x):
        from archgraph.core.measure import SavedTensors

        choices = self.net.choices
        for name, node in self.net.nodes.items():  # choice points only: fixed stem/head excluded
            if choices.input_choice(name) is not None:
                self.handles += [m.register_forward_hook(self._count("branches")) for m in node.branch_list]
            if choices.op_choice(name) is not None:
                self.handles += [m.register_forward_hook(self._count("ops")) for m in node.op_list]
        from torch.utils.flop_counter import FlopCounterMode

        try:
            with FlopCounterMode(display=False) as counter, SavedTensors(self.net) as saved:
                out = self.net(x)
            del out
        finally:
            for h in self.handles:
                h.remove()
        flops = self._split_flops(counter, choices)
        plan = getattr(self.net, "live_plan", None)  # sampling strategies run only the live subgraph
        searchable = sum(1 for n in self.net.nodes if choices.input_choice(n) is not None or choices.op_choice(n) is not None)
        live = {"live_nodes": plan.live_searchable if plan is not None else searchable, "searchable_nodes": searchable}
        return {"branches_run": self.branches, "ops_run": self.ops, **live, "saved_tensors_mb": saved.mb, **flops}

    def _split_flops(self, counter, choices) -> dict[str, float]:
        """Forward GFLOPs: alignment branches and candidate ops at choice points, and the rest (stem, head)."""
        align = ops = 0
        for key, per_op in counter.get_flop_counts().items():
            parts = key.split(".")  # <Root>.nodes.<node>.branches.<source> / <Root>.nodes.<node>.ops.<op>
            if len(parts) != 5 or parts[1] != "nodes":
                continue
            if parts[3] == "branches" and choices.input_choice(parts[2]) is not None:
                align += sum(per_op.values())
            elif parts[3] == "ops" and choices.op_choice(parts[2]) is not None:
                ops += sum(per_op.values())
        total = counter.get_total_flops()
        return {"fwd_gflops": total / 1e9, "fwd_gflops_align": align / 1e9, "fwd_gflops_ops": ops / 1e9, "fwd_gflops_fixed": (total - align - ops) / 1e9}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from archgraph.core.choices import discover_choices
    from archgraph.core.measure import MemoryWindow, Timer, synchronize
    from archgraph.config import SearchConfig
    from archgraph.configtools import dataclass_from_dict, to_plain
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space
    from archgraph.engine.driver import StrategyDriver

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    strategy_name, overrides, _ = resolve_variant(args.variant)
    result: dict[str, Any] = {
        "variant": args.variant,
        "strategy": strategy_name,
        "overrides": overrides,
        "layers": args.layers,
        "channels": args.channels,
        "size": args.size,
        "batch": args.batch,
        "device": str(device),
        "threads": args.threads,
        "torch": torch.__version__,
        "connections_formula": 8 * args.layers * (args.layers + 1),
    }

    graph = build_space("dcss", {"layers": args.layers, "base_channels": args.channels, "num_classes": NUM_CLASSES})
    info = get_strategy(strategy_name)
    params = dataclass_from_dict(info.params, overrides, "strategy")
    search = SearchConfig()
    strategy = info.cls(graph, params, search, args.seed)
    driver = StrategyDriver(strategy, search, device=device, steps=args.warmup + args.steps)  # the search's own driver
    stage = driver.begin_stage(0)  # progressive strategies (P-DARTS): the first stage's supernet
    net = stage.net.train()
    stage.epochs = max(stage.epochs, strategy.warmup_epochs() + 1)  # a schedule with an architecture epoch
    driver.begin_epoch(stage, strategy.warmup_epochs())  # the first architecture epoch
    result.update(
        params=to_plain(params),
        connections=sum(len(c.candidates) for c in discover_choices(strategy.graph).inputs),
        weights_m=sum(p.numel() for p in net.weight_parameters()) / 1e6,
        arch_active=bool(strategy.arch_active()),
    )

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 3, args.size, args.size)
        y = torch.randint(0, NUM_CLASSES, (args.batch, args.size, args.size))
        return x.to(device), y.to(device)

    batch_w, batch_a = batch(), batch()

    gc.collect()
    synchronize(device)  # the set-up's queued work is done before the window opens
    window = MemoryWindow(device).open()

    total = args.warmup + args.steps
    times, arch_steps = [], 0
    for i in range(total):
        clock = Timer(device)
        losses = driver.step(stage, i, batch_w, batch_a)  # the step hook and the strategy's step; the batches are on the device already
        if i >= args.warmup:
            times.append(clock.read())
        arch_steps += "arch_loss" in losses

    window.close()
    result.update(
        **window.growth_fields(),
        baseline_mb=window.baseline_mb,
        memory_source=window.source,
        step_s=statistics.median(times) if times else None,
        step_s_min=min(times) if times else None,
        step_s_all=times,
        arch_step=arch_steps == total,
    )
    if args.probe:
        result.update(_Probe(net).run(batch_a[0]))
    return result


def worker_main(args: argparse.Namespace) -> int:
    try:
        result = measure(args)
        code = 0
    except Exception as exc:  # reported in the table; the parent goes on with the next variant
        result = {"variant": args.variant, "error": f"{type(exc).__name__}: {exc}".strip()[:400]}
        code = 1
    print(MARKER + json.dumps(result), flush=True)
    return code


# --------------------------------------------------------------------------------------------------
# Parent: one subprocess per measurement


def run_worker(variant: str, args: argparse.Namespace, layers: int, channels: int, size: int, steps: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--variant",
        variant,
        "--layers",
        str(layers),
        "--channels",
        str(channels),
        "--size",
        str(size),
        "--batch",
        str(args.batch),
        "--steps",
        str(steps),
        "--warmup",
        str(args.warmup),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        *([] if args.probe else ["--no-probe"]),
    ]
    from archgraph.core.measure import Timer

    clock = Timer()
    result = worker_result(cmd, MARKER, dict(os.environ), args.timeout, {"variant": variant, "layers": layers})
    if "error" not in result:
        result.setdefault("layers", layers)
        result["wall_s"] = clock.read()
    return result


def worker_result(cmd: list[str], marker: str, env: dict[str, str], timeout: float, ident: dict[str, Any]) -> dict[str, Any]:
    """Run one worker process (with this checkout first on PYTHONPATH) and return the JSON it printed
    after ``marker``; when it timed out, died (out of memory is said so) or printed none: ``ident``
    with an ``error``. Shared with peer_nni.py."""
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**ident, "error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    why = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit {proc.returncode}"
    return {**ident, "error": f"{why}: {tail}"[:400]}


def add_ratios(rows: list[dict[str, Any]], ref: dict[str, Any] | None) -> None:
    """speed-up = t_full / t, mem_ratio = m / m_full (and the same for saved activations)."""
    for r in rows:
        if ref is None or "error" in r or "error" in ref:
            continue
        if r.get("step_s") and ref.get("step_s"):
            r["speedup_vs_full"] = ref["step_s"] / r["step_s"]
        if peak_growth_mb(ref) and peak_growth_mb(r) is not None:
            r["mem_vs_full"] = peak_growth_mb(r) / peak_growth_mb(ref)
        if ref.get("saved_tensors_mb") and "saved_tensors_mb" in r:
            r["saved_vs_full"] = r["saved_tensors_mb"] / ref["saved_tensors_mb"]
        if ref.get("fwd_gflops") and "fwd_gflops" in r:
            r["flops_vs_full"] = r["fwd_gflops"] / ref["fwd_gflops"]


def peak_growth_mb(r: dict[str, Any]) -> float | None:
    """A variant's peak-memory growth over its steps, whichever quantity its device gave (``*_growth_mb``)."""
    from archgraph.core.measure import GROWTH_OF

    return next((r[k] for k in GROWTH_OF.values() if r.get(k) is not None), None)


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _gflops(r: dict[str, Any]) -> str:
    if "fwd_gflops" not in r:
        return "-"
    return f"{r['fwd_gflops']:.1f} ({r['fwd_gflops_align']:.1f}/{r['fwd_gflops_ops']:.1f}/{r['fwd_gflops_fixed']:.1f})"


def variant_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = [
        "variant",
        "strategy",
        "overrides",
        "arch step",
        "step (s)",
        "speed-up",
        "peak mem (MB)",
        "mem / full",
        "saved act. (MB)",
        "act. / full",
        "fwd GFLOP (align/ops/fixed)",
        "GFLOP / full",
        "branches",
        "ops",
        "live nodes",
    ]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["variant"], r.get("strategy") or resolve_variant(r["variant"])[0], "", "", "error: " + r["error"]] + [""] * 10)
            continue
        over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "defaults"
        body.append(
            [
                r["variant"],
                r["strategy"],
                over,
                "yes" if r["arch_step"] else "no",
                _f(r["step_s"], ".3f"),
                _f(r.get("speedup_vs_full"), ".2f") + "x",
                _f(peak_growth_mb(r), ".0f"),
                _f(r.get("mem_vs_full"), ".2f"),
                _f(r.get("saved_tensors_mb"), ".0f"),
                _f(r.get("saved_vs_full"), ".2f"),
                _gflops(r),
                _f(r.get("flops_vs_full"), ".2f"),
                str(r.get("branches_run", "-")),
                str(r.get("ops_run", "-")),
                f"{r['live_nodes']}/{r['searchable_nodes']}" if "live_nodes" in r else "-",
            ]
        )
    return head, body


def sweep_table(rows: list[dict[str, Any]], variants: list[str]) -> tuple[list[str], list[list[str]]]:
    by = {(r["layers"], r["variant"]): r for r in rows}
    head = ["L", "connections 8L(L+1)"]
    for v in variants:
        head += [f"{v} step (s)", f"{v} mem (MB)", f"{v} fwd GFLOP", f"{v} branches"]
    compare = FULL in variants and len(variants) > 1
    others = [v for v in variants if v != FULL]
    if compare:
        for v in others:
            head += [f"{v} speed-up", f"{v} mem / full"]
    body = []
    for layers in sorted({r["layers"] for r in rows}):
        line = [str(layers), str(8 * layers * (layers + 1))]
        for v in variants:
            r = by.get((layers, v), {"error": "not run"})
            if "error" in r:
                line += ["error: " + r["error"][:60], "", "", ""]
            else:
                line += [_f(r["step_s"], ".3f"), _f(peak_growth_mb(r), ".0f"), _f(r.get("fwd_gflops"), ".1f"), str(r.get("branches_run", "-"))]
        if compare:
            for v in others:
                r = by.get((layers, v), {})
                line += [_f(r.get("speedup_vs_full"), ".2f") + "x", _f(r.get("mem_vs_full"), ".2f")]
        body.append(line)
    return head, body


def print_table(title: str, head: list[str], body: list[list[str]], markdown: bool) -> None:
    if markdown:
        print(f"\n**{title}**\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for line in body:
            print("| " + " | ".join(c.replace("|", "/") for c in line) + " |")
        return
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(l[i]) for l in body)) for i, h in enumerate(head)]
        print(f"\n{title}")
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for line in body:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
        return
    from rich.markup import escape

    table = Table(title=escape(title), show_lines=False)
    for i, h in enumerate(head):
        table.add_column(escape(h), justify="left" if i < 3 else "right")
    for line in body:
        table.add_row(*(escape(c) for c in line))
    Console(width=max(200, len(" ".join(head)) + 40)).print(table)


def parse_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=8, help="L of the DCSS for the variant table (default 8)")
    p.add_argument("--channels", type=int, default=16, help="F, the width at 1/4 (default 16)")
    p.add_argument("--size", type=int, default=128, help="square image size (default 128)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="timed search steps per variant (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed search steps first")
    p.add_argument("--variants", default=None, help="comma-separated variants ('' for none); default: all of VARIANTS and every other registered strategy")
    p.add_argument("--depths", default="4,6,8,10,12,14", help="L values of the depth sweep ('' for none)")
    p.add_argument("--sweep-variants", default=",".join(SWEEP_VARIANTS))
    p.add_argument("--sweep-channels", type=int, default=None, help="F of the depth sweep (default: --channels)")
    p.add_argument("--sweep-size", type=int, default=None, help="image size of the depth sweep (default: --size)")
    p.add_argument("--sweep-steps", type=int, default=None, help="timed steps per sweep point (default: --steps)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker before it is reported as timed out")
    p.add_argument("--no-probe", dest="probe", action="store_false", help="skip the extra forward that counts branches, ops and saved activations")
    p.add_argument("--json", default=None, help="write settings and every row here")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default=FULL, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)

    variants = default_variants() if args.variants is None else parse_list(args.variants)
    depths = [int(d) for d in parse_list(args.depths)]
    sweep_variants = parse_list(args.sweep_variants)
    sc = args.sweep_channels or args.channels
    ss = args.sweep_size or args.size
    st = args.sweep_steps or args.steps

    rows: list[dict[str, Any]] = []
    for v in variants:
        r = run_worker(v, args, args.layers, args.channels, args.size, args.steps)
        rows.append(r)
        print(f"  {v:24s} " + (f"error: {r['error']}" if "error" in r else f"{r['step_s']:.3f} s/step  peak +{peak_growth_mb(r):.0f} MB"), file=sys.stderr, flush=True)
    add_ratios(rows, next((r for r in rows if r["variant"] == FULL), None))

    sweep: list[dict[str, Any]] = []
    for layers in depths:
        point = []
        for v in sweep_variants:
            r = run_worker(v, args, layers, sc, ss, st)
            point.append(r)
            print(f"  L={layers:<3d} {v:18s} " + (f"error: {r['error']}" if "error" in r else f"{r['step_s']:.3f} s/step  peak +{peak_growth_mb(r):.0f} MB"), file=sys.stderr, flush=True)
        add_ratios(point, next((r for r in point if r["variant"] == FULL), None))
        sweep += point

    if rows:
        print_table(
            f"One search step (arch + weight) on DCSS L={args.layers}, F={args.channels}, {args.size}x{args.size}, batch {args.batch}, {args.device}, {args.threads} threads; median of {args.steps}",
            *variant_table(rows),
            args.markdown,
        )
    if sweep:
        print_table(f"Depth sweep: F={sc}, {ss}x{ss}, batch {args.batch}, {args.device}; median of {st}", *sweep_table(sweep, sweep_variants), args.markdown)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("worker", "variant")}
        Path(args.json).write_text(json.dumps({"settings": settings, "variants": rows, "sweep": sweep}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
