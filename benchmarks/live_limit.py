"""How far a DCNAS search step is from the least it could cost (live-subgraph execution).

One step = forward + cross-entropy + backward (weights and alpha/beta receive gradients) + the
search's SGD on the weights (``search.w_*``), on DCSS (``--channels`` F, ``--size`` square images,
``--batch``), one thread by default.
Per depth L (each depth in a fresh process when several are asked for, so one depth's allocator
high-water mark never carries into the next), the variants side by side in that process (the
machine is shared and noisy: ratios, not absolute times, are the result), for ``--draws`` draws of
DCNAS's path sampling:

- ``pruned``: the DCNAS supernet as a search runs it: only the draw's live subgraph (the nodes on a
  path to the head through drawn inputs). The plan cache is cleared before every timed step, so the
  liveness sweep is paid each time, as early in a search when draws never repeat;
- ``unpruned``: the same supernet and draw with ``net.prune_dead = False`` (every node runs);
- ``limit``: the same draw's live subnet compiled as a network of fixed topology: only the live
  nodes, each with exactly its drawn inputs (an input choice that keeps all of them, so they are
  blended with softmax(beta) as in the step) and its candidate ops (DCNAS's partial-channel op
  mixture): the computation the pruned step must do, without dead nodes, liveness or plan: the least
  that step can cost;
- ``fixed``: the same live subnet with the drawn inputs as fixed edges, summed (no beta blend, beta
  gets no gradient): a looser lower bound, what a derived-style network of that topology costs;
- ``full``: the full relaxation (strategy ``darts``: every input, every op, all channels).

Each variant's step is timed ``--reps`` times (after one untimed step), variants interleaved; the
median is reported. Memory is ``saved_tensors_mb`` (:class:`archgraph.core.measure.SavedTensors`): the
bytes of the distinct tensors autograd saves for backward in one forward pass (parameters excluded),
allocator-independent, and what pruning changes.

The second part runs archgraph's own search loop (``run_search``: DCSS ``--search-layers`` on the
synthetic dataset) for ``--search-epochs`` epochs and reads DCNAS's ``live_fraction`` per epoch from
``search.jsonl``: the mean share of fusion nodes on a path to the head in the epoch's weight-step
draws, which falls as beta sharpens (``--search-arch-lr``, 0.1 by default, ten times the search's
default, so that beta moves at all in a few short epochs).

    python benchmarks/live_limit.py --markdown                 # L = 4..14, then the search
    python benchmarks/live_limit.py --quick                    # a smoke run: tiny settings, L = 2
    python benchmarks/live_limit.py --depths 8 --search-epochs 0 --json live.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import networkx as nx  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from archgraph.config import SearchConfig  # noqa: E402
from archgraph.core.compile import CompiledNetwork  # noqa: E402
from archgraph.core.measure import SavedTensors, Timer  # noqa: E402
from archgraph.core.registry import get_strategy  # noqa: E402
from archgraph.core.spaces_api import build_space  # noqa: E402
from archgraph.engine.driver import StrategyDriver, weight_optimizer  # noqa: E402

NUM_CLASSES = 19
VARIANTS = ("pruned", "unpruned", "limit", "fixed", "full")


# --------------------------------------------------------------------------------------------------
# Networks


def dcnas_supernet(graph: nx.DiGraph, seed: int):
    info = get_strategy("dcnas")
    strategy = info.cls(graph, info.params(), SearchConfig(), seed)
    driver = StrategyDriver(strategy, strategy.search)  # the search's own driver
    stage = driver.begin_stage(0)
    driver.begin_epoch(stage, strategy.warmup_epochs())  # the first architecture epoch: tau_max, early search
    return strategy, stage.net.train()


def full_supernet(graph: nx.DiGraph, seed: int) -> CompiledNetwork:
    info = get_strategy("darts")
    strategy = info.cls(graph, info.params(), SearchConfig(), seed)
    strategy.begin_stage(0, None)
    return strategy.build_supernet().train()


def draw_of(net: CompiledNetwork) -> tuple[Any, dict[str, list[int]]]:
    """The generator state before the next draw, and the inputs that draw computes (state restored)."""
    relax = net.relaxation
    state = relax.generator.get_state()
    computed = relax.draw_pass(net._choice_order, net.arch, True)
    relax.end_pass()
    relax.generator.set_state(state)
    return state, {k: list(v) for k, v in computed.items()}


def live_subnet_graph(graph: nx.DiGraph, net: CompiledNetwork, computed: dict[str, list[int]], blend: bool) -> nx.DiGraph:
    """The draw's live subgraph as a graph of fixed topology: live nodes, drawn edges only, candidate
    ops kept. ``blend``: the drawn edges stay an input choice keeping all of them (DCNAS then draws
    every one and blends them with softmax(beta), as the step does); else they are fixed, summed."""
    plan = net._live_planner.plan_for(computed)
    keep = {net.input_name} | {s.node for s in plan.steps}
    sub = graph.subgraph([n for n in graph.nodes if n in keep]).copy()
    for c in net.choices.inputs:
        if c.node not in keep:
            continue
        drawn = {c.candidates[j] for j in computed[c.node]}
        sub.remove_edges_from([(u, c.node) for u in c.candidates if u not in drawn and sub.has_edge(u, c.node)])
        sub.nodes[c.node].pop("label", None)
        if blend:
            sub.nodes[c.node]["keep_inputs"] = len(drawn)
        else:
            sub.nodes[c.node].pop("keep_inputs", None)
            for u in drawn:
                sub.edges[u, c.node]["kind"] = "fixed"
    return sub


def limit_network(graph: nx.DiGraph, net: CompiledNetwork, computed: dict[str, list[int]], seed: int, blend: bool) -> CompiledNetwork:
    info = get_strategy("dcnas")
    strategy = info.cls(live_subnet_graph(graph, net, computed, blend), info.params(), SearchConfig(), seed)
    strategy.begin_stage(0, None)
    limit = strategy.build_supernet().train()
    limit.prune_dead = False  # every node is live: a fixed topology, no plan to derive
    return limit


# --------------------------------------------------------------------------------------------------
# Measurements


def one_step(net: CompiledNetwork, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    for p in net.arch_parameters():
        p.grad = None
    F.cross_entropy(net(x), y).backward()
    opt.step()


def saved_tensors_mb(net: CompiledNetwork, x: torch.Tensor, before: Callable[[], None]) -> float:
    """MB of the distinct tensors autograd saves for backward in one forward pass (no parameters)."""
    before()
    with SavedTensors(net) as saved:
        out = net(x)
    del out
    return saved.mb


def measure_depth(layers: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    graph = build_space("dcss", {"layers": layers, "base_channels": args.channels, "num_classes": NUM_CLASSES})
    strategy, net = dcnas_supernet(graph, args.seed)
    full = full_supernet(graph, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (args.batch, args.size, args.size), generator=gen)
    rows = []
    for d in range(args.draws):
        gc.collect()
        state, computed = draw_of(net)
        nets = {"pruned": net, "unpruned": net, "limit": limit_network(graph, net, computed, args.seed, True), "fixed": limit_network(graph, net, computed, args.seed, False), "full": full}
        opts = {k: weight_optimizer(n.weight_parameters(), SearchConfig()) for k, n in nets.items()}  # the search's weight optimiser

        def prepare(variant: str) -> None:
            if variant in ("pruned", "unpruned"):
                net.prune_dead = variant == "pruned"
                net.relaxation.generator.set_state(state)  # the same draw every time
                net._live_planner._cache.clear()  # pay the liveness sweep, as a search does

        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for rep in range(args.reps + 1):
            for v in VARIANTS:
                prepare(v)
                clock = Timer()  # one thread on the CPU: the wall clock is the step
                one_step(nets[v], opts[v], x, y)
                if rep:  # the first round is untimed (first-touch allocations, kernel selection)
                    times[v].append(clock.read())
        mem = {}
        for v in VARIANTS:
            mem[v] = saved_tensors_mb(nets[v], x, lambda v=v: prepare(v))
        prepare("pruned")
        net(x[:2])  # the live counts of this draw
        plan = net.live_plan
        step = {v: statistics.median(t) for v, t in times.items()}
        rows.append(
            {
                "layers": layers,
                "draw": d,
                "live_fusion": plan.live_searchable,
                "fusion": plan.total_searchable,
                "live_fraction": plan.fraction,
                **{f"{v}_s": step[v] for v in VARIANTS},
                **{f"{v}_s_all": times[v] for v in VARIANTS},
                **{f"{v}_saved_tensors_mb": mem[v] for v in VARIANTS},
                "vs_limit": step["pruned"] / step["limit"],
                "vs_fixed": step["pruned"] / step["fixed"],
                "unpruned_vs_pruned": step["unpruned"] / step["pruned"],
                "full_vs_pruned": step["full"] / step["pruned"],
                "mem_vs_unpruned": mem["pruned"] / mem["unpruned"],
                "mem_vs_full": mem["pruned"] / mem["full"],
            }
        )
        print(
            f"L={layers} draw {d}: live {plan.live_searchable}/{plan.total_searchable}, pruned {step['pruned']:.3f}s, "
            f"limit {step['limit']:.3f}s ({rows[-1]['vs_limit']:.3f}x), unpruned {step['unpruned']:.3f}s, full {step['full']:.3f}s",
            flush=True,
        )
    return rows


def search_live_fraction(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run archgraph's search loop and read DCNAS's live_fraction per epoch from search.jsonl."""
    from archgraph.config import load_config
    from archgraph.engine.search import run_search

    overrides = [
        "strategy.name=dcnas",
        f"space.layers={args.search_layers}",
        f"space.base_channels={args.search_channels}",
        f"data.crop=[{args.search_size},{args.search_size}]",
        "data.batch_size=2",
        f"data.num_samples={args.search_samples}",
        "data.val_limit=2",
        f"search.epochs={args.search_epochs}",
        "search.warmup_epochs=0",
        f"search.steps_per_epoch={args.search_steps}",
        "search.bn_recalib_batches=1",
        f"search.arch_lr={args.search_arch_lr}",
        f"seed={args.seed}",
    ]
    cfg = load_config(None, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_search(cfg, Path(tmp) / "run", progress=False)
        records = [json.loads(line) for line in (Path(tmp) / "run" / "search.jsonl").read_text().splitlines() if line.strip()]
    rows = []
    for r in records:
        if "live_fraction" in r:
            rows.append({"epoch": r.get("epoch"), "tau": r.get("tau"), "live_fraction": r["live_fraction"], "entropy_beta": r.get("entropy_beta")})
    return rows


# --------------------------------------------------------------------------------------------------
# Report


def run_live_fraction(run_dir: Path, draws: int) -> dict[str, Any]:
    """The live fraction of a finished DCNAS search folder's draws at its first and its last epoch:
    the supernet rebuilt from its config, beta as initialised (same seed) with tau_max, and beta from
    its checkpoint with the temperature the last epoch sampled with; ``draws`` weight-step draws each."""
    import yaml

    from archgraph.config import config_from_dict
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space
    from archgraph.engine.checkpoint import load_checkpoint

    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    info = get_strategy(cfg.strategy_name)
    strategy = info.cls(build_space(cfg.space_name, cfg.space_params), dataclass_from_dict(info.params, cfg.strategy_params, "strategy"), cfg.search, cfg.seed)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    net.train()
    state = load_checkpoint(run_dir / "checkpoint.pt", lambda s: None)
    relax = strategy.relaxation

    def mean_fraction(tau: float) -> float:
        relax.tau = tau
        total = 0.0
        for _ in range(draws):
            total += net._live_planner.plan_for(relax.draw_pass(net._choice_order, net.arch, True)).fraction
            relax.end_pass()
        return total / draws

    start = mean_fraction(strategy.params.tau_max)
    net.load_state_dict(state["net"])
    strategy.load_state_dict(state["strategy"])
    end_tau = float(relax.tau)
    end = mean_fraction(end_tau)
    derived = strategy.derive(net)
    kept = sum(1 for n in derived.nodes if derived.nodes[n]["kind"] == "fusion")
    total = sum(1 for n in net.graph.nodes if net.graph.nodes[n]["kind"] == "fusion")
    return {"run": str(run_dir), "epochs": cfg.search.epochs, "tau_start": strategy.params.tau_max, "tau_end": end_tau, "live_start": start, "live_end": end, "derived_share": kept / total}


def depth_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = [
        "L",
        "live fusion nodes",
        "pruned s",
        "limit s",
        "pruned / limit",
        "pruned / fixed",
        "unpruned s",
        "full s",
        "pruned saved (MB)",
        "unpruned saved (MB)",
        "limit saved (MB)",
        "full saved (MB)",
    ]
    body = []
    for L in sorted({r["layers"] for r in rows}):
        rs = [r for r in rows if r["layers"] == L]
        mean = lambda k: statistics.fmean(r[k] for r in rs)
        body.append(
            [
                str(L),
                f"{mean('live_fusion'):.1f} / {rs[0]['fusion']} ({mean('live_fraction'):.0%})",
                f"{mean('pruned_s'):.3f}",
                f"{mean('limit_s'):.3f}",
                f"{mean('vs_limit'):.3f}x",
                f"{mean('vs_fixed'):.3f}x",
                f"{mean('unpruned_s'):.3f} ({mean('unpruned_vs_pruned'):.2f}x)",
                f"{mean('full_s'):.3f} ({mean('full_vs_pruned'):.2f}x)",
                f"{mean('pruned_saved_tensors_mb'):.0f}",
                f"{mean('unpruned_saved_tensors_mb'):.0f} ({1 / mean('mem_vs_unpruned'):.2f}x)",
                f"{mean('limit_saved_tensors_mb'):.0f}",
                f"{mean('full_saved_tensors_mb'):.0f} ({1 / mean('mem_vs_full'):.2f}x)",
            ]
        )
    return head, body


def search_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = ["epoch", "tau", "H(beta)", "live fraction"]
    fmt = lambda v, f: "-" if v is None else format(v, f)
    return head, [[str(r["epoch"]), fmt(r["tau"], ".2f"), fmt(r["entropy_beta"], ".3f"), f"{r['live_fraction']:.3f}"] for r in rows]


def print_table(head: list[str], body: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for row in body:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)] if body else [len(h) for h in head]
    for row in [head, *body]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def depth_in_subprocess(layers: int, argv: list[str]) -> list[dict[str, Any]]:
    """One depth in a fresh process: the allocator's high-water mark of one depth (the full
    relaxation's activations) never carries over to the next, deeper one."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "depth.json"
        rest = [a for i, a in enumerate(argv) if a not in ("--json", "--depths") and (i == 0 or argv[i - 1] not in ("--json", "--depths"))]
        cmd = [sys.executable, str(Path(__file__).resolve()), *rest, "--depths", str(layers), "--search-epochs", "0", "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print("\n".join(l for l in proc.stdout.splitlines() if l.startswith("L=")), flush=True)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"L={layers} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return json.loads(out.read_text())["depths"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", default="4,6,8,10,12,14", help="L values ('' for none)")
    p.add_argument("--channels", type=int, default=16, help="F, the width at 1/4 (default 16)")
    p.add_argument("--size", type=int, default=128, help="square image size (default 128)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--draws", type=int, default=2, help="draws measured per depth (default 2)")
    p.add_argument("--reps", type=int, default=3, help="timed steps per variant and draw (median)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search-layers", type=int, default=8)
    p.add_argument("--search-channels", type=int, default=8)
    p.add_argument("--search-size", type=int, default=64)
    p.add_argument("--search-samples", type=int, default=64)
    p.add_argument("--search-steps", type=int, default=16, help="search steps per epoch")
    p.add_argument("--search-epochs", type=int, default=6, help="epochs of the live-fraction search (0: skip it)")
    p.add_argument("--search-arch-lr", type=float, default=0.1, help="search.arch_lr of that search (default 0.1: beta sharpens within a few short epochs)")
    p.add_argument("--quick", action="store_true", help="smoke run: L=2, F=4, 32x32, batch 2, one draw, one rep, a 1-epoch L=2 search")
    p.add_argument("--json", default=None, help="write settings and every row here")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--runs", nargs="*", default=[], help="finished DCNAS search folders: their live fraction at the first and the last epoch (then nothing else is measured)")
    p.add_argument("--run-draws", type=int, default=200, help="draws averaged per run and epoch (default 200)")
    args = p.parse_args(argv)
    if args.runs:
        found = [run_live_fraction(Path(r), args.run_draws) for r in args.runs]
        head = ["run", "search epochs", "tau first -> last", "live fraction, first epoch", "live fraction, last epoch", "derived architecture's share"]
        body = [[r["run"], str(r["epochs"]), f"{r['tau_start']:g} -> {r['tau_end']:.2f}", f"{r['live_start']:.3f}", f"{r['live_end']:.3f}", f"{r['derived_share']:.3f}"] for r in found]
        print_table(head, body, args.markdown)
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": vars(args), "runs": found}, indent=1))
        return 0
    if args.quick:
        args.depths, args.channels, args.size, args.batch, args.draws, args.reps = "2", 4, 32, 2, 1, 1
        args.search_layers, args.search_channels, args.search_size, args.search_samples, args.search_steps = 2, 4, 32, 8, 2
        args.search_epochs = min(args.search_epochs, 1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    depths = [int(v) for v in args.depths.split(",") if v.strip()]
    rows: list[dict[str, Any]] = []
    for L in depths:
        rows += measure_depth(L, args) if len(depths) == 1 else depth_in_subprocess(L, argv or sys.argv[1:])
        if args.json:  # after every depth: a killed run keeps what it measured
            Path(args.json).write_text(json.dumps({"settings": vars(args), "depths": rows, "search": []}, indent=1))
    search = search_live_fraction(args) if args.search_epochs > 0 else []
    print(f"\nDCNAS step vs its limit: F={args.channels}, {args.size}x{args.size}, batch {args.batch}, {args.threads} thread(s), torch {torch.__version__}")
    if rows:
        print_table(*depth_table(rows), args.markdown)
    if search:
        print(f"\nLive fraction over a search: DCSS L={args.search_layers}, F={args.search_channels}, {args.search_size}x{args.search_size}, synthetic data")
        print_table(*search_table(search), args.markdown)
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "depths": rows, "search": search}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
