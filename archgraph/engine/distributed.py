"""Multi-process search and training on ``torch.distributed`` (launched by ``torchrun``).

Why this shape: the search loop and the strategies must stay exactly what they are in a single
process (the strategies call ``net(x)``, ``loss.backward()``, ``optimizer.step()``), and a run of N
processes must compute what one process computes over the same global batch. So this module only
adds, around an unchanged loop:

- **process group** (:func:`init_from_env`): joined only when ``torchrun`` set ``WORLD_SIZE > 1``;
  backend ``gloo`` for CPU tensors, ``nccl`` for CUDA tensors (``"cpu:gloo,cuda:nccl"`` when a GPU is
  visible), so single-process runs never touch ``torch.distributed``;
- **data** (:class:`StepSampler`, :func:`sharded_loader`): a ``DistributedSampler`` whose shuffles
  come from the same seeded generator a single process's ``DataLoader`` uses; rank ``r`` takes every
  ``W``-th index, so the union of the ranks' batch ``s`` (``data.batch_size / W`` images each) is
  exactly batch ``s`` of a single process with ``data.batch_size``;
- **weights** (:func:`parallelize`): ``DistributedDataParallel`` averages their gradients during
  ``backward`` (so gradient clipping sees the averaged gradients, as in one process), with
  ``find_unused_parameters=True`` because sampled paths leave branches unused;
- **architecture parameters** (:func:`average_gradients_before_step`): kept out of DDP; their
  gradients are all-reduced (mean) right before the architecture optimiser's step, which also covers
  strategies that write ``alpha.grad`` themselves (ProxylessNAS's BinaryConnect gradients);
- **BatchNorm** (:func:`sync_batchnorm`): statistics over the global batch (torch's
  ``SyncBatchNorm`` on GPU, :class:`GlooSyncBatchNorm2d` on CPU, where torch's needs a GPU);
- **metrics** (:func:`shard_indices`, :meth:`archgraph.data.metrics.ConfusionMatrix.reduce_`): every
  rank evaluates a disjoint share of the validation set; confusion matrices are summed;
- **agreement checks** (:func:`check_identical`): a divergence of alpha/beta or of the strategy's
  sampling state between ranks is an error, not a silently wrong search.

Random choices of the architecture (DCNAS paths and channel masks, SPOS paths, ProxylessNAS binary
gates) come from generators seeded with the run's seed, advanced once per forward pass, and fed with
identical alpha/beta: they are identical on every rank without any communication. See
docs/distributed.md.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from archgraph.errors import ConfigError


# --------------------------------------------------------------------------------------------------
# the process group


def env_world_size() -> int:
    """Processes ``torchrun`` started (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not a number; launch with torchrun or unset it") from None


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Only rank 0 writes files and draws progress bars."""
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group described by torchrun's environment; True when running distributed.

    Idempotent (``compare`` and ``correlate`` start several runs in one process); a no-op without
    ``WORLD_SIZE > 1``, so single-process runs are unchanged.
    """
    if env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed; install a build with it or run one process")
    if dist.is_initialized():
        return True
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set; launch with `torchrun --nproc_per_node=N -m archgraph ...`")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def resolve_device(spec: str) -> torch.device:
    """``device`` from the config; under torchrun ``cuda`` means this process's GPU (``LOCAL_RANK``)."""
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"device={spec!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={spec!r} but no CUDA GPU is visible; set device=cpu")
        if is_distributed():
            device = torch.device("cuda", local_rank() % torch.cuda.device_count())
    return device


# --------------------------------------------------------------------------------------------------
# data


class StepSampler(DistributedSampler):
    """Rank ``r``'s share of the shuffles a single-process ``DataLoader(shuffle=True, generator=g)``
    makes: each pass draws ``randperm(n, generator=g)`` (a fresh one per pass, as ``RandomSampler``),
    and rank ``r`` takes positions ``r, r + W, r + 2W, ...`` of it (the tail beyond a multiple of
    ``W`` is dropped). With per-rank batches of ``B / W`` the ranks' batch ``s`` together hold
    exactly positions ``[s B, (s + 1) B)``: the single process's batch ``s``.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, generator: torch.Generator):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, drop_last=True)
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        # A generator function: the order is drawn at the first next(), after the DataLoader iterator
        # drew its worker base seed from the same generator. Drawing it through a RandomSampler makes
        # exactly the draws a single-process loader makes over one pass (whatever torch's version).
        order = list(RandomSampler(self.dataset, generator=self.generator))  # type: ignore[arg-type]
        yield from order[self.rank : self.total_size : self.num_replicas]


def local_batch_size(global_batch: int, key: str = "data.batch_size") -> int:
    """The per-process batch: ``data.batch_size`` is the global batch, split evenly over the ranks."""
    w = world_size()
    if global_batch % w:
        raise ConfigError(f"{key}={global_batch} is the global batch and must be divisible by the {w} processes; set it to a multiple of {w}")
    return global_batch // w


def sharded_loader(ds: Dataset, batch_size: int, seed: int, workers: int = 0, device: torch.device | None = None) -> Iterable:
    """A shuffled loader of global batch ``batch_size``; this rank's share of it when distributed.

    ``workers == 0``: exactly ``DataLoader(ds, batch_size, shuffle=True, drop_last=True,
    generator=seeded)`` (or :class:`StepSampler` under torchrun). ``workers > 0``: the same batches
    in the same order, decoded and augmented by worker processes (:mod:`archgraph.data.workers`:
    persistent across epochs inside :func:`loader_scope`, each sample told its epoch). Memory is
    pinned when the batches go to a CUDA device (``device``; by default when CUDA is available),
    so ``tensor.to(device, non_blocking=True)`` overlaps the copy with computation.
    """
    pin = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if workers > 0:
        from archgraph.data.workers import worker_loader

        return worker_loader(ds, local_batch_size(batch_size), seed, workers, pin, (world_size(), rank()) if is_distributed() else None)
    generator = torch.Generator().manual_seed(seed)
    if not is_distributed():
        return DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator, pin_memory=pin)
    sampler = StepSampler(ds, world_size(), rank(), generator)
    return DataLoader(ds, batch_size=local_batch_size(batch_size), sampler=sampler, drop_last=True, generator=generator, pin_memory=pin)


def shard_indices(n: int) -> range:
    """This rank's disjoint share of ``n`` evaluation samples (no padding, so nothing counts twice)."""
    return range(rank(), n, world_size())


# --------------------------------------------------------------------------------------------------
# precision and memory format


@dataclass(frozen=True)
class Precision:
    """Resolved ``amp`` / ``channels_last`` switches for one device."""

    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def label(self) -> str | None:
        parts = (["bf16"] if self.amp_dtype is not None else []) + (["channels_last"] if self.channels_last else [])
        return "+".join(parts) or None


def resolve_precision(amp: str, channels_last: str, device: torch.device, section: str) -> Precision:
    """``auto`` = on for a CUDA device, off elsewhere; ``bf16`` / ``channels_last`` force it (CPU
    autocast works but is rarely faster); ``fp32`` / ``contiguous`` turn it off. (Not on/off: YAML
    reads those as booleans.)"""
    on_gpu = device.type == "cuda"
    if amp not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"{section}.amp={amp!r}: choose auto, bf16 or fp32")
    if channels_last not in ("auto", "channels_last", "contiguous"):
        raise ConfigError(f"{section}.channels_last={channels_last!r}: choose auto, channels_last or contiguous")
    use_amp = amp == "bf16" or (amp == "auto" and on_gpu)
    if use_amp and on_gpu and not torch.cuda.is_bf16_supported():
        if amp == "bf16":
            raise ConfigError(f"{section}.amp=bf16 but this GPU has no bfloat16 support; set {section}.amp=fp32")
        use_amp = False
    cl = channels_last == "channels_last" or (channels_last == "auto" and on_gpu)
    return Precision(torch.bfloat16 if use_amp else None, cl)


# --------------------------------------------------------------------------------------------------
# BatchNorm over the global batch


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks), on CPU.

    torch's ``SyncBatchNorm`` only runs on GPUs. Same parameters, buffers and state-dict keys as
    ``BatchNorm2d`` (modules are converted in place by swapping their class), so checkpoints do not
    change. Gradients flow through the all-reduced sums (``torch.distributed.nn`` all-reduce, whose
    backward is again an all-reduce), which is what makes DDP's averaged weight gradients equal to
    the gradient of the global-batch loss. Outside training, or without a process group, it is
    exactly ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

        self._check_input_dim(x)
        factor = 0.0
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        dtype = x.dtype
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in >= float32
        dims = (0, 2, 3)
        count = torch.full((1,), float(xf.numel() // xf.shape[1]), dtype=xf.dtype, device=xf.device)
        sums = differentiable_all_reduce(torch.cat([xf.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = xf - mean.view(1, -1, 1, 1)
        var = differentiable_all_reduce((centred * centred).sum(dims)) / n  # two passes: as stable as BatchNorm2d
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return y.to(dtype)


def sync_batchnorm(net: nn.Module, device: torch.device, enabled: bool = True) -> nn.Module:
    """BatchNorm over the global batch on every rank (a no-op in a single process, or when
    ``enabled`` is false: ``search.sync_bn`` / ``train.sync_bn``, each rank then normalising with
    its own batch).

    GPU: torch's ``SyncBatchNorm`` (modules replaced under their parents; same parameter objects).
    CPU: :class:`GlooSyncBatchNorm2d` by class swap (same objects). Call before building optimisers.
    """
    if not enabled or not is_distributed():
        return net
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlooSyncBatchNorm2d
    return net


def batchnorm_batch(global_batch: int, sync_bn: bool) -> int:
    """How many images one BatchNorm layer normalises together in training: the global batch when
    statistics are synchronised (:func:`sync_batchnorm`), this process's share otherwise."""
    return global_batch if sync_bn else local_batch_size(global_batch)


# --------------------------------------------------------------------------------------------------
# the network as the strategies see it


class ParallelNetwork:
    """A compiled network whose forward pass goes through DDP (and autocast / channels-last).

    Strategies keep calling ``net(x)``, ``net.arch``, ``net.weight_parameters()``...: calls go to
    the DDP wrapper, every other attribute to the network itself. The network (not this proxy) is
    what gets saved, scored and derived from.
    """

    def __init__(self, net: nn.Module, ddp: nn.Module | None, precision: Precision, compiled: Any = None):
        self.__dict__.update(module=net, ddp=ddp, precision=precision, scales=[], compiled=compiled)

    def set_loss_scales(self, pairs: Sequence[tuple[torch.Tensor, float]]) -> None:
        """Gradient scale of the output for each input batch (matched by identity); see
        :func:`global_mean_scales`. Inputs not listed get scale 1."""
        self.__dict__["scales"] = list(pairs)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        p: Precision = self.__dict__["precision"]
        scale = next((s for t, s in self.__dict__["scales"] if t is x), 1.0)
        if p.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        runner = next(r for r in (self.__dict__["compiled"], self.__dict__["ddp"], self.__dict__["module"]) if r is not None)
        if p.amp_dtype is None:
            y = runner(x, *args, **kwargs)
        else:
            with torch.autocast(device_type=x.device.type, dtype=p.amp_dtype):
                y = runner(x, *args, **kwargs)
            y = y.float()  # the loss in float32
        return _ScaleGrad.apply(y, scale) if scale != 1.0 else y

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["module"], name)

    def train(self, mode: bool = True) -> "ParallelNetwork":
        (self.__dict__["ddp"] or self.__dict__["module"]).train(mode)
        return self

    def eval(self) -> "ParallelNetwork":
        return self.train(False)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient times ``scale`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def global_mean_scales(targets: Sequence[torch.Tensor], ignore_index: int) -> list[float]:
    """Per batch: ``W * n_r / N`` (``n_r`` this rank's labelled pixels, ``N`` all ranks').

    Each rank's loss is a mean over its own labelled pixels and DDP averages gradients over ranks,
    so without this the ranks' pixels would be weighted unequally whenever their counts differ
    (ignore-label padding of random crops). Scaling rank ``r``'s gradient by ``W n_r / N`` makes the
    averaged gradient that of the mean over the global batch, as in one process. One small
    all-reduce for all ``targets``; all 1.0 in a single process.
    """
    if not is_distributed():
        return [1.0] * len(targets)
    local = [float((t != ignore_index).sum()) for t in targets]
    total = sum_over_ranks(local)
    w = world_size()
    return [w * n / tot if tot > 0 else 1.0 for n, tot in zip(local, total)]


def parallelize(net: nn.Module, device: torch.device, precision: Precision, *, find_unused: bool, broadcast_buffers: bool, ignore: Iterable[str] = ()) -> Any:
    """``net`` itself when nothing is needed (single process, fp32): unchanged behaviour; otherwise a
    :class:`ParallelNetwork`. ``ignore``: fully-qualified parameter names DDP must leave alone (the
    architecture parameters, reduced by :func:`average_gradients_before_step` instead)."""
    if precision.channels_last:
        net.to(memory_format=torch.channels_last)
    if not is_distributed() and precision.amp_dtype is None and not precision.channels_last:
        return net
    ddp = None
    if is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        names = list(ignore)
        if names:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(net, names)
        ddp = DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused,
            broadcast_buffers=broadcast_buffers,
        )
    return ParallelNetwork(net, ddp, precision)


def compile_forward(step_net: Any) -> Any:
    """``train.compile``: the forward pass of the training steps through ``torch.compile``.

    Only the step's forward is compiled (DDP's wrapper included, which torch.compile supports);
    the network object itself stays eager, so evaluation, pictures and checkpoints use it unchanged:
    a checkpoint holds the plain module's state dict (no ``_orig_mod.`` prefixes) and loads into an
    eager or a compiled run alike. The first steps pay the compile time (docs/gpu.md has figures).
    """
    if isinstance(step_net, ParallelNetwork):
        ddp = step_net.__dict__["ddp"]
        step_net.__dict__["compiled"] = torch.compile(ddp if ddp is not None else step_net.__dict__["module"])
        return step_net
    return ParallelNetwork(step_net, None, Precision(None, False), compiled=torch.compile(step_net))


def all_reduce_mean_grads(params: Sequence[torch.Tensor]) -> None:
    """Average ``.grad`` over the ranks in one collective. A gradient that is ``None`` on every rank
    stays ``None`` (optimisers skip such parameters, as in one process)."""
    if not is_distributed() or not params:
        return
    w = world_size()
    device = params[0].device
    flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(device) for p in params]
    present = torch.tensor([float(p.grad is not None) for p in params], dtype=flat[0].dtype, device=device)
    buffer = torch.cat(flat + [present])
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    counts = buffer[-len(params) :]
    offset = 0
    for p, c in zip(params, counts.tolist()):
        n = p.numel()
        if c > 0:
            p.grad = (buffer[offset : offset + n] / w).view_as(p).clone()
        offset += n


def average_gradients_before_step(opt: torch.optim.Optimizer | None) -> torch.optim.Optimizer | None:
    """Make ``opt.step()`` average its parameters' gradients over the ranks first (a no-op in one
    process). Runs before the optimiser's own pre-hooks (P-DARTS clips alpha's gradient in one), so
    they see the averaged gradient, as in one process."""
    if opt is None or not is_distributed():
        return opt
    params = [p for group in opt.param_groups for p in group["params"]]
    original = opt.step

    def step(*args: Any, **kwargs: Any) -> Any:
        all_reduce_mean_grads(params)
        return original(*args, **kwargs)

    opt.step = step  # type: ignore[method-assign]
    return opt


# --------------------------------------------------------------------------------------------------
# small collectives for the loop


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any (Ctrl-C reaches ranks at different steps)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Per-key mean over the ranks (keys sorted so every rank reduces the same layout)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist())}


def sum_over_ranks(values: Sequence[float]) -> list[float]:
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def max_over_ranks(value: float) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def from_main(load: Callable[[], Any]) -> Any:
    """``load()`` on rank 0, its result sent to every rank (files rank 0 wrote need not be visible
    on other machines). An exception on rank 0 is re-raised on every rank."""
    if not is_distributed():
        return load()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", load())
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def fingerprint(tensors: Iterable[torch.Tensor], extra: Any = None) -> str:
    """SHA-256 of tensor bytes (and a picklable extra), to compare state across ranks cheaply."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    if extra is not None:
        buf = io.BytesIO()
        torch.save(extra, buf)
        h.update(buf.getvalue())
    return h.hexdigest()


def check_identical(what: str, digest: str) -> None:
    """Raise on every rank if ``digest`` differs between ranks (a desynchronised search)."""
    if not is_distributed():
        return
    digests: list[Any] = [None] * world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        raise RuntimeError(
            f"{what} differ between ranks ({', '.join(d[:8] for d in digests)}): the processes desynchronised; "
            "this is a bug in a strategy's sampling (it must draw from seeded generators only), please report it"
        )
