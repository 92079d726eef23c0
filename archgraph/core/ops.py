"""The operator registry: candidate ops, shape-alignment branches, heads.

An op is registered under a name with a builder ``(node, inputs) -> nn.Module`` where ``node`` is the
:class:`~archgraph.core.graph.NodeSpec` it runs in and ``inputs`` the specs of the node's inputs. Ops of
``fusion``/``stem``/``cell`` nodes map ``node.channels`` to ``node.channels`` at ``node.scale`` (the
alignment branches already brought every input there); head ops (``takes_list=True``) receive the raw
list of input tensors.

Names follow a small grammar so a derived architecture file is readable: ``mbconv_k5_r6`` is a
MobileNetV3 inverted-residual block with a 5x5 depthwise kernel and expansion ratio 6.

**The op contract** (docs/plugins.md has it in full): a builder must work for *any* ``node.channels``
>= 1, because partial-channel strategies (``dcnas``, ``pc_darts``) build the candidates of an op choice
at a fraction of the node's width (a quarter by default); the module keeps the shape
``(N, channels, H, W)``; ``takes_list=True`` ops (heads, a cell body's output) get the list of raw
inputs and cannot be part of an op choice; ``parameter_free=True`` marks ops P-DARTS regularises.
The up-sampling modes of the alignment branches (a node's ``upsample`` attribute: ``bilinear``,
``nearest``, ``transposed``, ``pixel_shuffle``) form a registry of their own, open the same way
(:func:`register_upsample`). Ops of a space or plug-in are registered when its module is imported; :func:`ensure_ops` loads the
plug-ins when a graph names an op that is not registered yet, and every :class:`OpInfo` records the
module that registered it (``archgraph ops`` shows it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Sequence

import networkx as nx

import torch
import torch.nn.functional as F
from torch import nn

from archgraph.errors import GraphError, RegistryError
from archgraph.core.graph import NodeSpec, log2, node_spec
from archgraph.core.registry import Registry

OpBuilder = Callable[[NodeSpec, Sequence[NodeSpec]], nn.Module]


@dataclass(frozen=True)
class OpInfo:
    name: str
    build: OpBuilder
    takes_list: bool = False  # head-style op: gets the list of raw inputs instead of their aligned sum
    parameter_free: bool = False  # e.g. skip/pooling: P-DARTS regularises and caps these
    doc: str = ""
    origin: str = ""  # the module that registered it (archgraph.core.ops, a space's module, a plug-in's)

    @property
    def registered(self) -> OpBuilder:
        return self.build


OP_REGISTRY: Registry[OpInfo] = Registry("op", "archgraph.ops", named=False)  # entry points name modules that register ops
OPS: dict[str, OpInfo] = OP_REGISTRY.table


def register_op(name: str, *, takes_list: bool = False, parameter_free: bool = False, doc: str = "") -> Callable[[OpBuilder], OpBuilder]:
    """Register ``builder(node, inputs) -> nn.Module`` as op ``name`` (see the op contract above)."""
    try:
        origin = str(sys._getframe(1).f_globals.get("__name__", ""))  # the module calling register_op
    except (AttributeError, ValueError):  # an interpreter without frames
        origin = ""

    def deco(fn: OpBuilder) -> OpBuilder:
        text = doc or (fn.__doc__ or "").strip().split("\n")[0]
        OP_REGISTRY.add(name, OpInfo(name, fn, takes_list, parameter_free, text, origin or getattr(fn, "__module__", "") or ""))
        return fn

    return deco


def unknown_op_hint(name: str, known: Iterable[str] | None = None) -> str:
    """``"; did you mean 'x'?"`` for the registered op closest to ``name`` (empty when none is close)."""
    import difflib

    close = difflib.get_close_matches(name, list(OPS if known is None else known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def get_op(name: str) -> OpInfo:
    try:
        return OPS[name]
    except KeyError:
        raise RegistryError(f"unknown op {name!r}{unknown_op_hint(name)} (see `archgraph ops`)") from None


def graph_ops(g: nx.DiGraph) -> set[str]:
    """Every op name ``g`` uses, nested cell bodies included."""
    ops: set[str] = set()
    for n in g.nodes:
        ops.update(g.nodes[n].get("ops", ()))
        body = g.nodes[n].get("body")
        if body is not None:
            ops |= graph_ops(body)
    return ops


def graph_upsample_modes(g: nx.DiGraph) -> set[str]:
    """Every up-sampling mode ``g`` names, nested cell bodies included."""
    modes: set[str] = set()
    for n in g.nodes:
        modes.add(g.nodes[n].get("upsample", "bilinear"))
        body = g.nodes[n].get("body")
        if body is not None:
            modes |= graph_upsample_modes(body)
    return modes


def ensure_ops(g: nx.DiGraph) -> None:
    """Load the plug-ins (spaces register their own ops when imported, e.g. Auto-DeepLab's ``none``)
    when ``g`` names an op that is not registered yet; call before validating a graph read from a file."""
    if not graph_ops(g) <= set(OPS) or not graph_upsample_modes(g) <= set(UPSAMPLERS):
        from archgraph.core.registry import load_plugins

        load_plugins()


def check_known_ops(g: nx.DiGraph) -> None:
    """Every op and up-sampling mode ``g`` names (cell bodies included) is registered, the plug-ins'
    loaded first (:func:`ensure_ops`); else a :class:`GraphError` naming the node, the name and the
    closest registered one.

    Why not in :func:`archgraph.core.graph.validate`: the schema knows no registry (core/graph.py
    imports nothing from this module, which imports it), so the places that build networks or load
    architectures (the compiler, ``load_architecture``, the render and inspect commands, the spaces'
    presets) call ``validate(g)`` and then this."""
    ensure_ops(g)
    _check_registered(g)


def _check_registered(g: nx.DiGraph) -> None:
    where = f"graph {g.graph.get('name', '<unnamed>')!r}"
    for n in g.nodes:
        spec = node_spec(g, n)
        unknown = [o for o in spec.ops if o not in OPS]
        if unknown:
            raise GraphError(
                f"{where}, node {n!r}: unknown ops {unknown}{unknown_op_hint(unknown[0])} (registered ops are listed by "
                "`archgraph ops`; an op of a plug-in is registered once the plug-in is installed)"
            )
        if spec.kind != "input" and spec.upsample not in UPSAMPLERS:
            raise GraphError(
                f"{where}, node {n!r}: unknown upsample mode {spec.upsample!r}{unknown_op_hint(spec.upsample, UPSAMPLERS)}; "
                f"registered: {', '.join(sorted(UPSAMPLERS))} (a plug-in's mode is registered once it is installed)"
            )
        if spec.body is not None:
            _check_registered(spec.body)


def known_ops() -> Collection[str]:
    """The registered op names, the plug-ins' included (loaded once per process): what a space's
    ``ops`` parameter may name (:func:`archgraph.configtools.name_list`)."""
    from archgraph.core.registry import load_plugins

    load_plugins()
    return OPS.keys()


def known_upsample_modes() -> Collection[str]:
    """The registered up-sampling modes, the plug-ins' included (loaded once per process)."""
    from archgraph.core.registry import load_plugins

    load_plugins()
    return UPSAMPLERS.keys()


def build_op(name: str, node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return get_op(name).build(node, inputs)


# --------------------------------------------------------------------------------------------------
# Building blocks


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, dilation: int = 1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """MobileNetV3 inverted residual: 1x1 expand, kxk depthwise, 1x1 project, residual (hard-swish).

    Squeeze-excitation is left out: it costs a global pool per block in every candidate, and DCNAS
    describes its candidates by kernel and expansion only.
    """

    def __init__(self, channels: int, kernel: int, expansion: int):
        super().__init__()
        hidden = channels * expansion
        self.expand = conv_bn(channels, hidden, 1, act=nn.Hardswish)
        self.depthwise = conv_bn(hidden, hidden, kernel, groups=hidden, act=nn.Hardswish)
        self.project = conv_bn(hidden, channels, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.depthwise(self.expand(x)))


def _register_mbconv(kernel: int, expansion: int) -> None:
    register_op(f"mbconv_k{kernel}_r{expansion}", doc=f"MobileNetV3 block, {kernel}x{kernel} depthwise, expansion {expansion}")(lambda node, inputs: MBConv(node.channels, kernel, expansion))


MBCONV_OPS = tuple(f"mbconv_k{k}_r{r}" for k in (3, 5, 7) for r in (3, 6))
for _k in (3, 5, 7):
    for _r in (3, 6):
        _register_mbconv(_k, _r)


@register_op("conv3x3", doc="3x3 conv + BN + ReLU")
def _conv3x3(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return conv_bn(node.channels, node.channels, 3)


@register_op("conv1x1", doc="1x1 conv + BN + ReLU")
def _conv1x1(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return conv_bn(node.channels, node.channels, 1)


class SepConv(nn.Sequential):
    """DARTS separable conv: (ReLU, depthwise kxk, pointwise, BN) twice."""

    def __init__(self, c: int, k: int):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )


class DilConv(nn.Sequential):
    """DARTS dilated separable conv: ReLU, depthwise kxk with dilation 2, pointwise, BN."""

    def __init__(self, c: int, k: int):
        super().__init__(nn.ReLU(), nn.Conv2d(c, c, k, padding=k // 2 * 2, dilation=2, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


for _k in (3, 5):
    register_op(f"sep_conv_{_k}x{_k}", doc=f"separable {_k}x{_k} conv (DARTS)")(lambda node, inputs, k=_k: SepConv(node.channels, k))
    register_op(f"dil_conv_{_k}x{_k}", doc=f"dilated separable {_k}x{_k} conv (DARTS)")(lambda node, inputs, k=_k: DilConv(node.channels, k))


@register_op("skip_connect", parameter_free=True, doc="identity")
def _skip(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return nn.Identity()


@register_op("max_pool_3x3", parameter_free=True, doc="3x3 max pooling, stride 1")
def _max_pool(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return nn.MaxPool2d(3, 1, 1)


@register_op("avg_pool_3x3", parameter_free=True, doc="3x3 average pooling, stride 1")
def _avg_pool(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


# --------------------------------------------------------------------------------------------------
# Shape alignment: bring an input (channels, scale) to the node's (channels, scale)


class Upsample(nn.Module):
    """Parameter-free up-sampling by an integer ``factor`` (``mode``: an ``F.interpolate`` mode)."""

    def __init__(self, factor: int, mode: str = "bilinear"):
        super().__init__()
        self.factor = factor
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.factor, mode="nearest")
        return F.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=False)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}"


# Up-sampling modes of the alignment branch that brings a coarser input to a node's scale. A builder
# ``(cin, cout, factor) -> nn.Module`` maps (N, cin, H, W) to (N, cout, factor*H, factor*W); a node
# picks one with its ``upsample`` attribute (default ``bilinear``). Open to plug-ins: register_upsample.
UpsampleBuilder = Callable[[int, int, int], nn.Module]


@dataclass(frozen=True)
class UpsampleInfo:
    name: str
    build: UpsampleBuilder
    doc: str = ""
    origin: str = ""  # the module that registered it

    @property
    def registered(self) -> UpsampleBuilder:
        return self.build


UPSAMPLE_REGISTRY: Registry[UpsampleInfo] = Registry("upsample mode", "archgraph.upsamplers", named=False)
UPSAMPLERS: dict[str, UpsampleInfo] = UPSAMPLE_REGISTRY.table


def register_upsample(name: str, *, doc: str = "") -> Callable[[UpsampleBuilder], UpsampleBuilder]:
    """Register ``builder(cin, cout, factor) -> nn.Module`` as up-sampling mode ``name`` of alignment branches."""
    try:
        origin = str(sys._getframe(1).f_globals.get("__name__", ""))
    except (AttributeError, ValueError):
        origin = ""

    def deco(fn: UpsampleBuilder) -> UpsampleBuilder:
        UPSAMPLE_REGISTRY.add(name, UpsampleInfo(name, fn, doc or (fn.__doc__ or "").strip().split("\n")[0], origin or getattr(fn, "__module__", "")))
        return fn

    return deco


def get_upsample(name: str) -> UpsampleInfo:
    try:
        return UPSAMPLERS[name]
    except KeyError:
        raise RegistryError(f"unknown upsample mode {name!r}{unknown_op_hint(name, UPSAMPLERS)}; registered: {', '.join(sorted(UPSAMPLERS))}") from None


@register_upsample("bilinear", doc="1x1 conv + BN at the low resolution, then bilinear interpolation (DCNAS)")
def _up_bilinear(cin: int, cout: int, factor: int) -> nn.Module:
    return nn.Sequential(conv_bn(cin, cout, 1, act=None), Upsample(factor, "bilinear"))


@register_upsample("nearest", doc="1x1 conv + BN at the low resolution, then nearest-neighbour repetition")
def _up_nearest(cin: int, cout: int, factor: int) -> nn.Module:
    return nn.Sequential(conv_bn(cin, cout, 1, act=None), Upsample(factor, "nearest"))


@register_upsample("transposed", doc="learned transposed conv (kernel = stride = factor) + BN, U-Net's up-convolution")
def _up_transposed(cin: int, cout: int, factor: int) -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, factor, stride=factor, bias=False), nn.BatchNorm2d(cout))


@register_upsample("pixel_shuffle", doc="1x1 conv to cout*factor^2 channels, pixel shuffle (sub-pixel conv), BN")
def _up_pixel_shuffle(cin: int, cout: int, factor: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout * factor * factor, 1, bias=False), nn.PixelShuffle(factor), nn.BatchNorm2d(cout))


def build_alignment(src: NodeSpec, dst: NodeSpec) -> nn.Module:
    """The shape-alignment branch of DCNAS's fusion module for one input.

    Same scale: identity (same channels) or 1x1 conv+BN. Finer input: one stride-2 3x3 conv+BN+ReLU
    per halving (the first one changes the channels). Coarser input: the target node's ``upsample``
    mode (:data:`UPSAMPLERS`; the default ``bilinear`` is a 1x1 conv+BN at the low resolution, cheaper,
    then bilinear up-sampling). No branch ends in a ReLU after up-sampling or a channel change: the
    sum (or the 1x1 conv of ``concat`` fusion) that follows is linear, the op brings the nonlinearity.
    """
    if src.scale == dst.scale:
        return nn.Identity() if src.channels == dst.channels else conv_bn(src.channels, dst.channels, 1, act=None)
    if src.scale < dst.scale:
        steps = log2(dst.scale // src.scale)
        layers: list[nn.Module] = [conv_bn(src.channels, dst.channels, 3, stride=2)]
        layers += [conv_bn(dst.channels, dst.channels, 3, stride=2) for _ in range(steps - 1)]
        return nn.Sequential(*layers)
    try:
        return get_upsample(dst.upsample).build(src.channels, dst.channels, src.scale // dst.scale)
    except RegistryError as exc:
        raise GraphError(f"node at scale 1/{dst.scale}: {exc}") from None


def build_fusion(node: NodeSpec, slots: int) -> nn.Module:
    """The reduction of ``concat`` fusion: ``slots`` aligned inputs of ``node.channels`` each,
    concatenated, then a 1x1 conv + BN to ``node.channels``.

    No ReLU: the ``sum`` fusion it generalises is linear (a 1x1 conv with identity blocks computes
    the sum), the node's op brings the nonlinearity, and the residual path of an MBConv op would
    otherwise carry only non-negative values.
    """
    return conv_bn(node.channels * slots, node.channels, 1, act=None)


# --------------------------------------------------------------------------------------------------
# Heads: aggregate multi-scale features, classify, up-sample to the input resolution


class MultiScaleHead(nn.Module):
    """Up-sample every input to the finest one, concatenate, fuse, (ASPP), classify, up-sample to 1/1."""

    def __init__(self, node: NodeSpec, inputs: Sequence[NodeSpec], aspp: bool, rates: Sequence[int] | None = None):
        super().__init__()
        finest = min(s.scale for s in inputs)
        self.factors = [s.scale // finest for s in inputs]
        self.out_factor = finest // node.scale
        width = min(s.channels for s in inputs)
        total = sum(s.channels for s in inputs)
        self.fuse = conv_bn(total, width, 1)
        # the ASPP runs on the finest input's map: its output stride is that input's scale
        self.context = ASPP(width, width, rates, output_stride=finest) if aspp else conv_bn(width, width, 3)
        self.classifier = nn.Conv2d(width, node.channels, 1)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        ups = [x if f == 1 else F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False) for x, f in zip(xs, self.factors)]
        y = self.classifier(self.context(self.fuse(torch.cat(ups, dim=1))))
        if self.out_factor > 1:
            y = F.interpolate(y, scale_factor=self.out_factor, mode="bilinear", align_corners=False)
        return y


DEEPLAB_RATES = (6, 12, 18)  # DeepLabv3's ASPP atrous rates ...
DEEPLAB_OUTPUT_STRIDE = 16  # ... at output stride 16 (Chen et al. 2017, Sec. 3.3)


def aspp_rates(output_stride: int, rates: Sequence[int] = DEEPLAB_RATES, at_stride: int = DEEPLAB_OUTPUT_STRIDE) -> tuple[int, ...]:
    """Atrous rates that cover the same image area as ``rates`` at ``at_stride``, on a map at ``output_stride``.

    ``rate = r * at_stride / output_stride``, rounded half up, at least 1: a dilation of ``r`` pixels
    of a 1/16 map spans ``16 r`` image pixels, which a 1/4 map needs ``4 r`` pixels for. DeepLabv3
    itself doubles (6, 12, 18) to (12, 24, 36) at output stride 8; at 1/4 (the finest map of DCSS)
    they are (24, 48, 72), at 1/32 (3, 6, 9).
    """
    if output_stride < 1:
        raise GraphError(f"ASPP: output stride must be >= 1, got {output_stride}")
    return tuple(max(1, int(r * at_stride / output_stride + 0.5)) for r in rates)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): a 1x1 conv, one dilated 3x3 conv per rate, and
    image pooling (global average, 1x1 conv, BN, ReLU, broadcast back), every branch conv+BN+ReLU;
    the concatenation is projected by a 1x1 conv+BN+ReLU.

    ``rates``: the dilations; by default DeepLabv3's (6, 12, 18) at output stride 16 scaled to this
    map's ``output_stride`` (:func:`aspp_rates`). A rate at or beyond the map's size leaves only the
    centre tap inside the map (that branch then acts as a 1x1 conv, as DeepLabv3 observes for large
    rates); smaller crops may want smaller explicit rates.

    The pooled branch's BN sees one value per channel and image. With a batch of one in training
    mode there are no batch statistics to take, so that BN alone then normalises with its running
    statistics and leaves them unchanged (what DeepLab's ``fine_tune_batch_norm=False`` does for
    every BN at small batches); with two or more images it trains like every other BN.
    """

    def __init__(self, cin: int, cout: int, rates: Sequence[int] | None = None, output_stride: int = DEEPLAB_OUTPUT_STRIDE):
        super().__init__()
        self.rates = tuple(int(r) for r in rates) if rates is not None else aspp_rates(output_stride)
        if not self.rates or any(r < 1 for r in self.rates):
            raise GraphError(f"ASPP: rates must be one or more integers >= 1, got {rates}")
        self.branches = nn.ModuleList([conv_bn(cin, cout, 1)] + [conv_bn(cin, cout, 3, dilation=r) for r in self.rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.project = conv_bn(cout * (len(self.rates) + 2), cout, 1)

    def _image_pool(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.pool[2]
        frozen = self.training and x.shape[0] == 1  # one value per channel: no batch statistics
        if frozen:
            bn.eval()
        try:
            pooled = self.pool(x)
        finally:
            if frozen:
                bn.train()
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])  # bilinear up-sampling of a 1x1 map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches] + [self._image_pool(x)], dim=1))

    def extra_repr(self) -> str:
        return f"rates={self.rates}"


@register_op("head_simple", takes_list=True, doc="multi-scale concat + 3x3 conv + classifier")
def _head_simple(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return MultiScaleHead(node, inputs, aspp=False)


@register_op("head_aspp", takes_list=True, doc="multi-scale concat + ASPP + classifier")
def _head_aspp(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    return MultiScaleHead(node, inputs, aspp=True)
