"""The search loop: data split, bi-level alternation, per-epoch logging, checkpoints and resume.

The loop knows no strategy in particular: it asks the strategy for its stages, its supernet, its
architecture optimiser and one search step, and owns everything else (data, weight optimiser and
schedule, S-mIoU, files). Per epoch it appends one line to ``search.jsonl`` and rewrites, atomically,
``checkpoint.pt``, ``arch.yaml``, ``scores.json`` and ``supernet.yaml``; pictures are drawn at the end.
A killed search resumes from its last finished epoch with ``--resume``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import math
import itertools
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import networkx as nx
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from archgraph.engine import distributed as D
from archgraph.core.compile import CompiledNetwork
from archgraph.config import Config, config_from_dict, load_config
from archgraph.configtools import dataclass_from_dict
from archgraph.core.costs import cost_table
from archgraph.data.transforms import IGNORE_INDEX
from archgraph.core.decode import decisions
from archgraph.errors import CheckpointError, ConfigError, NonFiniteLoss, NumericalError
from archgraph.core.graph import graph_hash, save
from archgraph.core.graph import load as load_graph
from archgraph.engine.checkpoint import has_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from archgraph.io import append_jsonl, atomic_write_json, atomic_write_text
from archgraph.core.registry import check_support, get_strategy
from archgraph.core.spaces_api import build_space

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 2


@dataclass
class SearchData:
    train_a: Dataset  # weights
    train_b: Dataset  # architecture
    val: Dataset
    num_classes: int
    class_names: list[str]


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def build_search_data(cfg: Config) -> SearchData:
    """trainA / trainB: a seeded random split of the training set; val: the validation split."""
    from archgraph.builders import dataset_split

    d = cfg.data
    train = dataset_split(cfg, d.train_split, train=True)
    val = dataset_split(cfg, d.val_split, train=False)
    if not 0 < cfg.search.split_ratio < 1:
        raise ConfigError(f"search.split_ratio must be in (0, 1), got {cfg.search.split_ratio}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    cut = int(round(len(order) * cfg.search.split_ratio))
    if cut < d.batch_size or len(order) - cut < d.batch_size:
        raise ConfigError(
            f"the training split has {len(train)} images: too few for two halves of at least data.batch_size={d.batch_size}; "
            "lower data.batch_size or use more data"
        )
    if d.val_limit:
        val = Subset(val, range(min(d.val_limit, len(val))))
    return SearchData(Subset(train, order[:cut]), Subset(train, order[cut:]), val, train.num_classes, list(train.class_names))


def _loader(ds: Dataset, cfg: Config, seed: int) -> DataLoader:
    """Shuffled batches of ``data.batch_size``; under torchrun this rank's share of each global batch."""
    return D.sharded_loader(ds, cfg.data.batch_size, seed, cfg.data.workers)


def _cycle(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def set_dataset_epoch(ds: Dataset, epoch: int) -> None:
    base = ds.dataset if isinstance(ds, Subset) else ds
    if hasattr(base, "set_epoch"):
        base.set_epoch(epoch)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


# --------------------------------------------------------------------------------------------------
# S-mIoU: the derived architecture evaluated with the supernet's weights


@contextlib.contextmanager
def _preserved_batchnorm(net: nn.Module) -> Iterator[list[nn.modules.batchnorm._BatchNorm]]:
    """Recalibration must not leak into the search: restore every BN buffer afterwards."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, {k: v.clone() for k, v in m.named_buffers()}) for m in bns]
    try:
        yield bns
    finally:
        for m, (momentum, buffers) in zip(bns, saved):
            m.momentum = momentum
            for k, v in buffers.items():
                getattr(m, k).copy_(v)


def score_subnet(net: CompiledNetwork, relaxation, op_idx: dict[str, int], input_idx: dict[str, list[int]], data: SearchData, cfg: Config, device: torch.device, recalib_batches: int | None = None) -> float:
    """Validation mIoU of one architecture inside the supernet (its subnet mode), with the BN
    statistics re-estimated on training batches first; the supernet's own BN state is restored."""
    from archgraph.engine.evaluate import evaluate

    batches = cfg.search.bn_recalib_batches if recalib_batches is None else recalib_batches
    was_training = net.training
    with _preserved_batchnorm(net) as bns, relaxation.fixed_subnet(op_idx, input_idx), torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the recalibration batches
        net.train()
        loader = _loader(data.train_a, cfg, cfg.seed + 7)
        for x, _ in itertools.islice(_cycle(loader), max(batches, 1)):
            net(x.to(device))
        net.eval()
        cm = evaluate(net, data.val, data.num_classes, progress=False, shard=True)
    net.train(was_training)
    return float(cm.miou())


def supernet_miou(net: CompiledNetwork, strategy, data: SearchData, cfg: Config, device: torch.device) -> float:
    """S-mIoU: the currently derived architecture, evaluated with the supernet's weights."""
    ops, inputs = strategy.scores(net)
    op_idx, input_idx = decisions(net.choices, ops, inputs)
    return score_subnet(net, strategy.relaxation, op_idx, input_idx, data, cfg, device)


def choice_entropies(net: CompiledNetwork) -> dict[str, float]:
    from archgraph.core.archstats import mean_entropy

    if net.arch is None:
        return {}
    with torch.no_grad():
        return {"entropy_alpha": float(mean_entropy(net, "ops")), "entropy_beta": float(mean_entropy(net, "inputs"))}


# --------------------------------------------------------------------------------------------------
# The run


def prepare_config(cfg_path: str | None, overrides: list[str], out: Path, resume: bool) -> Config:
    """The run's config; a resumed run keeps its saved config (overrides must not change it)."""
    saved = out / "config.yaml"
    if resume:
        if not has_checkpoint(out / CHECKPOINT):
            raise CheckpointError(f"{out / CHECKPOINT} does not exist: nothing to resume; run without --resume to start this search")
        if (out / "final.json").is_file():
            raise CheckpointError(f"{out} holds a finished search (final.json); nothing to resume. Use a new --out to search again")
        import yaml

        base = yaml.safe_load(saved.read_text()) if saved.is_file() else {}
        cfg = config_from_dict(base)
        if cfg_path or overrides:
            wanted = load_config(cfg_path, overrides, base=base)
            if wanted.to_dict() != cfg.to_dict():
                raise ConfigError(f"--resume continues {out} with its saved config; the given config/--set change it. Drop them or use a new --out")
        return cfg
    if has_checkpoint(out / CHECKPOINT):
        raise ConfigError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    return load_config(cfg_path, overrides)


def run_search(cfg: Config, out: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Search, write the run folder, return the last epoch's record.

    Checkpoints are written after every epoch, every ``search.checkpoint_every`` steps, and when the
    user presses Ctrl-C; a resumed run continues at the exact step it stopped at (same batches, same
    sampled paths, same RNG states), so it ends with the same architecture as an uninterrupted run.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    D.init_from_env()
    main = D.is_main()  # only rank 0 writes files and draws progress bars
    device = D.resolve_device(cfg.device)
    D.local_batch_size(cfg.data.batch_size)  # the global batch must split evenly over the processes
    precision = D.resolve_precision(cfg.search.amp, cfg.search.channels_last, device, "search")
    seed_everything(cfg.seed, cfg.search.deterministic)
    info = get_strategy(cfg.strategy_name)
    params = dataclass_from_dict(info.params, cfg.strategy_params, "strategy")
    # An unsupported strategy/space pair fails here, before any data is read.
    check_support(info, build_space(cfg.space_name, cfg.space_params))
    data = build_search_data(cfg)
    if not cfg.space.get("num_classes"):
        cfg.space["num_classes"] = data.num_classes
    if main:
        atomic_write_text(out / "config.yaml", cfg.to_yaml())

    graph = build_space(cfg.space_name, cfg.space_params)
    strategy = info.cls(graph, params, cfg.search, cfg.seed)

    state = D.from_main(lambda: _load_checkpoint(out)) if resume else None
    if state is not None and main:
        _truncate_log(out, state["stage"], state["epoch"], state["finished_epoch"])
    start_stage = state["stage"] if state else 0
    record: dict[str, Any] = {}
    net: CompiledNetwork | None = None
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    stop = GracefulStop(f"archgraph search --out {out} --resume")
    with stop, Progress(*columns, disable=not (progress and main), transient=False) as bar:
        for stage in range(start_stage, strategy.num_stages()):
            resuming = state is not None and state["stage"] == stage
            if resuming:
                # Progressive strategies rebuild the stage graph from their saved state (e.g. P-DARTS's
                # candidate sets), so it is loaded before the stage begins and again after the build.
                strategy.load_state_dict(state["strategy"])
            strategy.begin_stage(stage, net)
            net = D.sync_batchnorm(strategy.build_supernet().to(device), device)
            if cfg.search.flops_weight > 0:
                strategy.costs = cost_table(strategy.graph, tuple(cfg.data.crop))
            epochs = strategy.stage_epochs(stage)
            steps = len(data.train_a) // cfg.data.batch_size
            if cfg.search.steps_per_epoch:
                steps = min(steps, cfg.search.steps_per_epoch)
            w_opt = torch.optim.SGD(net.weight_parameters(), lr=cfg.search.w_lr, momentum=cfg.search.w_momentum, weight_decay=cfg.search.w_weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=max(epochs, 1), eta_min=cfg.search.w_lr_min)
            # alpha/beta stay out of DDP: their gradients are averaged right before the arch step
            # (strategies such as ProxylessNAS write them outside autograd); see docs/distributed.md.
            a_opt = D.average_gradients_before_step(strategy.arch_optimizer(net))
            step_net = D.parallelize(net, device, precision, find_unused=True, broadcast_buffers=not cfg.search.sync_bn,
                                     ignore=[f"arch.{name}" for name, _ in net.arch.named_parameters()] if net.arch is not None else [])
            start_epoch, start_step, sums = 0, 0, {}
            if resuming:
                net.load_state_dict(state["net"])
                w_opt.load_state_dict(state["w_opt"])
                sched.load_state_dict(state["sched"])
                if a_opt is not None and state.get("a_opt") is not None:
                    a_opt.load_state_dict(state["a_opt"])
                strategy.load_state_dict(state["strategy"])
                set_rng_state(state["rng"])
                if state["finished_epoch"]:
                    start_epoch = state["epoch"] + 1
                else:
                    start_epoch, start_step, sums = state["epoch"], state["step"], dict(state.get("sums", {}))
                record = state.get("record", {})
                state = None

            def checkpoint(epoch: int, step: int, finished: bool, sums: dict[str, float]) -> None:
                if not main:
                    return
                save_checkpoint(out / CHECKPOINT, {
                    "version": CHECKPOINT_VERSION, "stage": stage, "epoch": epoch, "step": step, "finished_epoch": finished,
                    "sums": dict(sums), "net": net.state_dict(), "w_opt": w_opt.state_dict(), "sched": sched.state_dict(),
                    "a_opt": a_opt.state_dict() if a_opt else None, "strategy": strategy.state_dict(), "rng": rng_state(),
                    "record": record,
                })

            task = bar.add_task(f"stage {stage + 1}/{strategy.num_stages()}" if strategy.num_stages() > 1 else "search",
                                total=epochs * steps, completed=start_epoch * steps + start_step, info="")
            for epoch in range(start_epoch, epochs):
                strategy.on_epoch_start(epoch, epochs)
                # Loaders seeded per (stage, epoch): a resumed search sees the same batches.
                epoch_seed = cfg.seed + 1000 * stage + 10 * epoch
                loader_a = _loader(data.train_a, cfg, epoch_seed)
                b_iter = _cycle(_loader(data.train_b, cfg, epoch_seed + 1))
                set_dataset_epoch(data.train_a, epoch)
                first = start_step if epoch == start_epoch else 0
                if epoch != start_epoch:
                    sums = {}
                # Skipping batches replays the loaders' shuffles; the skipped steps compute nothing.
                a_iter = itertools.islice(loader_a, first, steps)
                for _ in range(first):
                    next(b_iter)
                net.train()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                t0 = time.perf_counter()
                step = first
                for step, batch_w in enumerate(a_iter, start=first):
                    strategy.on_step_start(epoch * steps + step, steps)
                    batch_a = next(b_iter)
                    batch_w = tuple(t.to(device) for t in batch_w)
                    batch_a = tuple(t.to(device) for t in batch_a)
                    if step_net is not net:  # the mean over the global batch's labelled pixels (distributed.py)
                        scales = D.global_mean_scales([batch_w[1], batch_a[1]], IGNORE_INDEX)
                        step_net.set_loss_scales([(batch_w[0], scales[0]), (batch_a[0], scales[1])])
                    try:
                        losses = strategy.search_step(step_net, batch_w, batch_a, w_opt, a_opt)
                    except NonFiniteLoss as exc:
                        losses = _non_finite(cfg, net, exc, stage, epoch, step, out)
                    _check_finite(net, losses, stage, epoch, step, out)
                    if step_net is not net and D.world_size() > 1:
                        # weighted like the gradients, so the ranks' mean is the global batch's loss
                        losses = {k: v * scales[1 if k.startswith("arch_") else 0] for k, v in losses.items()}
                    for k, v in losses.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} loss {losses.get('loss', float('nan')):.3f}")
                    step += 1
                    stop.requested = D.any_rank(stop.requested)  # every rank stops at the same step
                    every = cfg.search.checkpoint_every
                    if step < steps and (stop.requested or (every and step % every == 0)):
                        checkpoint(epoch, step, False, sums)
                        stop.exit_if_requested(f"stage {stage} epoch {epoch} step {step}")
                elapsed = time.perf_counter() - t0
                done = max(steps - first, 1)
                sched.step()
                _check_ranks_agree(net, strategy, stage, epoch)
                derived = strategy.derive(net)
                record = {
                    "stage": stage,
                    "epoch": epoch,
                    **{k: v / max(steps, 1) for k, v in D.mean_over_ranks(sums).items()},
                    "lr": w_opt.param_groups[0]["lr"],
                    "arch_active": strategy.arch_active(),
                    **_log_state(strategy),
                    **choice_entropies(net),
                    "step_time": elapsed / done,
                    "peak_mem_mb": D.max_over_ranks(peak_memory_mb(device)),
                    "arch_hash": graph_hash(derived),
                    **_parallel_fields(precision),
                }
                last = epoch == epochs - 1
                if cfg.search.eval_every and ((epoch + 1) % cfg.search.eval_every == 0 or last):
                    record["s_miou"] = supernet_miou(net, strategy, data, cfg, device)
                record["seconds"] = time.perf_counter() - t0
                if main:
                    _write_epoch(out, net, strategy, derived, record)
                checkpoint(epoch, steps, True, {})
                stop.requested = D.any_rank(stop.requested)
                stop.exit_if_requested(f"the end of stage {stage} epoch {epoch}")
    assert net is not None
    # Strategies that pick the architecture after supernet training (SPOS's evolution) do it here.
    scorer = lambda ops, inputs, recalib_batches=None: score_subnet(net, strategy.relaxation, ops, inputs, data, cfg, device, recalib_batches)
    # Every rank takes part (its scores need all ranks); only rank 0's files land in the run folder.
    with _rank_folder(out) as end_out:
        if strategy.on_search_end(net, scorer, end_out) and main:
            derived = strategy.derive(net)
            save(derived, out / "arch.yaml")
    if main:
        _finish(out, net, strategy)
        atomic_write_json(out / "final.json", {"arch_hash": graph_hash(load_graph(out / "arch.yaml")), **record})
    D.barrier()  # callers on every rank (compare, correlate) read the files next
    return record


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
    D.check_identical(f"architecture parameters, channel masks or sampling state after stage {stage} epoch {epoch}",
                      D.fingerprint(tensors, strategy.state_dict()))


class GracefulStop:
    """Ctrl-C (SIGINT) during a run: finish the current step, save a checkpoint, exit with a message.

    The first Ctrl-C only sets a flag that the loop checks after every step, so a checkpoint is
    never written from a half-done step; a second Ctrl-C aborts at once (the last checkpoint stays).
    Outside the main thread (where signals cannot be caught) it does nothing.
    """

    def __init__(self, resume_command: str):
        self.resume_command = resume_command
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: saving a checkpoint after this step (press Ctrl-C again to abort without saving)", file=sys.stderr)

    def __enter__(self) -> "GracefulStop":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def exit_if_requested(self, where: str) -> None:
        if self.requested:
            print(f"interrupted at {where}: checkpoint saved; continue with: {self.resume_command}", file=sys.stderr)
            raise KeyboardInterrupt


def _non_finite(cfg: Config, net: CompiledNetwork, exc: NonFiniteLoss, stage: int, epoch: int, step: int, out: Path) -> dict[str, float]:
    """``search.on_nonfinite``: stop (default) or skip the batch (its update was never applied)."""
    for p in net.parameters():
        p.grad = None
    if cfg.search.on_nonfinite == "skip":
        print(f"warning: non-finite {exc.what} at stage {stage} epoch {epoch} step {step}; batch skipped (search.on_nonfinite=skip)", file=sys.stderr)
        return {"skipped": 1.0}
    raise NumericalError(
        f"non-finite {exc.what} at stage {stage} epoch {epoch} step {step}; the last good checkpoint in {out} is kept. "
        "Lower search.w_lr or search.arch_lr, raise search.grad_clip, or set search.on_nonfinite=skip, then --resume"
    )


def _truncate_log(out: Path, stage: int, epoch: int, finished: bool) -> None:
    """Drop search.jsonl lines of epochs the checkpoint does not hold (written just before a kill)."""
    path = out / "search.jsonl"
    if not path.is_file():
        return
    limit = (stage, epoch if finished else epoch - 1)
    kept = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if (r.get("stage", 0), r.get("epoch", 0)) <= limit:
            kept.append(json.dumps(r))
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def _check_finite(net: CompiledNetwork, losses: dict[str, float], stage: int, epoch: int, step: int, out: Path) -> None:
    """Stop at the first NaN/Inf parameter: the last good checkpoint stays untouched."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if not bad and net.arch is not None:
        bad = [f"arch.{name}" for name, p in net.arch.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NumericalError(
            f"non-finite {', '.join(bad)} at stage {stage} epoch {epoch} step {step}; the last good checkpoint in {out} is kept. "
            "Lower search.w_lr or search.arch_lr, or raise search.grad_clip, then --resume"
        )


def _write_epoch(out: Path, net: CompiledNetwork, strategy, derived: nx.DiGraph, record: dict[str, Any]) -> None:
    append_jsonl(out / "search.jsonl", record)
    save(derived, out / "arch.yaml")
    save(strategy.graph, out / "supernet.yaml")
    ops, inputs = strategy.scores(net)
    atomic_write_json(out / "scores.json", {"ops": ops, "inputs": inputs})


def _finish(out: Path, net: CompiledNetwork, strategy) -> None:
    import json

    from archgraph.core.graph import load
    from archgraph.outputs.render import render

    scores = json.loads((out / "scores.json").read_text())
    for name, graph, sc in (("supernet", strategy.graph, scores), ("arch", load(out / "arch.yaml"), None)):
        result = render(graph, out / f"{name}.svg", scores=sc, title=f"{name} ({strategy.name})")
        if result.warning:
            print(f"warning: {result.warning}")


def _load_checkpoint(out: Path) -> dict[str, Any]:
    def check(state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION or "finished_epoch" not in state:
            raise CheckpointError(f"{out / CHECKPOINT} is not an archgraph search checkpoint of version {CHECKPOINT_VERSION}; start a new search with another --out")

    return load_checkpoint(out / CHECKPOINT, check, warn=lambda msg: print(f"warning: {msg}", file=sys.stderr))
