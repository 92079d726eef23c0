"""``archgraph train``, ``archgraph evaluate`` and ``archgraph export``: a derived architecture, stand-alone."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from rich.table import Table

from archgraph.commands import add_set_option, rank_console

console = rank_console()
CHECKPOINTS = ("best.pt", "last.pt", "best.prev.pt", "last.prev.pt")  # archgraph.engine.train.CHECKPOINT_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an architecture stand-alone (SGD, poly schedule) and write a run folder with metrics.json",
        description="Train a derived architecture from scratch: SGD with momentum and weight decay, poly learning-rate "
        "decay per iteration, evaluation on whole validation images every train.eval_every epochs. Writes OUT/config.yaml, "
        "arch.yaml, train.jsonl, last.pt, best.pt and metrics.json (miou, pixel_acc, per_class_iou, params, flops). "
        "Data comes from the data section exactly as in `archgraph search` (train split for training, val split for evaluation).",
    )
    p.add_argument("arch", nargs="?", default=None, help="architecture YAML (from `archgraph search` or `sample`) or a search run folder (uses its arch.yaml); optional with --resume")
    p.add_argument(
        "--preset", default=None, metavar="NAME", help="train a preset of the config's space instead of ARCH (DCSS: fcn, hourglass, deeplabv3, hrnet; `archgraph spaces` lists every space's)"
    )
    p.add_argument("--config", default=None, help="YAML config (optional: every key has a default; the train and data sections matter)")
    add_set_option(p)
    p.add_argument("--out", required=True, help="run folder to write (created if missing)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch (last.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on whole validation images: per-class IoU table and a JSON file",
        description="Evaluate RUN_DIR/best.pt (or --checkpoint last.pt) on the validation split of the run's dataset, or of "
        "another one (--data NAME --set data.root=...). Multi-scale and flip testing follow train.multi_scale_eval and "
        "train.flip_eval (--set train.multi_scale_eval=[0.75,1.0,1.25] train.flip_eval=true). Prints a per-class IoU "
        "table and writes RUN_DIR/eval-DATA-SPLIT.json (or -o FILE); other scales, flip or --checkpoint add to the name "
        "(eval-DATA-SPLIT-s0.75_1_1.25-flip.json), and a file holding a result of other settings is not replaced without --force.",
    )
    p.add_argument("run_dir", help="a run folder written by `archgraph train`")
    p.add_argument("--data", default=None, help="dataset name (default: the run's data.name)")
    add_set_option(p)
    p.add_argument("--checkpoint", default="best.pt", choices=CHECKPOINTS, help="which weights (default: best.pt; best.prev.pt is the previous best, from an earlier epoch)")
    p.add_argument("-o", "--output", default=None, help="JSON file to write (default: RUN_DIR/eval-DATA-SPLIT[-SETTINGS].json)")
    p.add_argument("--force", action="store_true", help="replace an evaluation file that holds a result of other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "export",
        help="export a trained run's network (best.pt) as a torch.export program (.pt2) or ONNX",
        description="Write RUN_DIR's trained network as a torch.export program that loads with plain PyTorch "
        "(torch.export.load(path).module()), no archgraph needed; or as ONNX with --format onnx "
        "(pip install archgraph[onnx]). Input: N x 3 x H x W normalised image (any batch N); output: N x C x H x W logits. "
        "One program per frame size: --frame HxW (repeatable), by default the dataset's image sizes at data.scale and the "
        "training crop; the first goes to OUTPUT, the others beside it as STEM-HxW.pt2. --dynamic writes one program for "
        "any H and W that are multiples of the network's stride (at least twice it). The manifest OUTPUT.json says which "
        "file takes which frame; archgraph.engine.exported.load_export(OUTPUT) picks the program by the input's size.",
    )
    p.add_argument("run_dir", help="a run folder written by `archgraph train`")
    p.add_argument("-o", "--output", required=True, help="file to write, e.g. model.pt2 or model.onnx")
    p.add_argument("--format", default=None, choices=("pt2", "onnx"), help="pt2 (torch.export) or onnx; default: the one the suffix of -o names (.pt2 or .onnx)")
    p.add_argument("--frame", action="append", default=None, metavar="HxW", help="a frame size to export, e.g. 360x480 (repeatable; default: the dataset's image sizes at data.scale and data.crop)")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None, help="the same as --frame HxW (kept for older scripts)")
    p.add_argument("--dynamic", action="store_true", help="one program with symbolic batch, height and width (H, W multiples of the stride, at least twice it)")
    p.add_argument("--checkpoint", default="best.pt", choices=CHECKPOINTS, help="which weights (default: best.pt; best.prev.pt is the previous best, from an earlier epoch)")
    p.set_defaults(func=cmd_export)


def cmd_train(args: argparse.Namespace) -> int:
    from archgraph.runfolder import check_output_folder, run_lock

    out = Path(args.out)
    check_output_folder(out, kind="train")
    with run_lock(out, "train"):  # a second training into the same --out is refused while this one runs
        return _train(args, out)


def _train(args: argparse.Namespace, out: Path) -> int:
    from archgraph.errors import ConfigError
    from archgraph.engine.train import prepare_training, refuse_finished, run_training

    if args.preset and not args.resume:
        refuse_finished(out)  # before preset.yaml is written into the folder
        from archgraph.builders import write_preset

        if args.arch is not None:
            raise ConfigError("give either ARCH or --preset, not both")
        args.arch = write_preset(args.preset, args.config, args.overrides, out)
    cfg, graph = prepare_training(args.arch, args.config, args.overrides, out, args.resume)
    source = str(args.arch) if args.arch else str(out / "arch.yaml")
    console.print(f"training [bold]{graph.graph.get('name', 'architecture')}[/] on [bold]{cfg.data.name}[/] for {cfg.train.epochs} epochs -> {out}")
    for key, (old, new) in (graph.graph.get("retargeted") or {}).items():
        console.print(f"  space.{key}: {old} -> {new} (a training setting; the topology and ops are the architecture's)", highlight=False)
    metrics = run_training(cfg, graph, out, resume=args.resume, progress=not args.no_progress, source=source)
    console.print(
        f"done: mIoU {metrics['miou']:.4f} pixel acc {metrics['pixel_acc']:.4f} (best at epoch {metrics['best_epoch'] + 1}/{metrics['epochs']}), "
        f"{metrics['params']:,} params, {metrics['flops'] / 1e9:.3f} GFLOPs at {metrics['flops_input'][0]}x{metrics['flops_input'][1]} "
        f"-> {out / 'metrics.json'}"
    )
    return 0


def print_iou_table(result: dict, title: str) -> None:
    """The per-class IoU table (``-`` where a class is in neither ground truth nor prediction)."""
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in result["per_class_iou"].items():
        table.add_row(name, "-" if iou is None else f"{iou:.4f}")
    table.add_section()
    table.add_row("[bold]mIoU[/]", f"[bold]{result['miou']:.4f}[/]")
    table.add_row("pixel accuracy", f"{result['pixel_acc']:.4f}")
    table.add_row("mean class accuracy", f"{result['mean_class_acc']:.4f}")
    console.print(table)


def _require_trained_run(run: Path, then: str) -> None:
    """Refuse a folder another command wrote, suggesting commands that write elsewhere.

    ``then`` is the command to type once a trained run exists, with ``{run}`` for its folder.
    """
    from archgraph.errors import CheckpointError
    from archgraph.runfolder import example, folder_kind, free_path

    kind = folder_kind(run)
    if kind == "search":
        target = free_path(run, "-train")
        raise CheckpointError(
            f"{run} is a search run folder, not a trained run; train its architecture first (with the search's data "
            f"settings): `archgraph train {run} --config {run / 'config.yaml'} --out {target}`, then `{then.format(run=target)}`"
        )
    if kind == "compare":
        trained = example(run, "runs/*/*/metrics.json")
        also = f", e.g. `{then.format(run=trained)}`" if trained else ""
        raise CheckpointError(f"{run} is a comparison folder; its trained runs are the folders under {run / 'runs'} that hold metrics.json{also}")
    if kind == "correlate":
        import json

        try:
            entry = next(a["cache_entry"] for a in json.loads((run / "correlation.json").read_text())["archs"] if a.get("cache_entry"))
            also = f", e.g. `{then.format(run=entry)}`"
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            also = ""
        raise CheckpointError(f"{run} is a correlation study, not a trained run; its stand-alone runs are the cache_entry folders listed in {run / 'correlation.json'}{also}")


_WHAT = {"last.pt": "the weights of the last epoch rather than of the best one", "best.prev.pt": "the previous best, from an earlier epoch", "last.prev.pt": "the weights of the epoch before the last"}


def _with_intact_alternative(exc: Exception, run: Path, checkpoint: str, command: str) -> Exception:
    """When the named checkpoint is unusable, say why and name the intact ones with the command that
    uses each: the result then names the file it came from (no silent fallback)."""
    from archgraph.engine.train import intact_checkpoints
    from archgraph.errors import CheckpointError

    message = str(exc).removeprefix(f"no usable checkpoint in {run}: ")
    if not message.startswith(str(run / checkpoint)):
        return exc  # the problem was elsewhere
    others = intact_checkpoints(run, checkpoint)
    if not others:
        return exc
    # what is wrong with the file, without the advice that came with it (it did not know of the others)
    reason = message.split("; ")[0].split(". ")[0]
    fixes = " or ".join(f"`{command} --checkpoint {name}` uses {name} ({_WHAT[name]})" for name in others[:2])
    return CheckpointError(f"{run / checkpoint} cannot be used ({reason}); {fixes}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from archgraph.engine.train import evaluate_run
    from archgraph.errors import CheckpointError
    from archgraph.runfolder import check_output_file

    from archgraph.runfolder import run_lock

    run = Path(args.run_dir)
    _require_trained_run(run, "archgraph evaluate {run}")
    check_output_file(Path(args.output) if args.output else run / "eval.json", "-o", "eval.json")
    overrides = ([f"data.name={args.data}"] if args.data else []) + list(args.overrides)
    # the run folder is written (its eval file) only without -o: then no training or evaluation may write it meanwhile
    lock = run_lock(run, "evaluate") if args.output is None and run.is_dir() else contextlib.nullcontext()
    try:
        with lock:
            result, path = evaluate_run(args.run_dir, overrides, args.checkpoint, Path(args.output) if args.output else None, progress=not args.no_progress, force=args.force)
    except CheckpointError as exc:
        raise _with_intact_alternative(exc, run, args.checkpoint, f"archgraph evaluate {run}") from None
    scales = ",".join(f"{s:g}" for s in result["eval_scales"]) + (" + flip" if result["eval_flip"] else "")
    print_iou_table(result, f"{result['dataset']} {result['split']} ({result['images']} images, scales {scales}, {result['checkpoint']})")
    console.print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from archgraph.engine.export import export_format, export_run, frame_text, parse_frame
    from archgraph.errors import CheckpointError
    from archgraph.runfolder import check_output_file

    run = Path(args.run_dir)
    export_format(args.output, args.format)  # a wrong name or frame is refused before anything is loaded
    frames = [parse_frame(f) for f in args.frame or []]
    format_flag = f" --format {args.format}" if args.format else ""
    _require_trained_run(run, f"archgraph export {{run}} -o {args.output}{format_flag}")
    check_output_file(Path(args.output), "-o", "model.pt2")
    try:
        result = export_run(args.run_dir, args.output, args.format, size=tuple(args.size) if args.size else None, dynamic=args.dynamic, checkpoint=args.checkpoint, frames=frames)
    except CheckpointError as exc:
        size = f" --size {args.size[0]} {args.size[1]}" if args.size else ""
        frame_flags = "".join(f" --frame {frame_text(f)}" for f in frames)
        command = f"archgraph export {run} -o {args.output}{format_flag}{size}{frame_flags}{' --dynamic' if args.dynamic else ''}"
        raise _with_intact_alternative(exc, run, args.checkpoint, command) from None
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    for program in result.programs:
        if program.frame is None:
            shape = f"N x 3 x H x W, H and W multiples of {result.stride}, at least {2 * result.stride}"
        else:
            shape = f"N x 3 x {program.frame[0]} x {program.frame[1]}"
        console.print(f"wrote {program.path} (input {shape})", markup=False, highlight=False)
    console.print(f"wrote {result.info_path} (which file takes which frame)", markup=False, highlight=False)
    return 0
