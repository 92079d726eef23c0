"""Latency on a device: timing one module, and lookup tables of a graph's items that a user builds
once, reuses and shares.

A latency is only meaningful for one device, one input resolution and one dtype, so a
:class:`LatencyTable` carries them in its ``meta`` (with the device's name, the library versions, the
thread count and the date) and refuses to be used for anything else. Its entries map an item's key
(:mod:`archgraph.core.costitems`) plus dtype and device to milliseconds.

Timing (:func:`time_module_ms`): eval mode, batch 1, no autograd. On CUDA, CUDA events around each
repetition after warm-up passes, with a synchronize before reading them (kernel launches are
asynchronous; wall clocks would time the launch). On CPU, ``time.perf_counter`` per repetition. The
median of the repetitions is kept: one preempted repetition on a shared machine does not move it.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import networkx as nx
import torch
from torch import nn

from archgraph.core.costitems import CostItem, distinct_items
from archgraph.errors import ConfigError
from archgraph.io import atomic_write_json

FORMAT = "archgraph/latency-table-v1"
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("cpu", "cuda")


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} is not one of {', '.join(DTYPES)}; e.g. --dtype fp32")
    return DTYPES[name]


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda:N`` too); CUDA refused with the fix when no GPU is visible."""
    kind = name.split(":", 1)[0]
    if kind not in DEVICES:
        raise ConfigError(f"device {name!r} is not cpu or cuda; e.g. --device cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA GPU is visible to torch here; use --device cpu or run on a GPU machine")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """A human name of the device: the GPU's model, or the CPU's model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


@torch.no_grad()
def time_module_ms(module: nn.Module, inputs: Sequence[Any], device: torch.device, warmup: int = 3, reps: int = 10) -> float:
    """Median milliseconds of one forward pass of ``module(*inputs)`` (already on ``device``)."""
    if reps < 1 or warmup < 0:
        raise ConfigError(f"latency timing needs reps >= 1 and warmup >= 0, got reps={reps}, warmup={warmup}")
    _eval(module)
    for _ in range(max(warmup, 1) if device.type == "cuda" else warmup):  # CUDA: at least one pass to load kernels
        module(*inputs)
    times: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        pairs = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            module(*inputs)
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) for s, e in pairs]
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            module(*inputs)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def _eval(module: nn.Module) -> None:
    """Eval mode; an exported program's module (already traced in eval mode) may refuse ``eval()``."""
    try:
        module.eval()
    except (NotImplementedError, RuntimeError):
        pass


def time_network_ms(net: nn.Module, resolution: Sequence[int], device: str | torch.device = "cpu", dtype: str = "fp32", warmup: int = 3, reps: int = 10) -> float:
    """End-to-end median milliseconds of ``net`` on one ``1 x 3 x H x W`` image (``net`` is moved to
    the device and dtype): what a latency table's sum predicts."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    torch_dtype = parse_dtype(dtype)
    net = net.to(device=dev, dtype=torch_dtype)
    x = torch.zeros(1, 3, int(resolution[0]), int(resolution[1]), dtype=torch_dtype, device=dev)
    return time_module_ms(net, (x,), dev, warmup, reps)


def time_networks_ms(
    nets: Sequence[nn.Module],
    resolution: Sequence[int],
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    warmup: int = 3,
    reps: int = 10,
    rounds: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[float]:
    """:func:`time_network_ms` of every network in ``rounds`` passes over all of them, each one's
    lowest median kept: the first network timed in a fresh process pays the allocator's and kernels'
    warm-up, and a burst of load on a shared machine hits one pass (interference only adds time).
    ``progress(done, total)`` after each timing."""
    if rounds < 1:
        raise ConfigError(f"timing networks needs rounds >= 1, got {rounds}")
    best = [float("inf")] * len(nets)
    for r in range(rounds):
        for i, net in enumerate(nets):
            best[i] = min(best[i], time_network_ms(net, resolution, device, dtype, warmup, reps))
            if progress is not None:
                progress(r * len(nets) + i + 1, rounds * len(nets))
    return best


def time_item_ms(item: CostItem, device: torch.device, dtype: torch.dtype, warmup: int, reps: int) -> float:
    """An item's median latency: built fresh, moved to the device and dtype, fed zeros."""
    if item.free:
        return 0.0
    module = item.build().to(device=device, dtype=dtype)
    return time_module_ms(module, item.inputs(dtype, device), device, warmup, reps)


def dtype_name(dtype: torch.dtype) -> str:
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ConfigError(f"dtype {dtype} is not one of {', '.join(DTYPES)}")


@dataclass
class LatencyTable:
    """Milliseconds per item key on one device, at one resolution and dtype (``meta`` says which)."""

    meta: dict[str, Any]
    entries: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def entry_key(item_key: str, dtype: str, device: str) -> str:
        """The full key: the item's ``kind|op|h|w|c_in|c_out|stride|upsample`` plus ``|dtype|device``."""
        return f"{item_key}|{dtype}|{device}"

    def lookup(self, item: CostItem) -> float | None:
        if item.free:
            return 0.0
        return self.entries.get(self.entry_key(item.key, self.meta["dtype"], self.meta["device"]))

    def overhead(self) -> tuple[float, float]:
        """(intercept, per node) in ms from the table's calibration against whole networks
        (:mod:`archgraph.core.latencycal`); (0, 0) for a table without one."""
        cal = self.meta.get("calibration") or {}
        return float(cal.get("intercept_ms", 0.0)), float(cal.get("per_node_ms", 0.0))

    def describe(self) -> str:
        m = self.meta
        return f"{m['device']} ({m.get('device_name', '?')}) at {m['resolution'][0]}x{m['resolution'][1]} {m['dtype']}"

    def check(self, device: str | None = None, resolution: Sequence[int] | None = None, dtype: str | None = None, source: str = "latency table") -> None:
        """Refuse a table measured for another device, resolution or dtype than the one asked for."""
        m = self.meta
        wanted = []
        if device is not None and device.split(":", 1)[0] != m["device"]:
            wanted.append(f"device {device}")
        if resolution is not None and [int(d) for d in resolution] != [int(d) for d in m["resolution"]]:
            wanted.append(f"resolution {resolution[0]}x{resolution[1]}")
        if dtype is not None and dtype != m["dtype"]:
            wanted.append(f"dtype {dtype}")
        if wanted:
            want = ", ".join(wanted)
            raise ConfigError(
                f"{source} was measured on {self.describe()}, but {want} was asked for: build a matching one with "
                f"`archgraph latency --device {device or m['device']} --resolution "
                f"{(resolution or m['resolution'])[0]}x{(resolution or m['resolution'])[1]} --dtype {dtype or m['dtype']} --out TABLE.json`"
            )

    def save(self, path: Path | str) -> Path:
        return atomic_write_json(Path(path), {"format": FORMAT, "meta": self.meta, "entries": dict(sorted(self.entries.items()))})

    @classmethod
    def load(cls, path: Path | str, device: str | None = None, resolution: Sequence[int] | None = None, dtype: str | None = None) -> "LatencyTable":
        """Read a table; with ``device``/``resolution``/``dtype`` given, refuse one measured for others."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"latency table {path} does not exist: build one with `archgraph latency --out {path}`") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"latency table {path} cannot be read ({exc.__class__.__name__}): rebuild it with `archgraph latency --out {path}`") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("meta"), dict) or not isinstance(data.get("entries"), dict):
            raise ConfigError(f"{path} is not an archgraph latency table ({FORMAT}): build one with `archgraph latency --out {path}`")
        meta = data["meta"]
        if not all(k in meta for k in ("device", "dtype", "resolution")):
            raise ConfigError(f"latency table {path} lacks device, dtype or resolution in its meta: rebuild it with `archgraph latency --out {path}`")
        try:
            entries = {str(k): float(v) for k, v in data["entries"].items()}
        except (TypeError, ValueError):
            raise ConfigError(f"latency table {path} holds an entry that is not a number of milliseconds: rebuild it with `archgraph latency --out {path}`") from None
        table = cls(meta, entries)
        table.check(device, resolution, dtype, source=f"latency table {path}")
        return table


def table_meta(device: torch.device, resolution: Sequence[int], dtype: str, warmup: int, reps: int, space: str = "", rounds: int = 1) -> dict[str, Any]:
    from archgraph import __version__

    return {
        "device": device.type,
        "device_name": device_name(device),
        "dtype": dtype,
        "resolution": [int(resolution[0]), int(resolution[1])],
        "batch": 1,
        "torch": torch.__version__,
        "archgraph": __version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "warmup": int(warmup),
        "reps": int(reps),
        "rounds": int(rounds),
        "space": space,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def measure_latency_table(
    graph: nx.DiGraph,
    resolution: Sequence[int],
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    warmup: int = 3,
    reps: int = 10,
    progress: Callable[[int, int, str], None] | None = None,
    table: LatencyTable | None = None,
    rounds: int = 2,
    partial: Path | None = None,
) -> LatencyTable:
    """Time every distinct item of ``graph`` at ``resolution`` (items sharing a key share a
    measurement). ``table``: an existing table of the same device, resolution and dtype to extend
    (entries it has are not measured again). ``progress(done, total, key)`` after each item of the
    last round.

    ``rounds`` passes over all the items, each item's lowest median kept: on a shared machine a
    burst of load, or the allocator's first large buffers, can double one item's median (two
    one-round tables of the same CamVid space, built 50 minutes apart on a machine that looked idle,
    disagreed by 2x on single entries and by 15% in total), and interference only ever adds time.

    ``partial``: a file that keeps every median measured so far (written every few seconds and when
    the measurement is interrupted; removed once the table is complete), so an interrupted table of a
    large space continues where it stopped instead of timing everything again."""
    if rounds < 1:
        raise ConfigError(f"latency tables need rounds >= 1, got {rounds}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    torch_dtype = parse_dtype(dtype)
    if table is None:
        table = LatencyTable(table_meta(dev, resolution, dtype, warmup, reps, str(graph.graph.get("name", "")), rounds))
    else:
        table.check(dev.type, resolution, dtype)
    items = distinct_items(graph, resolution)
    full = {key: LatencyTable.entry_key(key, dtype, dev.type) for key in items}
    samples: dict[str, list[float]] = {full[key]: [] for key in items if full[key] not in table.entries}  # what this table lacks
    samples.update({k: v for k, v in _read_partial(partial, table.meta).items() if k in samples})
    saved_at = time.perf_counter()
    try:
        for r in range(rounds):
            for done, (key, item) in enumerate(items.items(), 1):
                entry = full[key]
                if entry in samples and len(samples[entry]) <= r:
                    samples[entry].append(time_item_ms(item, dev, torch_dtype, warmup, reps))
                    if partial is not None and time.perf_counter() - saved_at > PARTIAL_EVERY_S:
                        _write_partial(partial, table.meta, samples)
                        saved_at = time.perf_counter()
                if progress is not None and r == rounds - 1:
                    progress(done, len(items), key)
    except BaseException:
        if partial is not None and any(samples.values()):
            _write_partial(partial, table.meta, samples)
        raise
    table.entries.update({k: min(v) for k, v in samples.items()})
    if partial is not None:
        partial.unlink(missing_ok=True)
    return table


PARTIAL_EVERY_S = 5.0  # how often an unfinished table's measurements are written to its partial file


def _partial_identity(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("device", "device_name", "dtype", "resolution", "threads", "warmup", "reps")}


def _write_partial(path: Path, meta: dict[str, Any], samples: dict[str, list[float]]) -> None:
    atomic_write_json(path, {"format": FORMAT + "-partial", "identity": _partial_identity(meta), "samples": {k: v for k, v in samples.items() if v}})


def _read_partial(path: Path | None, meta: dict[str, Any]) -> dict[str, list[float]]:
    """The medians an interrupted measurement left in ``path``: only when they were measured the same
    way (device, dtype, resolution, threads, repetitions); anything else is measured again."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT + "-partial" or data.get("identity") != _partial_identity(meta):
            return {}
        return {str(k): [float(x) for x in v] for k, v in data["samples"].items()}
    except (ValueError, TypeError, AttributeError, KeyError, OSError):
        return {}  # a damaged partial file costs its measurements, never the table
