"""Checkpoints that survive kills: atomic, checksummed, with the previous good one kept.

Why this shape: a search runs for hours, and a ``SIGKILL`` (or a full disk, or a power cut) can hit
at any instruction. Three guarantees follow from the write order below:

1. a reader never sees a half-written file (every file is written to a temporary name, then renamed);
2. a file whose bytes changed after it was written (truncated copy, bad disk) is detected: its
   SHA-256 must be listed in the run's ``<name>.sha256.json`` index;
3. there is always one complete, verified checkpoint on disk: the newest (``<name>``) or, if that one
   is missing or corrupt, the previous (``<name>.prev``).

Write order for a new checkpoint: serialise to bytes and hash them; add the hash to the index
(atomically; the index keeps the last few hashes); move the current file to ``.prev``; write the new
file atomically. A kill between any two of these steps leaves a verified file behind.

Files stay plain ``torch.save`` archives: ``torch.load`` opens them without archgraph.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from archgraph.errors import CheckpointError
from archgraph.io import atomic_write_bytes, atomic_write_json

KEEP_HASHES = 4


def _index_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def _read_index(path: Path) -> list[str]:
    index = _index_path(path)
    if not index.is_file():
        return []
    try:
        data = json.loads(index.read_text())
        return [str(h) for h in data.get("sha256", [])]
    except (json.JSONDecodeError, AttributeError, OSError):
        return []  # a damaged index only costs the verification, never the run


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` as described in the module docstring."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    hashes = [h for h in _read_index(path) if h != digest] + [digest]
    atomic_write_json(_index_path(path), {"sha256": hashes[-KEEP_HASHES:]})
    if path.is_file():
        os.replace(path, previous_path(path))
    return atomic_write_bytes(path, data)


def _verify_and_load(path: Path, hashes: list[str]) -> dict[str, Any]:
    data = path.read_bytes()
    if hashes and hashlib.sha256(data).hexdigest() not in hashes:
        raise CheckpointError(f"{path} does not match its recorded SHA-256 (truncated or modified after it was written)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({exc.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is corrupt: it does not hold a checkpoint dictionary")
    return state


def load_checkpoint(path: str | Path, check: Callable[[dict[str, Any]], None] | None = None, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The newest verified checkpoint at ``path``, falling back to the previous one.

    ``check(state)`` may raise :class:`CheckpointError` for a file that loads but does not belong
    to this kind of run (version, kind). ``warn`` receives a message when the fallback was used.
    """
    path = Path(path)
    hashes = _read_index(path)
    problems = []
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            continue
        try:
            state = _verify_and_load(candidate, hashes)
            if check is not None:
                check(state)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if candidate != path and warn is not None:
            warn(f"{path.name} is unusable ({problems[0] if problems else 'missing'}); resuming from the previous good checkpoint {candidate.name}")
        return state
    if not problems:
        raise CheckpointError(f"{path} does not exist: nothing to resume; run without --resume to start afresh")
    raise CheckpointError(f"no usable checkpoint in {path.parent}: {'; '.join(problems)}. The run cannot continue from these files: start it again in a new folder")


def rng_state() -> dict[str, Any]:
    """Every global random state a run draws from: restoring it makes a resumed run bit-identical."""
    import random

    import numpy as np

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def has_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() or previous_path(path).is_file()
