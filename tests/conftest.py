"""Shared fixtures: tiny spaces so the whole suite stays fast on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch

from archgraph import build_space


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def tiny_space():
    """DCSS with L=2, F=4: 48 candidate connections, 8 op choices, 8 input choices."""
    return build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
