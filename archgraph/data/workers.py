"""Loading with worker processes (``data.workers > 0``) that gives the batches of a loader without.

Why this exists: a GPU step on a small crop takes milliseconds, decoding and augmenting a CamVid or
Cityscapes PNG in the training process takes tens of milliseconds, so with ``data.workers = 0`` a GPU
mostly waits. Worker processes fix the speed, but three things must not change with them:

- **the batches.** The sample order comes from the same seeded generator draws a single-process
  ``DataLoader(shuffle=True, generator=g)`` makes (one draw for the workers' base seed, then
  ``RandomSampler``'s permutation per pass), so ``data.workers`` changes speed, never results;
- **the augmentation.** A dataset's random crop, scale and flip depend on ``(seed, epoch, index)``
  (:meth:`archgraph.data.base.SegmentationDataset.rng`). A worker holds its own copy of the dataset,
  so the loop's ``set_epoch`` in the main process would not reach a *persistent* worker: every index
  therefore travels with the epoch the main process had when the pass began (:class:`EpochKeyed`),
  and the worker sets it on its copy before reading the sample;
- **global random state.** Each worker seeds ``random``, ``numpy`` and ``torch`` from (the dataset's
  seed, the epoch, its worker id) at the first sample of every epoch, so a plug-in dataset drawing
  from the global generators is reproducible too (for a given worker count; the built-in datasets
  draw from per-sample generators, so theirs is independent of it).

Workers are **persistent** inside :func:`loader_scope` (the search and training loops open one per
run): the loader of a dataset is built once, re-seeded for every epoch and pass, and its workers are
shut down when the scope ends. Outside a scope every call starts fresh workers (still correct, only
slower). Two passes over one dataset read at the same time (a loop over trainA while a scorer
recalibrates on it) get a loader each, so neither sees the other's batches.
"""

from __future__ import annotations

import contextlib
import random
import weakref
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, Subset, get_worker_info


# --------------------------------------------------------------------------------------------------
# the dataset's epoch


def base_dataset(ds: Dataset) -> Dataset:
    """The dataset under any number of ``Subset`` wrappers (what holds the epoch and the seed)."""
    while isinstance(ds, Subset):
        ds = ds.dataset
    return ds


def dataset_epoch(ds: Dataset) -> int:
    return int(getattr(base_dataset(ds), "epoch", 0))


def set_dataset_epoch(ds: Dataset, epoch: int) -> None:
    """Tell a dataset (inside Subsets too) which epoch it serves: its random crops depend on it."""
    base = base_dataset(ds)
    if hasattr(base, "set_epoch"):
        base.set_epoch(epoch)


def seed_worker(seed: int, epoch: int, worker: int) -> None:
    """Seed this process's ``random``, ``numpy`` and ``torch`` generators from (seed, epoch, worker)."""
    state = np.random.SeedSequence([seed % 2**63, epoch % 2**63, worker]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[0]))
    torch.manual_seed((int(state[0]) << 32) | int(state[1]))


class EpochKeyed(Dataset):
    """``keyed[(index, epoch)]`` is ``ds[index]`` read at ``epoch``: the epoch travels with the index,
    so a persistent worker's copy of ``ds`` serves the epoch the main process is in."""

    def __init__(self, ds: Dataset):
        self.ds = ds
        self.seed = int(getattr(base_dataset(ds), "seed", 0))
        self._seeded: int | None = None  # the epoch this worker's global generators were seeded for

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        if dataset_epoch(self.ds) != epoch:
            set_dataset_epoch(self.ds, epoch)
        info = get_worker_info()
        if info is not None and self._seeded != epoch:
            seed_worker(self.seed, epoch, info.id)
            self._seeded = epoch
        return self.ds[index]


class PassSampler(Sampler):
    """``(index, epoch)`` keys of one pass, shuffled by :attr:`generator` exactly as a single-process
    ``DataLoader(shuffle=True, generator=g)`` shuffles (or as :class:`~archgraph.engine.distributed.StepSampler`
    shares it among ``shard = (world size, rank)``); the epoch is read when the pass begins."""

    def __init__(self, keyed: EpochKeyed, shard: tuple[int, int] | None):
        self.keyed = keyed
        self.shard = shard
        self.generator = torch.Generator()  # replaced by each handle's own before its pass

    def __len__(self) -> int:
        n = len(self.keyed)
        return n if self.shard is None else n // self.shard[0]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = dataset_epoch(self.keyed.ds)
        g = self.generator
        torch.empty((), dtype=torch.int64).random_(generator=g)  # the base-seed draw of a DataLoader iterator
        order: Any = RandomSampler(self.keyed.ds, generator=g)  # type: ignore[arg-type]
        if self.shard is not None:
            world, rank = self.shard
            n = len(self.keyed)
            order = list(order)[rank : (n // world) * world : world]
        for index in order:
            yield index, epoch


# --------------------------------------------------------------------------------------------------
# persistent loaders


class _Shared:
    """One DataLoader over one dataset, reused by the passes of a scope that do not overlap."""

    def __init__(self, ds: Dataset, batch_size: int, workers: int, pin: bool, shard: tuple[int, int] | None, persistent: bool, seed: int):
        self.sampler = PassSampler(EpochKeyed(ds), shard)
        self.loader = DataLoader(
            self.sampler.keyed,
            batch_size=batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=persistent,
            generator=torch.Generator().manual_seed(seed),
        )
        self.current: weakref.ref | None = None  # the pass being read, if any

    def busy(self) -> bool:
        """A pass is still being read: it is referenced by someone and not finished (a pass dropped
        half-way, e.g. by ``itertools.islice``, frees the loader)."""
        live = self.current() if self.current is not None else None
        return live is not None and not live.done

    def close(self) -> None:
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


class WorkerLoader:
    """What :func:`worker_loader` returns: iterate it for a pass (again for the next pass, like a
    DataLoader); its shuffles come from its own generator, seeded with ``seed``. A pass runs on a
    free loader of its pool (same dataset and settings); while another pass is still being read
    (two loaders over one dataset at once), a second loader with its own workers joins the pool."""

    def __init__(self, pool: list[_Shared], make: Callable[[], _Shared], seed: int, length: int):
        self._pool, self._make, self._length = pool, make, length
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Any]:
        shared = next((s for s in self._pool if not s.busy()), None)
        if shared is None:
            shared = self._make()
            self._pool.append(shared)
        shared.sampler.generator = self._generator
        it = _Pass(iter(shared.loader))  # the sampler draws this pass's order now, from our generator
        shared.current = weakref.ref(it)
        return it


class _Pass:
    """One pass over a loader; ``done`` once it has ended."""

    def __init__(self, it: Iterator[Any]):
        self._it, self.done = it, False

    def __iter__(self) -> "_Pass":
        return self

    def __next__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            self.done = True
            raise


_SCOPES: list[dict[tuple, list[_Shared]]] = []


@contextlib.contextmanager
def loader_scope() -> Iterator[None]:
    """Inside: the worker loaders of a dataset are built once and kept (persistent workers); on
    exit, their workers are shut down. The search and the training open one per run."""
    cache: dict[tuple, list[_Shared]] = {}
    _SCOPES.append(cache)
    try:
        yield
    finally:
        _SCOPES.remove(cache)
        for pool in cache.values():
            for shared in pool:
                shared.close()


def worker_loader(ds: Dataset, batch_size: int, seed: int, workers: int, pin: bool, shard: tuple[int, int] | None = None) -> WorkerLoader:
    """Batches of ``batch_size`` (this process's share when ``shard = (world size, rank)``) read by
    ``workers`` processes: the batches a single-process loader seeded with ``seed`` gives."""
    if workers < 1:
        raise ValueError(f"worker_loader needs workers >= 1, got {workers}")
    n = len(ds) if shard is None else len(ds) // shard[0]  # type: ignore[arg-type]
    persistent = bool(_SCOPES)
    make = lambda: _Shared(ds, batch_size, workers, pin, shard, persistent, seed)  # noqa: E731
    if not persistent:
        return WorkerLoader([], make, seed, n // batch_size)
    pool = _SCOPES[-1].setdefault((id(ds), batch_size, workers, pin, shard), [])
    return WorkerLoader(pool, make, seed, n // batch_size)
