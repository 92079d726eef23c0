"""Smoke test of benchmarks/compile_overhead.py: the hand-written twin really is the same network."""

from __future__ import annotations

import json

import torch

from helpers import load_benchmark


def _module():
    return load_benchmark("compile_overhead")


def test_hand_written_twin_matches_the_compiled_network_in_training_too():
    co = _module()
    compiled, hand = co.build_pair(layers=2, channels=4, classes=3)
    x = torch.randn(2, 3, 40, 56)  # not a multiple of 32: both pad and crop back
    y = torch.randint(0, 3, (2, 40, 56))
    out_c, out_h = compiled(x), hand(x)
    assert out_c.shape == (2, 3, 40, 56)
    assert torch.equal(out_c, out_h)
    torch.nn.functional.cross_entropy(out_c, y).backward()
    torch.nn.functional.cross_entropy(out_h, y).backward()
    grads_c = sorted(float(p.grad.abs().sum()) for p in compiled.parameters())
    grads_h = sorted(float(p.grad.abs().sum()) for p in hand.parameters())
    assert grads_c == grads_h


def test_benchmark_reports_json(tmp_path):
    co = _module()
    out = tmp_path / "overhead.json"
    assert co.main(["--layers", "2", "--channels", "4", "--size", "32", "--batch", "2", "--reps", "1", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["outputs_identical"] is True
    assert data["saved_ratio"] == 1.0  # same tensors saved for backward
    assert data["time_ratio"] > 0
