"""The search: a strategy's stages of bi-level steps on one loop, with hooks around them; resume.

The loop knows no strategy in particular: :class:`SearchRun` is the shared
:class:`~archgraph.engine.loop.EpochLoop` with the search's stages, batches (a trainA batch for the
weights, a trainB batch for the architecture) and step, and the strategy is driven through the one
:class:`~archgraph.engine.driver.StrategyDriver` (supernet, optimisers, step hooks, end-of-search).
Everything around the steps is a hook (:mod:`archgraph.engine.search_hooks`): health, S-mIoU, the
epoch's files, the watch history, TensorBoard, the epoch line, the non-finite policy, checkpoints,
and the user's (``search.hooks``, ``run_search(hooks=...)``). :func:`run_search` reads as its phases::

    run = _set_up(...)     # device, strategy, driver, data, hooks, the checkpoint to resume
    run.run_epochs()       # each stage: begin_stage (built, restored), its epochs of steps, the hooks
    _finish(run)           # end-of-search hook (SPOS's evolution), selection, pictures, final.json

Per epoch the hooks append one line to ``search.jsonl`` (losses, entropies, the health fields of
:mod:`archgraph.engine.health`, S-mIoU) and one to ``history.jsonl`` (the epoch's scores and derived
decisions, for the report's epoch-by-epoch view; :mod:`archgraph.outputs.watch`), and rewrite,
atomically, ``checkpoint.pt``, ``arch.yaml``, ``scores.json`` and ``supernet.yaml``; pictures are
drawn at the end. A killed search resumes from the exact step it stopped at with ``--resume``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

import networkx as nx
import torch

from archgraph.config import Config, config_from_dict, load_config
from archgraph.configtools import dataclass_from_dict
from archgraph.core.archstats import mean_entropy
from archgraph.core.compile import CompiledNetwork
from archgraph.core.graph import graph_hash
from archgraph.core.graph import load as load_graph
from archgraph.core.registry import check_support, get_strategy
from archgraph.core.spaces_api import build_space
from archgraph.data.transforms import check_crop_stride
from archgraph.engine import distributed as D
from archgraph.core.costbudget import MEASURED_TABLE
from archgraph.engine.budget import PLAN_FILE, TimePlan, check_time_budget, plan_equal_time
from archgraph.engine.checkpoint import has_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from archgraph.engine.health import ArchHealth
from archgraph.engine.driver import StageParts, StrategyDriver
from archgraph.engine.hooks import Hook, Hooks, hooks_from_config
from archgraph.core.measure import peak_fields, reset_peak
from archgraph.engine.loop import EpochLoop, EpochPrinter, GracefulStop, loader_scope, progress_bar, seed_everything, set_dataset_epoch, truncate_jsonl
from archgraph.engine.search_hooks import search_hooks, steps_before, write_architecture
from archgraph.engine.smiou import SearchData, build_search_data, cycle, loader, score_subnet, supernet_miou
from archgraph.engine.spend import SpendMeter
from archgraph.engine.tracking import RunLogger, final_scalars, open_logger, require_backend
from archgraph.errors import CheckpointError, ConfigError, NonFiniteLoss, NumericalError
from archgraph.io import append_jsonl, atomic_write_json, atomic_write_text, read_json
from archgraph.outputs.watch import HISTORY, history_record

__all__ = ["CHECKPOINT", "CHECKPOINT_VERSION", "SearchData", "build_search_data", "prepare_config", "run_search", "score_subnet"]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 2


def prepare_config(cfg_path: str | None, overrides: list[str], out: Path, resume: bool) -> Config:
    """The run's config; a resumed run keeps its saved config (overrides must not change it)."""
    saved = out / "config.yaml"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the search run")
    if (out / "final.json").is_file():
        raise CheckpointError(f"{out} holds a finished search (final.json); nothing to resume or redo there. Use a new --out to search again")
    if resume:
        if not has_checkpoint(out / CHECKPOINT) and not saved.is_file():
            raise CheckpointError(f"{out / CHECKPOINT} does not exist: nothing to resume; run without --resume to start this search")
        # A search stopped before its first checkpoint (a full disk) has its config.yaml: --resume starts it
        # again from the beginning with that config (run_search says so), so the command a message suggests works.
        from archgraph.io import load_yaml_file

        base = load_yaml_file(saved) if saved.is_file() else {}
        cfg = config_from_dict(base)
        if cfg_path or overrides:
            wanted = load_config(cfg_path, overrides, base=base)
            if wanted.to_dict() != cfg.to_dict():
                raise ConfigError(f"--resume continues {out} with its saved config; the given config/--set change it. Drop them or use a new --out")
        return cfg
    if has_checkpoint(out / CHECKPOINT):
        raise ConfigError(f"{out} already holds an unfinished search; pass --resume to continue it or choose another --out")
    return load_config(cfg_path, overrides)


# --------------------------------------------------------------------------------------------------
# The state of a run


@dataclass
class Stage(StageParts):
    """One stage as the driver built it (supernet, optimisers; P-DARTS has three stages, everything
    else one) and the search's position in it; handed to the driver as it is."""

    start_epoch: int = 0
    start_step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    task: Any = None
    resumed: bool = False  # restored from the checkpoint (its first frames were recorded before)

    @classmethod
    def of(cls, parts: StageParts) -> "Stage":
        return cls(**{f.name: getattr(parts, f.name) for f in fields(StageParts)})


@dataclass
class SearchRun(EpochLoop):
    """One search: the loop (:class:`~archgraph.engine.loop.EpochLoop`) with the strategy's stages and
    steps, and everything it holds across them. Its concerns around the steps are hooks
    (:mod:`archgraph.engine.search_hooks`)."""

    cfg: Config
    out: Path
    main: bool  # rank 0: writes files, draws progress
    device: torch.device
    precision: D.Precision
    strategy: Any
    driver: StrategyDriver
    data: SearchData
    state: dict[str, Any] | None  # the checkpoint being resumed, until its stage has been restored
    stop: GracefulStop
    bar: Any
    say: EpochPrinter
    hooks: Hooks = field(default_factory=Hooks)
    health: ArchHealth = field(default_factory=ArchHealth)
    log: RunLogger = field(default_factory=RunLogger)  # TensorBoard with search.tensorboard (rank 0), else a no-op
    record: dict[str, Any] = field(default_factory=dict)
    net: CompiledNetwork | None = None
    spend: SpendMeter = field(default_factory=SpendMeter)  # what the search spent (final.json "spent")
    plan: TimePlan | None = None  # search.budget=equal-time: the calibrated plan
    cut_by_clock: bool = False  # equal-time: the clock stopped the last stage before its planned end
    derived: nx.DiGraph | None = None  # the epoch's derived architecture and scores (the hooks write them)
    scores: tuple[Any, Any] | None = None
    panels: list = field(default_factory=list)  # the epoch's prediction pictures for TensorBoard (drawn in S-mIoU's recalibration)
    stop_reason: str | None = None

    kind = "search"

    # ------------------------------------------------------------------ stages

    def stage_indices(self) -> range:
        return range(self.state["stage"] if self.state else 0, self.strategy.num_stages())

    def begin_stage(self, index: int) -> Stage:
        """The stage's supernet and optimisers (the driver builds them); restored when this is the resumed stage."""
        strategy = self.strategy
        resuming = self.state is not None and self.state["stage"] == index
        if resuming:
            # Progressive strategies rebuild the stage graph from their saved state (e.g. P-DARTS's
            # candidate sets), so it is loaded before the stage begins and again after the build.
            strategy.load_state_dict(self.state["strategy"])
        stage = Stage.of(self.driver.begin_stage(index, self.net))
        self.health.begin_stage(stage.net, strategy, stage.a_opt)
        self.spend.watch(stage.net, stage.w_opt, stage.a_opt)
        self.net = stage.net
        if resuming:
            self._restore(stage)
        label = f"stage {index + 1}/{strategy.num_stages()}" if strategy.num_stages() > 1 else "search"
        stage.task = self.bar.add_task(label, total=stage.epochs * stage.steps, completed=stage.start_epoch * stage.steps + stage.start_step, info="")
        return stage

    def _restore(self, stage: Stage) -> None:
        """Load the checkpoint into the freshly built stage; it is consumed (``state = None``)."""
        state = self.state
        stage.net.load_state_dict(state["net"])
        stage.w_opt.load_state_dict(state["w_opt"])
        stage.sched.load_state_dict(state["sched"])
        if stage.a_opt is not None and state.get("a_opt") is not None:
            stage.a_opt.load_state_dict(state["a_opt"])
        self.strategy.load_state_dict(state["strategy"])
        if state.get("health") is not None:
            self.health.load_state_dict(state["health"])
        self.spend.load_state_dict(state.get("spend") or {})
        self.hooks.load_state_dict(state.get("hooks"))
        set_rng_state(state["rng"])
        if state["finished_epoch"]:
            stage.start_epoch = state["epoch"] + 1
        else:
            stage.start_epoch, stage.start_step, stage.sums = state["epoch"], state["step"], dict(state.get("sums", {}))
        self.record = state.get("record", {})
        stage.resumed = True
        self.state = None

    def save_checkpoint(self, stage: Stage, epoch: int, step: int, finished: bool) -> None:
        if not self.main:
            return
        self.log.flush()  # what the checkpoint covers is on disk before it
        save_checkpoint(
            self.out / CHECKPOINT,
            {
                "version": CHECKPOINT_VERSION,
                "stage": stage.index,
                "epoch": epoch,
                "step": step,
                "finished_epoch": finished,
                "sums": {} if finished else dict(stage.sums),
                "net": stage.net.state_dict(),
                "w_opt": stage.w_opt.state_dict(),
                "sched": stage.sched.state_dict(),
                "a_opt": stage.a_opt.state_dict() if stage.a_opt else None,
                "strategy": self.strategy.state_dict(),
                "health": self.health.state_dict(),
                "rng": rng_state(),
                "record": self.record,
                "spend": self.spend.state_dict(),
                "hooks": self.hooks.state_dict(),
            },
        )

    # ------------------------------------------------------------------ the equal-time clock

    def _out_of_time(self, stage: Stage) -> bool:
        """equal-time: the last stage stops at the first step boundary past ``search.time_budget_s`` of steps."""
        if self.plan is None or stage.index != self.strategy.num_stages() - 1:
            return False
        return D.any_rank(self.spend.step_seconds >= self.plan.time_budget_s)

    def cut_before_epoch(self, stage: Stage) -> bool:
        if self._out_of_time(stage):  # equal-time: a resumed search whose clock had run out
            self.cut_by_clock = True
        return self.cut_by_clock

    def cut_after_step(self, stage: Stage, epoch: int, done: int) -> bool:
        if self._out_of_time(stage):
            self.cut_by_clock = True  # equal-time: the epoch ends here, and with it the search
        return self.cut_by_clock

    def epoch_was_cut(self) -> bool:
        return self.cut_by_clock

    # ------------------------------------------------------------------ an epoch

    def batches(self, stage: Stage, epoch: int, first: int) -> Iterator[tuple[Any, Any]]:
        """The epoch's (trainA, trainB) batch pairs from step ``first`` (a resumed epoch): loaders seeded
        per (stage, epoch), so a resumed search sees the same batches; skipping replays the shuffles
        and computes nothing."""
        cfg = self.cfg
        self.driver.begin_epoch(stage, epoch)
        epoch_seed = cfg.seed + 1000 * stage.index + 10 * epoch
        loader_a = loader(self.data.train_a, cfg, epoch_seed)
        b_iter = cycle(loader(self.data.train_b, cfg, epoch_seed + 1))
        set_dataset_epoch(self.data.train_a, epoch)
        if epoch != stage.start_epoch:
            stage.sums = {}
        for _ in range(first):
            next(b_iter)
        stage.net.train()
        reset_peak(self.device)
        for batch_w in itertools.islice(loader_a, first, stage.steps):
            yield batch_w, next(b_iter)

    def step(self, stage: Stage, epoch: int, step: int, batch: tuple[Any, Any]) -> dict[str, float]:
        """One strategy step (the driver's) on a trainA batch (weights) and a trainB batch (architecture);
        a non-finite loss goes to the hooks' policy (``search.on_nonfinite``)."""
        where = f"stage {stage.index + 1} epoch {epoch + 1} step {step + 1}"
        with self.spend.timed_step():
            try:
                losses = self.driver.step(stage, epoch * stage.steps + step, *batch)
            except NonFiniteLoss as exc:
                for p in self.net.parameters():
                    p.grad = None
                losses = self.hooks.on_nonfinite(self, exc, where)
                if losses is None:
                    raise NumericalError(f"non-finite {exc.what} at {where}; the last good checkpoint in {self.out} is kept. {nan_fix(self)}") from None
            _check_finite(self, losses, where)
        for k, v in losses.items():
            stage.sums[k] = stage.sums.get(k, 0.0) + v
        self.bar.update(stage.task, advance=1, info=f"epoch {epoch + 1}/{stage.epochs} loss {losses.get('loss', float('nan')):.3f}")
        return losses

    def interrupt(self, stage: Stage, epoch: int, done: int) -> None:
        self.save_checkpoint(stage, epoch, done, False)
        self.stop.exit_if_requested(f"stage {stage.index + 1} epoch {epoch + 1} step {done}")

    def epoch_record(self, stage: Stage, epoch: int, seconds: float, steps_run: int, done: int) -> dict[str, Any]:
        """The epoch's own figures (losses, schedule, entropies, time, memory, the derived architecture's
        hash, what was spent); the hooks add theirs (health, S-mIoU) before anything is written."""
        if not self.cut_by_clock and self._out_of_time(stage) and epoch < stage.epochs - 1:
            self.cut_by_clock = True
        net, strategy = stage.net, self.strategy
        self.driver.end_epoch(stage)
        _check_ranks_agree(net, strategy, stage.index, epoch)
        self.derived = strategy.derive(net)
        self.scores = strategy.scores(net)  # once: scores.json and the history line hold the same numbers
        self.panels = []
        record = {
            "stage": stage.index,
            "epoch": epoch,
            **{k: v / max(done, 1) for k, v in D.mean_over_ranks(stage.sums).items()},
            "lr": stage.w_opt.param_groups[0]["lr"],
            "arch_active": strategy.arch_active(),
            **_log_state(strategy),
            **_entropies(net),
            "step_time": seconds / steps_run,
            **{k: D.max_over_ranks(v) for k, v in peak_fields(self.device).items()},
            "arch_hash": graph_hash(self.derived),
            **_parallel_fields(self.precision),
        }
        if self.cut_by_clock:
            record["cut_by_clock"] = True
            record["epoch_steps"] = done
        return record

    def complete_record(self, stage: Stage, epoch: int, record: dict[str, Any]) -> None:
        record["spent"] = self.spend.totals()

    def is_last_epoch(self, stage: Stage, epoch: int) -> bool:
        return epoch == stage.epochs - 1 or self.cut_by_clock


def run_search(cfg: Config, out: Path, resume: bool = False, progress: bool = True, hooks: Iterable[Hook] = ()) -> dict[str, Any]:
    """Search, write the run folder, return the final record (final.json's content).

    Checkpoints are written after every epoch, every ``search.checkpoint_every`` steps, and on Ctrl-C
    or SIGTERM; a resumed run continues at the exact step it stopped at (same batches, same sampled
    paths, same RNG states), so it ends with the same architecture as an uninterrupted run.
    ``hooks``: the caller's own (:mod:`archgraph.engine.hooks`), after those of ``search.hooks``.
    """
    run = _set_up(cfg, Path(out), resume, progress, list(hooks))
    with run.log, loader_scope():  # the log closed (flushed) and data.workers stopped however the search ends
        with run.stop, run.bar:
            run.run_epochs()
        result = _finish(run)
        run.hooks.call("after_run", run, result)
        return result


def _set_up(cfg: Config, out: Path, resume: bool, progress: bool, user_hooks: list[Hook]) -> SearchRun:
    """Device, strategy, data and config file; the checkpoint to resume. Fails before any data is
    read when the strategy cannot search the space or the budget takes no architecture step."""
    require_backend(cfg.search.tensorboard, "search.tensorboard")
    check_time_budget(cfg.search)
    if cfg.search.select:  # a wrong selector spec is named before any data is read
        from archgraph.engine.selection import get_selector

        get_selector(cfg.search.select)
    hooks = Hooks(search_hooks([*hooks_from_config(cfg.search.hooks, "search"), *user_hooks]))  # a wrong hook spec too
    spend = SpendMeter()  # from here: set-up and the equal-time calibration count in spent.wall_seconds
    out.mkdir(parents=True, exist_ok=True)
    D.init_from_env()
    device = D.resolve_device(cfg.device)
    D.local_batch_size(cfg.data.batch_size)  # the global batch must split evenly over the processes
    precision = D.resolve_precision(cfg.search.amp, cfg.search.channels_last, device, "search")
    seed_everything(cfg.seed, cfg.search.deterministic)
    info = get_strategy(cfg.strategy_name)
    params = dataclass_from_dict(info.params, cfg.strategy_params, "strategy")
    space = build_space(cfg.space_name, cfg.space_params)
    check_support(info, space)
    check_crop_stride(
        cfg.data.crop, max(space.nodes[n]["scale"] for n in space.nodes), f"the {cfg.space_name} space", D.batchnorm_batch(cfg.data.batch_size, cfg.search.sync_bn)
    )  # before any data is read
    data = build_search_data(cfg)
    if not cfg.space.get("num_classes"):
        cfg.space["num_classes"] = data.num_classes
    main = D.is_main()
    if main:
        atomic_write_text(out / "config.yaml", cfg.to_yaml())
    plan = _time_plan(cfg, info, params, data, device, precision, out, resume, main)
    search = plan.search(cfg.search) if plan is not None else cfg.search
    strategy = info.cls(build_space(cfg.space_name, cfg.space_params), params, search, cfg.seed)
    _check_budget(cfg, strategy, data)
    if resume and not D.from_main(lambda: has_checkpoint(out / CHECKPOINT)):
        if main:
            print(f"note: {out} has no checkpoint yet (stopped before its first one was saved); starting it from the beginning with its saved config", file=sys.stderr)
        resume = False
    state = D.from_main(lambda: _load_checkpoint(out)) if resume else None
    if main:  # no epoch is logged twice: keep what the checkpoint holds (nothing on a fresh start)
        done = (state["stage"], state["epoch"] if state["finished_epoch"] else state["epoch"] - 1) if state else (-1, -1)
        for log in ("search.jsonl", HISTORY):
            truncate_jsonl(out / log, lambda r: (r.get("stage", 0), r.get("epoch", 0)) <= done)
    bar = progress_bar(progress and main)
    driver = StrategyDriver(strategy, search, device=device, precision=precision, crop=tuple(cfg.data.crop), steps=steps_per_epoch(cfg, data), table_out=out / MEASURED_TABLE)
    run = SearchRun(
        cfg, out, main, device, precision, strategy, driver, data, state, GracefulStop(f"archgraph search --out {out} --resume"), bar, EpochPrinter(bar, main), hooks=hooks, spend=spend, plan=plan
    )
    taken = steps_before(strategy, state["stage"], state["epoch"], steps_per_epoch(cfg, data)) + state["step"] if state else -1
    run.log = open_logger(cfg.search.tensorboard and main, out, taken + 1, "search.tensorboard")  # resumed: continues the steps
    if state is not None:
        where = f"epoch {state['epoch'] + 2}" if state["finished_epoch"] else f"epoch {state['epoch'] + 1} step {state['step'] + 1}"
        run.say(f"resuming {out} at stage {state['stage'] + 1} {where}")
    return run


def _time_plan(cfg: Config, info, params, data: SearchData, device: torch.device, precision: D.Precision, out: Path, resume: bool, main: bool) -> TimePlan | None:
    """``search.budget=equal-time``: the epochs that fit the time budget, calibrated now (and saved in
    ``budget_plan.json``) or, on resume, read back so the resumed search keeps its schedule."""
    if cfg.search.budget != "equal-time":
        return None
    saved = out / PLAN_FILE
    if resume and saved.is_file():
        return TimePlan.from_dict(read_json(saved))
    make = lambda search: info.cls(build_space(cfg.space_name, cfg.space_params), params, search, cfg.seed)
    plan = plan_equal_time(cfg, make, data, device, precision, steps_per_epoch(cfg, data), out / MEASURED_TABLE)
    if main:
        atomic_write_json(saved, plan.to_dict())
    return plan


def steps_per_epoch(cfg: Config, data: SearchData) -> int:
    """Steps per epoch: one pass over trainA, or ``search.steps_per_epoch`` when that is smaller."""
    full = len(data.train_a) // cfg.data.batch_size
    return min(full, cfg.search.steps_per_epoch) if cfg.search.steps_per_epoch else full


def _check_budget(cfg: Config, strategy, data: SearchData) -> None:
    """Refuse a search whose schedule takes no architecture step (it would end with the
    initialisation's architecture and a normal ``done``); warn when a setting is silently capped."""
    full = len(data.train_a) // cfg.data.batch_size
    if cfg.search.steps_per_epoch > full:
        print(
            f"warning: search.steps_per_epoch={cfg.search.steps_per_epoch} is more than one pass over trainA ({full} batches of {cfg.data.batch_size}); each epoch runs {full} steps", file=sys.stderr
        )
    steps = steps_per_epoch(cfg, data)
    planned = [strategy.planned_arch_steps(s, steps) for s in range(strategy.num_stages())]
    if any(p is None for p in planned) or sum(planned) > 0:
        return
    raise ConfigError(
        f"this search would take no architecture step: {cfg.search.epochs} epochs of {steps} steps with "
        f"{strategy.warmup_epochs()} weight-only warm-up epochs{strategy.arch_schedule_note()}. Raise search.epochs above "
        "the warm-up (or lower search.warmup_epochs)"
    )


def check_search_budget(cfg: Config, data: SearchData | None = None) -> None:
    """:func:`_check_budget` for a search not started yet (``archgraph compare`` asks it for every
    strategy before its first run); ``data``: the search data, when the caller built it already."""
    from archgraph.config import config_from_dict

    cfg = config_from_dict(cfg.to_dict())  # num_classes is filled in below; the caller's config stays as it is
    info = get_strategy(cfg.strategy_name)
    params = dataclass_from_dict(info.params, cfg.strategy_params, "strategy")
    check_support(info, build_space(cfg.space_name, cfg.space_params))
    data = data if data is not None else build_search_data(cfg)
    if not cfg.space.get("num_classes"):
        cfg.space["num_classes"] = data.num_classes
    _check_budget(cfg, info.cls(build_space(cfg.space_name, cfg.space_params), params, cfg.search, cfg.seed), data)


def _entropies(net: CompiledNetwork) -> dict[str, float]:
    if net.arch is None:
        return {}
    with torch.no_grad():
        return {"entropy_alpha": float(mean_entropy(net, "ops")), "entropy_beta": float(mean_entropy(net, "inputs"))}


# --------------------------------------------------------------------------------------------------
# The end


def _finish(run: SearchRun) -> dict[str, Any]:
    """End-of-search hooks (SPOS's evolution picks the architecture here), pictures, final.json.

    When a hook changes the architecture, arch.yaml, scores.json and the final record's S-mIoU are
    those of the architecture it picked, not of the placeholder the epochs derived."""
    net, strategy, cfg, out = run.net, run.strategy, run.cfg, run.out
    if net is None:
        raise CheckpointError(f"{out}: the search ran no stage; start it again with a new --out")
    scorer = lambda ops, inputs, recalib_batches=None: score_subnet(net, strategy.relaxation, ops, inputs, run.data, cfg, run.device, recalib_batches)
    record = dict(run.record)
    # Every rank takes part (its scores need all ranks); only rank 0's files land in the run folder.
    before = run.spend.totals()
    changed = False
    if _own_rule_selects(cfg.search.select):  # another selector replaces the end hook's pick: skip its work
        with _rank_folder(out) as end_out:  # e.g. SPOS's evolution bar follows --no-progress
            changed = run.driver.finish(net, scorer, end_out, progress=run.main and not run.bar.disable)
    after = run.spend.totals()
    if changed:
        record["derived_by"] = "on_search_end"
        _report_s_miou(run, record)
        if run.main:
            derived, scores = strategy.derive(net), strategy.scores(net)
            write_architecture(out, derived, scores)
            append_jsonl(out / HISTORY, history_record(run.record.get("stage", 0), run.record.get("epoch", 0), scores, derived, label="end of search (picked by the strategy's end hook)"))
    _select(run, record)  # search.select, or the strategy's own selector (rsws); docs/strategies.md "Selection"
    if "s_miou" not in record:  # a hook stopped the search early, between two S-mIoU epochs
        _report_s_miou(run, record)
    learns = strategy.planned_arch_steps(0, 1) is not None  # SPOS: no gradient steps by design
    warning = run.health.verdict(*arch_lr_setting(strategy)) if learns and net.arch is not None else None
    spent = run.spend.totals()  # every rank: the images and FLOPs are summed over them
    if run.main:
        _draw(out, strategy)
        cost = _cost_fields(run, load_graph(out / "arch.yaml")) if getattr(strategy, "budget", None) is not None else None
        record = {
            **record,
            "arch_hash": graph_hash(load_graph(out / "arch.yaml")),
            "arch_steps_total": run.health.total_steps,
            **_budget_fields(run, before, after),
            "spent": spent,
            "wall_seconds": spent["wall_seconds"],
            **({"cost": cost} if cost else {}),
            **({"warning": warning} if warning else {}),
            **({"stopped_early": run.stop_reason} if run.stop_reason else {}),
        }
        atomic_write_json(out / "final.json", record)
        total = steps_before(strategy, strategy.num_stages(), 0, steps_per_epoch(cfg, run.data))
        run.log.scalars(final_scalars(record, ("s_miou", "arch_steps_total", "wall_seconds")), total)
        if warning:
            print(warning, file=sys.stderr)
        if cost and not cost["within_budget"]:
            print(
                f"warning: the derived architecture misses its budget {cost['limit']}: predicted {cost['predicted']:.4g} {cost['unit']} "
                f"({cost['excess']:+.1%}), measured {cost['measured']:.4g} {cost['unit']}; raise search.cost_weight "
                f"(the {strategy.name} rule: {cost['rule']}) or search longer",
                file=sys.stderr,
            )
    D.barrier()  # callers on every rank (compare, correlate) read the files next
    return record


def _report_s_miou(run: SearchRun, record: dict[str, Any]) -> None:
    """S-mIoU of what the strategy derives now, in ``record`` (with ``search.eval_every``): a report on
    val, outside what the search spent."""
    if not run.cfg.search.eval_every:
        return
    with run.spend.paused():
        record["s_miou"] = supernet_miou(run.net, run.strategy, run.data, run.cfg, run.device)
    record["s_miou_split"] = "val"


def _own_rule_selects(select: str | None) -> bool:
    """Whether the strategy's own end-of-search rule (SPOS's evolution) picks the architecture: with
    no ``search.select`` or ``argmax`` (the strategy's own rule); any other selector replaces it, so
    the end hook would be work thrown away."""
    return not select or select.split(":", 1)[0].strip() == "argmax"


def _select(run: SearchRun, record: dict[str, Any]) -> None:
    """The selection stage (:mod:`archgraph.engine.selection`) after the end hook: its pick becomes
    the derived architecture as an end hook's does, with final.json's ``selection`` record and the
    picked architecture's S-mIoU (a report on val; the selection scored on the selection split)."""
    from archgraph.core.decode import decode
    from archgraph.engine.scoring import one_hot_scores
    from archgraph.engine.selection import select_after_search, selection_spec
    from archgraph.engine.smiou import subnet_miou

    net, strategy, cfg, out = run.net, run.strategy, run.cfg, run.out
    spec = selection_spec(cfg.search.select, strategy)
    if not spec or not len(net.choices):
        return
    steps = run.spend.totals()
    weight_steps = int(steps.get("weight_steps", steps_before(strategy, strategy.num_stages(), 0, steps_per_epoch(cfg, run.data))))
    selection, record["selection"] = select_after_search(spec, net, strategy, run.data, cfg, run.device, weight_steps, int(steps.get("arch_steps", run.health.total_steps)), say=run.say)
    record["derived_by"] = f"selection {spec}"
    if cfg.search.eval_every:
        with run.spend.paused():  # a report on val, not a cost of the search
            record["s_miou"] = subnet_miou(net, strategy.relaxation, *selection.candidate, run.data, cfg, run.device, run.data.val)
        record["s_miou_split"] = "val"
    if run.main:
        scores = one_hot_scores(net.choices, *selection.candidate)
        derived = decode(strategy.graph, *scores)
        write_architecture(out, derived, scores)
        append_jsonl(out / HISTORY, history_record(run.record.get("stage", 0), run.record.get("epoch", 0), scores, derived, label=f"end of search (picked by selection {spec})"))


def _cost_fields(run: SearchRun, derived: nx.DiGraph) -> dict[str, Any]:
    """final.json's ``cost``: the derived architecture's cost as the cost model predicts it and as
    measured on the network compiled alone (latency timed at the deployment resolution on the search's
    device; FLOPs and parameters counted), against ``search.cost_limit``."""
    from archgraph.core.costbudget import budget_record, measured_cost, resolution_of

    budget, strategy = run.strategy.budget, run.strategy
    predicted = float(budget.model.of_graph(derived))
    resolution = resolution_of(budget.limit, run.cfg.data.crop)
    with run.spend.paused():  # a check of the result, not a cost of the search
        measured = measured_cost(derived, budget.limit, resolution, run.device)
    fields = budget_record(budget, predicted, measured, getattr(strategy, "budget_rule", "hinge"), resolution=resolution)
    fields["excess"] = predicted / budget.value - 1.0
    if strategy.budget_rule == "hinge":
        fields["hinge"] = {"weight": run.cfg.search.cost_weight, "scale": strategy.budget_scale, "target": strategy.budget_target}
    return fields


def _budget_fields(run: SearchRun, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """final.json's account of the budget: its kind, the epochs each stage ran, what the end hook
    (SPOS's evolution) spent of the totals, and for equal-time the plan and whether the clock cut it."""
    strategy = run.strategy
    fields: dict[str, Any] = {
        "budget": run.cfg.search.budget,
        "stage_epochs": [strategy.stage_epochs(i) for i in range(strategy.num_stages())],
        "spent_by_end_hook": {k: after[k] - before[k] for k in ("images", "forward_gflop", "wall_seconds")},
    }
    if strategy.planned_arch_steps(0, 1) is None:
        fields["arch_steps_note"] = f"{strategy.name} takes no architecture steps by design (its architecture is picked after the supernet is trained)"
    if run.plan is not None:
        fields["time_budget"] = {**run.plan.to_dict(), "step_seconds_spent": run.spend.step_seconds, "cut_by_clock": run.cut_by_clock}
    return fields


@contextlib.contextmanager
def _rank_folder(out: Path) -> Iterator[Path]:
    """``out`` on rank 0; a scratch folder, deleted afterwards, on the other ranks."""
    if D.is_main():
        yield out
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"archgraph-rank{D.rank()}-") as tmp:
        yield Path(tmp)


def _log_state(strategy) -> dict[str, Any]:
    """The strategy's per-epoch values; numbers averaged over the ranks (e.g. ProxylessNAS's arch losses)."""
    values = strategy.log_state()
    if D.world_size() > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
        return D.mean_over_ranks(values)
    return values


def _parallel_fields(precision: D.Precision) -> dict[str, Any]:
    """Log fields of multi-process / mixed-precision runs (absent from plain single-process runs)."""
    fields: dict[str, Any] = {}
    if D.world_size() > 1:
        fields["world_size"] = D.world_size()
    if precision.label:
        fields["precision"] = precision.label
    return fields


def _check_ranks_agree(net: CompiledNetwork, strategy, stage: int, epoch: int) -> None:
    """alpha/beta and the strategy's sampling state must be bit-identical on every rank."""
    if D.world_size() == 1:
        return
    tensors = list(net.arch_parameters()) + [b for name, b in net.named_buffers() if name.endswith("channel_index")]
    D.check_identical(f"architecture parameters, channel masks or sampling state after stage {stage} epoch {epoch}", D.fingerprint(tensors, strategy.state_dict()))


# --------------------------------------------------------------------------------------------------
# Non-finite values


def _check_finite(run: SearchRun, losses: dict[str, float], where: str) -> None:
    """Stop at the first NaN/Inf parameter: the last good checkpoint stays untouched."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if not bad and run.net.arch is not None:
        params = list(run.net.arch.named_parameters())
        # one host-device sync for all of alpha/beta (a check per choice would stall a GPU once per node);
        # the names are looked up only when something is wrong
        if params and not bool(torch.stack([torch.isfinite(p).all() for _, p in params]).all()):
            bad = [f"arch.{name}" for name, p in params if not torch.isfinite(p).all()]
    if bad:
        raise NumericalError(f"non-finite {', '.join(bad)} at {where}; the last good checkpoint in {run.out} is kept. {nan_fix(run)}")


def arch_lr_setting(strategy: Any) -> tuple[str, float]:
    """The key that sets this strategy's architecture learning rate, and its value: pc_darts, p_darts
    and ProxylessNAS carry their papers' own (``strategy.arch_lr``) and do not read ``search.arch_lr``."""
    own = getattr(getattr(strategy, "params", None), "arch_lr", None)
    return ("strategy.arch_lr", float(own)) if own is not None else ("search.arch_lr", float(strategy.arch_lr()))


def nan_fix(run: SearchRun) -> str:
    """A fix that works when typed: a resumed search keeps its saved config, so a changed setting
    means a new search (from the start, in a new folder)."""
    key, lr = arch_lr_setting(run.strategy)
    return (
        f"Start again in a new folder with a lower search.w_lr (now {run.cfg.search.w_lr:g}) or {key} "
        f"(now {lr:g}), a smaller search.grad_clip, or search.on_nonfinite=skip: "
        f"archgraph search {run.out / 'config.yaml'} --set search.on_nonfinite=skip --out {run.out}-retry"
    )


# --------------------------------------------------------------------------------------------------
# Files


def _draw(out: Path, strategy) -> None:
    from archgraph.outputs.render import render

    scores = read_json(out / "scores.json")
    derived = load_graph(out / "arch.yaml")  # what the search derived (or its selection picked): drawn, not decoded again
    for name, graph, sc, arch in (("supernet", strategy.graph, scores, derived), ("arch", derived, None, None)):
        render(graph, out / f"{name}.svg", scores=sc, title=f"{name} ({strategy.name})", derived=arch)  # warns once itself without Graphviz


def _load_checkpoint(out: Path) -> dict[str, Any]:
    def check(state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION or "finished_epoch" not in state:
            raise CheckpointError(f"{out / CHECKPOINT} is not an archgraph search checkpoint of version {CHECKPOINT_VERSION}; start a new search with another --out")

    return load_checkpoint(out / CHECKPOINT, check, warn=lambda msg: print(f"warning: {msg}", file=sys.stderr))
