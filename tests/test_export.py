"""`archgraph export`: the .pt2 programs (one per frame size, or one dynamic) run without archgraph and match
the trained network on CamVid's full and quarter frames; sizes an export lacks are errors that say what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from archgraph import build_space, save_graph
from archgraph.cli import main
from archgraph.config import load_config
from archgraph.core.decode import sample_architecture
from archgraph.engine.export import ExportError, resolve_frames
from archgraph.engine.exported import load_export
from archgraph.engine.train import load_run

TINY = [
    "data.crop=[40,48]",
    "data.batch_size=2",
    "data.num_samples=8",
    "data.val_limit=2",
    "train.epochs=1",
    "train.steps_per_epoch=2",
]

# Runs in a fresh interpreter whose working directory is not the checkout: only torch is imported.
# argv: the inputs file (a list of (model file, input batch)) and the file to write the outputs to.
LOADER = textwrap.dedent(
    """
    import sys
    import torch

    programs = {}
    result = {}
    for i, (model, x) in enumerate(torch.load(sys.argv[1])):
        if model not in programs:
            programs[model] = torch.export.load(model).module()
        with torch.no_grad():
            try:
                result[i] = programs[model](x)
            except Exception as exc:  # what a plain torch user sees for a size the program does not take
                result[i] = f"{type(exc).__name__}: {exc}"
    torch.save(result, sys.argv[2])
    assert "archgraph" not in sys.modules, "the exported program imported archgraph"
    print("modules-ok")
    """
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    space = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5})
    save_graph(sample_architecture(space, 1), root / "arch.yaml")
    assert main(["train", str(root / "arch.yaml"), "--out", str(root / "run"), "--no-progress", "--set", *TINY]) == 0
    return root / "run"


def run_without_archgraph(tmp_path, calls: list[tuple[Path, torch.Tensor]]) -> dict[int, torch.Tensor | str]:
    """Each (model file, input) run in one plain-torch process: the outputs, or the error text."""
    torch.save([(str(model), x) for model, x in calls], tmp_path / "inputs.pt")
    (tmp_path / "load.py").write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "load.py"), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "modules-ok" in done.stdout
    return torch.load(tmp_path / "out.pt")


def test_full_and_quarter_camvid_frames_load_without_archgraph_and_match(run, tmp_path, capsys):
    model = tmp_path / "model.pt2"
    capsys.readouterr()
    assert main(["export", str(run), "-o", str(model), "--frame", "90x120", "--frame", "360x480"]) == 0
    printed = capsys.readouterr().out
    second = tmp_path / "model-360x480.pt2"
    assert f"wrote {model} (input N x 3 x 90 x 120)" in printed and f"wrote {second} (input N x 3 x 360 x 480)" in printed
    info = json.loads((tmp_path / "model.pt2.json").read_text())
    assert info["frames"] == [[90, 120], [360, 480]] and info["dynamic"] is False
    assert [(p["file"], p["input_shape"]) for p in info["programs"]] == [("model.pt2", [None, 3, 90, 120]), ("model-360x480.pt2", [None, 3, 360, 480])]
    assert all((tmp_path / p["latency"]).is_file() for p in info["programs"])
    assert info["num_classes"] == 5 and info["class_names"][0] == "background"
    gen = torch.Generator().manual_seed(0)
    quarter, full = torch.randn(3, 3, 90, 120, generator=gen), torch.randn(2, 3, 360, 480, generator=gen)
    got = run_without_archgraph(tmp_path, [(model, quarter), (second, full), (model, full[:1])])
    net = load_run(run).net
    with torch.no_grad():
        torch.testing.assert_close(got[0], net(quarter), atol=1e-5, rtol=0)
        torch.testing.assert_close(got[1], net(full), atol=1e-5, rtol=0)
    assert got[0].shape == (3, 5, 90, 120) and got[1].shape == (2, 5, 360, 480)
    assert isinstance(got[2], str) and "90" in got[2]  # plain torch: a shape guard's error (docs/training.md shows it)
    # with archgraph: the program for each frame, and a frame the export lacks named with the flag that adds it
    exported = load_export(model)
    assert exported.frames == [(90, 120), (360, 480)]
    with torch.no_grad():
        torch.testing.assert_close(exported(full), got[1], atol=1e-6, rtol=0)  # the same program; another process's threads may round differently
        with pytest.raises(ExportError, match=r"takes 90x120, 360x480 frames .* not 100x100; .* --frame 100x100"):
            exported(torch.zeros(1, 3, 100, 100))


def test_dynamic_pt2_takes_any_batch_and_stride_multiple(run, tmp_path):
    model = tmp_path / "dyn.pt2"
    assert main(["export", str(run), "-o", str(model), "--dynamic", "--checkpoint", "last.pt"]) == 0
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(3, 3, 64, 96, generator=gen), torch.randn(1, 3, 64, 160, generator=gen)]
    quarter = torch.randn(2, 3, 90, 120, generator=gen)
    got = run_without_archgraph(tmp_path, [(model, x) for x in inputs] + [(model, quarter)])
    assert isinstance(got[2], str) and "32" in got[2]  # plain torch refuses a size that is no multiple of the stride
    net = load_run(run, "last.pt").net
    for i, x in enumerate(inputs):
        with torch.no_grad():
            torch.testing.assert_close(got[i], net(x), atol=1e-5, rtol=0)
    # load_export pads a size that is no multiple of the stride and crops back: the trained network's logits
    exported = load_export(tmp_path / "dyn.pt2.json")
    with torch.no_grad():
        torch.testing.assert_close(exported(quarter), net(quarter), atol=1e-5, rtol=0)
        with pytest.raises(ExportError, match="above the network's stride 32, not 20x120; .* --frame 20x120"):
            exported(quarter[..., :20, :])


def write_png(path: Path, height: int, width: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height)).save(path)


def camvid_root(tmp_path: Path, sizes: list[tuple[int, int]]) -> Path:
    """A CamVid layout whose val images have ``sizes`` (black images: only their headers are read)."""
    root = tmp_path / "camvid"
    lines = []
    for i, (h, w) in enumerate(sizes):
        name = f"0001TP_{i:06d}.png"
        write_png(root / "val" / name, h, w)
        write_png(root / "valannot" / name, h, w, "L")
        lines.append(f"/SegNet/CamVid/val/{name} /SegNet/CamVid/valannot/{name}")
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return root


def test_default_frames_are_the_datasets_sizes_at_its_scale_and_the_crop(tmp_path):
    root = camvid_root(tmp_path, [(360, 480), (720, 960), (360, 480)])
    cfg = load_config(None, ["data.name=camvid", f"data.root={root}", "data.scale=0.25", "data.crop=[64,64]"])
    assert resolve_frames(None, cfg) == ([(90, 120), (180, 240), (64, 64)], [])  # most common first, then the crop
    assert resolve_frames([(360, 480), (360, 480)], cfg) == ([(360, 480)], [])
    unreadable = load_config(None, ["data.name=camvid", f"data.root={tmp_path / 'nowhere'}", "data.crop=[64,64]"])
    frames, notes = resolve_frames(None, unreadable)
    assert frames == [(64, 64)] and "not readable here" in notes[0] and "--frame HxW" in notes[0]
    many = load_config(None, ["data.name=camvid", f"data.root={camvid_root(tmp_path / 'many', [(8 + i, 8) for i in range(5)])}"])
    frames, notes = resolve_frames(None, many)
    assert frames == [tuple(many.data.crop)] and "come in 5 sizes" in notes[0] and "--dynamic" in notes[0]


def test_export_errors_are_clear_and_write_nothing(run, tmp_path, capsys, monkeypatch):
    import importlib.util

    out = tmp_path / "m.pt2"
    cases = [
        (["export", str(tmp_path / "nope"), "-o", str(out)], "no such run folder"),
        (["export", str(run), "-o", str(out), "--dynamic", "--size", "40", "48"], "multiples of the network's stride 32"),
        (["export", str(run), "-o", str(out), "--dynamic", "--size", "32", "64"], "at least 64"),
        (["export", str(run), "-o", str(out), "--dynamic", "--frame", "90x120"], "drop --dynamic to export 90x120 as a fixed frame"),
        (["export", str(run), "-o", str(out), "--dynamic", "--frame", "64x64", "--frame", "96x96"], "give at most one --frame"),
        (["export", str(run), "-o", str(out), "--frame", "360-480"], "write a frame as HEIGHTxWIDTH in pixels, e.g. --frame 360x480"),
        (["export", str(run), "-o", str(out), "--frame", "0x480"], "between 1 and 8192 pixels"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", str(run), "-o", str(tmp_path / "m.onnx"), "--format", "onnx"]) == 2
    assert "pip install archgraph[onnx]" in capsys.readouterr().err
    monkeypatch.undo()
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.yaml", "arch.yaml"):
        (broken / name).write_text((run / name).read_text())
    (broken / "best.pt").write_bytes((run / "best.pt").read_bytes()[:100])  # truncated
    assert main(["export", str(broken), "-o", str(out)]) == 2
    assert "best.pt is corrupt or truncated" in capsys.readouterr().err
    assert list(tmp_path.glob("m.*")) == []


def test_an_export_that_fails_part_way_leaves_the_earlier_export_whole(run, tmp_path, monkeypatch):
    """Every file is staged and moved into place only once all exist: a Ctrl-C during the second
    frame's latency timing used to delete the earlier export's programs and leave its manifest
    naming files that were gone."""
    import archgraph.engine.export as export

    out = tmp_path / "m.pt2"
    argv = ["export", str(run), "-o", str(out), "--frame", "64x64", "--frame", "96x96"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len([n for n in before if n.endswith(".pt2")]) == 2
    original, calls = export._write_latency, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(export, "_write_latency", interrupted_on_the_second)
    assert main(argv) == 130  # exporting again over the same name (export overwrites, as torch.save does)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing replaced, nothing left over
    monkeypatch.undo()
    assert load_export(out) is not None
