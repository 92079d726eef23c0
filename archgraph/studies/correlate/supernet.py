"""The supernet of a finished search, loaded back with its trained weights and its data.

:func:`load_searched_supernet` rebuilds the strategy at its last stage from the search folder's
``config.yaml`` and ``checkpoint.pt``; :meth:`SearchedSupernet.score` measures one subnet with the
shared weights (BN recalibrated), as S-mIoU does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from archgraph.io import load_yaml_file
from archgraph.config import Config, config_from_dict
from archgraph.core.choices import ChoicePoints
from archgraph.core.compile import CompiledNetwork
from archgraph.errors import CheckpointError

OpIdx = dict[str, int]  # one subnet: the chosen op per op-choice label
InputIdx = dict[str, list[int]]  # and the kept inputs per input-choice label


@dataclass
class SearchedSupernet:
    """A finished search loaded back: config, strategy at its last stage, trained supernet, data."""

    run_dir: Path
    cfg: Config
    strategy: Any
    net: CompiledNetwork
    data: Any  # archgraph.engine.search.SearchData
    device: torch.device

    @property
    def choices(self) -> ChoicePoints:
        return self.net.choices

    def score(self, op_idx: OpIdx, input_idx: InputIdx, recalib_batches: int | None = None, val_images: int = 0) -> float:
        """mIoU of one subnet with the shared weights on the selection split (``score_subnet``: BN
        recalibrated; supernet restored), the split anything that picks an architecture scores on.

        ``val_images`` > 0 evaluates the first that many images of that split only (the cheap
        pre-score; the name dates from when supernet scores were taken on val).
        """
        from archgraph.engine.search import score_subnet

        data = self.data
        if val_images and val_images < len(data.select):
            data = dataclasses.replace(data, select=Subset(data.select, range(val_images)))
        return score_subnet(self.net, self.strategy.relaxation, op_idx, input_idx, data, self.cfg, self.device, recalib_batches)


def require_finished_search(run: Path) -> None:
    """Refuse ``run`` unless it is a finished ``archgraph search`` folder: its config, a checkpoint
    (``.prev`` counts, as for every loader) and final.json. Each refusal names the command that fixes it."""
    from archgraph.engine.checkpoint import has_checkpoint
    from archgraph.engine.search import CHECKPOINT

    if not (run / "config.yaml").is_file() or not has_checkpoint(run / CHECKPOINT):
        raise CheckpointError(f"{run} is not a search run folder (config.yaml and {CHECKPOINT} needed); run `archgraph search --out {run}` first or drop --search-dir")
    if not (run / "final.json").is_file():
        raise CheckpointError(f"the search in {run} is not finished (no final.json); finish it with `archgraph search --out {run} --resume`")


def load_searched_supernet(run_dir: str | Path, device: str | None = None) -> SearchedSupernet:
    """Rebuild the supernet of ``run_dir`` (a finished ``archgraph search`` folder) with its weights."""
    from archgraph.engine.checkpoint import load_checkpoint
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy
    from archgraph.core.costbudget import MEASURED_TABLE
    from archgraph.core.spaces_api import build_space
    from archgraph.engine.driver import attach_cost_terms
    from archgraph.engine.search import CHECKPOINT, CHECKPOINT_VERSION, build_search_data

    run = Path(run_dir)
    require_finished_search(run)
    cfg = config_from_dict(load_yaml_file(run / "config.yaml") or {})
    if device is not None:
        cfg.device = device

    def check(state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{run / CHECKPOINT} is not a search checkpoint of version {CHECKPOINT_VERSION}")

    state = load_checkpoint(run / CHECKPOINT, check)
    info = get_strategy(cfg.strategy_name)
    params = dataclass_from_dict(info.params, cfg.strategy_params, "strategy")
    strategy = info.cls(build_space(cfg.space_name, cfg.space_params), params, cfg.search, cfg.seed)
    # As a resumed search does: the saved strategy state first (progressive strategies rebuild their
    # stage graph from it), then the stage, then the weights, then the state again.
    strategy.load_state_dict(state["strategy"])
    strategy.begin_stage(state["stage"], None)
    dev = torch.device(cfg.device)
    net = strategy.build_supernet().to(dev)
    try:
        net.load_state_dict(state["net"])
    except RuntimeError:
        raise CheckpointError(f"{run / CHECKPOINT} does not match the supernet its config.yaml builds; the folder was mixed up") from None
    strategy.load_state_dict(state["strategy"])
    # the search's cost terms (search.cost_limit's budget, which selection honours; its latency table)
    attach_cost_terms(strategy, cfg.search, tuple(cfg.data.crop), dev, run / MEASURED_TABLE)
    net.eval()
    return SearchedSupernet(run, cfg, strategy, net, build_search_data(cfg), dev)
