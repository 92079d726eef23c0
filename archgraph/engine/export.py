"""Export a trained network (``best.pt`` of a training run) for use without archgraph.

Formats:

- ``pt2`` (default): a ``torch.export`` program saved with ``torch.export.save``. It loads with
  ``torch.export.load(path).module()`` in plain PyTorch: the program holds the graph of aten ops and
  the weights, no Python class of ours, so archgraph need not be installed where it runs.
- ``onnx``: the same program through ``torch.onnx.export`` (needs the optional extra:
  ``pip install archgraph[onnx]``).

Input sizes. The program takes a normalised ``N x 3 x H x W`` float image (ImageNet mean/std, as the
datasets produce) and returns ``N x C x H x W`` logits.

- fixed (default): ``1 x 3 x H x W`` with ``H, W`` = ``data.crop`` of the run, or ``--size H W``. Any
  ``H, W`` works; the padding to a multiple of the network's output stride is part of the program.
- ``--dynamic``: batch, height and width are symbolic; height and width must be multiples of the
  network's coarsest scale (its output stride, 32 for DCSS) and at least twice it, so the caller pads
  (e.g. with zeros, bottom/right) and crops the logits back. Why not any size: the network's pad-to-a-multiple step
  depends on the size, which ``torch.export`` can only express for sizes it can reason about.

Next to the model a ``<output>.json`` records the input shape, whether it is dynamic, the stride,
the normalisation and the class names.

The format follows the output's suffix (``.pt2`` or ``.onnx``) unless ``fmt`` is given; a suffix that
names the other format is refused rather than written under a misleading name
(:func:`export_format`).
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archgraph.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from archgraph.errors import ArchgraphError, ConfigError
from archgraph.io import atomic_write_with, atomic_write_bytes, atomic_write_json
from archgraph.engine.train import BEST, load_run

FORMATS = ("pt2", "onnx")
SUFFIXES = {".pt2": "pt2", ".onnx": "onnx"}
MAX_SIDE = 8192  # upper bound of the symbolic height/width of a dynamic export


class ExportError(ArchgraphError):
    """The network cannot be exported as asked (missing extra, bad size)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info_path: Path
    input_shape: tuple[int, int, int, int]  # the example input; batch/H/W symbolic when dynamic
    dynamic: bool
    stride: int


def _check_size(size: tuple[int, int] | None, default: tuple[int, int], stride: int, dynamic: bool) -> tuple[int, int]:
    h, w = (int(v) for v in (size if size is not None else default))
    if h < 1 or w < 1:
        raise ConfigError(f"--size {h} {w}: height and width must be positive")
    if dynamic:
        if size is None:  # round the crop up to the stride (and at least 2 strides) for the example input
            h, w = (max(2, -(-v // stride)) * stride for v in (h, w))
        elif h % stride or w % stride or min(h, w) < 2 * stride:
            raise ConfigError(
                f"--size {h} {w}: with --dynamic, height and width must be multiples of the network's stride {stride}, "
                f"at least {2 * stride}"
            )
    return h, w


def _dynamic_shapes(stride: int) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    batch = Dim("batch", min=1, max=4096)
    # At least 2 blocks: a 1x1 coarsest feature map would be a special case torch.export specialises on.
    h = Dim("h_blocks", min=2, max=MAX_SIDE // stride)
    w = Dim("w_blocks", min=2, max=MAX_SIDE // stride)
    return {"x": {0: batch, 2: stride * h, 3: stride * w}}


def export_format(output: str | Path, fmt: str | None = None) -> str:
    """The format to write ``output`` in: ``fmt`` if given, else the one its suffix names.

    A suffix naming the other format is refused, and so is a suffix naming neither without ``fmt``:
    a file's name should say what it holds.
    """
    output = Path(output)
    by_suffix = SUFFIXES.get(output.suffix.lower())
    if fmt is None:
        if by_suffix is None:
            raise ConfigError(
                f"-o {output}: the suffix {output.suffix or '(none)'!s} names no export format; name the file "
                f"{output.with_suffix('.pt2')} (torch.export) or {output.with_suffix('.onnx')} (ONNX), or pass --format pt2|onnx"
            )
        return by_suffix
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if by_suffix is not None and by_suffix != fmt:
        raise ConfigError(
            f"-o {output} names a .{by_suffix} file but --format {fmt} was asked for; drop --format (the suffix picks "
            f"{by_suffix}) or write -o {output.with_suffix('.' + fmt)}"
        )
    return fmt


def export_run(run_dir: str | Path, output: str | Path, fmt: str | None = None, size: tuple[int, int] | None = None,
               dynamic: bool = False, checkpoint: str = BEST) -> ExportResult:
    """Export ``run_dir``'s ``checkpoint`` to ``output``; nothing is written when anything fails.

    ``fmt`` (pt2 or onnx) defaults to the one ``output``'s suffix names (:func:`export_format`).
    """
    fmt = export_format(output, fmt)
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the optional onnx packages; install them with `pip install archgraph[onnx]` (or use the default pt2 format)")
    run = load_run(run_dir, checkpoint)
    net = run.net.eval()
    stride = int(net.pad_multiple)
    h, w = _check_size(size, tuple(run.cfg.data.crop), stride, dynamic)
    example = torch.zeros(2 if dynamic else 1, 3, h, w)  # batch 2: a dynamic batch must not specialise on 1
    shapes = _dynamic_shapes(stride) if dynamic else None
    output = Path(output)
    try:
        with torch.no_grad():
            program = torch.export.export(net, (example,), dynamic_shapes=shapes)
            if fmt == "pt2":
                buffer = io.BytesIO()
                torch.export.save(program, buffer)
                atomic_write_bytes(output, buffer.getvalue())
            else:
                onnx_program = torch.onnx.export(program, (example,), dynamic_shapes=shapes, dynamo=True)
                atomic_write_with(output, lambda p: onnx_program.save(str(p)))
    except ArchgraphError:
        raise
    except (RuntimeError, ValueError, TypeError) as exc:  # torch.export / onnx failures
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ExportError(f"exporting {run.checkpoint} failed ({exc.__class__.__name__}: {first}); try a fixed --size or the pt2 format") from None
    info = {
        "format": fmt,
        "checkpoint": str(run.checkpoint),
        "input": "N x 3 x H x W float, normalised with mean/std below",
        "input_shape": [None if dynamic else 1, 3, None if dynamic else h, None if dynamic else w],
        "example_shape": list(example.shape),
        "dynamic": dynamic,
        "stride": stride,
        "size_rule": f"H and W multiples of {stride}, at least {2 * stride}" if dynamic else f"exactly {h} x {w}",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "num_classes": len(run.class_names),
        "class_names": run.class_names,
        "output": "N x num_classes x H x W logits",
    }
    info_path = atomic_write_json(output.with_name(output.name + ".json"), info)
    return ExportResult(output, info_path, tuple(example.shape), dynamic, stride)

