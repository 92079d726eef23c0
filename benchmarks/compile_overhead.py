"""What does compiling a graph cost at run time? A compiled DCSS architecture against the same network
written by hand as a plain ``nn.Module``.

The architecture is a fixed, HRNet-like topology of DCSS (every node of layer l takes the node of the
same scale and the next coarser one of layer l-1; the coarsest takes the next finer), with ops
cycling through the six MobileNetV3 blocks. It is derived through the real pipeline (DCSS builder,
hand-set scores, BFS decoder) and compiled by :func:`archgraph.compile_graph`. :class:`HandWritten`
builds the same modules from the same building blocks and runs them with explicit Python: no plan,
no slots, no mixers. Weights are copied across and the two outputs are checked to be identical
before anything is timed.

Reported, side by side in one process (the two networks alternate, so machine noise hits both):
median forward+backward time over ``--reps`` runs and its ratio; the bytes autograd saves for
backward in one forward pass (``saved_tensors_mb``, allocator-independent activation memory) and their
ratio; and, when ``--rss`` is given, the peak RSS growth of one forward+backward
(``peak_rss_growth_mb``), each network in a fresh process (:mod:`archgraph.core.measure`).

    python benchmarks/compile_overhead.py                   # L=8, F=16, 128x128, batch 4
    python benchmarks/compile_overhead.py --layers 14 --channels 32 --size 256 --reps 10 --rss
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archgraph import build_space, compile_graph, decode  # noqa: E402
from archgraph.core.choices import discover_choices  # noqa: E402
from archgraph.core.graph import NodeSpec  # noqa: E402
from archgraph.core.measure import MB, MemoryWindow, SavedTensors, Timer  # noqa: E402
from archgraph.core.ops import MBCONV_OPS, build_alignment, build_op  # noqa: E402

SCALES = (4, 8, 16, 32)


def partner(i: int) -> int:
    """Index of the second input's scale: the next coarser one (the coarsest takes the next finer)."""
    return i + 1 if i + 1 < len(SCALES) else i - 1


def op_for(layer: int, i: int) -> str:
    return MBCONV_OPS[(layer + i) % len(MBCONV_OPS)]


def derived_architecture(layers: int, channels: int, classes: int):
    """The benchmark's architecture, derived from DCSS by the real decoder."""
    space = build_space("dcss", {"layers": layers, "base_channels": channels, "num_classes": classes})
    choices = discover_choices(space)
    ops, inputs = {}, {}
    for c in choices.ops:
        layer, i = int(c.node[1:].split("_")[0]), SCALES.index(int(c.node.split("_s")[1]))
        ops[c.label] = [1.0 if name == op_for(layer, i) else 0.0 for name in c.candidates]
    for c in choices.inputs:
        layer, i = int(c.node[1:].split("_")[0]), SCALES.index(int(c.node.split("_s")[1]))
        prev = "stem" if layer == 1 else f"L{layer - 1}"
        wanted = {f"{prev}_s{SCALES[i]}", f"{prev}_s{SCALES[partner(i)]}"}
        inputs[c.label] = [1.0 if src in wanted else 0.0 for src in c.candidates]
    return decode(space, ops, inputs)


def _spec(kind: str, layer: int, scale: int, width: int, op: str = "conv3x3") -> NodeSpec:
    return NodeSpec(kind, layer, scale, width, (op,))


class HandWritten(nn.Module):
    """The same network as :func:`derived_architecture`, as one would write it without archgraph."""

    def __init__(self, layers: int, channels: int, classes: int):
        super().__init__()
        widths = [channels * s // 4 for s in SCALES]
        self.layers = layers
        self.stem = nn.ModuleList()
        for i, s in enumerate(SCALES):
            self.stem.append(build_op("conv3x3", _spec("stem", 0, s, widths[i]), []))
        self.first_stride = nn.ModuleList()  # the stem chain: image -> 1/4 -> 1/8 -> ... (alignment branches)
        prev = NodeSpec("input", 0, 1, 3)
        for i, s in enumerate(SCALES):
            spec = _spec("stem", 0, s, widths[i])
            self.first_stride.append(build_alignment(prev, spec))
            prev = spec
        self.same = nn.ModuleList()
        self.cross = nn.ModuleList()
        self.ops = nn.ModuleList()
        for layer in range(1, layers + 1):
            same, cross, ops = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
            for i, s in enumerate(SCALES):
                dst = _spec("fusion", layer, s, widths[i], op_for(layer, i))
                j = partner(i)
                same.append(build_alignment(_spec("fusion", layer - 1, s, widths[i]), dst))
                cross.append(build_alignment(_spec("fusion", layer - 1, SCALES[j], widths[j]), dst))
                ops.append(build_op(op_for(layer, i), dst, []))
            self.same.append(same)
            self.cross.append(cross)
            self.ops.append(ops)
        last = [_spec("fusion", layers, s, widths[i]) for i, s in enumerate(SCALES)]
        self.head = build_op("head_simple", NodeSpec("head", layers + 1, 1, classes, ("head_simple",)), last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = []
        for align, conv in zip(self.first_stride, self.stem):
            x = conv(align(x))
            feats.append(x)
        for same, cross, ops in zip(self.same, self.cross, self.ops):
            feats = [ops[i](same[i](feats[i]) + cross[i](feats[partner(i)])) for i in range(len(SCALES))]
        y = self.head(feats)
        return y[..., :h, :w]


def copy_weights(compiled: nn.Module, hand: HandWritten, layers: int) -> None:
    """Copy every tensor of the compiled network into the hand-written one, module by module."""
    pairs: list[tuple[nn.Module, nn.Module]] = []
    nodes = compiled.nodes
    prev = "image"
    for i, s in enumerate(SCALES):
        node = nodes[f"stem_s{s}"]
        pairs += [(node.branches[prev], hand.first_stride[i]), (node.ops["conv3x3"], hand.stem[i])]
        prev = f"stem_s{s}"
    for layer in range(1, layers + 1):
        before = "stem" if layer == 1 else f"L{layer - 1}"
        for i, s in enumerate(SCALES):
            node = nodes[f"L{layer}_s{s}"]
            pairs += [
                (node.branches[f"{before}_s{s}"], hand.same[layer - 1][i]),
                (node.branches[f"{before}_s{SCALES[partner(i)]}"], hand.cross[layer - 1][i]),
                (node.ops[op_for(layer, i)], hand.ops[layer - 1][i]),
            ]
    pairs.append((nodes["head"].ops["head_simple"], hand.head))
    for src, dst in pairs:
        dst.load_state_dict(src.state_dict())


def build_pair(layers: int, channels: int, classes: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    compiled = compile_graph(derived_architecture(layers, channels, classes))
    hand = HandWritten(layers, channels, classes)
    copy_weights(compiled, hand, layers)
    n_compiled = sum(p.numel() for p in compiled.parameters())
    n_hand = sum(p.numel() for p in hand.parameters())
    if n_compiled != n_hand:
        raise SystemExit(f"the two networks differ: {n_compiled} vs {n_hand} parameters")
    return compiled, hand


def fwd_bwd(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    clock = Timer()  # the CPU
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    net.zero_grad(set_to_none=True)
    return clock.read()


def saved_bytes(net: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves during one forward pass."""
    with SavedTensors(net) as saved:
        out = net(x)
    del out
    return saved.bytes


def rss_worker(args: argparse.Namespace) -> int:
    """Fresh process: peak RSS growth of one forward+backward of one network (after a warm-up pass)."""
    compiled, hand = build_pair(args.layers, args.channels, args.classes)
    net = compiled if args.rss_worker == "compiled" else hand
    del compiled, hand
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    fwd_bwd(net, x, y)  # first touch: oneDNN primitives, allocator pools
    with MemoryWindow("cpu") as window:
        fwd_bwd(net, x, y)
    print(json.dumps(window.growth_fields()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--reps", type=int, default=15, help="timed forward+backward passes per network")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rss", action="store_true", help="also measure peak RSS growth, each network in a fresh process")
    parser.add_argument("--json", default=None, help="write the results here too")
    parser.add_argument("--rss-worker", choices=("compiled", "hand"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_worker:
        return rss_worker(args)

    compiled, hand = build_pair(args.layers, args.channels, args.classes)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    compiled.eval(), hand.eval()
    with torch.no_grad():
        same = torch.equal(compiled(x), hand(x))
    compiled.train(), hand.train()
    if not same:
        raise SystemExit("the compiled and the hand-written network disagree; the benchmark would compare different things")
    for net in (compiled, hand):  # warm-up, not timed
        fwd_bwd(net, x, y)
        fwd_bwd(net, x, y)
    times: dict[str, list[float]] = {"compiled": [], "hand": []}
    for rep in range(args.reps):  # alternate, and swap who goes first, so drift hits both alike
        order = (("compiled", compiled), ("hand", hand)) if rep % 2 == 0 else (("hand", hand), ("compiled", compiled))
        for name, net in order:
            times[name].append(fwd_bwd(net, x, y))
    med = {k: statistics.median(v) for k, v in times.items()}
    saved = {"compiled": saved_bytes(compiled, x), "hand": saved_bytes(hand, x)}
    result = {
        "setting": {k: getattr(args, k) for k in ("layers", "channels", "size", "batch", "classes", "reps")},
        "params": sum(p.numel() for p in compiled.parameters()),
        "outputs_identical": same,
        "fwd_bwd_s_median": med,
        "time_ratio": med["compiled"] / med["hand"],
        "saved_tensors_mb": {k: v / MB for k, v in saved.items()},
        "saved_ratio": saved["compiled"] / saved["hand"],
    }
    if args.rss:
        rss = {}
        for name in ("compiled", "hand"):
            cmd = [sys.executable, __file__, "--rss-worker", name] + [f"--{k}={getattr(args, k)}" for k in ("layers", "channels", "size", "batch", "classes", "threads")]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            fields = json.loads(out.strip().splitlines()[-1])  # peak_rss_growth_mb, or its lower bound where VmHWM cannot be reset
            rss[name] = next(iter(fields.values()))
        result[next(iter(fields))] = rss
        result["rss_ratio"] = rss["compiled"] / rss["hand"] if rss["hand"] > 0 else None
    s = result["setting"]
    print(f"compiled vs hand-written DCSS architecture: L={s['layers']} F={s['channels']} {s['size']}x{s['size']} batch {s['batch']}, {result['params']:,} params, outputs identical: {same}")
    print("| measure | compiled | hand-written | ratio |\n|---|---|---|---|")
    print(f"| fwd+bwd median (s) | {med['compiled']:.4f} | {med['hand']:.4f} | {result['time_ratio']:.3f}x |")
    print(f"| saved activations (MB) | {saved['compiled'] / MB:.1f} | {saved['hand'] / MB:.1f} | {result['saved_ratio']:.3f}x |")
    if args.rss:
        r = rss
        ratio = f"{result['rss_ratio']:.3f}x" if result["rss_ratio"] else "n/a"
        print(f"| peak RSS growth (MB) | {r['compiled']:.1f} | {r['hand']:.1f} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
