"""The strategy interface: everything a search strategy supplies, and nothing else.

A strategy sees a graph's choice points, never a particular space. It supplies:

1. its **relaxation** (:attr:`Strategy.relaxation`): what runs at choice points (the compiler asks
   it for mixers; see :mod:`archgraph.core.relaxation`);
2. its **architecture parameters** and their optimiser (:meth:`arch_optimizer`; by default alpha
   and beta of :class:`~archgraph.core.choices.ArchParams` with Adam, at ``search.arch_lr`` and
   ``search.arch_weight_decay``, or the strategy's own defaults when those are left null), and how
   its supernet is built (:meth:`build_supernet`: batch norms at choice points without affine
   weights unless ``search.affine_bn`` or the strategy's default says otherwise);
3. **one search step** (:meth:`search_step`; by default first-order bi-level alternation: an
   architecture step on a trainB batch, then a weight step on a trainA batch);
4. **schedule hooks** (:meth:`on_epoch_start`, :meth:`on_step_start`) for temperatures, warm-up, ...;
5. **derivation** (:meth:`scores`, :meth:`derive`): scores per choice point, handed to the BFS decoder;
6. **stages** (:meth:`stage_graph`, :meth:`stage_epochs`) for progressive strategies (P-DARTS); one
   stage on the space's own graph by default;
7. its resumable **state** (:meth:`state_dict`), saved in checkpoints.

The search loop (:mod:`archgraph.engine.search`) owns data, weight optimiser, logging and checkpoints.
The contract a strategy must keep (subnet mode in every mixer, sampling state in ``state_dict``,
``super()`` in the hooks it overrides) is written down in docs/plugins.md, and
:func:`archgraph.testing.check_strategy` (``archgraph check-strategy NAME``) checks it; the class
attributes under "what the checks may rely on" below tell the check how to run this strategy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import networkx as nx
import torch
import torch.nn.functional as F

from archgraph.core.archstats import mean_entropy
from archgraph.core.compile import CompiledNetwork, compile_graph
from archgraph.config import SearchConfig
from archgraph.core.costs import CostTable
from archgraph.data import IGNORE_INDEX
from archgraph.errors import NonFiniteLoss
from archgraph.core.decode import decode
from archgraph.core.relaxation import ContinuousRelaxation, Relaxation
from archgraph.core.strategy_checks import CheckSettings  # noqa: F401 - strategies declare theirs from here

if TYPE_CHECKING:  # the cost model is imported when a budget is set (search.cost_limit)
    from archgraph.core.costbudget import CostBudget

Scores = dict[str, list[float]]
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class StrategyParams:
    """Options shared by every strategy (subclass this for a strategy's own section)."""


class Strategy:
    """Base strategy: the plain continuous relaxation with first-order bi-level alternation."""

    name: ClassVar[str] = "base"
    # Kinds of choice point this strategy's relaxation handles; the support matrix and the early
    # check in `archgraph search` read it (a space whose graphs have other kinds is refused).
    handles: ClassVar[frozenset[str]] = frozenset({"op", "input"})
    # What the shared search.* keys mean when a config leaves them null (docs/strategies.md has the
    # table and the reasons). alpha/beta here are per node, not shared by every cell as in DARTS, so
    # Adam's coupled L2 decay would pin them near |E[grad]| / decay: none by default.
    default_arch_lr: ClassVar[float] = 1e-2
    default_arch_weight_decay: ClassVar[float] = 0.0
    default_affine_bn: ClassVar[bool] = False  # the DARTS-family search networks: BatchNorm(affine=False)
    # How this strategy honours search.cost_limit (docs/costs.md, "Budgets"): hinge (FasterSeg-style
    # term on the expected cost in the architecture loss) | hardware_loss (its own, ProxylessNAS) |
    # constraint (candidates over the limit rejected before scoring: SPOS, rsws)
    budget_rule: ClassVar[str] = "hinge"

    # How the checks run this strategy (archgraph.testing, `archgraph check-strategy`): the checker's
    # settings in one place, not part of the search's interface
    checks: ClassVar[CheckSettings] = CheckSettings()

    def __init__(self, graph: nx.DiGraph, params: Any, search: SearchConfig, seed: int = 0):
        self.space_graph = graph  # the space as built from the config
        self.graph = graph  # the graph of the current stage (the supernet being searched)
        self.params = params
        self.search = search
        self.seed = seed
        self.epoch = 0
        self.epochs = search.epochs
        self.costs: CostTable | None = None
        # search.cost_limit, set by the search loop for each stage's graph (None = no budget)
        self.budget: CostBudget | None = None
        self.budget_scale = 1.0  # the hinge weight's multiplier, adapted once per epoch (FasterSeg)
        self.budget_target: float | None = None  # the hinge's target: the limit, once the first architecture step has run
        self.budget_epoch = -1  # the epoch the adaptation last ran in
        # Set by the search loop before on_search_end: whether end-of-search work (SPOS's evolution)
        # may draw a progress bar; None = decide alone (e.g. only on a terminal).
        self.progress: bool | None = None
        self.relaxation = self.make_relaxation()

    # -------------------------------------------------------------- 1-2. relaxation and parameters

    def make_relaxation(self) -> Relaxation:
        return ContinuousRelaxation()

    def affine_bn(self) -> bool:
        """Whether batch norms at the supernet's choice points keep gamma/beta (``search.affine_bn``)."""
        value = self.search.affine_bn
        return self.default_affine_bn if value is None else bool(value)

    def build_supernet(self) -> CompiledNetwork:
        return compile_graph(self.graph, self.relaxation, arch_seed=self.seed, choice_bn_affine=self.affine_bn())

    def arch_lr(self) -> float:
        """Adam's learning rate for alpha/beta: ``search.arch_lr``, or this strategy's default."""
        value = self.search.arch_lr
        return self.default_arch_lr if value is None else float(value)

    def arch_weight_decay(self) -> float:
        """Adam's (coupled L2) weight decay on alpha/beta: ``search.arch_weight_decay``, or the default."""
        value = self.search.arch_weight_decay
        return self.default_arch_weight_decay if value is None else float(value)

    def arch_optimizer(self, net: CompiledNetwork) -> torch.optim.Optimizer | None:
        params = list(net.arch_parameters())
        if not params:
            return None
        return torch.optim.Adam(params, lr=self.arch_lr(), betas=tuple(self.search.arch_betas), weight_decay=self.arch_weight_decay())

    # -------------------------------------------------------------- 3. one search step

    def arch_active(self) -> bool:
        """Architecture updates start after the weight-only warm-up epochs."""
        return self.epoch >= self.warmup_epochs()

    def warmup_epochs(self) -> int:
        return self.search.warmup_epochs

    def stage_warmup_epochs(self, stage: int) -> int:
        """Weight-only epochs at the start of stage ``stage`` (the current warm-up by default)."""
        return self.warmup_epochs()

    def equalised(self) -> bool:
        """``search.budget`` is equal-steps or equal-time: the schedule follows ``search.*`` (warm-up,
        one architecture step per weight step, ``search.epochs`` in all) instead of the paper's own
        ratios, so every strategy takes the same weight and architecture steps (docs/strategies.md)."""
        return getattr(self.search, "budget", "official") != "official"

    def planned_arch_steps(self, stage: int, steps_per_epoch: int) -> int | None:
        """Architecture steps stage ``stage`` will take with ``steps_per_epoch`` steps per epoch, so
        the search can refuse a run that would learn nothing before it starts; ``None`` for a
        strategy that takes no gradient steps on the architecture by design (SPOS)."""
        return max(0, self.stage_epochs(stage) - self.stage_warmup_epochs(stage)) * steps_per_epoch

    def arch_schedule_note(self) -> str:
        """What else limits the architecture steps beyond the warm-up (``"; ..."``), for the message
        that refuses a schedule without any; empty by default."""
        return ""

    def loss(self, net: CompiledNetwork, logits: torch.Tensor, target: torch.Tensor, with_regularisers: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy, plus (for architecture steps) the configured regularisers."""
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        total = ce
        parts = {"ce": float(ce.detach())}
        if with_regularisers and net.arch is not None:
            if self.search.flops_weight > 0 and self.costs is not None:
                flops = expected_flops(net, self.costs) / self.costs.total_uniform
                total = total + self.search.flops_weight * flops
                parts["flops_reg"] = float(flops.detach())
            if self.budget is not None and self.budget_rule == "hinge":
                hinge, expected, derived = self.budget_hinge(net)
                total = total + self.search.cost_weight * self.budget_scale * hinge
                parts["cost_hinge"], parts["expected_cost"], parts["derived_cost"] = float(hinge.detach()), float(expected.detach()), derived
            if self.search.entropy_weight > 0:
                ent = mean_entropy(net)
                total = total + self.search.entropy_weight * ent
                parts["entropy_reg"] = float(ent.detach())
        if not torch.isfinite(total.detach()):
            raise NonFiniteLoss("architecture loss" if with_regularisers else "weight loss")
        return total, parts

    def input_use_probs(self, net: CompiledNetwork) -> dict[str, torch.Tensor]:
        """The probability that each candidate input is used, per input label, under the current
        distribution: ``min(1, k softmax(beta))`` (k of n kept; the expected-FLOPs regulariser's
        ``k softmax(beta)``, capped so no input counts more than once). Differentiable."""
        assert net.arch is not None
        out: dict[str, torch.Tensor] = {}
        for c in net.choices.inputs:
            if c.label not in out:
                out[c.label] = torch.clamp(c.keep * torch.softmax(net.arch.input_logits(c.label), -1), max=1.0)
        return out

    def budget_hinge(self, net: CompiledNetwork) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(hinge, expected cost, derived cost): FasterSeg's latency term with a hinge at the limit,
        zero inside the budget.

        The hinge reads the cost of the architecture the decoder derives *now* (argmax ops, top-k
        inputs), with the gradient of the expected cost under the current distribution (differentiable
        in alpha and beta): ``E[cost] * derived / E[cost]`` with the ratio held constant, a
        straight-through estimate. Why not the expected cost itself: a soft distribution counts every
        candidate input with its probability, so E[cost] sits well above the derived network's cost
        (1.25-1.5x on CamVid), and a hinge on it stopped derived networks at 68-74% of their
        latency limit: budget the user would rather have spent on accuracy. On the derived cost the
        hinge is zero exactly while the result is within the limit. Once per epoch, at its first
        architecture step, :meth:`adapt_budget` adjusts the weight."""
        from archgraph.core.costmodel import expected_cost
        from archgraph.core.decode import decisions

        assert self.budget is not None
        derived = float(self.budget.cost(*decisions(net.choices, *self.scores(net))))
        if self.budget_epoch != self.epoch:
            self.adapt_budget(derived)
        expected = expected_cost(net, self.budget.model, self.input_use_probs(net))
        steered = expected * (derived / max(float(expected.detach()), 1e-12))
        return self.budget.hinge(steered, self.budget_target), expected, derived

    def adapt_budget(self, cost: float) -> None:
        """FasterSeg's schedule of the latency weight (train_search.py: doubled while the searched
        network is slower than FPS_min, halved while faster than FPS_max), on the decoder's current
        architecture (``cost``, the one :meth:`budget_hinge` reads): over the limit, the weight doubles;
        under ``(1 - BAND)`` of it, it halves (never below ``search.cost_weight``). The target stays the
        limit: the hinge already reads the derived architecture's cost."""
        from archgraph.core.costbudget import BAND

        assert self.budget is not None
        self.budget_epoch = self.epoch
        limit = self.budget.value
        if cost > limit:
            self.budget_scale *= 2.0
        elif cost < (1.0 - BAND) * limit:
            self.budget_scale = max(1.0, self.budget_scale / 2.0)
        self.budget_target = limit

    def search_step(self, net: CompiledNetwork, batch_w: Batch, batch_a: Batch, w_opt: torch.optim.Optimizer, a_opt: torch.optim.Optimizer | None) -> dict[str, float]:
        """First-order alternation: the architecture step first (on trainB), then the weight step (trainA)."""
        out: dict[str, float] = {}
        if a_opt is not None and self.arch_active():
            a_opt.zero_grad(set_to_none=True)
            x, y = batch_a
            loss, parts = self.loss(net, net(x), y, with_regularisers=True)
            loss.backward()
            a_opt.step()
            out["arch_loss"] = float(loss.detach())
            out.update({f"arch_{k}": v for k, v in parts.items()})
        out.update(self.weight_step(net, batch_w, w_opt))
        return out

    def weight_step(self, net: CompiledNetwork, batch: Batch, w_opt: torch.optim.Optimizer) -> dict[str, float]:
        """SGD on the weights (cross-entropy only, gradients clipped to ``search.grad_clip``)."""
        w_opt.zero_grad(set_to_none=True)
        x, y = batch
        loss, _ = self.loss(net, net(x), y, with_regularisers=False)
        loss.backward()
        if self.search.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(net.weight_parameters()), self.search.grad_clip)
        w_opt.step()
        for p in net.arch_parameters():  # weight steps must not leave gradients on alpha/beta behind
            p.grad = None
        return {"loss": float(loss.detach())}

    # -------------------------------------------------------------- 4. schedule hooks

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs

    def on_step_start(self, step: int, steps_per_epoch: int) -> None:
        """Called before every search step (global step counter within the stage)."""

    def log_state(self) -> dict[str, float]:
        """Extra per-epoch values for search.jsonl (e.g. the temperature)."""
        return {}

    def on_search_end(self, net: CompiledNetwork, score: Callable[[dict[str, int], dict[str, list[int]]], float], out_dir) -> bool:
        """After the last epoch: a chance to pick the architecture with the trained supernet.

        ``score(op_idx, input_idx)`` returns the validation mIoU of that architecture evaluated in
        the supernet's subnet mode (BN recalibrated). Return True if :meth:`derive` changed (the loop
        then rewrites arch.yaml). Default: nothing to do.
        """
        return False

    # -------------------------------------------------------------- 5. derivation

    def scores(self, net: CompiledNetwork) -> tuple[Scores, Scores]:
        """(op scores, input scores) per choice label; by default softmax(alpha), softmax(beta)."""
        if net.arch is None:
            return {}, {}
        s = net.arch.scores()
        return s["ops"], s["inputs"]

    def derive(self, net: CompiledNetwork) -> nx.DiGraph:
        ops, inputs = self.scores(net)
        return decode(self.graph, ops, inputs)

    # -------------------------------------------------------------- 6. stages

    def num_stages(self) -> int:
        return 1

    def stage_graph(self, stage: int, previous: CompiledNetwork | None) -> nx.DiGraph:
        """The supernet graph of ``stage`` (built from the previous stage's scores if progressive)."""
        return self.space_graph

    def stage_epochs(self, stage: int) -> int:
        return self.search.epochs

    def begin_stage(self, stage: int, previous: CompiledNetwork | None) -> None:
        self.graph = self.stage_graph(stage, previous)
        self.relaxation = self.make_relaxation()

    # -------------------------------------------------------------- 7. state

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "budget": {"scale": self.budget_scale, "target": self.budget_target, "epoch": self.budget_epoch}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state.get("epoch", 0))
        budget = state.get("budget") or {}
        self.budget_scale = float(budget.get("scale", 1.0))
        self.budget_target = budget.get("target")
        self.budget_epoch = int(budget.get("epoch", -1))


def warn_unread_search_keys(strategy: str, search: SearchConfig, used_instead: Mapping[str, str]) -> None:
    """For a strategy that reads its own values instead of some shared ``search.*`` keys: warn, once
    per key and value, about each such key a config sets (to anything but its default), naming the
    value actually used (``used_instead[key]``), so that a setting is never ignored silently."""
    defaults = SearchConfig()
    for key, instead in used_instead.items():
        value = getattr(search, key)
        if value != getattr(defaults, key):
            shown = list(value) if isinstance(value, tuple) else value
            warnings.warn(f"{strategy} does not read search.{key} (set to {shown}); it uses {instead}", UserWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------------
# Regularisers (differentiable in alpha and beta)


def expected_flops(net: CompiledNetwork, costs: CostTable) -> torch.Tensor:
    """E[FLOPs] of the derived net under softmax(alpha), softmax(beta) (k branches per input choice)."""
    assert net.arch is not None
    total = torch.zeros(())
    for label, table in costs.ops.items():
        p = torch.softmax(net.arch.op_logits(label), -1)
        total = total + (p * torch.tensor(table, dtype=p.dtype, device=p.device)).sum()
    for label, table in costs.inputs.items():
        p = torch.softmax(net.arch.input_logits(label), -1)
        total = total + costs.keep[label] * (p * torch.tensor(table, dtype=p.dtype, device=p.device)).sum()
    return total


StrategyFactory = Callable[[nx.DiGraph, Any, SearchConfig, int], Strategy]
