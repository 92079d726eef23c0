"""``perturb``: DARTS-PT's perturbation-based projection (Wang et al., ICLR 2021), on any graph.

The reference (ruocwang/darts-pt, ``sota/cnn/projection.py``, ``pt_project``) discretises a trained
supernet one decision at a time, by what the supernet's own accuracy says rather than by alpha's
magnitude: first every edge's operation, in a random order of the undecided edges: the op whose
removal from the mixture lowers the accuracy most is kept; then every node's inputs, in a random
order: the input whose removal lowers the accuracy least is dropped, again and again, until the
node keeps its top two. Between two decisions the supernet is fine-tuned (``proj_intv`` epochs there,
with the weights' learning rate at a tenth, cosine-annealed to the minimum, alpha trained as in the
search) with the decided edges fixed.

Here: op choices first, then input choices (kept: ``keep`` of the choice), each in a seeded random
order, accuracy = mIoU on the selection split. What differs, and why:

- **Removal** sets the removed candidates' logits to -1e4 (zero weight after the softmax); the
  reference zeroes the softmaxed weight without renormalising the others. Our mixers own their
  softmax, so the logit is the one seam every strategy shares; the others are renormalised.
- **The supernet's accuracy** is what the strategy's supernet computes in evaluation mode (the plain
  mixture for DARTS and P-DARTS, DCNAS's top paths with its partial channels, ProxylessNAS's most
  probable path), after BN recalibration on the cached trainA batches; the reference evaluates in
  training mode (batch statistics). Sampling relaxations draw with the same generator state for
  every evaluation, so candidates are compared on the same draws.
- **Strategies without a learned distribution** (SPOS, rsws: their mixers never read alpha) have a
  uniform one: there the accuracy is the mean shared-weight score of :data:`SAMPLES` architectures
  drawn uniformly from the remaining candidates (the same seeds for every evaluation), and the
  fine-tune trains such drawn paths.
- **The fine-tune** is ``tune=N`` search steps (the strategy's own ``search_step``; weight steps on
  drawn paths for SPOS/rsws) per decision instead of epochs; :data:`DEFAULT_TUNE` by default,
  ``perturb:tune=0`` for a quick run. Afterwards the supernet (weights, BN, alpha/beta, the
  strategy's sampling state) is put back as the search left it, so the checkpoint still describes it.

Cost: one evaluation per op candidate, and ``n + (n-1) + ... + (keep+1)`` per input choice of ``n``
candidates, each a candidate's forward passes (``SAMPLES`` times that without a learned distribution),
plus the fine-tune steps; the log says how many before it starts.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import random
from typing import Iterator

import torch

from archgraph.engine import distributed as D
from archgraph.engine.driver import weight_optimizer, weight_schedule
from archgraph.engine.selection.candidates import learns_distribution
from archgraph.engine.selection.context import SelectionContext
from archgraph.engine.selection.registry import Candidate, Selection, register_selector, whole
from archgraph.engine.smiou import cycle, loader
from archgraph.errors import ConfigError

NEG = -1e4  # a removed candidate's logit: exp(NEG) is exactly 0 in float32, and no NaN appears
DEFAULT_TUNE = 2  # search steps of fine-tuning after each decision (the reference: 10 epochs)
SAMPLES = 4  # drawn architectures per evaluation for strategies without a learned distribution

Allowed = dict[str, list[int]]


@register_selector("perturb")
class PerturbSelector:
    """DARTS-PT's projection: decide choice by choice by the supernet's accuracy under removal."""

    name = "perturb"

    def __init__(self, *args: str):
        self.spec = ":".join(("perturb", *args))
        self.tune = DEFAULT_TUNE
        for a in args:
            key, _, value = a.partition("=")
            if key != "tune" or not value:
                raise ConfigError(f"selector spec {self.spec!r}: perturb takes tune=N (fine-tune steps per decision), e.g. perturb:tune=0")
            self.tune = whole(value, "tune", self.spec, minimum=0)

    def select(self, ctx: SelectionContext) -> Selection:
        ctx.needs_search(f"selector {self.spec!r}")
        net, strategy = ctx.net, ctx.strategy
        saved_net = copy.deepcopy(net.state_dict())
        saved_strategy = copy.deepcopy(strategy.state_dict())
        projection = _Projection(ctx, saved_strategy, self.tune)
        try:
            with torch.random.fork_rng(devices=[]):
                decisions = projection.run()
        finally:
            net.load_state_dict(saved_net)
            strategy.load_state_dict(saved_strategy)
        cand = projection.candidate()
        return Selection(cand, 1, ctx.score([cand]), 0, {"evaluations": projection.evaluations, "tune": self.tune, "mode": projection.mode, "decisions": decisions})


class _Projection:
    """The state of one projection: what each choice still allows, and the evaluations spent."""

    def __init__(self, ctx: SelectionContext, strategy_state: dict, tune: int):
        self.ctx, self.tune, self.strategy_state = ctx, tune, strategy_state
        ch = ctx.choices
        self.ops: Allowed = {c.label: list(range(len(c.candidates))) for c in ch.ops}
        self.inputs: Allowed = {c.label: list(range(len(c.candidates))) for c in ch.inputs}
        self.keep = {c.label: c.keep for c in ch.inputs}
        self.mixture = learns_distribution(ctx.strategy) and ctx.net.arch is not None
        self.mode = "mixture" if self.mixture else "sampled"
        self.evaluations = 0
        self._optimizers: tuple | None = None

    # ------------------------------------------------------------------ the decisions, in order

    def run(self) -> list[dict]:
        rng = random.Random(self.ctx.seed)
        op_order = [l for l, allowed in self.ops.items() if len(allowed) > 1]
        in_order = [l for l, allowed in self.inputs.items() if len(allowed) > self.keep[l]]
        rng.shuffle(op_order)
        rng.shuffle(in_order)
        planned = sum(len(self.ops[l]) for l in op_order) + sum(sum(range(self.keep[l] + 1, len(self.inputs[l]) + 1)) for l in in_order)
        steps = (len(op_order) + len(in_order) - 1) * self.tune if op_order or in_order else 0
        self.ctx.say(
            f"selection perturb: {len(op_order)} op and {len(in_order)} input decisions, {planned} evaluations"
            f"{f' x {SAMPLES} sampled architectures' if not self.mixture else ''}, {max(steps, 0)} fine-tune steps"
        )
        self._total_tune = max(steps, 1)
        out = []
        todo = [("op", l) for l in op_order] + [("input", l) for l in in_order]
        for i, (kind, label) in enumerate(todo):
            out.append(self._decide_op(label) if kind == "op" else self._decide_inputs(label))
            if i < len(todo) - 1:
                self._fine_tune()
        return out

    def _decide_op(self, label: str) -> dict:
        accs = {}
        for i in self.ops[label]:
            accs[i] = self._accuracy({**self.ops, label: [j for j in self.ops[label] if j != i]}, self.inputs)
        kept = min(accs, key=lambda i: (accs[i], i))  # its removal hurts most
        self.ops[label] = [kept]
        return {"op": label, "kept": kept, "accuracy_without": [accs[i] for i in sorted(accs)]}

    def _decide_inputs(self, label: str) -> dict:
        dropped = []
        while len(self.inputs[label]) > self.keep[label]:
            remaining = self.inputs[label]
            accs = {e: self._accuracy(self.ops, {**self.inputs, label: [j for j in remaining if j != e]}) for e in remaining}
            drop = max(accs, key=lambda e: (accs[e], -e))  # its removal hurts least
            self.inputs[label] = [e for e in remaining if e != drop]
            dropped.append(drop)
        return {"inputs": label, "kept": list(self.inputs[label]), "dropped": dropped}

    def candidate(self) -> Candidate:
        return {l: a[0] for l, a in self.ops.items()}, {l: sorted(a) for l, a in self.inputs.items()}

    # ------------------------------------------------------------------ the supernet's accuracy

    def _accuracy(self, ops: Allowed, inputs: Allowed) -> float:
        self.evaluations += 1
        ctx = self.ctx
        if not self.mixture:
            scores = ctx.score(_sampled(ops, inputs, self.keep, ctx.seed))
            return sum(scores) / len(scores)
        ctx.strategy.load_state_dict(self.strategy_state)  # the same draws for every evaluation
        torch.manual_seed(ctx.seed)
        with masked_logits(ctx.net, ops, inputs):
            ctx.scorer.recalibrate()
            return ctx.scorer.miou()

    # ------------------------------------------------------------------ the fine-tune

    def _fine_tune(self) -> None:
        if self.tune <= 0:
            return
        ctx, net, strategy = self.ctx, self.ctx.net, self.ctx.strategy
        cfg = ctx.cfg
        if self._optimizers is None:
            # The search's weight optimiser and schedule at a tenth of the learning rate, annealed to
            # min(w_lr_min, w_lr / 10) over every fine-tune step. Not StrategyDriver's stages and steps:
            # the supernet is the finished search's (no stage to begin), the steps must not move the
            # strategy's own schedule (on_step_start, the epoch), and they run inside masked_logits or a
            # fixed subnet (weight_step for strategies without a learned distribution).
            # Under torchrun each rank fine-tunes on its share of the batch (the loaders are sharded):
            # gradients are averaged over the ranks before every step, as in the search, so the ranks'
            # supernets stay one supernet (each would drift on its own share otherwise).
            w_opt = D.average_gradients_before_step(weight_optimizer(net.weight_parameters(), cfg.search, lr_scale=0.1))
            sched = weight_schedule(w_opt, cfg.search, self._total_tune, lr_scale=0.1)
            a_opt = D.average_gradients_before_step(strategy.arch_optimizer(net)) if self.mixture else None
            batches = zip(cycle(loader(ctx.data.train_a, cfg, cfg.seed + 13)), cycle(loader(ctx.data.train_b, cfg, cfg.seed + 14)))
            self._optimizers = (w_opt, sched, a_opt, batches, random.Random(ctx.seed + 1))
        w_opt, sched, a_opt, batches, rng = self._optimizers
        net.train()
        for batch_w, batch_a in itertools.islice(batches, self.tune):
            batch_w = tuple(t.to(ctx.device) for t in batch_w)
            batch_a = tuple(t.to(ctx.device) for t in batch_a)
            if self.mixture:
                with masked_logits(net, self.ops, self.inputs):
                    strategy.search_step(net, batch_w, batch_a, w_opt, a_opt)
            else:
                path = _sampled(self.ops, self.inputs, self.keep, rng.randrange(1 << 30), n=1)[0]
                with strategy.relaxation.fixed_subnet(*path):
                    strategy.weight_step(net, batch_w, w_opt)
            sched.step()


def _sampled(ops: Allowed, inputs: Allowed, keep: dict[str, int], seed: int, n: int = SAMPLES) -> list[Candidate]:
    """``n`` architectures drawn uniformly from the allowed candidates (seeded: common draws)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(({l: rng.choice(a) for l, a in ops.items()}, {l: sorted(rng.sample(a, keep[l])) for l, a in inputs.items()}))
    return out


@contextlib.contextmanager
def masked_logits(net, ops: Allowed, inputs: Allowed) -> Iterator[None]:
    """Inside: every candidate not allowed has logit :data:`NEG` (out of the mixture); on exit
    those entries get their values back (entries still allowed keep whatever a fine-tune did)."""
    arch = net.arch
    saved: list[tuple[torch.Tensor, list[int], torch.Tensor]] = []
    with torch.no_grad():
        for table, allowed in ((arch.alpha, ops), (arch.beta, inputs)):
            for label, ok in allowed.items():
                p = table[label]
                out = [i for i in range(p.numel()) if i not in ok]
                if out:
                    idx = torch.tensor(out, device=p.device)
                    saved.append((p, out, p.data[idx].clone()))
                    p.data[idx] = NEG
    try:
        yield
    finally:
        with torch.no_grad():
            for p, out, values in saved:
                p.data[torch.tensor(out, device=p.device)] = values


__all__ = ["DEFAULT_TUNE", "NEG", "PerturbSelector", "SAMPLES", "masked_logits"]
