"""No hidden host-device synchronisations in the search step: a fixed small number per step, the
same for L=2 and L=4 (a `.item()` per node or per choice would stall a GPU every step).

On the CPU there is no device, so the test emulates one: every tensor derived from the network's
parameters and buffers, the optimisers' state or the batch counts as "on the device" (tracked op by
op with a dispatch mode); a call that would copy such a tensor to the host on a GPU is counted:
``item``/``float``/``int``/``bool`` (``_local_scalar_dense``), ``tolist``, ``numpy``, ``cpu`` or
``to("cpu")``, and ops whose output size depends on the values (``nonzero``, boolean indexing,
``masked_select``, ``unique``). Host tensors (the strategies' CPU generators, Adam's step counter)
are free, as on a GPU. Where CUDA exists, the gpu lane checks the same with
``torch.cuda.set_sync_debug_mode`` (tests/test_gpu_lane.py).
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from archgraph.config import load_config
from archgraph.engine import search as search_module
from archgraph.engine.search import run_search

aten = torch.ops.aten
VALUE_SIZED = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
    aten.equal.default,
    aten.is_nonzero.default,
}
TO_HOST = {"tolist", "numpy", "cpu"}  # (.to("cpu") is left out: on the CPU it cannot be told from the batch's upload)
REAL_STEP = search_module.SearchRun.step


class SyncCounter:
    """Counts would-be device-to-host synchronisations while active (``with counter:``)."""

    def __init__(self) -> None:
        self.device = WeakIdKeyDictionary()
        self.calls: collections.Counter[str] = collections.Counter()
        self.uploads = 0  # device tensors indexed with host index tensors: a blocking upload (a wait) on a GPU
        counter = self

        class Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                on_device = any(isinstance(t, torch.Tensor) and t in counter.device for t in tree_leaves((args, kwargs)))
                if on_device and (func is aten._local_scalar_dense.default or func in VALUE_SIZED or _bool_index(func, args)):
                    counter.calls[str(func.overloadpacket.__name__)] += 1
                elif on_device and _host_index(func, args, counter.device):
                    counter.uploads += 1
                out = func(*args, **kwargs)
                if on_device:
                    counter.mark(out)
                return out

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = getattr(func, "__name__", "")
                src = args[0] if args else None
                if name == "to" and isinstance(src, torch.Tensor) and src not in counter.device and _names_device(args, kwargs):
                    out = func(*args, **kwargs).clone()  # an upload: a device tensor from now on
                    counter.mark(out)
                    return out
                if name in TO_HOST and isinstance(src, torch.Tensor) and src in counter.device:
                    counter.calls[name] += 1
                    out = func(*args, **kwargs)
                    if isinstance(out, torch.Tensor):  # a host copy, as on a GPU (not the device tensor itself)
                        out = out.clone()
                        counter.device.pop(out, None)
                    return out
                return func(*args, **kwargs)

        self._modes = (Functions(), Dispatch())

    def mark(self, tree: Any) -> None:
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor):
                self.device[t] = True

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __enter__(self) -> "SyncCounter":
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


INDEXING = {
    aten.index.Tensor,
    aten.index_put.default,
    aten.index_put_.default,
    aten.index_select.default,
    aten.index_add.default,
    aten.index_add_.default,
    aten.index_copy.default,
    aten.index_copy_.default,
}


def _host_index(func, args, device) -> bool:
    if func not in INDEXING or len(args) < 2:
        return False
    index = args[2] if func in (aten.index_select.default, aten.index_add.default, aten.index_add_.default, aten.index_copy.default, aten.index_copy_.default) else args[1]
    found = index if isinstance(index, (list, tuple)) else [index]
    return any(isinstance(i, torch.Tensor) and i.dim() > 0 and i not in device for i in found)


def _names_device(args, kwargs) -> bool:
    return any(isinstance(a, torch.device) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")) for a in [*args[1:], kwargs.get("device")])


def _bool_index(func, args) -> bool:
    if func not in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ())


STRATEGIES = {
    "dcnas": [],
    "darts": [],
    "pc_darts": ["strategy.k=2"],
    "p_darts": ["strategy.stages=1", "strategy.drop=[]", "strategy.dropout=[0.0]"],
    "proxylessnas": ["strategy.arch_every=1"],
    "spos": ["strategy.population=2", "strategy.generations=1", "strategy.select=1", "strategy.mutation=1", "strategy.crossover=1", "strategy.recalib_batches=1"],
}


def _counted_search(tmp_path, strategy: str, layers: int, monkeypatch) -> list[collections.Counter]:
    """Syncs of every step of a tiny search (architecture steps from the first step)."""
    per_step: list[collections.Counter] = []

    def counted(run, stage, epoch, step, batch):
        batch_w, batch_a = batch
        counter = SyncCounter()
        counter.mark([list(stage.net.parameters()), list(stage.net.buffers()), batch_w, batch_a])
        for opt in (stage.w_opt, stage.a_opt):
            for state in opt.state.values() if opt is not None else ():
                counter.mark([v for k, v in state.items() if k != "step"])  # Adam's step count lives on the host
        with counter:
            losses = REAL_STEP(run, stage, epoch, step, batch)
        per_step.append(collections.Counter({**counter.calls, **({'uploads': counter.uploads} if counter.uploads else {})}))
        return losses

    monkeypatch.setattr(search_module.SearchRun, "step", counted)
    cfg = load_config(
        None,
        [
            f"space.layers={layers}",
            "space.base_channels=4",
            "data.num_samples=8",
            "data.crop=[32,32]",
            "data.batch_size=2",
            "data.val_limit=1",
            "search.epochs=1",
            "search.warmup_epochs=0",
            "search.steps_per_epoch=1",
            "search.eval_every=0",
            "search.bn_recalib_batches=1",
            f"strategy.name={strategy}",
            *STRATEGIES[strategy],
        ],
    )
    run_search(cfg, tmp_path / f"{strategy}-L{layers}", progress=False)
    return per_step


# Per step: per forward/backward pair the logged loss, its cross-entropy part and the finite check
# (3 x 2), the one finite check of all alpha/beta (1), the health's one copy of the architecture
# gradients (1) and, for strategies that sample on the host (DCNAS), one copy of the pass's beta per
# forward (2): at most 10, whatever the network's size.
MAX_PER_STEP = 10


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_syncs_per_step_do_not_grow_with_the_nodes(tmp_path, strategy, monkeypatch):
    small = _counted_search(tmp_path, strategy, 2, monkeypatch)
    large = _counted_search(tmp_path, strategy, 4, monkeypatch)
    worst = {L: max(sum(c.values()) for c in steps) for L, steps in ((2, small), (4, large))}
    detail = {L: [dict(c) for c in steps] for L, steps in ((2, small), (4, large))}
    assert worst[4] == worst[2], f"{strategy}: syncs per step grow with the nodes: {detail}"
    assert worst[4] <= MAX_PER_STEP, f"{strategy}: {worst[4]} syncs in one step: {detail}"


def test_the_counter_sees_a_per_node_item():
    """The instrument itself: a loop of .item() over per-node tensors is counted once per node;
    host tensors and the generator's draws are not."""
    params = [torch.nn.Parameter(torch.randn(3)) for _ in range(5)]
    counter = SyncCounter()
    counter.mark(params)
    with counter:
        for p in params:
            float(torch.softmax(p.detach(), -1)[0])
        torch.softmax(torch.cat([p.detach() for p in params]), -1).tolist()
        host = torch.multinomial(torch.ones(4), 2, generator=torch.Generator().manual_seed(0))
        host.tolist()
        params[0][host].sum()  # indexing the device with host indices: a blocking upload
        params[0][host.to("cpu", non_blocking=True)].sum()  # uploaded first (non-blocking): no wait
    assert counter.calls == {"_local_scalar_dense": 5, "tolist": 1} and counter.uploads == 1, (counter.calls, counter.uploads)
