"""Every scorer on a batch of architectures of a finished search (``archgraph score``, correlate).

:func:`scoring_context` turns a loaded supernet (:mod:`~archgraph.studies.correlate.supernet`) into the
:class:`~archgraph.engine.scoring.ScoringContext` the scorers take; :func:`run_scorers` runs each
scorer once on the whole batch and times it; :func:`architecture_candidates` reads arch.yaml files
back into the supernet's decisions (checked by decoding them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from archgraph.core.graph import graph_hash, load
from archgraph.engine.scoring import Candidate, Scorer, ScoringContext, candidate_graph
from archgraph.errors import ConfigError
from archgraph.studies.correlate.candidates import Candidate as StudyCandidate
from archgraph.studies.correlate.candidates import indices_of
from archgraph.studies.correlate.supernet import SearchedSupernet

Log = Callable[[str], None]


@dataclass
class ScorerResult:
    """One scorer's values for the batch, in the batch's order, and its wall time."""

    name: str
    higher_is_better: bool
    values: list[float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        import math

        return {"name": self.name, "higher_is_better": self.higher_is_better, "seconds": self.seconds, "values": [v if math.isfinite(v) else None for v in self.values]}


def scoring_context(sup: SearchedSupernet) -> ScoringContext:
    """The scorers' view of a finished search: its trained supernet, strategy, data, config and graph."""
    return ScoringContext(sup.net, sup.strategy, sup.data, sup.cfg, sup.device, sup.strategy.graph)


def run_scorers(ctx: ScoringContext, candidates: Sequence[Candidate], scorers: Sequence[Scorer], log: Log = print) -> list[ScorerResult]:
    """Each scorer on every candidate (one call per scorer, so its set-up happens once)."""
    results = []
    for scorer in scorers:
        log(f"scoring {len(candidates)} architecture(s) with {scorer.name}")
        t0 = time.perf_counter()
        values = [float(v) for v in scorer.score(ctx, list(candidates))]
        if len(values) != len(candidates):
            raise ConfigError(f"scorer {scorer.name!r} returned {len(values)} scores for {len(candidates)} architectures; it is broken")
        results.append(ScorerResult(scorer.name, bool(scorer.higher_is_better), values, time.perf_counter() - t0))
    return results


def architecture_candidates(sup: SearchedSupernet, files: Sequence[str | Path]) -> list[StudyCandidate]:
    """The architectures of ``files`` as candidates of this supernet; one that is not a subnet of it
    (another space, size or stage) is refused by name."""
    out = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"--archs {path}: no such architecture file; give arch.yaml files or a number of random architectures")
        arch = load(path)  # a file that is no graph: GraphError, which names the file and the fix
        op_idx, input_idx = indices_of(sup.choices, arch)
        if graph_hash(candidate_graph(sup.strategy.graph, (op_idx, input_idx), sup.choices)) != graph_hash(arch):
            raise ConfigError(
                f"--archs {path} is not an architecture of the supernet in {sup.run_dir} (another space, size or search stage); "
                f"score it with a search of its own space, or draw random ones with --archs N"
            )
        out.append(StudyCandidate(arch, op_idx, input_idx, "file"))
    return out
