"""`archgraph export`: the .pt2 program runs without archgraph and matches the trained network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from archgraph import build_space, save_graph
from archgraph.cli import main
from archgraph.core.decode import sample_architecture
from archgraph.engine.train import load_run

TINY = [
    "data.crop=[40,48]", "data.batch_size=2", "data.num_samples=8", "data.val_limit=2",
    "train.epochs=1", "train.steps_per_epoch=2",
]

# Runs in a fresh interpreter whose working directory is not the checkout: only torch is imported.
LOADER = textwrap.dedent(
    """
    import sys
    import torch

    program = torch.export.load(sys.argv[1]).module()
    result = {}
    for i, x in enumerate(torch.load(sys.argv[2])):
        with torch.no_grad():
            result[i] = program(x)
    torch.save(result, sys.argv[3])
    assert "archgraph" not in sys.modules, "the exported program imported archgraph"
    print("modules-ok")
    """
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    space = build_space("dcss", {"layers": 2, "base_channels": 8, "num_classes": 5})
    save_graph(sample_architecture(space, 1), root / "arch.yaml")
    assert main(["train", str(root / "arch.yaml"), "--out", str(root / "run"), "--no-progress", "--set", *TINY]) == 0
    return root / "run"


def run_without_archgraph(tmp_path, model, inputs: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    torch.save(inputs, tmp_path / "inputs.pt")
    (tmp_path / "load.py").write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "load.py"), str(model), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "modules-ok" in done.stdout
    return torch.load(tmp_path / "out.pt")


def test_fixed_size_pt2_loads_without_archgraph_and_matches(run, tmp_path):
    model = tmp_path / "model.pt2"
    assert main(["export", str(run), "-o", str(model)]) == 0
    info = json.loads((tmp_path / "model.pt2.json").read_text())
    assert info["input_shape"] == [1, 3, 40, 48] and info["dynamic"] is False  # data.crop, not a multiple of 32
    assert info["num_classes"] == 5 and info["class_names"][0] == "background"
    x = torch.randn(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    got = run_without_archgraph(tmp_path, model, [x])[0]
    with torch.no_grad():
        want = load_run(run).net(x)
    assert got.shape == (1, 5, 40, 48)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_dynamic_pt2_takes_any_batch_and_stride_multiple(run, tmp_path):
    model = tmp_path / "dyn.pt2"
    assert main(["export", str(run), "-o", str(model), "--dynamic", "--checkpoint", "last.pt"]) == 0
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(3, 3, 64, 96, generator=gen), torch.randn(1, 3, 64, 160, generator=gen)]
    got = run_without_archgraph(tmp_path, model, inputs)
    net = load_run(run, "last.pt").net
    for i, x in enumerate(inputs):
        with torch.no_grad():
            torch.testing.assert_close(got[i], net(x), atol=1e-5, rtol=0)


def test_export_errors_are_clear_and_write_nothing(run, tmp_path, capsys, monkeypatch):
    import importlib.util

    out = tmp_path / "m.pt2"
    cases = [
        (["export", str(tmp_path / "nope"), "-o", str(out)], "no such run folder"),
        (["export", str(run), "-o", str(out), "--dynamic", "--size", "40", "48"], "multiples of the network's stride 32"),
        (["export", str(run), "-o", str(out), "--dynamic", "--size", "32", "64"], "at least 64"),
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
