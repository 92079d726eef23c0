"""SPOS: single path one-shot NAS with uniform sampling, then evolution with the shared weights.

Guo, Zhang, Mu, Heng, Liu, Wei, Sun. "Single Path One-Shot Neural Architecture Search with Uniform
Sampling", ECCV 2020 (arXiv:1904.00420); official code: megvii-model/SinglePathOneShot.

1. **Supernet training** (``src/Supernet/train.py``): every forward pass runs one path drawn
   uniformly: one op per op choice, ``k`` inputs (a uniform k-subset) per input choice; a shared label
   is one decision. No architecture parameters are optimised (``arch_optimizer`` returns None; the
   mixers never read alpha/beta). Optionally only paths within a FLOPs band are trained: a FLOPs bin
   is drawn uniformly, then candidates are drawn until one falls in it (500 tries, then any).
2. **Evolution** (``src/Search/search.py``, :func:`archgraph.strategies.evolution.evolve`) after the last epoch,
   in :meth:`SPOS.on_search_end`: every candidate within the FLOPs/params limits is scored by the
   search loop's scorer, which recalibrates the BN statistics on ``recalib_batches`` training batches
   (reset, then a cumulative average in train mode under no_grad; official ``get_cand_err``: 200
   batches of 128) and evaluates validation mIoU in subnet mode. The default of 32 batches and the
   fitness noise behind it are measured in docs/strategies.md. A rich progress bar (candidates
   scored, generation, best fitness) follows :attr:`SPOS.progress`.
3. ``derive`` returns the best candidate; the history is ``evolution.jsonl`` in the run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import networkx as nx
import torch
from torch import nn

from archgraph.core.choices import ArchParams, ChoicePoints, InputChoice, OpChoice, discover_choices
from archgraph.core.compile import CompiledNetwork
from archgraph.core.decode import decode
from archgraph.errors import ConfigError
from archgraph.io import append_jsonl, atomic_write_text
from archgraph.core.registry import register_strategy
from archgraph.core.relaxation import Mixer, Relaxation, sum_branches
from archgraph.strategies.base import CheckSettings, Scores, Strategy, StrategyParams
from archgraph.strategies.evolution import ArchCost, Candidate, EvolutionConfig, EvolutionState, Gene, evolve

OpIdx = dict[str, int]
InputIdx = dict[str, list[int]]
OFFICIAL_POPULATION, OFFICIAL_GENERATIONS = 50, 20  # src/Search/search.py
STATE_FILE = "evolution.state.json"  # the evolution's state after its last finished generation (resume)


@dataclass
class SPOSParams(StrategyParams):
    """Options of SPOS (the ``strategy`` section when ``strategy.name: spos``); defaults as the official code."""

    # supernet training: optional FLOPs band (absolute FLOPs at the training crop; 0 = uniform over all paths)
    band_min: float = 0.0
    band_max: float = 0.0
    band_bins: int = 7  # official: 290M..360M in 10M bins
    band_tries: int = 500  # draws per bin before taking any path (official timeout)
    # evolution (src/Search/search.py)
    population: int | None = None  # None: the official 50, fewer when the search was short (docs/strategies.md, "the evolution's budget")
    generations: int | None = None  # None: the official 20, fewer so that the evolution costs no more than the search
    select: int = 10  # top-k parents
    mutation: int = 25
    crossover: int = 25
    mutation_prob: float = 0.1
    flops_limit: float = 0.0  # every candidate's FLOPs at the training crop must not exceed it (0 = no limit)
    params_limit: float = 0.0  # same for parameters (0 = no limit)
    recalib_batches: int = 32  # BN recalibration batches per candidate (0 = search.bn_recalib_batches); official 200, see docs/strategies.md


class SPOSRelaxation(Relaxation):
    """Holds the path of the current forward pass; drawn again before every forward (a pre-hook)."""

    name = "spos"

    def __init__(self, choices: ChoicePoints, seed: int, sampler: Callable[["SPOSRelaxation"], tuple[OpIdx, InputIdx]] | None = None):
        self.choices = choices
        self.generator = torch.Generator().manual_seed(seed + 3)
        self.current: tuple[OpIdx, InputIdx] | None = None
        self.sampler = sampler  # the strategy's (band-limited) sampler; uniform when None

    def uniform(self) -> tuple[OpIdx, InputIdx]:
        """One uniform draw per label: an op index, or a uniform k-subset of the inputs (sorted)."""
        ops: OpIdx = {}
        for c in self.choices.ops:
            if c.label not in ops:
                ops[c.label] = int(torch.randint(len(c.candidates), (), generator=self.generator))
        inputs: InputIdx = {}
        for c in self.choices.inputs:
            if c.label not in inputs:
                perm = torch.randperm(len(c.candidates), generator=self.generator)[: c.keep]
                inputs[c.label] = sorted(perm.tolist())
        return ops, inputs

    def begin_pass(self) -> None:
        self.resample()  # one path per forward pass

    def resample(self) -> None:
        if self.subnet is None:  # subnet mode (S-mIoU, evolution) fixes the path; draw nothing
            self.current = self.sampler(self) if self.sampler is not None else self.uniform()

    def path(self) -> tuple[OpIdx, InputIdx]:
        if self.current is None:
            self.resample()
        assert self.current is not None
        return self.current

    def draw_pass(self, sequence: Sequence[InputChoice | OpChoice], arch: ArchParams, training: bool) -> dict[str, list[int]] | None:
        """The pass's path is drawn already (the network's forward pre-hook); hand over its inputs."""
        if self.subnet is not None:
            return None
        inputs = self.path()[1]
        return {c.node: inputs[c.label] for c in sequence if isinstance(c, InputChoice)}

    def input_mixer(self, choice: InputChoice, arch: ArchParams) -> nn.Module:
        return SinglePathInputs(choice.label, arch, self)

    def op_mixer(self, choice: OpChoice, arch: ArchParams, channels: int) -> nn.Module:
        return SinglePathOp(choice.label, arch, self)


class SinglePathOp(Mixer):
    """Runs only the op of the current path (or of the fixed subnet)."""

    def forward(self, x: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
        i = self.subnet_op()
        if i is None:
            i = self.relaxation.path()[0][self.label]
        return ops[i](x)


class SinglePathInputs(Mixer):
    """Aligns and sums only the k inputs of the current path (what the derived network computes)."""

    def forward(self, inputs: Sequence[torch.Tensor], branches: Sequence[nn.Module]) -> torch.Tensor:
        picked = self.subnet_inputs()
        if picked is None:
            picked = self.relaxation.path()[1][self.label]
        return sum_branches(inputs, branches, picked)


def genes_of(choices: ChoicePoints) -> tuple[list[Gene], list[str], list[str]]:
    """Genes (one per label: op labels first, then input labels) and the labels in gene order."""
    op_labels = list(dict.fromkeys(c.label for c in choices.ops))
    in_labels = list(dict.fromkeys(c.label for c in choices.inputs))
    op_n = choices.op_labels
    in_c = {c.label: c for c in choices.inputs}
    genes = [Gene(op_n[l]) for l in op_labels] + [Gene(len(in_c[l].candidates), in_c[l].keep) for l in in_labels]
    return genes, op_labels, in_labels


@register_strategy("spos", SPOSParams)
class SPOS(Strategy):
    """SPOS: uniform single-path supernet training, then evolution scored with recalibrated BN (Guo et al. 2020)."""

    name = "spos"
    budget_rule = "constraint"  # search.cost_limit: candidates over it are never scored
    # The checks' tiny runs: a small evolution (the official 50 x 20 would score up to 1,050 candidates).
    # a small evolution for the checks; 3 x 3 architectures in the planted graph and a weight step trains one of them: twice the steps
    checks = CheckSettings(options={"population": 4, "generations": 2, "select": 2, "mutation": 2, "crossover": 2, "recalib_batches": 2}, planted_steps=32)
    #: The evolution's progress bar (candidates scored of at most ``EvolutionConfig.max_scored()``,
    #: generation, best fitness so far): True draws it, False never; None (the default) draws it only
    #: when stderr is a terminal and this is rank 0. The search loop sets it from its ``progress`` switch.
    progress: bool | None = None

    def __init__(self, graph: nx.DiGraph, params: SPOSParams, search, seed: int = 0):
        # The official sizes where the options are unset; on_search_end scales them to the search's budget.
        self.evolution_cfg = EvolutionConfig(
            OFFICIAL_POPULATION if params.population is None else params.population,
            OFFICIAL_GENERATIONS if params.generations is None else params.generations,
            params.select,
            params.mutation,
            params.crossover,
            params.mutation_prob,
        )
        self.evolution_cfg.check()
        self.weight_steps = 0  # supernet training steps taken: the evolution's default budget
        if params.band_min < 0 or params.band_max < 0 or (params.band_max and params.band_max <= params.band_min):
            raise ConfigError(f"need 0 <= strategy.band_min < strategy.band_max (or both 0 = off), got {params.band_min} and {params.band_max}")
        if params.band_bins < 1 or params.band_tries < 1:
            raise ConfigError("strategy.band_bins and strategy.band_tries must be >= 1")
        if params.flops_limit < 0 or params.params_limit < 0 or params.recalib_batches < 0:
            raise ConfigError("strategy.flops_limit, params_limit and recalib_batches must be >= 0 (0 = off / default)")
        self.best: tuple[OpIdx, InputIdx] | None = None
        self.image_hw: tuple[int, int] | None = None
        self.cost: ArchCost | None = None
        super().__init__(graph, params, search, seed)

    # ------------------------------------------------------------------ supernet training

    def make_relaxation(self) -> SPOSRelaxation:
        sampler = self._band_sample if self.params.band_max > 0 else None
        return SPOSRelaxation(discover_choices(self.graph), self.seed, sampler)

    def arch_optimizer(self, net: CompiledNetwork) -> torch.optim.Optimizer | None:
        return None  # no architecture parameters are trained

    def arch_active(self) -> bool:
        return False

    def planned_arch_steps(self, stage: int, steps_per_epoch: int) -> int | None:
        return None  # no gradient on the architecture: the evolution picks it after supernet training

    def search_step(self, net, batch_w, batch_a, w_opt, a_opt) -> dict[str, float]:
        self.prepare_costs(tuple(batch_w[0].shape[-2:]))
        self.weight_steps += 1
        return super().search_step(net, batch_w, batch_a, w_opt, None)

    def prepare_costs(self, image_hw: tuple[int, int]) -> None:
        """Remember the training crop; measure the cost table when a band or limit needs it."""
        if self.image_hw is None:
            self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        p = self.params
        if self.cost is None and (p.band_max > 0 or p.flops_limit > 0 or p.params_limit > 0):
            self.cost = ArchCost(self.graph, self.image_hw, "flops")

    def _band_sample(self, relax: SPOSRelaxation) -> tuple[OpIdx, InputIdx]:
        """The official get_uniform_sample_cand: a uniform FLOPs bin, then rejection sampling into it."""
        if self.cost is None:
            raise ConfigError("strategy.band_min/band_max need the cost table: call SPOS.prepare_costs(image_hw) before forward passes")
        p = self.params
        width = (p.band_max - p.band_min) / p.band_bins
        b = int(torch.randint(p.band_bins, (), generator=relax.generator))
        lo, hi = p.band_min + b * width, p.band_min + (b + 1) * width
        for _ in range(p.band_tries):
            ops, inputs = relax.uniform()
            if lo <= self.cost.of(ops, inputs)[0] <= hi:
                return ops, inputs
        return relax.uniform()

    # ------------------------------------------------------------------ evolution

    def decisions_of(self, cand: Candidate, op_labels: list[str], in_labels: list[str]) -> tuple[OpIdx, InputIdx]:
        ops = {l: int(v) for l, v in zip(op_labels, cand[: len(op_labels)])}
        inputs = {l: list(v) for l, v in zip(in_labels, cand[len(op_labels) :])}
        return ops, inputs

    def on_search_end(self, net: CompiledNetwork, score: Callable[..., float], out_dir) -> bool:
        """The evolution over the trained supernet; its best candidate becomes :meth:`derive`'s."""
        if not len(net.choices):
            return False
        p = self.params
        if (p.flops_limit > 0 or p.params_limit > 0) and self.cost is None:
            if self.image_hw is None:
                raise ConfigError("strategy.flops_limit/params_limit need the training crop; run at least one search step first")
            self.prepare_costs(self.image_hw)
        genes, op_labels, in_labels = genes_of(net.choices)
        scorer = _with_recalib(score, p.recalib_batches)
        log = self._generation_log(out_dir, op_labels, in_labels)
        state = EvolutionState(Path(out_dir) / STATE_FILE, {"supernet": weights_digest(net)}) if out_dir is not None else None
        cfg = self._budgeted(net, scorer, genes, op_labels, in_labels)
        show = show_progress(self.progress)
        lines = GenerationLines(cfg.generations, enabled=not show and _rank0())
        with EvolutionProgress(cfg.max_scored(), cfg.generations, show) as bar:

            def fitness(cand: Candidate) -> float:
                return bar.scored(scorer(*self.decisions_of(cand, op_labels, in_labels)))

            def legal(cand: Candidate) -> bool:
                if self.budget is not None and not self.budget.within(*self.decisions_of(cand, op_labels, in_labels)):
                    return False  # search.cost_limit: a hard constraint, checked before scoring
                if self.cost is None:
                    return True
                flops, params = self.cost.of(*self.decisions_of(cand, op_labels, in_labels))
                return (p.flops_limit <= 0 or flops <= p.flops_limit) and (p.params_limit <= 0 or params <= p.params_limit)

            def on_generation(record: dict[str, Any]) -> None:
                bar.generation(record["generation"])
                log(record)
                lines(record)

            result = evolve(genes, fitness, legal, cfg, seed=self.seed, on_generation=on_generation, state=state)
        self.best = self.decisions_of(result.best, op_labels, in_labels)
        return True

    def _budgeted(self, net: CompiledNetwork, scorer: Callable[[OpIdx, InputIdx], float], genes: Sequence[Gene], op_labels: list[str], in_labels: list[str]) -> EvolutionConfig:
        """The evolution's sizes: the options where set; else scaled so that scoring costs at most what
        the supernet training cost. One candidate is scored as a probe, counting its forward passes
        ``F`` (BN recalibration plus evaluation batches); a weight step counts as 3 forward passes
        (forward and a backward of about twice its cost), so ``W`` steps afford ``B = 3W / F``
        candidates. Population ``min(50, max(2, B // 2))``, then as many generations (at most 20) as
        fit into the rest of ``B``. Deterministic (counts, not clocks), so a resumed run agrees."""
        p, cfg = self.params, self.evolution_cfg
        if p.population is not None and p.generations is not None:
            return cfg
        calls = [0]
        hook = net.register_forward_hook(lambda module, args, output: calls.__setitem__(0, calls[0] + 1))
        try:
            scorer(*self.decisions_of(tuple(g.random(random.Random(0)) for g in genes), op_labels, in_labels))
        finally:
            hook.remove()
        budget = 3 * self.weight_steps // max(1, calls[0])
        population = cfg.population if p.population is not None else min(OFFICIAL_POPULATION, max(2, budget // 2))
        per_generation = max(population, cfg.mutation + cfg.crossover)
        generations = cfg.generations if p.generations is not None else min(OFFICIAL_GENERATIONS, max(0, (budget - population) // per_generation))
        scaled = dataclasses.replace(cfg, population=population, generations=generations)
        if _rank0():
            print(
                f"evolution: population {population}, {generations} generations, at most {scaled.max_scored()} candidates of "
                f"{calls[0]} forward passes each, for a search of {self.weight_steps} weight steps (set strategy.population "
                f"and strategy.generations to choose)",
                flush=True,
            )
        return scaled

    def _generation_log(self, out_dir, op_labels: list[str], in_labels: list[str]) -> Callable[[dict[str, Any]], None]:
        """Appends one line per generation to ``evolution.jsonl`` in ``out_dir`` (nothing when None)."""
        log = Path(out_dir) / "evolution.jsonl" if out_dir is not None else None
        first = [True]

        def entry(c, f) -> dict[str, Any]:
            ops, inputs = self.decisions_of(tuple(tuple(v) if isinstance(v, list) else v for v in c), op_labels, in_labels)
            out = {"ops": ops, "inputs": inputs, "fitness": f}
            if self.cost is not None:
                out["flops"], out["params"] = self.cost.of(ops, inputs)
            return out

        def write(record: dict[str, Any]) -> None:
            if log is None:
                return
            if first[0]:  # a resumed evolution keeps the lines of the generations it restored; a fresh one none
                first[0] = False
                if log.exists():
                    truncate_log(log, record["generation"])
            append_jsonl(
                log,
                {
                    "generation": record["generation"],
                    "best_fitness": record["best_fitness"],
                    "scored": record["scored"],
                    "top": [entry(c, f) for c, f in record["top"]],
                    "population": [entry(c, f) for c, f in record["population"]],
                },
            )

        return write

    # ------------------------------------------------------------------ derivation

    def scores(self, net: CompiledNetwork) -> tuple[Scores, Scores]:
        """One-hot scores of the evolution's best candidate; before it, uniform (the decoder then picks
        the first op and the first k inputs: a placeholder arch.yaml the evolution replaces)."""
        choices = net.choices
        ops: Scores = {}
        inputs: Scores = {}
        for c in choices.ops:
            n = len(c.candidates)
            ops[c.label] = [float(i == self.best[0][c.label]) for i in range(n)] if self.best else [1.0 / n] * n
        for c in choices.inputs:
            n = len(c.candidates)
            inputs[c.label] = [float(i in self.best[1][c.label]) for i in range(n)] if self.best else [1.0 / n] * n
        return ops, inputs

    def derive(self, net: CompiledNetwork) -> nx.DiGraph:
        ops, inputs = self.scores(net)
        return decode(self.graph, ops, inputs)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.relaxation.generator.get_state(), "best": self.best, "image_hw": self.image_hw, "weight_steps": self.weight_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.relaxation.generator.set_state(state["generator"])
        self.best = state.get("best")
        self.weight_steps = int(state.get("weight_steps", 0))
        self.image_hw = tuple(state["image_hw"]) if state.get("image_hw") else None


def truncate_log(log: Path, generation: int) -> None:
    """Keep the lines of ``log`` for generations before ``generation`` (a resume's restored ones)."""
    kept = []
    for line in log.read_text().splitlines():
        try:
            if json.loads(line)["generation"] < generation:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by the interruption
    atomic_write_text(log, "".join(line + "\n" for line in kept))


def weights_digest(net: nn.Module) -> str:
    """SHA-256 of the supernet's weights and buffers: the evolution state of another supernet (a
    fresh search into the same folder) is never resumed."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _rank0() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0)


class GenerationLines:
    """Without a progress bar (a log file, ``--no-progress``, a compare's job): one line per generation
    on stdout, ``evolution generation 3/20: best fitness 0.4120 | scored 160 | 12.5 s``, so a long
    evolution is never silent."""

    def __init__(self, generations: int, enabled: bool):
        self.generations = generations
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        print(f"evolution generation {record['generation']}/{self.generations}: best fitness {record['best_fitness']:.4f} | scored {record['scored']} | {now - self.start:.1f} s", flush=True)
        self.start = now


def show_progress(wanted: bool | None) -> bool:
    """``wanted`` when set; else True only on rank 0 with stderr a terminal (no bar in logs or tests)."""
    if wanted is not None:
        return bool(wanted)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return False
    return sys.stderr.isatty()


class EvolutionProgress:
    """A rich progress bar on stderr over the evolution: candidates scored / at most ``total``, the
    generation, the best fitness so far. Disabled, it draws nothing and costs nothing."""

    def __init__(self, total: int, generations: int, show: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.generations = generations
        self.best = float("-inf")
        self.done = 0
        self.gen = 0
        columns = (TextColumn("[bold]evolution"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
        self.bar = Progress(*columns, console=Console(stderr=True), disable=not show, transient=False)
        self.task = self.bar.add_task("evolution", total=total, info=self._info())

    def _info(self) -> str:
        best = f"best {self.best:.4f}" if self.done else "best -"
        return f"generation {self.gen}/{self.generations} {best}"

    def __enter__(self) -> "EvolutionProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.update(self.task, total=self.done, info=self._info())  # fewer than the bound when the space ran out
        self.bar.stop()

    def scored(self, fitness: float) -> float:
        """Count one scored candidate; returns ``fitness`` unchanged."""
        self.done += 1
        self.best = max(self.best, fitness)
        self.bar.update(self.task, advance=1, info=self._info())
        return fitness

    def generation(self, gen: int) -> None:
        """Generation ``gen`` has been ranked; its children come next."""
        self.gen = min(gen + 1, self.generations)
        self.bar.update(self.task, info=self._info())


def _with_recalib(score: Callable[..., float], batches: int) -> Callable[[OpIdx, InputIdx], float]:
    """Pass ``recalib_batches`` to the loop's scorer when it takes it; else it uses search.bn_recalib_batches."""
    if batches <= 0:
        return score
    try:
        accepts = "recalib_batches" in inspect.signature(score).parameters
    except (TypeError, ValueError):
        accepts = False
    if accepts:
        return lambda ops, inputs: score(ops, inputs, recalib_batches=batches)
    warnings.warn("strategy.recalib_batches is not supported by this search loop's scorer; search.bn_recalib_batches is used instead", stacklevel=2)
    return score
