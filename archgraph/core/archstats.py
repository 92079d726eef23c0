"""How decided the architecture parameters are: entropies of the choice distributions.

Used by strategies (as a regulariser) and by the search loop (as a logged signal); it lives in the
core so the engine never imports a strategy module."""

from __future__ import annotations

import torch

from archgraph.core.compile import CompiledNetwork


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits)."""
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum()


def mean_entropy(net: CompiledNetwork, which: str = "both") -> torch.Tensor:
    """Mean entropy (nats) of the choice distributions (``ops``: alpha, ``inputs``: beta, ``both``);
    minimising it makes choices decisive."""
    if net.arch is None:
        raise ValueError("the network has no architecture parameters (a derived architecture); entropies need a supernet")
    vectors = []
    if which in ("both", "ops"):
        vectors += list(net.arch.alpha.values())
    if which in ("both", "inputs"):
        vectors += list(net.arch.beta.values())
    if not vectors:
        return torch.zeros(())
    return torch.stack([entropy(v) for v in vectors]).mean()
