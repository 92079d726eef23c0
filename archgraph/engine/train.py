"""Stand-alone training of a derived architecture: SGD + poly schedule, periodic evaluation, resume, hooks.

Why a separate engine from the search loop: a derived architecture has no choice points, so there
is no bi-level alternation, no data split and no strategy; what matters here is the recipe the
segmentation papers use (DeepLab, DCNAS): SGD with momentum and weight decay, the learning rate
decayed *per iteration* as ``lr * (1 - it / max_it) ** power``, and mIoU on whole validation images.

A run folder (``--out``) holds, each written atomically:

- ``config.yaml``: the resolved config; ``arch.yaml``: a copy of the trained architecture;
- ``train.jsonl``: one line per epoch (loss, lr, time, and mIoU/pixel accuracy when evaluated);
- ``last.pt``: weights + optimiser + scheduler + epoch + RNG states after every epoch (``--resume``);
- ``best.pt``: the same for the epoch with the best validation mIoU so far;
- ``metrics.json``: the final result of ``best.pt``: ``miou``, ``pixel_acc``, ``per_class_iou``,
  ``params``, ``flops`` and how they were measured (and ``stopped_early`` when a hook ended the run).

The training runs on the loop search uses (:class:`TrainingRun`, an
:class:`~archgraph.engine.loop.EpochLoop`): the run supplies its one stage, an epoch's batches, one
SGD step and the epoch's own figures; evaluation and best.pt, train.jsonl, TensorBoard, the epoch
line and last.pt are hooks (:func:`training_hooks`), and so are a user's (``train.hooks``,
``run_training(..., hooks=[...])``; :mod:`archgraph.engine.hooks`).

Resume is exact on the CPU: the data order of epoch ``e`` depends only on ``(seed, e)`` and the RNG
states are restored, so a run killed after epoch ``e`` and resumed ends with the weights an
uninterrupted run would have.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import networkx as nx
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from archgraph.engine import distributed as D
from archgraph.core.compile import CompiledNetwork, compile_graph
from archgraph.config import Config, config_from_dict, load_config
from archgraph.core.costs import count_params, model_flops
from archgraph.data.transforms import IGNORE_INDEX, check_crop_stride
from archgraph.errors import CheckpointError, ConfigError, GraphError, NumericalError
from archgraph.core.graph import graph_hash, head_node, node_spec, save
from archgraph.core.archfile import load_architecture as check_architecture
from archgraph.io import append_jsonl, atomic_write_json, atomic_write_text, load_yaml_file
from archgraph.engine.checkpoint import has_checkpoint, load_checkpoint as load_verified, previous_path, rng_state, save_checkpoint, set_rng_state
from archgraph.engine.hooks import Hook, Hooks, hooks_from_config
from archgraph.core.measure import Timer, peak_fields, reset_peak
from archgraph.engine.loop import EpochLineHook as BaseEpochLine, EpochLoop, EpochPrinter, GracefulStop, loader_scope, progress_bar, seed_everything, set_dataset_epoch, truncate_jsonl
from archgraph.engine.tracking import RunLogger, epoch_scalars, final_scalars, log_panels, open_logger, prediction_panels, require_backend, step_scalars

LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.json"
LOG = "train.jsonl"
CHECKPOINT_KIND = "archgraph-train"
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# inputs: the architecture, the data, the config


@dataclass
class EvalData:
    """A validation set and what the metrics need to name its classes."""

    dataset: Dataset
    num_classes: int
    class_names: list[str]
    name: str
    split: str


def arch_file(path: str | Path) -> Path:
    """The architecture YAML behind ``path``: the file itself, or ``path/arch.yaml`` for a run folder."""
    path = Path(path)
    if path.is_dir():
        inner = path / "arch.yaml"
        if not inner.is_file():
            raise GraphError(f"{path} is a folder without arch.yaml; pass an architecture YAML or a search run folder (`archgraph search --out`)")
        return inner
    if not path.exists():
        raise GraphError(f"{path}: no such file or folder; pass an architecture YAML (`archgraph sample`/`search`) or a search run folder")
    return path


def load_architecture(path: str | Path) -> nx.DiGraph:
    """Load a derived architecture (no choice points, part of its space) from a YAML file or a search
    run folder; see :func:`archgraph.core.archfile.load_architecture` for what is checked."""
    graph = check_architecture(arch_file(path))
    compile_graph(graph)  # builds every op now, with the file's name in context
    return graph


def head_classes(graph: nx.DiGraph) -> int:
    """Classes the architecture predicts: the channels of its head."""
    return node_spec(graph, head_node(graph)).channels


def check_classes(graph: nx.DiGraph, num_classes: int, dataset: str, source: str) -> None:
    """The head must predict exactly the dataset's classes; say which side to change otherwise."""
    arch_classes = head_classes(graph)
    if arch_classes == num_classes:
        return
    fix = f"set data.num_classes={arch_classes} for synthetic data, or " if dataset == "synthetic" else ""
    raise ConfigError(
        f"{source} predicts {arch_classes} classes (head channels) but dataset {dataset!r} has {num_classes}; "
        f"{fix}use an architecture built with space.num_classes={num_classes} (search/sample with the same data settings)"
    )


def _dataset(cfg: Config, split: str, train: bool):
    """One split, built exactly as the search builds it (:func:`archgraph.builders.dataset_split`)."""
    from archgraph.builders import dataset_split

    return dataset_split(cfg, split, train)


def build_eval_data(cfg: Config) -> EvalData:
    """The validation split (``data.val_split``), first ``data.val_limit`` images when set."""
    ds = _dataset(cfg, cfg.data.val_split, train=False)
    names = list(ds.class_names)
    subset: Dataset = Subset(ds, range(min(cfg.data.val_limit, len(ds)))) if cfg.data.val_limit else ds
    return EvalData(subset, ds.num_classes, names, cfg.data.name, cfg.data.val_split)


def _saved_config(out: Path) -> dict[str, Any]:
    import yaml

    path = out / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; {out} is not a complete training run folder (start a new run with another --out)")
    try:
        data = load_yaml_file(path) or {}
    except yaml.YAMLError:
        raise CheckpointError(f"{path} is not valid YAML; restore it or start a new run with another --out") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a config mapping; restore it or start a new run with another --out")
    return data


RETRAIN_KEYS = ("base_channels", "head", "num_classes")  # space keys that are training settings, not topology


def fit_to_config(graph: nx.DiGraph, cfg: Config, given: set[str] | None = None) -> tuple[nx.DiGraph, dict[str, tuple[Any, Any]]]:
    """The architecture as ``cfg`` trains it: the head rebuilt for the dataset's classes and, when
    the config sets them (``given``: the space keys the user named), the widths
    (``space.base_channels``) and the head (``space.head``) its space defines for those values. The
    topology is the architecture's and cannot change here. Returns the graph and
    ``{key: (old, new)}``; ``cfg.space`` records the values trained with."""
    from archgraph.builders import dataset_classes
    from archgraph.core.spaces_api import retarget

    params = graph.graph.get("params")
    if not graph.graph.get("space") or not isinstance(params, dict):
        return graph, {}  # a hand-built graph: trained as it is (check_classes guards its head)
    given = set(cfg.space_params) if given is None else given
    fixed = {k: v for k, v in cfg.space_params.items() if k in given and k not in RETRAIN_KEYS and params.get(k) != v}
    if fixed:
        key, value = next(iter(fixed.items()))
        raise ConfigError(
            f"space.{key}={value!r} would change the architecture's topology (it has {key}={params.get(key)!r}); for training only "
            f"{', '.join('space.' + k for k in RETRAIN_KEYS)} can change. Drop space.{key}, or search again to get another topology"
        )
    wanted = {"num_classes": dataset_classes(cfg), **{k: cfg.space[k] for k in ("base_channels", "head") if k in given}}
    fitted, changed = retarget(graph, **wanted)
    # The run's config records the space the trained network belongs to.
    cfg.space.update({"name": graph.graph["space"], **fitted.graph["params"]})
    return fitted, changed


def search_data_settings(arch: str | Path, dataset: str | None = None) -> dict[str, Any]:
    """The ``data`` section a search run folder was searched with (empty for a plain file), so that
    ``archgraph train RUN_DIR`` trains on the same data unless ``--config``/``--set`` say otherwise.
    Nothing is carried when the user names another dataset (``dataset``): the search's root, class
    count and options belong to its own dataset."""
    import yaml

    folder = Path(arch)
    saved = folder / "config.yaml"
    if not folder.is_dir() or not saved.is_file():
        return {}
    try:
        data = (load_yaml_file(saved) or {}).get("data")
    except (yaml.YAMLError, AttributeError):
        return {}
    if not isinstance(data, dict) or (dataset is not None and dataset != data.get("name", "synthetic")):
        return {}
    return {"data": data}


def prepare_training(arch: str | Path | None, cfg_path: str | None, overrides: list[str], out: Path, resume: bool) -> tuple[Config, nx.DiGraph]:
    """The config and architecture of a run (the architecture fitted to the config, :func:`fit_to_config`).
    A resumed run keeps its saved config and arch.yaml."""
    out = Path(out)
    if resume:
        return _resumed(arch, cfg_path, overrides, out)
    if arch is None:
        raise ConfigError("no architecture given; pass ARCH.yaml (or a search run folder), or --resume to continue --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the run")
    refuse_finished(out)
    if has_checkpoint(out / LAST):  # last.prev.pt alone counts: a save killed between its renames
        raise ConfigError(f"{out} already holds an unfinished training run; pass --resume to continue it or choose another --out")
    from archgraph.config import given_keys

    named = load_config(cfg_path, overrides).data.name if "name" in given_keys(cfg_path, overrides, "data") else None
    cfg = load_config(cfg_path, overrides, base=search_data_settings(arch, named))
    hooks_from_config(cfg.train.hooks, "train")  # a wrong hook spec: refused before the run is announced (run_training builds them)
    graph, _ = fit_to_config(load_architecture(arch), cfg, given_keys(cfg_path, overrides, "space"))
    return cfg, graph


def _resumed(arch: str | Path | None, cfg_path: str | None, overrides: list[str], out: Path) -> tuple[Config, nx.DiGraph]:
    if not has_checkpoint(out / LAST):
        raise CheckpointError(f"{out / LAST} does not exist: nothing to resume; run without --resume to start training in {out}")
    base = _saved_config(out)
    cfg = config_from_dict(base)
    if cfg_path or overrides:
        if load_config(cfg_path, overrides, base=base).to_dict() != cfg.to_dict():
            raise ConfigError(f"--resume continues {out} with its saved config; the given --config/--set change it. Drop them or use a new --out")
    refuse_finished(out)  # after the saved-config check, which names a changed setting first
    graph = load_architecture(out / "arch.yaml")
    if arch is not None and graph_hash(fit_to_config(load_architecture(arch), config_from_dict(base), set())[0]) != graph_hash(graph):
        raise ConfigError(f"--resume continues {out} with its own arch.yaml; {arch} is a different architecture. Drop it or use a new --out")
    return cfg, graph


def refuse_finished(out: Path) -> None:
    """A finished training run gets one message, with or without --resume, and fixes that work."""
    from archgraph.runfolder import free_path

    if (out / METRICS).is_file():
        raise CheckpointError(
            f"{out} holds a finished training run ({METRICS}); nothing to resume or redo there. Evaluate it with "
            f"`archgraph evaluate {out}`, or train again into a new folder, e.g. --out {free_path(out)}"
        )


def init_weights(net: CompiledNetwork, source: str | Path) -> tuple[int, int]:
    """``train.init_from``: copy every tensor of a trained run's weights whose name and shape match
    (fine-tuning: VOC aug -> VOC; another class count leaves the classifier fresh). (copied, total)."""
    path = Path(source)
    path = path / BEST if path.is_dir() else path
    from archgraph.core.compile import transfer_weights

    state = load_checkpoint(path)
    copied = transfer_weights(state["net"], net)
    if copied == 0:
        raise CheckpointError(
            f"train.init_from={source}: none of its {len(state['net'])} tensors fits this architecture (another topology?); drop train.init_from or pass a run of the same architecture"
        )
    return copied, len(net.state_dict())


# --------------------------------------------------------------------------------------------------
# the training loop


def poly_factor(total_steps: int, power: float):
    """``it -> (1 - it / total) ** power``: the per-iteration poly decay DeepLab and DCNAS use."""
    total = max(int(total_steps), 1)
    return lambda it: max(0.0, 1.0 - min(it, total) / total) ** power


def load_checkpoint(path: Path, fallback: bool = True) -> dict[str, Any]:
    """A training checkpoint, checksum-verified, falling back to the previous good one of the same
    name (not with ``fallback=False``: evaluate and export report on the file they name);
    :class:`CheckpointError` naming the file when none is usable."""
    path = Path(path)
    if not path.is_file() and (not fallback or not previous_path(path).is_file()):
        other = path.with_name(LAST if path.name == BEST else BEST)
        fix = f"pick the other checkpoint with --checkpoint {other.name}" if other.is_file() else "train into a new folder first (`archgraph train ARCH --out NEW_FOLDER`) and pass that folder"
        raise CheckpointError(f"{path} does not exist; {fix}")

    def check(state: dict[str, Any]) -> None:
        if state.get("kind") != CHECKPOINT_KIND or state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path} is not an archgraph training checkpoint (version {CHECKPOINT_VERSION}); pass a folder written by `archgraph train`")

    return load_verified(path, check, warn=lambda msg: print(f"warning: {msg}", file=sys.stderr), fallback=fallback)


CHECKPOINT_NAMES = (BEST, LAST, previous_path(Path(BEST)).name, previous_path(Path(LAST)).name)


def intact_checkpoints(run_dir: str | Path, but: str) -> list[str]:
    """The checkpoints of ``run_dir`` other than ``but`` that load (for the fix an error suggests)."""
    found = []
    for name in CHECKPOINT_NAMES:
        if name != but and (Path(run_dir) / name).is_file():
            try:
                load_checkpoint(Path(run_dir) / name, fallback=False)
            except CheckpointError:
                continue
            found.append(name)
    return found


def _load_weights(net: CompiledNetwork, state: dict[str, Any], path: Path) -> None:
    try:
        net.load_state_dict(state["net"])
    except RuntimeError:
        raise CheckpointError(f"{path} does not match {path.parent / 'arch.yaml'} (different layers or shapes); the run folder was mixed up, train again") from None


EPOCH_LINE = [
    ("loss", "loss", "{:.3f}"),
    ("train_pixel_acc", "train acc", "{:.3f}"),
    ("miou", "mIoU", "{:.4f}"),
    ("pixel_acc", "pixel acc", "{:.4f}"),
    ("best_miou", "best", "{:.4f}"),
    ("seconds", "time", "{:.1f}s"),
]


@dataclass
class TrainStage:
    """The training's one stage of the shared loop: ``epochs`` epochs of ``steps`` SGD steps, from
    ``start_epoch`` (a resumed run; an epoch is never resumed half-way, so ``start_step`` stays 0)."""

    epochs: int
    steps: int
    start_epoch: int
    index: int = 0
    start_step: int = 0
    task: Any = None  # the progress bar's task


@dataclass
class TrainingRun(EpochLoop):
    """One stand-alone training on the shared :class:`~archgraph.engine.loop.EpochLoop`: the network,
    its optimiser and schedule, the data; what the loop asks of a run kind (one stage, an epoch's
    batches, one SGD step, the epoch's own record, the mid-epoch stop). Every other concern is a hook
    (:func:`training_hooks`)."""

    kind = "train"

    cfg: Config
    graph: nx.DiGraph
    out: Path
    main: bool  # rank 0: writes files, draws progress
    device: torch.device
    precision: D.Precision
    train_ds: Dataset
    val: EvalData
    steps: int
    net: CompiledNetwork
    step_net: Any
    opt: torch.optim.Optimizer
    sched: Any
    progress: bool
    stop: GracefulStop
    bar: Any
    say: EpochPrinter
    hooks: Hooks
    evaluation: EvaluationHook  # its best epoch is kept in the checkpoints under "best", where runs before hooks kept it
    start: int = 0  # the first epoch this process runs
    resumed: bool = False
    last_epoch: int = -1  # the last finished epoch
    stop_reason: str | None = None  # a hook's request_stop (EpochLoop); kept in last.pt
    log: RunLogger = field(default_factory=RunLogger)  # TensorBoard with train.tensorboard (rank 0), else a no-op
    sums: list[float] = field(default_factory=lambda: [0.0, 0, 0])  # the epoch's weighted loss, correct and labelled pixels

    # ------------------------------------------------------------------ the loop's questions

    def begin_stage(self, index: int) -> TrainStage:
        epochs = self.cfg.train.epochs
        if self.resumed and self.stop_reason:
            self.say(f"resuming {self.out}: it had stopped early ({self.stop_reason}); finishing it")
        elif self.resumed:
            self.say(f"resuming {self.out} at epoch {self.start + 1}/{epochs}")
        # A run that stopped early and was killed before metrics.json has no epoch left to run.
        stage = TrainStage(epochs, self.steps, epochs if self.stop_reason else self.start)
        stage.task = self.bar.add_task("train", total=epochs * self.steps, completed=self.start * self.steps, info="")
        return stage

    def batches(self, stage: TrainStage, epoch: int, first: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches. Their order depends only on (seed, epoch), so a resumed run sees the same
        batches; under torchrun each rank loads its share of every global batch (archgraph.engine.distributed)."""
        cfg = self.cfg
        loader = D.sharded_loader(self.train_ds, cfg.data.batch_size, cfg.seed + 10 * epoch, cfg.data.workers, self.device)
        set_dataset_epoch(self.train_ds, epoch)
        self.step_net.train()
        reset_peak(self.device)
        self.sums = [0.0, 0, 0]
        yield from itertools.islice(loader, stage.steps)
        if self.stop.requested:  # a stop during the epoch's last step ends the run there too (the loop checks the others)
            self.interrupt(stage, epoch, stage.steps)

    def step(self, stage: TrainStage, epoch: int, step: int, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """One SGD step (:func:`_train_step`); the hooks get its loss and the learning rate it used."""
        lr = self.opt.param_groups[0]["lr"]  # the rate this step uses (the schedule steps inside)
        loss, scale, hits, pixels = _train_step(self, *batch, epoch, step)
        self.sums = [self.sums[0] + loss * scale, self.sums[1] + hits, self.sums[2] + pixels]
        self.bar.update(stage.task, advance=1, info=f"epoch {epoch + 1}/{stage.epochs} loss {loss:.3f}")
        return {"loss": loss, "lr": lr}

    def interrupt(self, stage: TrainStage, epoch: int, done: int) -> None:
        """Ctrl-C/SIGTERM inside an epoch: exit at once, saving nothing (last.pt keeps the last finished
        epoch; an epoch is not checkpointed half-done), with the command that continues."""
        if epoch == 0:
            self.stop.resume_command = "the same command again (no epoch had finished, so nothing was saved)"
        saved = f"{self.out / LAST} holds the {epoch} finished epoch(s)" if epoch else "nothing saved"
        self.stop.exit_if_requested(f"epoch {epoch + 1} step {done}", saved)

    def epoch_record(self, stage: TrainStage, epoch: int, seconds: float, steps_run: int, done: int) -> dict[str, Any]:
        """The epoch's own figures (loss, train pixel accuracy, lr, step time, memory); the hooks add
        theirs (evaluation, a user's) and the loop the epoch's time before anything is written."""
        loss_sum, correct, counted = self.sums
        if D.world_size() > 1:  # per-rank sums -> the global batch's numbers
            loss_sum, correct, counted = D.sum_over_ranks([loss_sum / D.world_size(), correct, counted])
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss_sum / stage.steps,
            "train_pixel_acc": correct / max(counted, 1),
            "lr": self.opt.param_groups[0]["lr"],
            "steps": stage.steps,
            "step_time": seconds / stage.steps,
            **{k: D.max_over_ranks(v) for k, v in peak_fields(self.device).items()},
        }
        if D.world_size() > 1:
            record["world_size"] = D.world_size()
        if self.precision.label:
            record["precision"] = self.precision.label
        self.last_epoch = epoch
        return record

    # ------------------------------------------------------------------ checkpoints, resume, an early end

    def checkpoint(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        """What last.pt and best.pt hold: weights, optimiser, schedule, RNG, the best epoch, the named
        hooks' states (``hooks``) and an early stop's reason."""
        return {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "rng": rng_state(),
            "best": dict(self.evaluation.best),
            "record": record,
            "arch_hash": graph_hash(self.graph),
            "class_names": self.val.class_names,
            "hooks": self.hooks.state_dict(),
            "stopped_early": self.stop_reason,
        }

    def resume(self) -> None:
        """The state of last.pt; a checkpoint from before hooks (no ``hooks`` key) resumes too."""
        state = D.from_main(lambda: load_checkpoint(self.out / LAST))
        _load_weights(self.net, state, self.out / LAST)
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        set_rng_state(state["rng"])
        self.evaluation.best = state["best"]
        self.hooks.load_state_dict(state.get("hooks"))
        self.stop_reason = state.get("stopped_early")
        self.start, self.last_epoch, self.resumed = state["epoch"] + 1, state["epoch"], True

    def end_early(self) -> None:
        """After a hook's early stop: best.pt must exist (a run stopped before its first evaluation is
        evaluated now, at the epoch it stopped), and the last record of train.jsonl says why it stopped."""
        record = _last_record(self.out / LOG) if self.main else {}
        if self.evaluation.best["epoch"] < 0:
            self.evaluation.evaluate(self, self.last_epoch, record)
            record["best_miou"] = self.evaluation.best["miou"]
        record["stopped_early"] = self.stop_reason
        if self.main:
            _replace_last_record(self.out / LOG, record)


def _last_record(path: Path) -> dict[str, Any]:
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def _replace_last_record(path: Path, record: dict[str, Any]) -> None:
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    atomic_write_text(path, "".join(line + "\n" for line in [*lines[:-1], json.dumps(record)]))


# --------------------------------------------------------------------------------------------------
# the training's hooks (archgraph.engine.hooks), in the order training_hooks lists them


class EvaluationHook(Hook):
    """Model selection: mIoU on whole validation images (single scale) every ``train.eval_every``
    epochs and at the last; best.pt for the best so far. Its state, the best epoch, is kept in the
    checkpoints under ``best`` (not under ``hooks``), where runs before hooks kept it."""

    def __init__(self) -> None:
        self.best: dict[str, Any] = {"miou": -1.0, "epoch": -1, "summary": None}

    def fill_record(self, run: TrainingRun, stage: TrainStage, epoch: int, record: dict[str, Any]) -> None:
        t = run.cfg.train
        if (t.eval_every and (epoch + 1) % t.eval_every == 0) or epoch == t.epochs - 1:
            self.evaluate(run, epoch, record)
        record["best_miou"] = self.best["miou"]

    def evaluate(self, run: TrainingRun, epoch: int, record: dict[str, Any]) -> None:
        """Evaluate the network now (every rank: sharded), add miou/pixel_acc/eval_seconds to ``record``,
        and write best.pt when it is the best so far."""
        from archgraph.engine.evaluate import evaluate

        clock = Timer()
        summary = evaluate(run.net, run.val.dataset, run.val.num_classes, progress=run.progress and run.main, device=run.device, description=f"evaluate epoch {epoch + 1}", shard=True).summary(
            run.val.class_names
        )
        record.update(miou=summary["miou"], pixel_acc=summary["pixel_acc"], eval_seconds=clock.read())
        if summary["miou"] > self.best["miou"]:
            self.best = {"miou": summary["miou"], "epoch": epoch, "summary": summary}
            if run.main:
                save_checkpoint(run.out / BEST, run.checkpoint(epoch, record))


class TrainLogHook(Hook):
    """train.jsonl, one line per epoch (rank 0); a resumed run first drops the lines of epochs its
    checkpoint does not hold (written just before a kill)."""

    def before_run(self, run: TrainingRun) -> None:
        if run.resumed and run.main:
            truncate_jsonl(run.out / LOG, lambda r: r.get("epoch", -1) < run.start)

    def after_epoch(self, run: TrainingRun, stage: TrainStage, epoch: int, record: dict[str, Any]) -> None:
        if run.main:
            append_jsonl(run.out / LOG, record)


class TensorBoardHook(Hook):
    """TensorBoard (``train.tensorboard``, rank 0): each step's loss and learning rate; each epoch's
    figures and, when it was evaluated, predictions on the first validation images (on disk before
    last.pt is written); the final metrics."""

    def after_step(self, run: TrainingRun, stage: TrainStage, epoch: int, step: int, losses: dict[str, float]) -> None:
        run.log.scalars(step_scalars({"loss": losses["loss"]}, lr=losses["lr"]), epoch * stage.steps + step + 1)  # rank 0's batch

    def after_epoch(self, run: TrainingRun, stage: TrainStage, epoch: int, record: dict[str, Any]) -> None:
        if not run.cfg.train.tensorboard:
            return
        step = (epoch + 1) * stage.steps
        figures = {k: v for k, v in record.items() if not (k == "best_miou" and v < 0)}  # -1: nothing evaluated yet
        run.log.scalars(epoch_scalars(figures, "train"), step)
        if "miou" in record:
            log_panels(run.log, prediction_panels(run.net, run.val.dataset, run.device), step)
        run.log.flush()

    def after_run(self, run: TrainingRun, result: dict[str, Any]) -> None:
        run.log.scalars(final_scalars(result, ("miou", "pixel_acc", "params", "flops")), (run.last_epoch + 1) * run.steps)


class EpochLineHook(BaseEpochLine):
    """The training's epoch line (the best mIoU shown once an epoch was evaluated)."""

    keys = EPOCH_LINE

    def label(self, run: TrainingRun, stage: TrainStage) -> str:
        return "train"

    def shown(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "best_miou": record["best_miou"] if record.get("best_miou", -1) >= 0 else None}  # -1: not evaluated yet

    def resume_command(self, run: TrainingRun) -> str:
        return f"archgraph train --resume --out {run.out}"


class CheckpointHook(Hook):
    """last.pt after every epoch (rank 0), with the named hooks' states; last in the list, so a
    user's hook has updated its state for the epoch before it is saved."""

    def after_epoch(self, run: TrainingRun, stage: TrainStage, epoch: int, record: dict[str, Any]) -> None:
        if run.main:
            save_checkpoint(run.out / LAST, run.checkpoint(epoch, record))


def training_hooks(evaluation: EvaluationHook, user: Iterable[Hook] = ()) -> list[Hook]:
    """The training's hooks in calling order: evaluation and best.pt, train.jsonl, TensorBoard, the epoch
    line, the user's (``train.hooks``, then ``run_training(hooks=...)``), last.pt. The user's come after
    the record is written and before the checkpoint, so their state is saved with the epoch they saw."""
    return [evaluation, TrainLogHook(), TensorBoardHook(), EpochLineHook(), *user, CheckpointHook()]


def _check_recipe(t) -> None:
    if t.epochs < 1:
        raise ConfigError(f"train.epochs={t.epochs} must be >= 1")
    if t.eval_every < 0 or t.steps_per_epoch < 0:
        raise ConfigError("train.eval_every and train.steps_per_epoch must be >= 0 (0 = only at the end / a full pass)")
    if not t.multi_scale_eval or any(s <= 0 for s in t.multi_scale_eval):
        raise ConfigError(f"train.multi_scale_eval={t.multi_scale_eval} must be a non-empty list of positive scales, e.g. [1.0] or [0.75,1.0,1.25]")


def run_training(cfg: Config, graph: nx.DiGraph, out: Path, resume: bool = False, progress: bool = True, source: str = "the architecture", hooks: Iterable[Hook] = ()) -> dict[str, Any]:
    """Train ``graph`` stand-alone, write the run folder (module docstring), return metrics.json's dict.

    ``source`` names the architecture file in error messages. ``hooks``: the caller's own
    (:mod:`archgraph.engine.hooks`), after those of ``train.hooks``. Ctrl-C or SIGTERM stops after the
    current step; ``last.pt`` keeps the last finished epoch and ``--resume`` continues from there. A
    hook's early stop ends the run as a finished one (metrics.json from best.pt, ``stopped_early``).
    """
    run = _set_up_training(cfg, graph, Path(out), resume, progress, source, list(hooks))
    with run.log, loader_scope():  # the log closed (flushed) and data.workers stopped however the training ends
        with run.stop, run.bar:
            run.run_epochs()
        if run.stop_reason is not None:
            run.end_early()
        D.barrier()
        metrics = finish(cfg, run.out, run.val, progress=progress, stopped_early=run.stop_reason)
        run.hooks.call("after_run", run, metrics)
        return metrics


def _set_up_training(cfg: Config, graph: nx.DiGraph, out: Path, resume: bool, progress: bool, source: str = "the architecture", user_hooks: Iterable[Hook] = ()) -> TrainingRun:
    """Data, network, optimiser, schedule and hooks; the state of ``last.pt`` when resuming."""
    t = cfg.train
    _check_recipe(t)
    evaluation = EvaluationHook()
    hooks = Hooks(training_hooks(evaluation, [*hooks_from_config(t.hooks, "train"), *user_hooks]))  # a wrong hook: before any work
    require_backend(t.tensorboard, "train.tensorboard")
    D.init_from_env()
    device = D.resolve_device(cfg.device)
    D.local_batch_size(cfg.data.batch_size)  # the global batch must split evenly over the processes
    precision = D.resolve_precision(t.amp, t.channels_last, device, "train")
    seed_everything(cfg.seed, t.deterministic)
    train_ds = _dataset(cfg, cfg.data.train_split, train=True)
    val = build_eval_data(cfg)
    check_classes(graph, train_ds.num_classes, cfg.data.name, source)
    check_crop_stride(cfg.data.crop, max(graph.nodes[n]["scale"] for n in graph.nodes), source, D.batchnorm_batch(cfg.data.batch_size, t.sync_bn))
    steps = len(train_ds) // cfg.data.batch_size
    if steps == 0:
        raise ConfigError(f"the training split has {len(train_ds)} images, fewer than data.batch_size={cfg.data.batch_size}; lower data.batch_size")
    steps = min(steps, t.steps_per_epoch) if t.steps_per_epoch else steps
    main = D.is_main()
    out.mkdir(parents=True, exist_ok=True)
    if not resume and main:
        atomic_write_text(out / "config.yaml", cfg.to_yaml())
        save(graph, out / "arch.yaml")
        for stale in (LOG, BEST):  # leftovers of a run killed before its first checkpoint
            (out / stale).unlink(missing_ok=True)
    net = D.sync_batchnorm(compile_graph(graph).to(device), device, t.sync_bn)
    opt = torch.optim.SGD(net.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    # DDP (under torchrun) and autocast/channels-last (when configured) around the forward pass only.
    step_net = D.parallelize(net, device, precision, find_unused=False, broadcast_buffers=not t.sync_bn)
    if t.compile:  # the steps' forward compiled; evaluation and checkpoints use the eager `net` (distributed.compile_forward)
        step_net = D.compile_forward(step_net)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_factor(t.epochs * steps, t.poly_power))
    bar = progress_bar(progress and main)
    run = TrainingRun(
        cfg,
        graph,
        out,
        main,
        device,
        precision,
        train_ds,
        val,
        steps,
        net,
        step_net,
        opt,
        sched,
        progress,
        GracefulStop(f"archgraph train --resume --out {out}"),
        bar,
        EpochPrinter(bar, main),
        hooks,
        evaluation,
    )
    if resume:
        run.resume()
    elif t.init_from:
        copied, total = init_weights(net, t.init_from)
        if main:
            print(f"initialised {copied} of {total} tensors from {t.init_from} (the others start fresh)")
    # a resumed run continues its steps; TensorBoard hides what a killed run logged after last.pt
    run.log = open_logger(t.tensorboard and main, out, run.start * steps + 1 if resume else 0, "train.tensorboard")
    return run


def _train_step(run: TrainingRun, images: torch.Tensor, labels: torch.Tensor, epoch: int, step: int) -> tuple[float, float, int, int]:
    """One SGD step; (loss, its weight in the global mean, correct pixels, labelled pixels)."""
    images, labels = images.to(run.device, non_blocking=True), labels.to(run.device, non_blocking=True)
    logits = run.step_net(images)
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    run.opt.zero_grad(set_to_none=True)
    # Under torchrun: weight by this rank's share of the global batch's labelled pixels, so the
    # DDP-averaged gradient is that of the global mean (archgraph.engine.distributed).
    scale = D.global_mean_scales([labels], IGNORE_INDEX)[0]
    (loss * scale if scale != 1.0 else loss).backward()
    with torch.no_grad():
        keep = labels != IGNORE_INDEX
        hits = ((logits.argmax(1) == labels) & keep).sum()  # no boolean indexing: its nonzero() waits for the GPU
        # One copy to the host per step, for the loss, the finite check and the pixel counts (float64: exact counts).
        value, hit_count, pixels = torch.stack([loss.detach().double(), hits.double(), keep.sum().double()]).tolist()
    if not math.isfinite(value):  # before the update: the weights never see a non-finite gradient
        raise NumericalError(
            f"non-finite loss at epoch {epoch + 1} step {step + 1}; {run.out / LAST} keeps the last good epoch. A resumed run keeps "
            f"its settings, so train again in a new folder with a lower train.lr (now {run.cfg.train.lr:g}), e.g. "
            f"archgraph train {run.out / 'arch.yaml'} --config {run.out / 'config.yaml'} --set train.lr={run.cfg.train.lr / 10:g} --out {run.out}-retry"
        )
    run.opt.step()
    run.sched.step()
    return value, scale, int(hit_count), int(pixels)


def finish(cfg: Config, out: Path, val: EvalData, progress: bool = False, stopped_early: str | None = None) -> dict[str, Any]:
    """metrics.json from ``best.pt``: re-evaluated when multi-scale or flip testing is configured;
    ``stopped_early``: why a hook ended the run early (kept in metrics.json)."""
    from archgraph.engine.evaluate import evaluate

    # Under torchrun rank 0 reads the files it wrote and sends them (other machines may not see them).
    state, graph = D.from_main(lambda: (load_checkpoint(out / BEST), load_architecture(out / "arch.yaml")))
    net = compile_graph(graph)
    _load_weights(net, state, out / BEST)
    device = D.resolve_device(cfg.device)
    net.to(device)
    scales = [float(s) for s in cfg.train.multi_scale_eval]
    summary = state["best"]["summary"]
    if scales != [1.0] or cfg.train.flip_eval:
        summary = evaluate(net, val.dataset, val.num_classes, progress=progress, scales=scales, flip=cfg.train.flip_eval, device=device, description="final evaluation", shard=True).summary(
            val.class_names
        )
    metrics = {
        **summary,
        "params": count_params(net),
        "flops": model_flops(net, tuple(cfg.data.crop)),
        "flops_input": list(cfg.data.crop),
        "best_epoch": state["epoch"],
        "epochs": cfg.train.epochs,
        "dataset": val.name,
        "split": val.split,
        "images": len(val.dataset),
        "eval_scales": scales,
        "eval_flip": bool(cfg.train.flip_eval),
        "checkpoint": BEST,
        "arch_hash": graph_hash(graph),
    }
    if stopped_early is not None:
        metrics["stopped_early"] = stopped_early
    if D.is_main():
        atomic_write_json(out / METRICS, metrics)
    D.barrier()  # callers on every rank may read metrics.json next
    return metrics


# --------------------------------------------------------------------------------------------------
# trained run folders: evaluate, and load for export


@dataclass
class TrainedRun:
    cfg: Config
    graph: nx.DiGraph
    net: CompiledNetwork  # eval mode, CPU, with the checkpoint's weights
    checkpoint: Path
    class_names: list[str]  # as saved in the checkpoint (the training dataset's)


def load_run(run_dir: str | Path, checkpoint: str = BEST, overrides: list[str] | None = None) -> TrainedRun:
    """A trained network from a run folder; errors name the missing or broken file."""
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder; pass the --out folder of `archgraph train`")
    if checkpoint not in CHECKPOINT_NAMES:
        raise CheckpointError(f"unknown checkpoint {checkpoint!r}; use one of {', '.join(CHECKPOINT_NAMES)}")
    base = _saved_config(run)
    cfg = load_config(None, list(overrides or []), base=base)
    if not (run / "arch.yaml").is_file():
        raise CheckpointError(f"{run / 'arch.yaml'} is missing; {run} is not a complete training run folder")
    graph = load_architecture(run / "arch.yaml")
    state = load_checkpoint(run / checkpoint, fallback=False)  # the result names this file: no silent fallback
    net = compile_graph(graph)
    _load_weights(net, state, run / checkpoint)
    names = list(state.get("class_names") or [str(i) for i in range(head_classes(graph))])
    return TrainedRun(cfg, graph, net.eval(), run / checkpoint, names)


def eval_settings(cfg: Config, checkpoint: str) -> dict[str, Any]:
    """What an evaluation's numbers depend on: the weights, the test-time augmentation and the data
    settings (``data.workers`` changes the speed only). Two results with other settings are two results."""
    data = {k: v for k, v in cfg.to_dict()["data"].items() if k != "workers"}
    return {"checkpoint": checkpoint, "eval_scales": [float(s) for s in cfg.train.multi_scale_eval], "eval_flip": bool(cfg.train.flip_eval), "data": data}


def eval_file_name(dataset: str, split: str, settings: dict[str, Any]) -> str:
    """``eval-DATA-SPLIT[-CHECKPOINT][-sSCALES][-flip].json``: the default file of an evaluation, named by
    the settings people vary (weights, scales, flip), so a second evaluation with other ones sits beside
    the first instead of replacing it (the other data settings are checked, :func:`check_eval_target`)."""
    parts = [f"eval-{dataset}-{split}"]
    if settings["checkpoint"] != BEST:
        parts.append(Path(settings["checkpoint"]).stem.replace(".", "-"))
    if settings["eval_scales"] != [1.0]:
        parts.append("s" + "_".join(f"{s:g}" for s in settings["eval_scales"]))
    if settings["eval_flip"]:
        parts.append("flip")
    return "-".join(parts) + ".json"


def check_eval_target(path: Path, settings: dict[str, Any], force: bool) -> None:
    """Refuse to replace an evaluation result made with other settings, unless ``force``."""
    if force or not path.is_file():
        return
    try:
        old = json.loads(path.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        old = None
    if old == settings:
        return  # the same evaluation again: the same numbers
    if isinstance(old, dict):
        changed = [k for k in settings if k != "data" and old.get(k) != settings[k]]
        changed += [f"data.{k}" for k in settings["data"] if (old.get("data") or {}).get(k) != settings["data"][k]]
        what = f"made with other settings ({', '.join(changed) or 'unknown'})"
    else:
        what = "of an earlier archgraph version or another tool"
    raise ConfigError(f"{path} holds an evaluation {what}; it is not replaced. Write this one elsewhere with -o FILE, or pass --force to replace it")


def evaluate_run(run_dir: str | Path, overrides: list[str], checkpoint: str = BEST, output: Path | None = None, progress: bool = True, force: bool = False) -> tuple[dict[str, Any], Path]:
    """Evaluate a trained run on ``data`` (saved config <- overrides); write and return the JSON.

    The default file is named by the evaluation's settings (:func:`eval_file_name`); a file that
    holds a result of other settings is never replaced without ``force`` (:func:`check_eval_target`)."""
    from archgraph.engine.evaluate import evaluate

    run = load_run(run_dir, checkpoint, overrides)
    cfg = run.cfg
    val = build_eval_data(cfg)
    settings = eval_settings(cfg, run.checkpoint.name)
    path = Path(output) if output else Path(run_dir) / eval_file_name(val.name, val.split, settings)
    check_eval_target(path, settings, force)  # before the work
    check_classes(run.graph, val.num_classes, cfg.data.name, str(Path(run_dir) / "arch.yaml"))
    device = torch.device(cfg.device)
    net = run.net.to(device)
    scales = [float(s) for s in cfg.train.multi_scale_eval]
    clock = Timer()
    summary = evaluate(net, val.dataset, val.num_classes, progress=progress, scales=scales, flip=cfg.train.flip_eval, device=device).summary(val.class_names)
    result = {
        **summary,
        "dataset": val.name,
        "split": val.split,
        "images": len(val.dataset),
        "eval_scales": scales,
        "eval_flip": bool(cfg.train.flip_eval),
        "checkpoint": run.checkpoint.name,
        "params": count_params(net),
        "seconds": clock.read(),
        "settings": settings,
    }
    atomic_write_json(path, result)
    return result, path
