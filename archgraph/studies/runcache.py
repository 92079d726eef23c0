"""A disk cache of stand-alone training runs: the same architecture, recipe and seed is trained once.

Why: the correlation study (``archgraph correlate``) and the strategy comparison (``archgraph
compare``) both need the stand-alone mIoU of many architectures, and the same architecture turns up
again and again (the random samples of a space are the same for every strategy; a strategy's derived
architecture is often one another strategy found). Stand-alone training is by far the most expensive
step, so it is keyed by what determines its result and done once.

**Key.** ``(arch, recipe, seed)``:

- ``arch``: :func:`archgraph.core.graph.graph_hash` of the derived architecture (topology, ops, scales,
  channels; names and decoder scores do not count);
- ``recipe``: the first 12 hex digits of the SHA-1 of the canonical JSON of the config's ``train``
  and ``data`` sections (:func:`recipe_dict`), without ``data.workers`` (loader processes change the
  speed, not the result), with ``train.amp`` / ``train.channels_last`` resolved for a CUDA device
  (their ``auto`` means bf16 and channels-last there, fp32 on the CPU). ``space``, ``strategy``,
  ``search`` and the device itself are not part of it: they do not change how a given architecture
  is trained;
- ``seed``: the training seed (``cfg.seed`` of the run; weight init, data order, augmentation).

**Layout.** ::

    CACHE_DIR/
      <arch>/                       one folder per architecture
        <recipe>-s<seed>/           one `archgraph train` run folder per (recipe, seed)
          key.json                  the key and the full recipe, written before training starts
          config.yaml arch.yaml train.jsonl last.pt best.pt metrics.json   (see archgraph.engine.train)
          .lock                     an advisory lock held while the entry is trained

An entry is **complete** when ``metrics.json`` holds a result (``miou``); then nothing is trained. An
entry with ``last.pt`` (or its previous good copy ``last.prev.pt``) but no result (a killed
training) **resumes** from its last finished epoch (exact on the CPU, see :mod:`archgraph.engine.train`);
an entry with neither starts afresh, and so does one whose checkpoints are all unusable. Every file is
written atomically by the training engine, so a kill never leaves a half-written result that would
be mistaken for a finished one.

**Concurrency.** One process may call :func:`trained_metrics` from several threads, and several
processes (``archgraph compare --jobs N``, Ray tasks, two compares sharing a cache) may share a cache
folder: each entry is trained under an exclusive lock (:func:`folder_lock`: a thread lock per entry
plus ``fcntl.flock`` on ``.lock``, which holds the owner's pid and host), and a caller that waited for
the lock finds the result the other one wrote. Different entries train in parallel. A lock held by a
process that died is released by the kernel, so there are no stale locks to break.

The default folder is ``$ARCHGRAPH_CACHE_DIR``, else ``$XDG_CACHE_HOME/archgraph/standalone``, else
``~/.cache/archgraph/standalone`` (:func:`default_cache_dir`); commands take ``--cache DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from archgraph.engine.checkpoint import has_checkpoint, previous_path
from archgraph.config import Config, config_from_dict
from archgraph.errors import CheckpointError, ConfigError, GraphError
from archgraph.core.graph import graph_hash, has_choices
from archgraph.io import atomic_write_json
from archgraph.runfolder import LOCK_FILE, folder_lock, lock_owner  # noqa: F401  (the lock moved down to the foundation: search and train use it too)

KEY_FILE = "key.json"
# keys that change how fast a run goes or what it logs on the side, not what it computes
# (train.tensorboard writes events next to the same result: a cached training serves both)
_NOT_RECIPE = {"data": ("workers",), "train": ("tensorboard",)}


@dataclass(frozen=True)
class CacheKey:
    """What determines a stand-alone result: architecture hash, recipe hash, seed."""

    arch: str
    recipe: str
    seed: int

    @property
    def relpath(self) -> Path:
        """The entry's folder relative to the cache folder (module docstring, "Layout")."""
        return Path(self.arch) / f"{self.recipe}-s{self.seed}"


def default_cache_dir() -> Path:
    """``$ARCHGRAPH_CACHE_DIR``, else ``$XDG_CACHE_HOME/archgraph/standalone``, else ``~/.cache/...``."""
    env = os.environ.get("ARCHGRAPH_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "archgraph" / "standalone"


def recipe_dict(cfg: Config) -> dict[str, Any]:
    """The training recipe: the config's ``train`` and ``data`` sections as plain data (no workers)."""
    plain = cfg.to_dict()
    out: dict[str, Any] = {}
    for section in ("train", "data"):
        drop = _NOT_RECIPE.get(section, ())
        out[section] = {k: v for k, v in plain[section].items() if k not in drop}
    if not out["train"].get("hooks"):  # no hooks: the recipe of caches written before train.hooks existed
        out["train"].pop("hooks", None)
    out["train"].update(_gpu_precision(cfg))
    return out


def _gpu_precision(cfg: Config) -> dict[str, str]:
    """``train.amp`` / ``train.channels_last`` as a CUDA device resolves their ``auto`` (bf16 and
    channels-last: another numeric recipe, so another key). Empty on the CPU, where ``auto`` means
    fp32 and contiguous: the keys of CPU entries stay what they were."""
    import torch

    try:
        device = torch.device(str(cfg.device))
    except RuntimeError:
        return {}
    if device.type != "cuda":
        return {}
    amp, layout = cfg.train.amp, cfg.train.channels_last
    if torch.cuda.is_available():
        from archgraph.engine.distributed import resolve_precision

        precision = resolve_precision(amp, layout, device, "train")
        return {"amp": "bf16" if precision.amp_dtype is not None else "fp32", "channels_last": "channels_last" if precision.channels_last else "contiguous"}
    return {"amp": "bf16" if amp == "auto" else amp, "channels_last": "channels_last" if layout == "auto" else layout}


def recipe_hash(cfg: Config) -> str:
    blob = json.dumps(recipe_dict(cfg), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def cache_key(arch_graph: nx.DiGraph, cfg: Config, seed: int) -> CacheKey:
    """The key of training ``arch_graph`` with ``cfg``'s recipe and ``seed``."""
    if has_choices(arch_graph):
        raise GraphError(
            f"graph {arch_graph.graph.get('name')!r} still has choice points; the run cache trains derived architectures only (decode it first, e.g. archgraph.core.decode.sample_architecture)"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"the training seed must be an integer, got {seed!r}")
    return CacheKey(graph_hash(arch_graph), recipe_hash(cfg), int(seed))


def entry_dir(cache_dir: str | Path, key: CacheKey) -> Path:
    return Path(cache_dir) / key.relpath


def _read_result(entry: Path) -> dict[str, Any] | None:
    """metrics.json's dict when the entry is complete, else ``None`` (missing, corrupt, no mIoU)."""
    path = entry / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("miou"), (int, float)):
        return None
    return data


def cached_metrics(arch_graph: nx.DiGraph, cfg: Config, seed: int, cache_dir: str | Path) -> dict[str, Any] | None:
    """The cached result, or ``None`` when this (architecture, recipe, seed) was never finished.

    Trains nothing: for reports that show what exists (e.g. ``archgraph compare`` without training).
    """
    return _read_result(entry_dir(cache_dir, cache_key(arch_graph, cfg, seed)))


def status(arch_graph: nx.DiGraph, cfg: Config, seed: int, cache_dir: str | Path) -> str:
    """``"done"``, ``"partial"`` (a killed run that will resume) or ``"missing"``."""
    entry = entry_dir(cache_dir, cache_key(arch_graph, cfg, seed))
    if _read_result(entry) is not None:
        return "done"
    return "partial" if has_checkpoint(entry / "last.pt") else "missing"


_entry_lock = folder_lock  # the name this module used before folder_lock served searches too


def _seeded(cfg: Config, seed: int) -> Config:
    """``cfg`` with its seed set to the training seed (the engine seeds from ``cfg.seed``)."""
    if cfg.seed == seed:
        return cfg
    return config_from_dict({**cfg.to_dict(), "seed": seed})


def trained_metrics(arch_graph: nx.DiGraph, cfg: Config, seed: int, cache_dir: str | Path | None = None, progress: bool = False, log=None) -> dict[str, Any]:
    """Stand-alone metrics of ``arch_graph`` trained with ``cfg``'s recipe and ``seed``, from the cache.

    Trains (:func:`archgraph.engine.train.run_training`) only when the entry is missing, and resumes a
    killed training; returns metrics.json's dict (``miou``, ``pixel_acc``, ``per_class_iou``,
    ``params``, ``flops``, ...). ``log(message)`` is told when a training starts or resumes.
    """
    from archgraph.engine import train as engine

    key = cache_key(arch_graph, cfg, seed)
    entry = entry_dir(cache_dir if cache_dir is not None else default_cache_dir(), key)
    result = _read_result(entry)
    if result is not None:
        return result
    say = log or (lambda msg: None)

    def waiting(owner: dict[str, Any]) -> None:
        say(f"waiting for {entry}: pid {owner.get('pid', '?')} on {owner.get('host', '?')} is training it")

    with folder_lock(entry, on_wait=waiting):
        result = _read_result(entry)  # another caller may have finished it while we waited
        if result is not None:
            return result
        run_cfg = _seeded(cfg, seed)
        atomic_write_json(entry / KEY_FILE, {"arch_hash": key.arch, "recipe_hash": key.recipe, "seed": key.seed, "recipe": recipe_dict(run_cfg)})
        (entry / "metrics.json").unlink(missing_ok=True)  # an unreadable result is redone
        resume = has_checkpoint(entry / engine.LAST)  # last.pt, or its previous good copy
        source = f"cached architecture {key.arch}"
        if resume:
            say(f"resuming the stand-alone training of {key.arch} in {entry}")
            try:
                return engine.run_training(run_cfg, arch_graph, entry, resume=True, progress=progress, source=source)
            except CheckpointError as exc:  # a damaged last.pt: the result is redone from scratch
                print(f"warning: {entry / engine.LAST} is unusable ({exc}); training {key.arch} again from the start", file=sys.stderr)
                for stale in (entry / engine.LAST, previous_path(entry / engine.LAST)):
                    stale.unlink(missing_ok=True)
        say(f"training {key.arch} stand-alone in {entry}")
        return engine.run_training(run_cfg, arch_graph, entry, resume=False, progress=progress, source=source)
