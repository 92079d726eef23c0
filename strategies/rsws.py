"""rsws: random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for
Neural Architecture Search", UAI 2019, arXiv:1902.07638).

The baseline Yu et al. (ICLR 2020) found a match for ENAS, DARTS and NAO under equal conditions:

1. **Supernet training**: every forward pass runs one architecture drawn uniformly (one op per op
   choice, a uniform ``k``-subset per input choice), as SPOS trains its supernet; this class reuses
   SPOS's relaxation, sampler, live-subgraph draw and state (a subclass, nothing copied). No
   architecture parameters; no FLOPs band.
2. **Search**: N architectures drawn uniformly are scored with the shared weights (BN recalibrated)
   on the selection split and the best is kept. That is the selection stage's ``topk:N:uniform``
   (:attr:`RSWS.default_select`, run by the search loop after the last epoch, recorded in
   final.json's ``selection``); ``strategy.candidates`` sets N (0: the stage's budget rule, which
   keeps the scoring within the search's own forward passes). ``search.select`` may replace it.

Where this differs from the paper: the paper trains the shared weights with the DARTS cell search
space's training pipeline and ranks a fixed number of random architectures, then retrains the best
few from scratch; here the best by shared-weight score is the result (the same single-pick rule as
every other selector), and retraining is ``archgraph train``.
"""

from __future__ import annotations

from dataclasses import dataclass

from archgraph.configtools import bounded
from archgraph.core.registry import register_strategy
from archgraph.strategies.base import CheckSettings, StrategyParams
from archgraph.strategies.spos import SPOS, InputIdx, OpIdx, SPOSParams


@dataclass
class RSWSParams(StrategyParams):
    """Options of rsws (the ``strategy`` section when ``strategy.name: rsws``)."""

    candidates: int = bounded(0, 0)  # N random architectures scored after training (0 = the selection stage's budget rule)


@register_strategy("rsws", RSWSParams)
class RSWS(SPOS):
    """Random search with weight sharing: uniform single-path training, then the best of N random (Li & Talwalkar 2019)."""

    name = "rsws"
    # the planted graph holds 3 x 3 architectures: score every one; as SPOS, a weight step trains one of the 9
    checks = CheckSettings(options={"candidates": 4}, planted_options={"candidates": 9}, planted_steps=32)

    def __init__(self, graph, params: RSWSParams, search, seed: int = 0):
        self.rsws_params = params
        super().__init__(graph, SPOSParams(), search, seed)  # SPOS's defaults: uniform paths, no band, no evolution run

    @property
    def default_select(self) -> str:
        """The selection stage's selector for this strategy: N uniform candidates, best kept."""
        n = self.rsws_params.candidates
        return f"topk:{n if n > 0 else 'auto'}:uniform"

    def on_search_end(self, net, score, out_dir) -> bool:
        """No evolution: the random search is the selection stage's (:attr:`default_select`)."""
        return False

    def adopt(self, op_idx: OpIdx, input_idx: InputIdx) -> None:
        """The selection stage's pick becomes :meth:`derive`'s (and is kept in ``state_dict``)."""
        self.best = ({k: int(v) for k, v in op_idx.items()}, {k: sorted(int(i) for i in v) for k, v in input_idx.items()})
