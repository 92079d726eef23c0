"""The search's concerns around its steps, one hook each (:mod:`archgraph.engine.hooks`).

:func:`search_hooks` lists them in the order the loop calls them; a user's hooks (``search.hooks``
and ``run_search(..., hooks=...)``) come after the ones that fill and write the epoch's record, and
before the checkpoint, so their state is saved with the epoch they saw:

1. :class:`HealthHook`: the architecture's health figures (margins, changed decisions, gradient
   SNR; :mod:`archgraph.engine.health`);
2. :class:`SMiouHook`: S-mIoU every ``search.eval_every`` epochs and at the end, a report on val;
3. :class:`EpochFilesHook`: search.jsonl, supernet.yaml, arch.yaml and scores.json (rank 0);
4. :class:`HistoryHook`: the watch history (history.jsonl: the report's epoch-by-epoch view);
5. :class:`TrackingHook`: TensorBoard (``search.tensorboard``);
6. :class:`EpochLineHook`: the one line per epoch, and how long a long run will take;
7. :class:`NonFinitePolicy`: ``search.on_nonfinite`` (stop, or skip the batch);
8. the user's hooks; 9. :class:`CheckpointHook`: checkpoint.pt after every epoch and every
   ``search.checkpoint_every`` steps, then the graceful stop.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Iterable

from archgraph.core.graph import save
from archgraph.engine.hooks import Hook
from archgraph.engine.loop import EpochLineHook as BaseEpochLine
from archgraph.engine.smiou import supernet_miou
from archgraph.engine.tracking import epoch_scalars, log_arch, log_panels, prediction_panels, step_scalars
from archgraph.engine import distributed as D
from archgraph.io import append_jsonl, atomic_write_json
from archgraph.outputs.watch import HISTORY, history_record, stage_graph_name

if TYPE_CHECKING:
    from archgraph.engine.search import SearchRun, Stage

# What the one line per epoch shows (record key, label, format).
EPOCH_LINE = [
    ("loss", "loss", "{:.3f}"),
    ("arch_loss", "arch loss", "{:.3f}"),
    ("entropy_alpha", "H(alpha)", "{:.4f}"),
    ("entropy_beta", "H(beta)", "{:.4f}"),
    ("margin_alpha", "margin alpha", "{:.4f}"),
    ("margin_beta", "margin beta", "{:.4f}"),
    ("changed_ops", "changed ops", "{}"),
    ("changed_inputs", "changed inputs", "{}"),
    ("arch_grad_snr", "grad SNR", "{:.2f}"),
    ("s_miou", "S-mIoU", "{:.4f}"),
    ("seconds", "time", "{:.1f}s"),
]


def steps_before(strategy: Any, stage: int, epoch: int, steps: int) -> int:
    """Steps taken before ``epoch`` of ``stage`` since the search began: the x-axis of its curves."""
    return (sum(strategy.stage_epochs(i) for i in range(stage)) + epoch) * steps


class HealthHook(Hook):
    """The health figures of the epoch's architecture parameters (the run's :class:`ArchHealth`,
    whose state the checkpoint keeps under ``health``, where runs before hooks kept it)."""

    def fill_record(self, run: SearchRun, stage: Stage, epoch: int, record: dict[str, Any]) -> None:
        record.update(run.health.epoch_fields(stage.net, run.strategy))


class SMiouHook(Hook):
    """S-mIoU of the epoch's derived architecture in the supernet (BN recalibrated), a report on val,
    every ``search.eval_every`` epochs and at the last; outside the search's spend. With TensorBoard,
    the derived architecture's predictions are drawn inside the same recalibration."""

    def fill_record(self, run: SearchRun, stage: Stage, epoch: int, record: dict[str, Any]) -> None:
        cfg = run.cfg
        every = cfg.search.eval_every
        if not every or not ((epoch + 1) % every == 0 or run.is_last_epoch(stage, epoch)):
            return
        draw = (lambda: run.panels.extend(prediction_panels(stage.net, run.data.val, run.device))) if cfg.search.tensorboard and run.main else None
        with run.spend.paused():  # a report on val, not a cost of the search
            record["s_miou"] = supernet_miou(stage.net, run.strategy, run.data, cfg, run.device, then=draw)
        record["s_miou_split"] = "val"


class EpochFilesHook(Hook):
    """The epoch's files, each written atomically (rank 0): its line in search.jsonl, the stage's
    supernet graph, the derived architecture and the scores behind it."""

    def after_epoch(self, run: SearchRun, stage: Stage, epoch: int, record: dict[str, Any]) -> None:
        if not run.main:
            return
        append_jsonl(run.out / "search.jsonl", record)
        save(run.strategy.graph, run.out / "supernet.yaml")
        write_architecture(run.out, run.derived, run.scores)


class HistoryHook(Hook):
    """history.jsonl, the report's epoch-by-epoch view (:mod:`archgraph.outputs.watch`): the scores
    before a stage's first step (and its graph, when the strategy has several stages), then one frame
    per epoch."""

    def before_stage(self, run: SearchRun, stage: Stage) -> None:
        if not run.main or stage.resumed:
            return
        strategy, net = run.strategy, stage.net
        if strategy.num_stages() > 1:
            save(strategy.graph, run.out / stage_graph_name(stage.index))
        if net.arch is not None:
            append_jsonl(run.out / HISTORY, history_record(stage.index, -1, strategy.scores(net), strategy.derive(net)))

    def after_epoch(self, run: SearchRun, stage: Stage, epoch: int, record: dict[str, Any]) -> None:
        if run.main:
            append_jsonl(run.out / HISTORY, history_record(record["stage"], record["epoch"], run.scores, run.derived))


class TrackingHook(Hook):
    """TensorBoard (``search.tensorboard``, rank 0): each step's losses; each epoch's figures, the
    learning rates, histograms of softmax(alpha)/softmax(beta) and, when S-mIoU was measured, the
    derived architecture's validation predictions."""

    def after_step(self, run: SearchRun, stage: Stage, epoch: int, step: int, losses: dict[str, float]) -> None:
        run.log.scalars(step_scalars(losses), steps_before(run.strategy, stage.index, epoch, stage.steps) + step + 1)  # rank 0's batch

    def after_epoch(self, run: SearchRun, stage: Stage, epoch: int, record: dict[str, Any]) -> None:
        if not run.cfg.search.tensorboard:
            return
        step = steps_before(run.strategy, stage.index, epoch + 1, stage.steps)
        arch_lr = {"schedule/arch_lr": stage.a_opt.param_groups[0]["lr"]} if stage.a_opt is not None else {}
        run.log.scalars({**epoch_scalars(record, "search"), **arch_lr}, step)
        log_arch(run.log, stage.net, step)
        if run.panels:
            log_panels(run.log, run.panels, step)


class EpochLineHook(BaseEpochLine):
    """The search's epoch line (per stage for progressive strategies)."""

    keys = EPOCH_LINE

    def label(self, run: SearchRun, stage: Stage) -> str:
        stages = run.strategy.num_stages()
        return f"stage {stage.index + 1}/{stages}" if stages > 1 else "search"

    def epochs_left(self, run: SearchRun, stage: Stage, epoch: int) -> int:
        strategy = run.strategy
        return stage.epochs - epoch - 1 + sum(strategy.stage_epochs(i) for i in range(stage.index + 1, strategy.num_stages()))

    def resume_command(self, run: SearchRun) -> str:
        return f"archgraph search --out {run.out} --resume"


class NonFinitePolicy(Hook):
    """``search.on_nonfinite=skip``: a step whose loss is NaN/Inf is dropped (its update was never
    applied) with a warning; with ``stop`` (the default) this hook declines and the search stops,
    keeping the last good checkpoint."""

    def on_nonfinite(self, run: SearchRun, error: Exception, where: str) -> dict[str, float] | None:
        if run.cfg.search.on_nonfinite != "skip":
            return None
        print(f"warning: non-finite {getattr(error, 'what', 'loss')} at {where}; batch skipped (search.on_nonfinite=skip)", file=sys.stderr)
        return {"skipped": 1.0}


class CheckpointHook(Hook):
    """checkpoint.pt (rank 0): every ``search.checkpoint_every`` steps inside an epoch and after every
    epoch; then a requested stop (Ctrl-C, SIGTERM) exits with the command that resumes."""

    def after_step(self, run: SearchRun, stage: Stage, epoch: int, step: int, losses: dict[str, float]) -> None:
        every, done = run.cfg.search.checkpoint_every, step + 1
        if every and done < stage.steps and done % every == 0 and not run.stop.requested:
            run.save_checkpoint(stage, epoch, done, False)

    def after_epoch(self, run: SearchRun, stage: Stage, epoch: int, record: dict[str, Any]) -> None:
        run.save_checkpoint(stage, epoch, stage.steps, True)
        run.stop.requested = D.any_rank(run.stop.requested)
        run.stop.exit_if_requested(f"the end of stage {stage.index + 1} epoch {epoch + 1}")


def search_hooks(user: Iterable[Hook] = ()) -> list[Hook]:
    """The search's hooks in calling order (module docstring), the user's before the checkpoint."""
    return [HealthHook(), SMiouHook(), EpochFilesHook(), HistoryHook(), TrackingHook(), EpochLineHook(), NonFinitePolicy(), *user, CheckpointHook()]


def write_architecture(out: Any, derived: Any, scores: tuple[Any, Any]) -> None:
    """arch.yaml and the scores.json behind it."""
    save(derived, out / "arch.yaml")
    ops, inputs = scores
    atomic_write_json(out / "scores.json", {"ops": ops, "inputs": inputs})
