"""Smoke tests of benchmarks/peer_nni.py and benchmarks/gpu_step.py at their tiniest settings.

Without NNI the peer benchmark must measure archgraph's columns only and say how to install NNI;
without CUDA the GPU benchmark must refuse with a clear message, or run its tiny CPU setting with
``--allow-cpu``. Where NNI is installed, one more test checks that its side builds the same network
(equal forward FLOPs and weights under the full relaxation); elsewhere that test is skipped.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from helpers import load_benchmark

TINY_PEER = ["--layers", "1", "--channels", "2", "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "0"]


def test_peer_without_nni_measures_our_columns(tmp_path, monkeypatch, capsys):
    peer = load_benchmark("peer_nni")
    monkeypatch.setattr(peer, "nni_version", lambda: None)  # as on a machine without NNI
    started, printed = [], []

    def in_process(config, layers, args):  # the worker's code without a fresh interpreter (test budget)
        started.append(config)
        printed.append(capsys.readouterr().out)
        peer.worker_main(argparse.Namespace(**{**vars(args), "config": config, "layer": layers}))
        marker = [line for line in capsys.readouterr().out.splitlines() if line.startswith(peer.MARKER)]
        return json.loads(marker[-1][len(peer.MARKER) :])

    monkeypatch.setattr(peer, "run_worker", in_process)
    out = tmp_path / "peer.json"
    assert peer.main([*TINY_PEER, "--json", str(out), "--markdown"]) == 0
    printed = "".join(printed) + capsys.readouterr().out
    assert started == ["ag-darts", "ag-dcnas"]  # no NNI worker was started
    assert "NNI is not installed" in printed and "pip install nni" in printed
    assert "archgraph commit " in printed  # which commit was measured
    data = json.loads(out.read_text())
    rows = {r["config"]: r for r in data["rows"]}
    assert set(rows) == {"ag-darts", "ag-dcnas"}, rows
    for row in rows.values():
        assert "error" not in row, row
        assert row["step_s"] > 0 and row["arch_params"] == 40  # L=1: 4 nodes x (6 ops + 4 inputs)
        # in process, a tiny net's memory is within the allocator's noise (seen: -0.13 MiB); a real worker has its own process
        assert isinstance(row["net_mib"], float) and row["net_mib"] > -16
    assert rows["ag-dcnas"]["fwd_gflops"] < rows["ag-darts"]["fwd_gflops"]  # n paths and 1/4 channels compute less
    assert rows["ag-dcnas"]["weights_m"] < rows["ag-darts"]["weights_m"]  # ops built at 1/4 width
    assert "| 1 | - | " in printed  # the NNI columns are empty, not missing


def test_peer_table_ratios():
    peer = load_benchmark("peer_nni")
    rows = [
        {"layers": 12, "config": "nni-darts", "step_s": 4.0, "net_mib": 900, "fwd_gflops": 26.6, "weights_m": 5.0},
        {"layers": 12, "config": "ag-darts", "step_s": 3.0, "net_mib": 800, "fwd_gflops": 26.6, "weights_m": 5.0},
        {"layers": 12, "config": "nni-proxyless", "step_s": 2.0, "net_mib": 1000, "fwd_gflops": 10.0, "weights_m": 5.0},
        {"layers": 12, "config": "ag-dcnas", "step_s": 0.5, "net_mib": 400, "fwd_gflops": 3.0, "weights_m": 2.0},
    ]
    head, body = peer.step_table(rows)
    assert body == [["12", "4.00", "3.00", "2.00 / 1000", "0.50 / 400", "0.75x", "4.00x", "0.40x"]]
    assert peer.cost_table(rows)[1][0][-1] == "1.00x"  # the two full relaxations: the same GFLOPs
    with pytest.raises(SystemExit, match="4,8,12"):
        peer.parse_layers("four")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the no-GPU refusal cannot be seen")
def test_gpu_step_refuses_without_cuda_and_smoke_runs_on_cpu(tmp_path, capsys):
    gpu = load_benchmark("gpu_step")
    assert gpu.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err and "--allow-cpu" in gpu.NO_CUDA
    out = tmp_path / "gpu.json"
    runs = "dcnas@32x32,darts@32x32"
    assert gpu.main(["--allow-cpu", "--layers", "1", "--channels", "2", "--runs", runs, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| strategy | size | batch | search step (s) | images / s |" in printed
    rows = json.loads(out.read_text())["rows"]
    assert [(r["strategy"], r["height"], r["width"]) for r in rows] == [("dcnas", 32, 32), ("darts", 32, 32)]
    for r in rows:
        assert "error" not in r, r
        assert r["images_per_s"] == pytest.approx(2 * r["batch"] / r["step_s"])  # two batches per search step
        assert r["peak_cuda_allocated_gib"] is None and r["precision"] == "bf16+channels_last"  # the GPU path's settings, on the CPU
    with pytest.raises(SystemExit, match="multiples of 32"):
        gpu.parse_runs("dcnas@100x200")


def test_nni_side_builds_the_same_network():
    pytest.importorskip("nni", reason="NNI is not installed (see benchmarks/README.md, 'Peer comparison: NNI 3.0')")
    import warnings

    from torch.utils.flop_counter import FlopCounterMode

    from archgraph import build_space

    peer = load_benchmark("peer_nni")
    graph = build_space("dcss", {"layers": 1, "base_channels": 2, "num_classes": 19})
    ours = peer._archgraph_strategy("darts", graph, 0)
    net = ours.build_supernet().train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.build_nni_supernet(graph, "darts", ours.affine_bn()).train()
    x = torch.randn(2, 3, 32, 32)
    flops = []
    for model in (net, theirs):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        flops.append(counter.get_total_flops())
    assert flops[0] == flops[1] > 0
    arch = {id(p) for p in peer.nni_arch_parameters(theirs)}
    assert sum(p.numel() for p in theirs.parameters() if id(p) not in arch) == sum(p.numel() for p in net.weight_parameters())
