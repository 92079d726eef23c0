"""Peer comparison: one search step of archgraph against Microsoft NNI 3.0's one-shot supermodules.

Both sides search **the same network**: the DCSS supernet graph that archgraph builds, with every
module taken from archgraph's own op registry (``archgraph.core.ops``: the stem's and the fusion
nodes' shape-alignment branches from ``build_alignment``, the MobileNetV3 candidates from
``build_op``, the multi-scale head). On the NNI side the choice points of that graph are NNI's own
primitives, ``nni.nas.nn.pytorch.LayerChoice`` (the op choice of a node) and ``InputChoice`` (its
input choice, ``n_chosen`` = the graph's ``keep_inputs``, reduction ``sum``), inside an NNI
``ModelSpace``; NNI's one-shot strategies then turn that space into their supernet with their own
mutation hooks (``nni.nas.oneshot.pytorch.strategy.DARTS`` / ``Proxyless``, whose modules are
``supermodule.differentiable.DifferentiableMixedLayer/Input`` and
``supermodule.proxyless.ProxylessMixedLayer/Input``). So only the search mechanics differ:

- NNI DARTS: every candidate input aligned and softmax-weighted, every op softmax-weighted;
- archgraph ``darts`` (the full relaxation): the same computation by archgraph's compiler;
- NNI ProxylessNAS: one op and one input sampled per choice (binary gates), but an ``InputChoice``
  receives the list of candidate tensors, so every alignment branch of every node still runs, and the
  binary-gate gradient re-runs every other candidate op in the backward pass (NNI's
  ``_ProxylessFunction``);
- archgraph ``dcnas``: n=4 paths drawn per node (only their branches run) and 1/4 of the channels
  through the op mixture (the strategy's defaults).

Batch norms at choice points have no affine weights on both sides (archgraph's search networks'
default, ``search.affine_bn``). The forward GFLOPs of every configuration are reported
(``torch.utils.flop_counter``): NNI DARTS and archgraph's full relaxation compute everything, so
their GFLOPs (and weight counts) must agree, which shows the networks are the same.

**One step** = what a weight step of a search does: (resample, for NNI,) forward, cross-entropy,
backward with the architecture parameters requiring gradients (so their gradients are computed:
ProxylessNAS's binary-gate gradients included), gradient clipping at ``search.grad_clip``, SGD on the
weights (``search.w_lr``, momentum, weight decay). archgraph's side runs exactly
``strategy.search_step`` without an architecture optimiser, the search loop's own code path, so
whatever a strategy does per step (drawing a step's choices before the forward pass, pruning the plan)
is measured as the search would run it. ``--step search`` measures a whole bi-level step instead
(architecture step on a second batch with Adam, then the weight step) on both sides, as NNI's
``DartsLightningModule.training_step`` and archgraph's ``search_step`` run it.

Time: the median over ``--steps`` steps after ``--warmup`` untimed ones, in **CPU seconds** of the
worker by default (``time.process_time``; with one torch thread that is the work of the step, which
other jobs sharing the machine barely change, whereas wall time there depends on how much of a core
the worker got); ``--clock wall`` reports elapsed time instead. Both are in the JSON.

Memory: **net MiB** = peak RSS of the worker (``VmHWM``, reset after the imports) minus its RSS after
the imports (``peak_rss_growth_mb`` of :class:`archgraph.core.measure.MemoryWindow`): the network, optimiser state, batches and the step's activations. "After the imports"
includes one thrown-away step of a 1-layer, 2-channel network of the same configuration, so lazy
imports and torch's one-time set-up (oneDNN, the thread pool) are not counted as the network's. Every configuration
runs in a fresh subprocess (this file with ``--worker``), so peaks never mix.

Usage (both packages must be importable by the interpreter that runs this; NNI in its own venv, see
benchmarks/README.md, section "Peer comparison: NNI 3.0")::

    /work/nni-venv/bin/python benchmarks/peer_nni.py --layers 4,8,12 --markdown
    python benchmarks/peer_nni.py --layers 2 --channels 4 --size 32 --batch 2 --steps 1 --warmup 0   # no NNI: our columns only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from search_cost import print_table, worker_result  # noqa: E402  (a sibling script)

MARKER = "@@peer_nni@@ "
NUM_CLASSES = 19
# name -> (side, algorithm); the table's column order
CONFIGS: dict[str, tuple[str, str]] = {
    "nni-darts": ("nni", "darts"),
    "ag-darts": ("archgraph", "darts"),
    "nni-proxyless": ("nni", "proxyless"),
    "ag-dcnas": ("archgraph", "dcnas"),
}
INSTALL_NNI = (
    "NNI is not installed for this interpreter, so only archgraph's columns were measured. To compare, "
    "install NNI 3.0 in a venv of its own and archgraph into it, then run this script with that venv's python:\n"
    "  python3 -m venv /work/nni-venv && . /work/nni-venv/bin/activate && pip install torch=={torch} && pip install nni\n"
    '  pip install --no-deps "pytorch-lightning<2" "torchmetrics<1" lightning-utilities && pip install "setuptools<70"\n'
    "  pip install -e {root} --no-deps && pip install networkx numpy pyyaml graphviz rich Pillow matplotlib scipy\n"
    "  /work/nni-venv/bin/python benchmarks/peer_nni.py"
)


# --------------------------------------------------------------------------------------------------
# Provenance


def nni_version() -> str | None:
    """NNI's version if this interpreter has it installed, else ``None`` (not imported here: slow)."""
    try:
        return metadata.version("nni")
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str:
    """The archgraph commit measured, with ``+dirty (files)`` when the checkout has uncommitted changes
    to tracked files (another engineer's work in progress changes what is measured)."""

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout

    try:
        commit = git("rev-parse", "--short=12", "HEAD").strip()
        dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if len(line) > 3]
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    if not commit:
        return "unknown (not a git checkout)"
    return commit + (f" +dirty ({', '.join(dirty[:6])}{', ...' if len(dirty) > 6 else ''})" if dirty else "")


# --------------------------------------------------------------------------------------------------
# The NNI side: archgraph's graph and modules, NNI's choice primitives and one-shot supermodules


class GraphNode(nn.Module):
    """One graph node on the NNI side: align every input, combine them (sum, or the node's
    ``InputChoice``), run the op (or the node's ``LayerChoice``); a head gets the raw list."""

    def __init__(self, branches: list[nn.Module], combine: nn.Module | None, op: nn.Module, takes_list: bool):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.combine = combine
        self.op = op
        self.takes_list = takes_list

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if self.takes_list:
            return self.op(xs)
        aligned = [b(x) for b, x in zip(self.branches, xs)]
        if self.combine is not None:
            return self.op(self.combine(aligned))
        out = aligned[0]
        for a in aligned[1:]:
            out = out + a
        return self.op(out)


def _nni_node(graph, n: str, affine_bn: bool) -> GraphNode:
    """Node ``n`` built from archgraph's registry for the same specs as archgraph's compiler uses,
    with NNI's choice primitives at its choice points."""
    from nni.nas.nn.pytorch import InputChoice, LayerChoice

    from archgraph.core.compile import drop_bn_affine
    from archgraph.core.graph import inputs_of, node_spec
    from archgraph.core.ops import build_alignment, build_op, get_op

    spec, preds = node_spec(graph, n), inputs_of(graph, n)
    in_specs = [node_spec(graph, p) for p in preds]
    if get_op(spec.ops[0]).takes_list:
        return GraphNode([], None, build_op(spec.ops[0], spec, in_specs), True)
    branches = [build_alignment(ps, spec) for ps in in_specs]
    ops = {name: build_op(name, spec, in_specs) for name in spec.ops}
    if (len(ops) > 1 or spec.has_input_choice) and not affine_bn:  # as compile_graph(choice_bn_affine=False)
        for m in [*(ops.values() if len(ops) > 1 else ()), *branches]:
            drop_bn_affine(m)
    op = LayerChoice(ops, label=f"{n}_ops") if len(ops) > 1 else next(iter(ops.values()))
    combine = InputChoice(len(preds), n_chosen=spec.keep_inputs, reduction="sum", label=f"{n}_inputs") if spec.has_input_choice else None
    return GraphNode(branches, combine, op, False)


def build_nni_supernet(graph, algorithm: str, affine_bn: bool):
    """NNI ``ModelSpace`` mirroring ``graph`` node by node, mutated by NNI's own one-shot strategy.

    An op choice becomes a ``LayerChoice`` over archgraph's candidate modules, an input choice an
    ``InputChoice`` over the node's aligned inputs; ``algorithm``: ``darts`` | ``proxyless``.
    Raises if NNI left a choice point unmutated (its dry-run forward would run one candidate only).
    """
    from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace
    from nni.nas.oneshot.pytorch.strategy import DARTS, Proxyless
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    from archgraph.core.graph import execution_order, input_node, inputs_of

    class GraphSpace(ModelSpace):
        """The graph's nodes in execution order; feature maps dropped after their last reader."""

        def __init__(self):
            super().__init__()
            order = execution_order(graph)
            self.input_name = input_node(graph)
            self.nodes = nn.ModuleDict({n: _nni_node(graph, n, affine_bn) for n in order if n != self.input_name})
            last = {p: n for n in order for p in inputs_of(graph, n)}
            self.plan = [(n, inputs_of(graph, n), [p for p in inputs_of(graph, n) if last[p] == n]) for n in order if n != self.input_name]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values = {self.input_name: x}
            out = x
            for n, preds, free in self.plan:
                out = self.nodes[n]([values[p] for p in preds])
                for p in free:
                    del values[p]
                values[n] = out
            return out

    space = GraphSpace()
    choices = sum(isinstance(m, (LayerChoice, InputChoice)) for m in space.modules())
    supernet = (DARTS() if algorithm == "darts" else Proxyless()).mutate_model(space)
    mutated = sum(isinstance(m, BaseSuperNetModule) for m in supernet.modules())
    if mutated != choices:
        raise RuntimeError(f"NNI {algorithm}: {mutated} of {choices} choice points became supermodules; this NNI version mutates differently")
    return supernet


def nni_arch_parameters(model) -> list:
    """The architecture parameters of NNI's supermodules (as ``DartsLightningModule.arch_parameters``)."""
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    params = {}
    for m in model.modules():
        if isinstance(m, BaseSuperNetModule) and hasattr(m, "arch_parameters"):
            params.update({id(p): p for p in m.arch_parameters()})
    return list(params.values())


def nni_resample(model) -> dict:
    """One draw for every supermodule with a shared memo (``BaseOneShotLightningModule.resample``)."""
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    memo: dict = {}
    for m in model.modules():
        if isinstance(m, BaseSuperNetModule):
            memo.update(m.resample(memo=memo))
    return memo


# --------------------------------------------------------------------------------------------------
# One configuration, measured in this (fresh) process


def _archgraph_strategy(name: str, graph, seed: int):
    from archgraph.config import SearchConfig
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy

    info = get_strategy(name)
    return info.cls(graph, dataclass_from_dict(info.params, {}, "strategy"), SearchConfig(), seed)  # its stage: StrategyDriver.begin_stage


def _build(side: str, algorithm: str, graph, args: argparse.Namespace):
    """(model, step function(i, total, batch_w, batch_a), weight parameters, architecture parameters)."""
    import torch.nn.functional as F

    from archgraph.engine.driver import StrategyDriver, weight_optimizer

    darts = _archgraph_strategy("darts", graph, args.seed)  # the shared search settings and BN rule
    search = darts.search
    if side == "archgraph":
        strategy = darts if algorithm == "darts" else _archgraph_strategy(algorithm, graph, args.seed)
        driver = StrategyDriver(strategy, search)  # the search's own driver
        stage = driver.begin_stage(0)
        net = stage.net.train()
        driver.begin_epoch(stage, strategy.warmup_epochs())  # the first architecture epoch
        if args.step != "search":  # weight steps only: the strategy's step without an architecture optimiser
            stage.a_opt = None

        def step(i: int, total: int, batch_w, batch_a) -> None:
            stage.steps = total  # what the step hook is told
            driver.step(stage, i, batch_w, batch_a)

        return net, step, list(net.weight_parameters()), list(net.arch_parameters())

    model = build_nni_supernet(graph, algorithm, darts.affine_bn()).train()
    arch = nni_arch_parameters(model)
    arch_ids = {id(p) for p in arch}
    weights = [p for p in model.parameters() if id(p) not in arch_ids]
    w_opt = weight_optimizer(weights, search)  # the same weight optimiser as archgraph's side
    # NNI DARTS's architecture optimiser (DartsLightningModule.configure_architecture_optimizers)
    a_opt = torch.optim.Adam(arch, 3e-4, betas=(0.5, 0.999), weight_decay=1e-3) if args.step == "search" else None

    def step(i: int, total: int, batch_w, batch_a) -> None:
        if a_opt is not None:  # phase 1 of DartsLightningModule.training_step
            nni_resample(model)
            a_opt.zero_grad()
            F.cross_entropy(model(batch_a[0]), batch_a[1]).backward()
            a_opt.step()
        nni_resample(model)  # phase 2: the weight step
        w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch_w[0]), batch_w[1]).backward()
        if search.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(weights, search.grad_clip)
        w_opt.step()
        for p in arch:
            p.grad = None

    return model, step, weights, arch


def _forward_gflops(model, x) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


def _warm_up(side: str, algorithm: str, args: argparse.Namespace) -> None:
    """One step of a 1-layer, 2-channel network at 64x64, thrown away: the lazy imports and torch's
    one-time initialisation (oneDNN, thread pool) of this side happen before the baseline is taken."""

    from archgraph.core.spaces_api import build_space

    graph = build_space("dcss", {"layers": 1, "base_channels": 2, "num_classes": NUM_CLASSES})
    model, step, _, _ = _build(side, algorithm, graph, args)
    tiny = (torch.randn(2, 3, 64, 64), torch.randint(0, NUM_CLASSES, (2, 64, 64)))
    step(0, 1, tiny, tiny)
    del model, step
    gc.collect()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build one configuration, time ``--steps`` steps after ``--warmup``, report time, memory, GFLOPs."""

    side, algorithm = CONFIGS[args.config]
    if side == "nni":
        with warnings.catch_warnings():  # NNI 3.0 warns about classes of newer torch versions it does not know
            warnings.simplefilter("ignore")
            import nni.nas.oneshot.pytorch.strategy  # noqa: F401
    from archgraph.core.measure import MemoryWindow, Timer
    from archgraph.core.spaces_api import build_space

    torch.set_num_threads(args.threads)
    _warm_up(side, algorithm, args)
    window = MemoryWindow("cpu").open()
    if not window.windowed:
        raise RuntimeError("this kernel does not allow resetting VmHWM (/proc/self/clear_refs): net MiB cannot be measured")
    torch.manual_seed(args.seed)
    graph = build_space("dcss", {"layers": args.layer, "base_channels": args.channels, "num_classes": NUM_CLASSES})
    model, step, weights, arch = _build(side, algorithm, graph, args)

    def batch():
        return torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, NUM_CLASSES, (args.batch, args.size, args.size))

    batch_w, batch_a = batch(), batch()
    total = args.warmup + args.steps
    wall, cpu = [], []
    for i in range(total):
        clock, c0 = Timer(), time.process_time()  # wall clock, and the CPU seconds this process used (--clock cpu)
        step(i, total, batch_w, batch_a)
        if i >= args.warmup:
            wall.append(clock.read())
            cpu.append(time.process_time() - c0)
    window.close()
    times = cpu if args.clock == "cpu" else wall
    return {
        "config": args.config,
        "side": side,
        "algorithm": algorithm,
        "layers": args.layer,
        "step": args.step,
        "clock": args.clock,
        "step_s": statistics.median(times),
        "wall_s": statistics.median(wall),
        "cpu_s": statistics.median(cpu),
        "wall_s_all": wall,
        "cpu_s_all": cpu,
        "net_mib": window.growth_mb,
        "rss_after_imports_mib": window.baseline_mb,
        "weights_m": sum(p.numel() for p in weights) / 1e6,
        "arch_params": sum(p.numel() for p in arch),
        "fwd_gflops": _forward_gflops(model, batch_w[0]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def worker_main(args: argparse.Namespace) -> int:
    try:
        result, code = measure(args), 0
    except Exception as exc:  # reported in the table; the parent goes on with the next configuration
        result, code = {"config": args.config, "layers": args.layer, "error": f"{type(exc).__name__}: {exc}".strip()[:400]}, 1
    print(MARKER + json.dumps(result), flush=True)
    return code


# --------------------------------------------------------------------------------------------------
# Parent: one subprocess per (L, configuration), side by side


def run_worker(config: str, layers: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--config",
        config,
        "--layer",
        str(layers),
        "--channels",
        str(args.channels),
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        "--step",
        args.step,
        "--clock",
        args.clock,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    return worker_result(cmd, MARKER, env, args.timeout, {"config": config, "layers": layers})


def _cell(r: dict[str, Any] | None, mem: bool) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "error: " + r["error"][:60]
    return f"{r['step_s']:.2f}" + (f" / {r['net_mib']:.0f}" if mem else "")


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> str:
    """a[key] / b[key], or '-' when either is missing."""
    if not a or not b or "error" in a or "error" in b or not b.get(key):
        return "-"
    return f"{a[key] / b[key]:.2f}x"


def step_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The issue's table plus the three ratios its targets are stated in."""
    by = {(r["layers"], r["config"]): r for r in rows}
    head = [
        "L",
        "NNI DARTS s",
        "archgraph full relaxation s",
        "NNI ProxylessNAS s / net MiB",
        "archgraph DCNAS s / net MiB",
        "full / NNI DARTS (time)",
        "DCNAS speed-up vs NNI Proxyless",
        "DCNAS mem / NNI Proxyless mem",
    ]
    body = []
    for layers in sorted({r["layers"] for r in rows}):
        g = lambda c: by.get((layers, c))  # noqa: E731
        body.append(
            [
                str(layers),
                _cell(g("nni-darts"), False),
                _cell(g("ag-darts"), False),
                _cell(g("nni-proxyless"), True),
                _cell(g("ag-dcnas"), True),
                _ratio(g("ag-darts"), g("nni-darts"), "step_s"),
                _ratio(g("nni-proxyless"), g("ag-dcnas"), "step_s"),
                _ratio(g("ag-dcnas"), g("nni-proxyless"), "net_mib"),
            ]
        )
    return head, body


def cost_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Forward GFLOPs and weights per configuration: the two DARTS columns must agree (same network)."""
    by = {(r["layers"], r["config"]): r for r in rows}
    configs = [c for c in CONFIGS if any(r["config"] == c for r in rows)]
    head = ["L"] + [f"{c} fwd GFLOP / weights M" for c in configs] + ["full GFLOP / NNI DARTS GFLOP"]
    body = []
    for layers in sorted({r["layers"] for r in rows}):
        line = [str(layers)]
        for c in configs:
            r = by.get((layers, c))
            line.append("-" if r is None or "error" in r else f"{r['fwd_gflops']:.2f} / {r['weights_m']:.3f}")
        line.append(_ratio(by.get((layers, "ag-darts")), by.get((layers, "nni-darts")), "fwd_gflops"))
        body.append(line)
    return head, body


def parse_layers(text: str) -> list[int]:
    try:
        layers = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--layers {text!r}: expected comma-separated integers such as 4,8,12") from None
    if not layers or min(layers) < 1:
        raise SystemExit(f"--layers {text!r}: give one or more depths >= 1, e.g. 4,8,12")
    return layers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", default="4,8,12", help="depths L to measure (default 4,8,12)")
    p.add_argument("--channels", type=int, default=16, help="F, the width at 1/4 (default 16)")
    p.add_argument("--size", type=int, default=128, help="square image size, a multiple of 32 (default 128)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--step", choices=("weight", "search"), default="weight", help="weight: one forward+backward+SGD step (the issue's); search: architecture step + weight step")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="cpu (default): the worker's CPU time per step, which other jobs on a shared machine barely change with one thread; wall: elapsed time"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-nni", action="store_true", help="measure archgraph's columns only even if NNI is installed")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker before it is reported as timed out")
    p.add_argument("--json", default=None, help="write settings and every row here")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", default="ag-dcnas", choices=tuple(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--layer", type=int, default=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size % 32:
        raise SystemExit(f"--size {args.size}: use a multiple of 32 (DCSS's coarsest scale is 1/32; the NNI side does not pad)")
    if args.size == 32 and args.batch == 1:
        raise SystemExit("--size 32 --batch 1: the 1/32 feature map is then one value per channel, which batch norm cannot train on; use --batch 2 or --size 64")
    if args.worker:
        return worker_main(args)

    from archgraph.core.measure import Timer

    layers = parse_layers(args.layers)
    nni = None if args.no_nni else nni_version()
    configs = [c for c, (side, _) in CONFIGS.items() if nni or side == "archgraph"]
    commit = git_commit()

    settings = f"F={args.channels}, {args.size}x{args.size}, batch {args.batch}, {args.threads} thread(s), step={args.step}, {args.clock} seconds, median of {args.steps} after {args.warmup} warm-up"
    print(f"archgraph commit {commit}; torch {torch.__version__}; NNI {nni or 'not installed'}; {settings}", flush=True)
    if not nni:
        print(("NNI columns skipped (--no-nni)." if args.no_nni else INSTALL_NNI.format(torch=torch.__version__.split("+")[0], root=ROOT)), flush=True)
    rows, clock = [], Timer()
    for L in layers:
        for c in configs:
            r = run_worker(c, L, args)
            rows.append(r)
            print(
                f"  L={L:<3d} {c:14s} " + (f"error: {r['error']}" if "error" in r else f"{r['step_s']:.3f} s/step ({r['wall_s']:.3f} wall)  net {r['net_mib']:.0f} MiB  {r['fwd_gflops']:.2f} GFLOP"),
                file=sys.stderr,
                flush=True,
            )
    wall = clock.read()
    print_table(f"One step on DCSS ({settings}); archgraph {commit}", *step_table(rows), args.markdown)
    print_table("Forward GFLOPs and weights (the DARTS columns compute the whole supernet: equal GFLOPs = the same network)", *cost_table(rows), args.markdown)
    print(f"\nmeasured in {wall:.0f} s", flush=True)
    if args.json:
        meta = {"commit": commit, "nni": nni, "torch": torch.__version__, "wall_s": wall, **{k: v for k, v in vars(args).items() if k not in ("worker", "config", "layer")}}
        Path(args.json).write_text(json.dumps({"settings": meta, "rows": rows}, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
