"""Export a trained network (``best.pt`` of a training run) for use without archgraph.

Formats:

- ``pt2`` (default): ``torch.export`` programs saved with ``torch.export.save``. Each loads with
  ``torch.export.load(path).module()`` in plain PyTorch: a program holds the graph of aten ops and
  the weights, no Python class of ours, so archgraph need not be installed where it runs.
- ``onnx``: the same programs through ``torch.onnx.export`` (needs the optional extra:
  ``pip install archgraph[onnx]``).

Input sizes. A program takes a normalised ``N x 3 x H x W`` float image (ImageNet mean/std, as the
datasets produce) and returns ``N x C x H x W`` logits; the batch ``N`` is always free.

- frames (default): one program per frame size ``H x W``, each with static height and width, so the
  network's pad to a multiple of its output stride and the crop of the logits back are constants
  inside the program and any ``H x W`` works (360x480, 90x120, ...). The frames are ``--frame HxW``
  (repeatable), by default the sizes of the dataset's validation images at ``data.scale`` (when the
  dataset is readable here and has at most :data:`MAX_NATIVE_FRAMES` sizes) and the training crop.
  The first frame's program is written to the output itself, the others beside it as
  ``<stem>-<H>x<W><suffix>``.
- ``--dynamic``: one program whose batch, height and width are symbolic; height and width must be
  multiples of the network's coarsest scale (its output stride, 32 for DCSS) and at least twice it,
  so the caller pads (zeros, bottom/right) and crops the logits back
  (:func:`archgraph.engine.exported.load_export` does it).

Why not one program for every size: the pad-to-a-multiple step makes the shapes inside depend on
``ceil(H / stride)``, and ``torch.export`` (2.13) refuses the guards that relation needs
(``h <= 32*((h+31)//32)``); static frames need no such guard, and multiples of the stride need no pad.

Next to the model a manifest ``<output>.json`` records every program's file and frame, the stride,
the size rule, the normalisation and the class names, and ``<file>.latency.json`` each program's
measured latency at its resolution (batch 1, median of ``latency_reps`` runs on the device it was
exported on, with that device's name, the library versions and the date: docs/costs.md).

The format follows the output's suffix (``.pt2`` or ``.onnx``) unless ``fmt`` is given; a suffix that
names the other format is refused rather than written under a misleading name
(:func:`export_format`).
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from archgraph.config import Config
from archgraph.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from archgraph.errors import ArchgraphError, ConfigError
from archgraph.io import atomic_write_json
from archgraph.engine.train import BEST, load_run

FORMATS = ("pt2", "onnx")
SUFFIXES = {".pt2": "pt2", ".onnx": "onnx"}
MAX_SIDE = 8192  # upper bound of a frame side and of the symbolic height/width of a dynamic export
MAX_BATCH = 4096  # upper bound of the symbolic batch
MAX_NATIVE_FRAMES = 4  # a dataset with more image sizes than this gets no default frames of its own
HEADERS_READ = 200  # image headers read (spread over the split) to find a dataset's frame sizes

Frame = tuple[int, int]


class ExportError(ArchgraphError):
    """The network cannot be exported as asked (missing extra, bad size), or an export cannot take an input."""


@dataclass(frozen=True)
class ProgramFile:
    """One written program: its file and the frame it takes (``None``: any multiple of the stride)."""

    path: Path
    frame: Frame | None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info_path: Path
    input_shape: tuple[int, int, int, int]  # the first program's example input (batch 2); batch (and H/W when dynamic) symbolic
    dynamic: bool
    stride: int
    programs: tuple[ProgramFile, ...] = ()
    notes: tuple[str, ...] = ()  # what the caller should tell the user (e.g. why a default frame is missing)


def frame_text(frame: Frame) -> str:
    return f"{frame[0]}x{frame[1]}"


def manifest_path(output: str | Path) -> Path:
    """The manifest beside an export's first program: ``model.pt2`` -> ``model.pt2.json``."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def parse_frame(text: str) -> Frame:
    """``"360x480"`` -> ``(360, 480)``; anything else is a :class:`ConfigError` showing the form."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--frame {text}: write a frame as HEIGHTxWIDTH in pixels, e.g. --frame 360x480") from None
    return check_frame((h, w), f"--frame {text}")


def check_frame(frame: Sequence[int], what: str) -> Frame:
    h, w = (int(v) for v in frame)
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ConfigError(f"{what}: height and width must be between 1 and {MAX_SIDE} pixels")
    return h, w


def program_path(output: Path, frame: Frame | None, first: bool) -> Path:
    """Where a frame's program goes: the output itself for the first, ``<stem>-HxW<suffix>`` for the others."""
    if first or frame is None:
        return output
    return output.with_name(f"{output.stem}-{frame_text(frame)}{output.suffix}")


def dataset_frames(cfg: Config) -> tuple[list[Frame], str | None]:
    """The sizes of ``cfg``'s validation images at ``data.scale``, most common first, and a note when
    there are none to offer (the dataset is not readable here, or it has too many sizes to export one
    program each: VOC, ADE20K). Reads image headers only (up to :data:`HEADERS_READ`, spread over the split)."""
    from archgraph.builders import dataset_split
    from archgraph.data.base import image_size
    from archgraph.data.transforms import scaled_size

    d = cfg.data
    try:
        ds = dataset_split(cfg, d.val_split, train=False, check=False)
        samples = list(getattr(ds, "samples", []) or [])
        if samples:
            n, k = len(samples), min(len(samples), HEADERS_READ)
            picked = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
            sizes = Counter(scaled_size(*image_size(samples[i][0]), ds.scale) for i in picked)
        elif len(ds):  # procedural data (no files): the size of a sample as evaluation sees it
            image = ds[0][0]
            sizes = Counter([(int(image.shape[-2]), int(image.shape[-1]))])
        else:
            sizes = Counter()
    except (ArchgraphError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return [], (
            f"the {d.name} images are not readable here ({first}), so their frame size is not among the exported ones; name it with --frame HxW (e.g. --frame 360x480 for CamVid at full resolution)"
        )
    if len(sizes) > MAX_NATIVE_FRAMES:
        return [], (
            f"the {d.name} {d.val_split} images come in {len(sizes)} sizes at data.scale={d.scale:g}, too many "
            f"for one program each; name the sizes you need with --frame HxW (repeatable), or use --dynamic"
        )
    return [f for f, _ in sizes.most_common()], None


def resolve_frames(frames: Sequence[Frame] | None, cfg: Config) -> tuple[list[Frame], list[str]]:
    """The frames to export, without repeats: ``frames`` when given, else the dataset's frame sizes
    at ``data.scale`` and the training crop (:func:`dataset_frames`), with the notes to print."""
    if frames:
        chosen, notes = [check_frame(f, f"--frame {frame_text(tuple(f))}") for f in frames], []
    else:
        native, note = dataset_frames(cfg)
        chosen, notes = native + [check_frame(cfg.data.crop, "data.crop")], [note] if note else []
    return list(dict.fromkeys(chosen)), notes


def _check_dynamic_size(size: Frame | None, default: Sequence[int], stride: int) -> Frame:
    """The example input's size of a dynamic export: ``size`` (a multiple of the stride, at least
    two strides), or the crop rounded up to one."""
    h, w = (int(v) for v in (size if size is not None else default))
    if size is None:  # round the crop up to the stride (and at least 2 strides) for the example input
        return tuple(max(2, -(-v // stride)) * stride for v in (h, w))  # type: ignore[return-value]
    if h < 1 or w < 1 or h % stride or w % stride or min(h, w) < 2 * stride:
        raise ConfigError(
            f"--frame {h}x{w}: with --dynamic, height and width must be multiples of the network's stride {stride}, "
            f"at least {2 * stride}; drop --dynamic to export {h}x{w} as a fixed frame (the padding is then inside the program)"
        )
    return h, w


def _dynamic_shapes(stride: int) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    batch = Dim("batch", min=1, max=MAX_BATCH)
    # At least 2 blocks: a 1x1 coarsest feature map would be a special case torch.export specialises on.
    h = Dim("h_blocks", min=2, max=MAX_SIDE // stride)
    w = Dim("w_blocks", min=2, max=MAX_SIDE // stride)
    return {"x": {0: batch, 2: stride * h, 3: stride * w}}


def _batch_shapes() -> dict[str, dict[int, Any]]:
    """A frame's program: the batch is symbolic, height and width static (the pads are constants)."""
    from torch.export import Dim

    return {"x": {0: Dim("batch", min=1, max=MAX_BATCH)}}


def _write_latency(module: torch.nn.Module, output: Path, hw: tuple[int, int], reps: int) -> Path:
    """Time the exported program on one ``1 x 3 x H x W`` image where it was exported (the CPU, or
    the run's device) and write ``<output>.latency.json``: the promise a cost budget made, checked
    on the artefact that ships."""
    from archgraph.core.latency import table_meta, time_network_ms

    device = next((t.device for t in module.parameters()), torch.device("cpu"))
    ms = time_network_ms(module, hw, device, "fp32", warmup=1, reps=reps)
    record = {"what": "end-to-end latency of the exported program, batch 1, median", "median_ms": ms, **table_meta(device, hw, "fp32", 1, reps)}
    return atomic_write_json(output.with_name(output.name + ".latency.json"), record)


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
        raise ConfigError(f"-o {output} names a .{by_suffix} file but --format {fmt} was asked for; drop --format (the suffix picks {by_suffix}) or write -o {output.with_suffix('.' + fmt)}")
    return fmt


def export_run(
    run_dir: str | Path,
    output: str | Path,
    fmt: str | None = None,
    size: tuple[int, int] | None = None,
    dynamic: bool = False,
    checkpoint: str = BEST,
    latency_reps: int = 5,
    frames: Sequence[Frame] | None = None,
) -> ExportResult:
    """Export ``run_dir``'s ``checkpoint`` to ``output``; nothing is written when any export fails.

    ``fmt`` (pt2 or onnx) defaults to the one ``output``'s suffix names (:func:`export_format`).
    ``frames`` (or the older ``size``, one frame) are the fixed frame sizes, by default the dataset's
    and the crop (:func:`resolve_frames`); with ``dynamic`` at most one may be given, as the example
    input. ``latency_reps`` > 0: time each program at its size and write ``<file>.latency.json``.
    """
    fmt = export_format(output, fmt)
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the optional onnx packages; install them with `pip install archgraph[onnx]` (or use the default pt2 format)")
    asked = ([tuple(size)] if size is not None else []) + [tuple(f) for f in frames or ()]
    if dynamic and len(set(asked)) > 1:
        raise ConfigError("--dynamic writes one program for every multiple of the stride; give at most one --frame (its example size), or drop --dynamic to write one program per --frame")
    run = load_run(run_dir, checkpoint)
    net = run.net.eval()
    stride = int(net.pad_multiple)
    output = Path(output)
    if dynamic:
        targets: list[Frame | None] = [None]
        example_sizes = [_check_dynamic_size(asked[0] if asked else None, run.cfg.data.crop, stride)]
        notes: list[str] = []
    else:
        chosen, notes = resolve_frames(asked, run.cfg)
        targets, example_sizes = list(chosen), chosen
    planned = [(program_path(output, frame, i == 0), frame, hw) for i, (frame, hw) in enumerate(zip(targets, example_sizes))]
    exported: list[tuple[Path, Frame | None, Frame, torch.export.ExportedProgram, Callable[[Path], None]]] = []
    for path, frame, (h, w) in planned:
        example = torch.zeros(2, 3, h, w)  # batch 2: a symbolic batch must not specialise on 1
        shapes = _dynamic_shapes(stride) if frame is None else _batch_shapes()
        try:
            with torch.no_grad():
                program = torch.export.export(net, (example,), dynamic_shapes=shapes)
            exported.append((path, frame, (h, w), program, _serializer(program, example, shapes, fmt)))
        except ArchgraphError:
            raise
        except (RuntimeError, ValueError, TypeError, AssertionError) as exc:  # torch.export / onnx failures
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            where = "with symbolic sizes" if frame is None else f"at {frame_text(frame)}"
            raise ExportError(
                f"exporting {run.checkpoint} {where} failed ({exc.__class__.__name__}: {first}); try {'a fixed --frame' if frame is None else 'another --frame'} or the pt2 format"
            ) from None
    # All or nothing, and an earlier export of the same name kept until this one is whole: every file
    # (programs, their latency records, the manifest) is written into a staging folder beside the
    # output and moved into place only once all exist, the manifest last. A failure or Ctrl-C part-way
    # (the latency timing, a full disk on the second frame) leaves the earlier export as it was.
    info_path = manifest_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".export", dir=output.parent))
    try:
        entries: list[dict[str, Any]] = []
        for path, frame, hw, program, write in exported:
            staged = stage / path.name
            write(staged)
            entry: dict[str, Any] = {"file": path.name, "frame": None if frame is None else list(frame), "input_shape": [None, 3, None, None] if frame is None else [None, 3, *frame]}
            if latency_reps > 0:
                entry["latency"] = _write_latency(program.module(), staged, hw, latency_reps).name
            entries.append(entry)
        info = _manifest(fmt, run, stride, dynamic, entries, [list(example_hw) for _, _, example_hw, _, _ in exported])
        atomic_write_json(stage / info_path.name, info)
        for staged in sorted(stage.iterdir(), key=lambda f: f.name == info_path.name):
            os.replace(staged, output.parent / staged.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    programs = tuple(ProgramFile(path, frame) for path, frame, *_ in exported)
    return ExportResult(output, info_path, (2, 3, *exported[0][2]), dynamic, stride, programs, tuple(notes))


def _serializer(program: torch.export.ExportedProgram, example: torch.Tensor, shapes: dict[str, Any], fmt: str) -> Callable[[Path], None]:
    """A function writing ``program`` in ``fmt`` to a path: built now, so every export has succeeded
    before the first file is written."""
    if fmt == "onnx":
        onnx_program = torch.onnx.export(program, (example,), dynamic_shapes=shapes, dynamo=True)
        return lambda p: onnx_program.save(str(p))
    program.example_inputs = None  # the zero example would be saved too: 50 MB for a batch of two 1024x2048 frames
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    data = buffer.getvalue()
    return lambda p: p.write_bytes(data)


def _manifest(fmt: str, run: Any, stride: int, dynamic: bool, entries: list[dict[str, Any]], example_sizes: list[list[int]]) -> dict[str, Any]:
    frames = [e["frame"] for e in entries if e["frame"] is not None]
    if dynamic:
        rule = f"any N; H and W multiples of {stride}, at least {2 * stride} (pad bottom/right and crop the logits back)"
    else:
        rule = f"any N; H x W exactly one of {', '.join(frame_text(tuple(f)) for f in frames)}, each taken by its own file; for another size, export it with --frame HxW"
    return {
        "format": fmt,
        "checkpoint": str(run.checkpoint),
        "input": "N x 3 x H x W float, normalised with mean/std below",
        "programs": entries,
        "frames": frames,
        "input_shape": entries[0]["input_shape"],  # the first program's (the output file itself)
        "example_shape": [2, 3, *example_sizes[0]],
        "dynamic": dynamic,
        "stride": stride,
        "size_rule": rule,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "num_classes": len(run.class_names),
        "class_names": run.class_names,
        "output": "N x num_classes x H x W logits",
    }
