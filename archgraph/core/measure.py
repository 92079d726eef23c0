"""Time and memory, measured one way and named for the quantity they are.

"Peak memory" is several different numbers, and records that called all of them ``peak_mem_mb``
could not be compared across devices, nor with one another. Measurements go through this module,
and a record names its quantity (the table in docs/architecture.md, "Measurements"):

- ``peak_rss_mb``: the process's peak resident set since it started (``getrusage`` ``ru_maxrss``);
  the CPU's number, which torch cannot reset;
- ``peak_rss_window_mb``: the peak resident set since a window opened (``VmHWM`` after writing 5 to
  ``/proc/self/clear_refs``, Linux >= 4.0); it still includes the process's baseline;
- ``peak_cuda_allocated_mb``: ``torch.cuda.max_memory_allocated`` since the last reset: tensors
  only, not the caching allocator's reserve or the CUDA context;
- ``*_growth_mb`` (:data:`GROWTH_OF`): a window's peak minus the same quantity when it opened, what
  a step adds on top of the network and batches already built;
- ``saved_tensors_mb``: the distinct tensors autograd keeps for backward in a forward pass,
  parameters excluded: allocator-independent, the same on every machine.

MB is 2**20 bytes throughout, as the records have always used it. On Linux the ``clear_refs`` reset
lowers ``ru_maxrss`` too, so inside an RSS window ``peak_rss_mb`` is the window's peak; nothing in the
package resets it otherwise.

Time: :class:`Timer` is the wall clock (``time.perf_counter``); given a CUDA device it synchronizes
before starting and before every reading, so a GPU interval counts the kernels it queued and not only
their launch. :func:`archgraph.core.latency.time_module_ms` times single modules with CUDA events
instead (no synchronize per repetition).

Records written before the names said their quantity carry ``peak_mem_mb``; :func:`peak_memory_of`
reads both, so old run folders still load.
"""

from __future__ import annotations

import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
from torch import nn

MB = 2**20  # bytes in one "MB" of every record (a mebibyte)

PEAK_RSS_MB = "peak_rss_mb"
PEAK_RSS_WINDOW_MB = "peak_rss_window_mb"
PEAK_CUDA_ALLOCATED_MB = "peak_cuda_allocated_mb"
LEGACY_PEAK_MB = "peak_mem_mb"  # old records: CUDA allocated on a GPU, process peak RSS on the CPU
PEAK_MEMORY_KEYS = (PEAK_CUDA_ALLOCATED_MB, PEAK_RSS_WINDOW_MB, PEAK_RSS_MB)  # the names a record may carry, read in this order

# a window's peak minus the same quantity at its start; ru_maxrss cannot be reset, so its growth only bounds the window's from below
GROWTH_OF = {PEAK_CUDA_ALLOCATED_MB: "peak_cuda_allocated_growth_mb", PEAK_RSS_WINDOW_MB: "peak_rss_growth_mb", PEAK_RSS_MB: "peak_rss_growth_lower_bound_mb"}
SAVED_TENSORS_MB = "saved_tensors_mb"

QUANTITIES: dict[str, str] = {  # name -> what it is, for notes and labels
    PEAK_RSS_MB: "peak resident set of the process since it started (getrusage ru_maxrss)",
    PEAK_RSS_WINDOW_MB: "peak resident set of the process during the window (VmHWM reset through /proc/self/clear_refs; includes the process baseline)",
    PEAK_CUDA_ALLOCATED_MB: "peak memory allocated to tensors on the CUDA device since the last reset (torch.cuda.max_memory_allocated)",
    LEGACY_PEAK_MB: "peak memory of an older record: CUDA allocated on a GPU, process peak resident set on the CPU",
    GROWTH_OF[PEAK_CUDA_ALLOCATED_MB]: "CUDA peak allocated during the window minus the allocation when it opened",
    GROWTH_OF[PEAK_RSS_WINDOW_MB]: "peak resident set during the window minus the resident set when it opened",
    GROWTH_OF[PEAK_RSS_MB]: "growth of the process's peak resident set during the window (a lower bound: the peak could not be reset)",
    SAVED_TENSORS_MB: "distinct tensors autograd saved for backward, parameters excluded",
}
LEGACY_SOURCES = {"cuda": PEAK_CUDA_ALLOCATED_MB, "rss-window": PEAK_RSS_WINDOW_MB}  # compare's old peak_mem_source -> quantity


def as_device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


# --------------------------------------------------------------------------------------------------
# time


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the work queued on a CUDA device; nothing for the CPU (or no device), whose work is done when the call returns."""
    if device is not None and as_device(device).type == "cuda":
        torch.cuda.synchronize(as_device(device))


class Timer:
    """Wall-clock seconds, honest on a GPU.

    It starts when made and again on ``with``; :meth:`read` gives the seconds so far (it keeps
    running), :meth:`stop` and leaving the ``with`` keep them in ``seconds``. With a CUDA ``device``
    every start and reading synchronizes first: kernel launches return before the kernels ran, so an
    unsynchronized clock times the launch. Without a device (or on the CPU) it is ``perf_counter`` and
    nothing else, which is what a loop that must not add synchronizations wants.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = None if device is None else as_device(device)
        self.seconds = 0.0  # the last stopped interval
        self.start()

    def start(self) -> "Timer":
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def read(self) -> float:
        synchronize(self.device)
        return time.perf_counter() - self._t0

    def stop(self) -> float:
        self.seconds = self.read()
        return self.seconds

    def __enter__(self) -> "Timer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# memory: the readings


def peak_rss_mb() -> float:
    """``peak_rss_mb``: the process's peak resident set since it started (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / MB if sys.platform == "darwin" else maxrss / 1024


def _proc_status_kib(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def rss_mb() -> float | None:
    """The resident set now (``VmRSS``); ``None`` without ``/proc`` (not Linux)."""
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib / 1024


def rss_high_water_mb() -> float | None:
    """The resident set's high-water mark (``VmHWM``): since the last :func:`reset_rss_high_water`, or the process start."""
    kib = _proc_status_kib("VmHWM")
    return None if kib is None else kib / 1024


def reset_rss_high_water() -> bool:
    """Lower the resident set's high-water mark to the resident set now (Linux >= 4.0); ``False``
    where this kernel does not allow it (the mark did not come down), so the caller knows its window
    would include everything before."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _proc_status_kib("VmHWM"), _proc_status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024


def peak_cuda_allocated_mb(device: torch.device | str) -> float:
    """``peak_cuda_allocated_mb``: the most memory tensors held on ``device`` since the last :func:`reset_peak`."""
    return torch.cuda.max_memory_allocated(as_device(device)) / MB


def cuda_allocated_mb(device: torch.device | str) -> float:
    """Memory tensors hold on ``device`` now."""
    return torch.cuda.memory_allocated(as_device(device)) / MB


# --------------------------------------------------------------------------------------------------
# memory: per epoch (what the search and training loops record)


def peak_quantity(device: torch.device | str) -> str:
    """The name of the peak a loop records on ``device``: ``peak_cuda_allocated_mb`` on CUDA, ``peak_rss_mb`` elsewhere."""
    return PEAK_CUDA_ALLOCATED_MB if as_device(device).type == "cuda" else PEAK_RSS_MB


def reset_peak(device: torch.device | str) -> None:
    """Start a new peak for :func:`peak_fields` on CUDA. On the CPU nothing: the process's peak
    cannot be reset without also moving other readers' (the RSS window of :class:`MemoryWindow`)."""
    if as_device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(as_device(device))


def peak_mb(device: torch.device | str) -> float:
    """The value of :func:`peak_quantity` on ``device`` now."""
    return peak_cuda_allocated_mb(device) if as_device(device).type == "cuda" else peak_rss_mb()


def peak_fields(device: torch.device | str) -> dict[str, float]:
    """``{quantity: MB}`` for a record: ``{"peak_cuda_allocated_mb": ...}`` since the last
    :func:`reset_peak` on CUDA, ``{"peak_rss_mb": ...}`` (since the process started) elsewhere."""
    return {peak_quantity(device): peak_mb(device)}


# --------------------------------------------------------------------------------------------------
# memory: one window


class MemoryWindow:
    """The peak memory of one stretch of code, measured the best way the device allows, and named.

    ``with MemoryWindow(device) as w: ...`` (or ``w = MemoryWindow(device).open()`` ... ``w.close()``)
    then ``w.fields()`` -> ``{w.quantity: w.peak_mb}``:

    - CUDA: the peak allocation is reset on entry: ``peak_cuda_allocated_mb``;
    - CPU on Linux: the resident set's high-water mark is reset on entry: ``peak_rss_window_mb``;
    - elsewhere the process's peak cannot be reset: ``peak_rss_mb`` (since the process started),
      and ``windowed`` is ``False``, so a caller that needs the window alone can say so.

    ``baseline_mb`` is the same quantity at entry (allocated now, resident now, or the peak so far);
    ``growth_mb`` / :meth:`growth_fields` the peak above it. Reading the allocator's statistics needs
    no synchronization: allocations are booked on the host when a kernel is queued.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = as_device(device)
        self.quantity = ""
        self.windowed = False
        self.baseline_mb = 0.0
        self.peak_mb: float | None = None  # set on exit; read() inside the window

    def open(self) -> "MemoryWindow":
        """Reset the device's peak and note the baseline: the window starts here."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.quantity, self.windowed, self.baseline_mb = PEAK_CUDA_ALLOCATED_MB, True, cuda_allocated_mb(self.device)
        elif reset_rss_high_water():
            self.quantity, self.windowed, self.baseline_mb = PEAK_RSS_WINDOW_MB, True, float(rss_mb() or 0.0)
        else:
            self.quantity, self.windowed, self.baseline_mb = PEAK_RSS_MB, False, peak_rss_mb()
        self.peak_mb = None
        return self

    def close(self) -> float:
        """End the window: its peak is kept in ``peak_mb`` (and returned)."""
        self.peak_mb = self.read()
        return self.peak_mb

    def __enter__(self) -> "MemoryWindow":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def read(self) -> float:
        """The window's peak so far, in MB."""
        if self.quantity == PEAK_CUDA_ALLOCATED_MB:
            return peak_cuda_allocated_mb(self.device)
        if self.quantity == PEAK_RSS_WINDOW_MB:
            hwm = rss_high_water_mb()
            if hwm is None:
                raise RuntimeError("/proc/self/status lost its VmHWM line during a memory window; measure on a system whose /proc stays readable")
            return hwm
        if self.quantity == PEAK_RSS_MB:
            return peak_rss_mb()
        raise RuntimeError("MemoryWindow.read() outside its window: use it as `with MemoryWindow(device) as w:`")

    @property
    def growth_quantity(self) -> str:
        return GROWTH_OF[self.quantity]

    @property
    def growth_mb(self) -> float:
        peak = self.read() if self.peak_mb is None else self.peak_mb
        return max(peak - self.baseline_mb, 0.0)

    @property
    def source(self) -> str:
        """What the window measured, in words."""
        return QUANTITIES[self.quantity]

    def fields(self) -> dict[str, float]:
        return {self.quantity: self.read() if self.peak_mb is None else self.peak_mb}

    def growth_fields(self) -> dict[str, float]:
        return {self.growth_quantity: self.growth_mb}


class SavedTensors:
    """``saved_tensors_mb``: the distinct tensors autograd keeps for backward while active, the
    parameters of ``module`` excluded (their storage exists anyway).

    The activation memory of a forward pass without the allocator's rounding, caching or the
    process's other memory: the same number on every machine, and what live-subgraph pruning and
    channel sampling change. Each storage counts once however many views of it are saved.
    """

    def __init__(self, module: nn.Module | None = None) -> None:
        self._params = {p.untyped_storage().data_ptr() for p in module.parameters()} if module is not None else set()
        self._saved: dict[tuple[int, int], int] = {}
        self._hooks: Any = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._params:
            self._saved[(t.device.index or 0, ptr)] = storage.nbytes()
        return t

    def __enter__(self) -> "SavedTensors":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(self._saved.values())

    @property
    def mb(self) -> float:
        return self.bytes / MB


# --------------------------------------------------------------------------------------------------
# reading records, old and new


class PeakMemory(NamedTuple):
    quantity: str  # one of PEAK_MEMORY_KEYS, or LEGACY_PEAK_MB for an old record whose device is unknown
    mb: float


def peak_memory_of(record: Mapping[str, Any], legacy: str = LEGACY_PEAK_MB) -> PeakMemory | None:
    """The peak memory a record (a search.jsonl / train.jsonl line, a compare run or session) carries,
    with its quantity; ``None`` when it has none.

    Records written before the names said their quantity have ``peak_mem_mb``: its quantity is
    ``legacy`` when the caller knows it (the run's device), else what the record's own
    ``peak_mem_source`` says (compare's old runs), else ``peak_mem_mb`` itself (see
    :data:`QUANTITIES`)."""
    for key in PEAK_MEMORY_KEYS:
        if record.get(key) is not None:
            return PeakMemory(key, float(record[key]))
    if record.get(LEGACY_PEAK_MB) is None:
        return None
    if legacy == LEGACY_PEAK_MB:
        legacy = LEGACY_SOURCES.get(str(record.get("peak_mem_source")), LEGACY_PEAK_MB)
    return PeakMemory(legacy, float(record[LEGACY_PEAK_MB]))


def peak_memory_label(quantity: str) -> str:
    """A short column or row label for a quantity: ``"peak RSS (MB)"``, ``"peak CUDA allocated (MB)"``, ..."""
    return {
        PEAK_RSS_MB: "peak RSS (MB)",
        PEAK_RSS_WINDOW_MB: "peak RSS in the window (MB)",
        PEAK_CUDA_ALLOCATED_MB: "peak CUDA allocated (MB)",
        LEGACY_PEAK_MB: "peak memory (MB)",
    }.get(quantity, quantity)
