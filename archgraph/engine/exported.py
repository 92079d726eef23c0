"""Run an export of ``archgraph export`` from Python: the right program for each frame, readable errors.

An export is a manifest (``model.pt2.json``) and its programs: one per frame size for a fixed-frame
export (``model.pt2``, ``model-90x120.pt2``, ...), or one program whose height and width are
symbolic multiples of the network's stride (``--dynamic``). Each program also loads on its own with
plain ``torch.export.load``; this helper is the convenience on top, for code that has archgraph:

- it picks the program whose frame matches the input's ``H x W``, and for a frame the export does
  not cover it raises :class:`~archgraph.engine.export.ExportError` naming the frames it does cover
  and the ``--frame`` flag that adds one (plain ``torch.export`` only says ``Guard failed:
  x.size()[2] == 360``);
- for a dynamic export it pads the input bottom/right to the next multiple of the stride and crops
  the logits back, as the trained network does inside its own forward, so any size above one stride
  gives the trained network's logits.

The file names in the manifest are plain names in the manifest's folder; anything else is refused,
so a manifest cannot point the loader at files elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from archgraph.engine.export import ExportError, Frame, frame_text, manifest_path


@dataclass
class ExportedModel:
    """The programs of one export behind one call: ``model(images) -> logits``.

    ``programs`` maps a frame ``(H, W)`` to its program, or ``None`` to the one dynamic program.
    """

    manifest: Path
    programs: dict[Frame | None, Callable[[torch.Tensor], torch.Tensor]]
    stride: int

    @property
    def dynamic(self) -> bool:
        return None in self.programs

    @property
    def frames(self) -> list[Frame]:
        """The frame sizes a fixed-frame export takes (empty for a dynamic one)."""
        return [f for f in self.programs if f is not None]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ExportError(f"{self.manifest}: the model takes an N x 3 x H x W image batch (normalised with the mean/std in the manifest); got a tensor of shape {list(images.shape)}")
        h, w = int(images.shape[2]), int(images.shape[3])
        if self.dynamic:
            return self._run_dynamic(images, h, w)
        program = self.programs.get((h, w))
        if program is None:
            raise ExportError(self.uncovered_message((h, w)))
        return program(images)

    def uncovered_message(self, frame: Frame) -> str:
        """What to say about an input of ``frame`` that no program of this export takes."""
        covered = ", ".join(frame_text(f) for f in self.frames)
        return (
            f"{self.manifest.name[: -len('.json')]} takes {covered} frames (N x 3 x H x W, any N), not {frame_text(frame)}; "
            f"resize the image to one of them, or export that size too: `archgraph export RUN -o MODEL "
            f"--frame {frame_text(frame)}` (repeatable; --dynamic takes any size above {self.stride})"
        )

    def _run_dynamic(self, images: torch.Tensor, h: int, w: int) -> torch.Tensor:
        m = self.stride
        if h <= m or w <= m:
            raise ExportError(
                f"{self.manifest.name[: -len('.json')]} (--dynamic) takes heights and widths above the network's stride {m}, "
                f"not {frame_text((h, w))}; export this size as a fixed frame: `archgraph export RUN -o MODEL --frame {frame_text((h, w))}`"
            )
        ph, pw = (-h) % m, (-w) % m
        program = self.programs[None]
        if not (ph or pw):
            return program(images)
        return program(F.pad(images, (0, pw, 0, ph)))[..., :h, :w]


def _program_file(folder: Path, name: Any, manifest: Path) -> Path:
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ExportError(f"{manifest}: program file {name!r} is not a plain file name beside the manifest; re-export the model")
    path = folder / name
    if not path.is_file():
        raise ExportError(f"{manifest} lists {name}, which is missing from {folder}; re-export the model or copy the file back")
    return path


def load_export(path: str | Path) -> ExportedModel:
    """Load the export whose program or manifest is ``path`` (``model.pt2`` or ``model.pt2.json``).

    Only ``pt2`` exports load here (ONNX files run in an ONNX runtime; the manifest says which file
    takes which frame). Like ``torch.export.load``, this unpickles parts of the files: load only
    exports you trust.
    """
    path = Path(path)
    manifest = path if path.suffix == ".json" else manifest_path(path)
    try:
        info = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise ExportError(f"{manifest} does not exist; pass a model written by `archgraph export` (its manifest lies beside it)") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{manifest} cannot be read ({exc}); re-export the model") from None
    if not isinstance(info, dict) or not isinstance(info.get("programs"), list) or not info["programs"]:
        raise ExportError(f"{manifest} lists no programs (written by an older archgraph?); re-export the model")
    if info.get("format") != "pt2":
        raise ExportError(f"{manifest} describes a {info.get('format')} export; load ONNX files with an ONNX runtime")
    programs: dict[Frame | None, Callable[[torch.Tensor], torch.Tensor]] = {}
    for entry in info["programs"]:
        file = _program_file(manifest.parent, entry.get("file") if isinstance(entry, dict) else None, manifest)
        frame = entry.get("frame")
        key = None if frame is None else (int(frame[0]), int(frame[1]))
        programs[key] = torch.export.load(file).module()
    return ExportedModel(manifest, programs, int(info.get("stride", 1)))
