"""Zero-cost proxies and naive baselines: scores of an architecture at initialisation, no training.

Each proxy looks at the candidate compiled **stand-alone** (its graph decoded from the supernet with
the candidate's decisions, :func:`archgraph.engine.scoring.candidate_graph`, then
:func:`archgraph.core.compile.compile_graph`), with weights drawn from the config's seed, on one
fixed minibatch of trainA (seeded indices, epoch 0's augmentation: the same batch for every
candidate and every run). The definitions follow the papers as NASLib's zero-cost predictors
implement them (``naslib/predictors/utils/pruners/measures/``); this code is written from those
definitions. Layer-wise measures sum over the weights of every ``Conv2d``, ``ConvTranspose2d`` and
``Linear`` layer (NASLib's "param" mode), biases and BN affine parameters excluded.

- **synflow** (Tanaka et al. 2020): every parameter replaced by its absolute value, BatchNorm turned
  into the identity (NASLib's ``synflow``, ``bn=False``), the network in float64 on one all-ones
  image of the batch's size; R = sum of the output; score = sum over weights of |theta * dR/dtheta|.
- **naswot** (Mellor et al. 2021): binary codes of every ReLU-like unit (ReLU, ReLU6, Hardswish,
  LeakyReLU, GELU, SiLU: a unit is "on" when its output is positive) over a batch; K_H[i, j] = the
  number of units on which images i and j agree; score = log|det K_H|. On a segmentation network
  an image's code is every activation of every pixel of every layer (the paper's classifiers: every
  unit of one image); -inf when two images share a code (K_H singular).
- **grad_norm** (Abdelfattah et al. 2021): cross-entropy on the batch; sum over layers of the L2
  norm of the weight gradient.
- **snip** (Lee et al. 2019, as a proxy by Abdelfattah et al.): sum of |theta * dL/dtheta|.
- **jacov** (Mellor et al. 2020, v1 of NASWOT): the Jacobian of the summed output with respect to
  each input image; C = correlation matrix of the flattened Jacobians; score = -sum_i
  (log(lambda_i + k) + 1 / (lambda_i + k)) over C's eigenvalues, k = 1e-5.
- **params**, **flops**: parameter count and forward FLOPs (at ``data.crop``) of the stand-alone
  network; higher is better, the convention of ZiCo and NASLib's baselines (a bigger network of one
  family usually trains to a higher accuracy), so a proxy that cannot beat them says little.

Every proxy runs with the network in training mode (BN on batch statistics), as the references do.
"""

from __future__ import annotations

import math
import types
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archgraph.core.compile import CompiledNetwork, compile_graph
from archgraph.core.costs import count_params, model_flops
from archgraph.data.transforms import IGNORE_INDEX
from archgraph.engine.scoring import Candidate, ScoringContext, candidate_graph, register_scorer
from archgraph.errors import ConfigError

WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.LeakyReLU, nn.GELU, nn.SiLU)
JACOV_K = 1e-5
BATCH_SEED_OFFSET = 11  # the proxy batch's indices: seed cfg.seed + 11 (apart from other seeded draws)


# --------------------------------------------------------------------------------------------------
# the measures, on any module


def weight_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose weights the layer-wise measures sum over."""
    return [m for m in net.modules() if isinstance(m, WEIGHT_LAYERS)]


@torch.no_grad()
def _sum_over_weights(net: nn.Module, per_layer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
    """sum over :func:`weight_layers` of ``per_layer(weight, weight.grad)`` (layers without a gradient skipped)."""
    return sum((float(per_layer(m.weight, m.weight.grad)) for m in weight_layers(net) if m.weight.grad is not None), 0.0)


@contextmanager
def _batchnorm_as_identity(net: nn.Module) -> Iterator[None]:
    """synflow's reference removes BN: with all-ones inputs and |theta|, batch statistics would
    normalise the signal away (every position alike: zero variance)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.forward = types.MethodType(lambda self, x: x, m)
    try:
        yield
    finally:
        for m in bns:
            del m.forward


def synflow(net: nn.Module, input_shape: Sequence[int]) -> float:
    """Synaptic flow of ``net`` for one all-ones input of ``input_shape`` (C, H, W or features).

    Parameters are made absolute (restored afterwards) and the pass is in float64, so deep networks
    do not underflow or overflow as early as in float32; the result may still be ``inf``.
    """
    dtype = next(net.parameters()).dtype
    device = next(net.parameters()).device
    with torch.no_grad():
        signs = {name: torch.sign(p) for name, p in net.named_parameters()}
        for p in net.parameters():
            p.abs_()
    net.double()
    try:
        with _batchnorm_as_identity(net):
            net.zero_grad(set_to_none=True)
            out = net(torch.ones(1, *input_shape, dtype=torch.float64, device=device))
            out.sum().backward()
            total = _sum_over_weights(net, lambda w, g: (w * g).abs().sum())
    finally:
        net.to(dtype)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.mul_(signs[name])
        net.zero_grad(set_to_none=True)
    return total


def naswot_from_codes(codes: torch.Tensor) -> float:
    """log|det K_H| of binary codes (one row per image): K_H[i, j] = units on which i and j agree."""
    c = codes.to(torch.float64)
    k = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) != 0 else -math.inf


def naswot(net: nn.Module, images: torch.Tensor) -> float:
    """NASWOT's score over a batch: the Hamming kernel of the ReLU-like units' binary codes.

    The kernel is accumulated layer by layer (never the whole code of an image at once)."""
    n = images.shape[0]
    if n < 2:
        raise ConfigError("naswot needs a batch of at least 2 images; raise data.batch_size")
    kernel = torch.zeros(n, n, dtype=torch.float64, device=images.device)

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        c = (output.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, RELU_LIKE)]
    try:
        with torch.no_grad():
            net(images)
    finally:
        for h in handles:
            h.remove()
    if not handles:
        raise ConfigError("naswot: the network has no ReLU-like activation to read codes from")
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) != 0 else -math.inf


def _loss_gradients(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    net.zero_grad(set_to_none=True)
    logits = net(images)
    F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX).backward()


def grad_norm(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over layers of ||dL/dW||_2 (cross-entropy on the batch)."""
    _loss_gradients(net, images, labels)
    total = _sum_over_weights(net, lambda w, g: g.norm())
    net.zero_grad(set_to_none=True)
    return total


def snip(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """SNIP's connection sensitivity summed: sum of |W * dL/dW| (cross-entropy on the batch)."""
    _loss_gradients(net, images, labels)
    total = _sum_over_weights(net, lambda w, g: (w * g).abs().sum())
    net.zero_grad(set_to_none=True)
    return total


def jacov_from_jacobians(jacobians: torch.Tensor) -> float:
    """-sum(log(lambda + k) + 1/(lambda + k)) over the eigenvalues of the rows' correlation matrix."""
    j = jacobians.detach().reshape(jacobians.shape[0], -1).to(torch.float64).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(j)
    if not np.all(np.isfinite(corr)):
        return math.nan  # a constant Jacobian: no correlation defined
    eig = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(eig + JACOV_K) + 1.0 / (eig + JACOV_K)))


def jacov(net: nn.Module, images: torch.Tensor) -> float:
    """Jacobian covariance over the batch (the summed output's gradient per input image)."""
    if images.shape[0] < 2:
        raise ConfigError("jacov needs a batch of at least 2 images; raise data.batch_size")
    net.zero_grad(set_to_none=True)
    x = images.clone().requires_grad_(True)
    y = net(x)
    y.backward(torch.ones_like(y))
    net.zero_grad(set_to_none=True)
    return jacov_from_jacobians(x.grad)


# --------------------------------------------------------------------------------------------------
# from a candidate to a network and a batch


def initialised_network(graph: nx.DiGraph, seed: int, device: torch.device) -> CompiledNetwork:
    """``graph`` compiled stand-alone, weights drawn from ``seed`` (the global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = compile_graph(graph)
    return net.to(device).train()


def proxy_batch(ctx: ScoringContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed minibatch: ``data.batch_size`` (at least 2) trainA images at seeded indices, with
    the augmentation of epoch 0 whatever epoch the dataset is in."""
    from archgraph.engine.smiou import _fixed_augmentation

    ds = ctx.data.train_a
    n = min(len(ds), max(2, ctx.cfg.data.batch_size))
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(ctx.cfg.seed + BATCH_SEED_OFFSET)).tolist()[:n]
    with _fixed_augmentation(ds):
        items = [ds[i] for i in order]
    images = torch.stack([x for x, _ in items]).to(ctx.device)
    labels = torch.stack([y for _, y in items]).long().to(ctx.device)
    return images, labels


Measure = Callable[[CompiledNetwork, torch.Tensor, torch.Tensor], float]


class ProxyScorer:
    """A measure of each candidate's stand-alone network at initialisation, on the proxy batch."""

    higher_is_better = True
    needs_trained_supernet = False

    def __init__(self, name: str, measure: Measure) -> None:
        self.name = name
        self.measure = measure

    def score(self, ctx: ScoringContext, candidates: Sequence[Candidate]) -> list[float]:
        images, labels = proxy_batch(ctx)
        choices = ctx.choices
        out = []
        for cand in candidates:
            net = initialised_network(candidate_graph(ctx.graph, cand, choices), ctx.cfg.seed, ctx.device)
            out.append(float(self.measure(net, images, labels)))
        return out


def _register(name: str, measure: Measure, doc: str) -> None:
    def factory() -> ProxyScorer:
        return ProxyScorer(name, measure)

    factory.__doc__ = doc
    register_scorer(name)(factory)


_register("synflow", lambda net, x, y: synflow(net, x.shape[1:]), "synaptic flow at initialisation (Tanaka et al. 2020), float64, BN as identity")
_register("naswot", lambda net, x, y: naswot(net, x), "log|K_H| of the activation codes over the proxy batch (Mellor et al. 2021)")
_register("grad_norm", grad_norm, "sum of the layers' weight-gradient norms at initialisation")
_register("snip", snip, "sum of |theta * dL/dtheta| at initialisation (SNIP)")
_register("jacov", lambda net, x, y: jacov(net, x), "Jacobian covariance over the proxy batch (Mellor et al. 2020)")
_register("params", lambda net, x, y: float(count_params(net)), "parameter count of the stand-alone network (naive baseline, bigger is better)")
_register(
    "flops",
    lambda net, x, y: float(model_flops(net, (int(x.shape[-2]), int(x.shape[-1])), int(x.shape[1]))),
    "forward FLOPs at the proxy batch's image size, data.crop (naive baseline, bigger is better)",
)
