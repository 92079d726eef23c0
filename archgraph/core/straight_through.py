"""Hard one-hot forward, soft gradient: the straight-through gate of GDAS, and where it carries gradient.

GDAS (Dong & Yang, CVPR 2019) draws one candidate per choice with the Gumbel-max trick and runs only
that one, yet trains the architecture logits by gradient: the forward pass uses the one-hot vector
``h``, the backward pass the softmax ``p`` of the perturbed logits (``h - p.detach() + p``: the value
of ``h``, the gradient of ``p``). The chosen output is multiplied by its gate (value 1); every other
candidate contributes its gate alone (value 0, gradient 1 per element), as the reference code's
weighted sum does. :func:`gumbel_hard` and :func:`gated_sum` are those two pieces.

**Why a single gated path before BatchNorm carries no gradient.** The gradient a gate receives is
``<dL/dout, y>`` for the output ``y`` it scales (and ``<dL/dout, 1>`` for the zero-valued terms).
When ``out`` is the *only* thing the next BatchNorm normalises, the loss cannot depend on the
scale or the shift of ``out`` per channel (BN removes both), so ``dL/dout`` is orthogonal to ``y``
and to ``1``: the gate's gradient is zero up to rounding (about 1e-8, against 1e-2 for the
continuous relaxation on the same graph). GDAS does not meet this in its cells because every node
sums several gated edges before anything normalises them: the *relative* scale of the summed paths
matters to BN. :func:`straight_through_topk` keeps that property in our graphs: an input choice
keeps as many gated inputs as the decoder will keep (``keep``), summed before the node's op, so
both beta and the alpha of the nodes feeding them receive a working gradient. ``archgraph
check-strategy`` compares a strategy's architecture gradients with the continuous relaxation's on
the same graph and fails a strategy where they are orders of magnitude smaller
(:mod:`archgraph.testing`); docs/plugins.md works through a GDAS strategy built on this module.
"""

from __future__ import annotations

from typing import Mapping

import torch

from archgraph.errors import GraphError


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))`` drawn on the host (identical draws on every device)."""
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def gumbel_hard(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """GDAS's draw: ``(h, index)`` with ``h`` one-hot at ``index = argmax(softmax((logits + g) / tau))``
    in value and the gradient of that softmax (``tau`` > 0: lower = closer to the argmax)."""
    gates, picked = _hard(logits, 1, tau, generator)
    return gates, picked[0]


def straight_through_topk(logits: torch.Tensor, k: int, tau: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[int]]:
    """``k`` candidates drawn without replacement (Gumbel top-k) with straight-through gates: value 1
    at the drawn indices (sorted), 0 elsewhere, the gradient of the perturbed softmax. Summing ``k >= 2``
    gated paths is what lets the gates' gradient survive a following BatchNorm (module docstring)."""
    if k < 1 or k > logits.numel():
        raise GraphError(f"straight_through_topk: k={k} must lie in 1..{logits.numel()} (the number of candidates)")
    return _hard(logits, k, tau, generator)


def _hard(logits: torch.Tensor, k: int, tau: float, generator: torch.Generator | None) -> tuple[torch.Tensor, list[int]]:
    if tau <= 0:
        raise GraphError(f"straight-through gate: tau={tau} must be > 0")
    noise = gumbel_noise(logits.shape, generator).to(device=logits.device, dtype=logits.dtype)
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    picked = sorted(int(i) for i in torch.topk(soft.detach().cpu(), k).indices)
    hard = torch.zeros_like(soft)
    hard[picked] = 1.0
    gates = hard - soft.detach() + soft
    return gates, picked


def gated_sum(computed: Mapping[int, torch.Tensor], gates: torch.Tensor) -> torch.Tensor:
    """GDAS's weighted sum over the candidates: ``gates[i] * out_i`` for each computed candidate,
    plus ``gates[j]`` (zero in value) for each candidate that was not computed, so every logit stays
    in the graph. The value equals the sum of the computed outputs."""
    if not computed:
        raise GraphError("gated_sum: no candidate was computed; draw at least one")
    out = None
    for i, y in sorted(computed.items()):
        term = gates[i] * y
        out = term if out is None else out + term
    others = [j for j in range(gates.numel()) if j not in computed]
    if others:
        out = out + gates[others].sum()
    return out
