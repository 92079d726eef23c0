"""Shared fixtures: tiny spaces so the whole suite stays fast on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

from archgraph import build_space


# Tiny tensors gain nothing from intra-op threads, and when other processes share the cores, spinning
# OpenMP workers slow every op down by orders of magnitude. ARCHGRAPH_TEST_THREADS overrides.
THREADS = int(os.environ.get("ARCHGRAPH_TEST_THREADS", "1"))
# Subprocesses the tests start (CLI, benchmarks, --jobs workers) run with the same thread count as
# the tests themselves, whatever the environment says: a convolution's last bits depend on it, and
# several tests compare a subprocess's numbers with the in-process ones exactly.
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)  # at import too: module-scoped fixtures run before the autouse one


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture
def tiny_space():
    """DCSS with L=2, F=4: 48 candidate connections, 8 op choices, 8 input choices."""
    return build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})


@pytest.fixture
def no_graphviz(tmp_path, monkeypatch):
    """A PATH without Graphviz's programs (as on a fresh machine), and a process that has not warned yet."""
    from archgraph.outputs import render as render_module

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(render_module, "_graphviz_warned", False)
    assert not render_module.graphviz_available()
