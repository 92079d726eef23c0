"""``archgraph train``, ``archgraph evaluate`` and ``archgraph export``: a derived architecture, stand-alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from archgraph.commands import add_set_option, rank_console

console = rank_console()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an architecture stand-alone (SGD, poly schedule) and write a run folder with metrics.json",
        description="Train a derived architecture from scratch: SGD with momentum and weight decay, poly learning-rate "
        "decay per iteration, evaluation on whole validation images every train.eval_every epochs. Writes OUT/config.yaml, "
        "arch.yaml, train.jsonl, last.pt, best.pt and metrics.json (miou, pixel_acc, per_class_iou, params, flops). "
        "Data comes from the data section exactly as in `archgraph search` (train split for training, val split for evaluation).",
    )
    p.add_argument("arch", nargs="?", default=None,
                   help="architecture YAML (from `archgraph search` or `sample`) or a search run folder (uses its arch.yaml); "
                   "optional with --resume")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="train a hand-designed architecture of the config's DCSS space instead of ARCH: fcn, hourglass, deeplabv3, hrnet")
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
        "table and writes RUN_DIR/eval-DATA-SPLIT.json (or -o FILE).",
    )
    p.add_argument("run_dir", help="a run folder written by `archgraph train`")
    p.add_argument("--data", default=None, help="dataset name (default: the run's data.name)")
    add_set_option(p)
    p.add_argument("--checkpoint", default="best.pt", choices=("best.pt", "last.pt"), help="which weights (default: best.pt)")
    p.add_argument("-o", "--output", default=None, help="JSON file to write (default: RUN_DIR/eval-DATA-SPLIT.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "export",
        help="export a trained run's network (best.pt) as a torch.export program (.pt2) or ONNX",
        description="Write RUN_DIR's trained network as a torch.export program that loads with plain PyTorch "
        "(torch.export.load(path).module()), no archgraph needed; or as ONNX with --format onnx "
        "(pip install archgraph[onnx]). Input: N x 3 x H x W normalised image; output: N x C x H x W logits. "
        "Fixed input size by default (data.crop of the run, or --size H W); --dynamic makes batch, height and width "
        "symbolic, with H and W multiples of the network's stride (at least twice it). A sidecar OUTPUT.json describes the input.",
    )
    p.add_argument("run_dir", help="a run folder written by `archgraph train`")
    p.add_argument("-o", "--output", required=True, help="file to write, e.g. model.pt2 or model.onnx")
    p.add_argument("--format", default="pt2", choices=("pt2", "onnx"), help="pt2 (torch.export, default) or onnx")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None, help="input height and width (default: the run's data.crop)")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width (H, W multiples of the stride, at least twice it)")
    p.add_argument("--checkpoint", default="best.pt", choices=("best.pt", "last.pt"), help="which weights (default: best.pt)")
    p.set_defaults(func=cmd_export)


def cmd_train(args: argparse.Namespace) -> int:
    from archgraph.errors import ConfigError
    from archgraph.engine.train import prepare_training, run_training

    out = Path(args.out)
    if args.preset and not args.resume:
        from archgraph.builders import write_preset

        if args.arch is not None:
            raise ConfigError("give either ARCH or --preset, not both")
        args.arch = write_preset(args.preset, args.config, args.overrides, out)
    cfg, graph = prepare_training(args.arch, args.config, args.overrides, out, args.resume)
    source = str(args.arch) if args.arch else str(out / "arch.yaml")
    console.print(f"training [bold]{graph.graph.get('name', 'architecture')}[/] on [bold]{cfg.data.name}[/] for {cfg.train.epochs} epochs -> {out}")
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from archgraph.engine.train import evaluate_run

    overrides = ([f"data.name={args.data}"] if args.data else []) + list(args.overrides)
    result, path = evaluate_run(args.run_dir, overrides, args.checkpoint, Path(args.output) if args.output else None,
                                progress=not args.no_progress)
    scales = ",".join(f"{s:g}" for s in result["eval_scales"]) + (" + flip" if result["eval_flip"] else "")
    print_iou_table(result, f"{result['dataset']} {result['split']} ({result['images']} images, scales {scales}, {result['checkpoint']})")
    console.print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from archgraph.engine.export import export_run

    result = export_run(args.run_dir, args.output, args.format, tuple(args.size) if args.size else None, args.dynamic, args.checkpoint)
    n, c, h, w = result.input_shape
    shape = f"N x 3 x H x W (H, W multiples of {result.stride}, at least {2 * result.stride})" if result.dynamic else f"{n} x {c} x {h} x {w}"
    console.print(f"wrote {result.path} (input {shape}) and {result.info_path}")
    return 0
