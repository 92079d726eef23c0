"""Checkpoints that survive kills: atomic, checksummed, with the previous good one kept.

Why this shape: a search runs for hours, and a ``SIGKILL`` (or a full disk, or a power cut) can hit
at any instruction. Three guarantees follow from the write order below:

1. a reader never sees a half-written file (every file is written to a temporary name, then renamed);
2. a file whose bytes changed after it was written (truncated copy, bad disk) is detected: its
   SHA-256 must be listed in the run's ``<name>.sha256.json`` index;
3. there is always one complete, verified checkpoint on disk: the newest (``<name>``) or, if that one
   is missing or corrupt, the previous (``<name>.prev``).

Write order for a new checkpoint: serialise to bytes and hash them; add the hash to the index
(atomically; the index keeps the last few hashes); write the new file under a temporary name; move
the current file to ``.prev``; rename the new file into place. A kill between any two of these steps
leaves a verified file behind, and ``<name>`` itself is missing only between the two renames (a few
microseconds, not the whole write), so a second Ctrl-C during a save leaves ``<name>`` there for
``--resume``. Whoever asks whether a run has a checkpoint still asks :func:`has_checkpoint`, which
counts ``.prev`` too.

Files stay plain ``torch.save`` archives: ``torch.load`` opens them without archgraph.

Safe to open when shared. A checkpoint holds only tensors and plain containers (dicts, lists,
tuples, numbers, strings, ``None``); the RNG states are stored as tensors. :func:`save_checkpoint`
refuses anything else, and every file is read with ``torch.load(..., weights_only=True)``, whose
unpickler builds only those types. One type more is allowed, for checkpoints of earlier archgraph
versions, which stored NumPy's RNG state as a ``uint32`` array: NumPy arrays of that one dtype
(:func:`_legacy_globals`; object arrays, which could hold anything, stay refused). A file that
needs more (a crafted pickle) is refused with a :class:`CheckpointError` before any of its objects
is built, so opening someone else's run folder never runs code from it. The SHA-256 index plays no
part in this (whoever ships a checkpoint ships its index too).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from archgraph.errors import CheckpointError
from archgraph.io import atomic_write_json, atomic_write_with

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
    except (json.JSONDecodeError, AttributeError, OSError, UnicodeDecodeError):
        return []  # a damaged index only costs the verification, never the run


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` as described in the module docstring.

    ``state`` holds tensors and plain containers only (NumPy scalars are turned into Python
    numbers). Anything else is a programming error, a :class:`TypeError` naming the entry or type:
    such a file could not be opened safely (module docstring).
    """
    path = Path(path)
    state = _plain_state(state, "state")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    unsafe = _unsafe_globals(data)
    if unsafe:
        raise TypeError(
            f"checkpoint {path} would hold objects of type {', '.join(unsafe)}; a checkpoint holds only tensors and "
            "plain containers (dict, list, tuple, numbers, str, None), so that it opens with weights_only=True"
        )
    digest = hashlib.sha256(data).hexdigest()
    hashes = [h for h in _read_index(path) if h != digest] + [digest]
    atomic_write_json(_index_path(path), {"sha256": hashes[-KEEP_HASHES:]})

    def rotate_then_place(tmp: Path) -> None:  # inside atomic_write_with: the bytes are on disk under tmp
        tmp.write_bytes(data)
        if path.is_file():
            os.replace(path, previous_path(path))

    return atomic_write_with(path, rotate_then_place)


_PLAIN_LEAVES = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size)


def _plain_state(obj: Any, where: str) -> Any:
    """``obj`` with NumPy scalars turned into Python numbers (copying only the containers that
    change); a :class:`TypeError` naming ``where`` for a NumPy array, which belongs in a tensor."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN_LEAVES:
        return obj
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        raise TypeError(f"checkpoint entry {where} is a NumPy array; store it as a tensor (torch.from_numpy) so the file opens with weights_only=True")
    if type(obj) in (dict, OrderedDict):
        items = {k: _plain_state(v, f"{where}.{k}") for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        out = type(obj)(items)
        if hasattr(obj, "_metadata"):  # a module's state dict carries per-module versions
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    if type(obj) in (list, tuple):
        items = [_plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    return obj  # anything else is named by the weights_only check of the serialised bytes


def _legacy_globals() -> list[Any]:
    """What a NumPy ``uint32`` array needs to unpickle (earlier archgraph versions saved NumPy's RNG
    state so), under the names NumPy 1 and NumPy 2 pickle it with."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core.multiarray import _reconstruct
    allowed: list[Any] = [_reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"), (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype]
    uint32 = getattr(getattr(np, "dtypes", None), "UInt32DType", None)
    if uint32 is not None:
        allowed.append(uint32)
    return allowed


def _unsafe_globals(data: bytes) -> list[str]:
    """Classes and functions a ``weights_only`` load of ``data`` refuses, read without running anything."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))
    except (ValueError, RuntimeError, KeyError, EOFError, IndexError, TypeError, zipfile.BadZipFile, pickle.UnpicklingError):
        return []  # not a zip archive (a legacy or raw pickle) or unreadable: the load itself decides


def _refused(path: Path, data: bytes) -> CheckpointError:
    names = _unsafe_globals(data)
    what = f" ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})" if names else ""
    return CheckpointError(
        f"{path} holds Python objects other than tensors and plain containers{what}, so archgraph does not open it: "
        "loading such a file can run any code it carries. Use a checkpoint written by this archgraph version (start the "
        "run again in a new folder to get one); never load this file with torch.load(weights_only=False) unless you "
        "trust whoever made it"
    )


def _verify_and_load(path: Path, hashes: list[str]) -> dict[str, Any]:
    data = path.read_bytes()
    if hashes and hashlib.sha256(data).hexdigest() not in hashes:
        raise CheckpointError(f"{path} does not match its recorded SHA-256 (truncated or modified after it was written)")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_legacy_globals()):
            warnings.simplefilter("ignore")  # torch's remarks on the pickle protocol of foreign files
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            with torch.serialization.safe_globals(_legacy_globals()):
                raise _refused(path, data) from None
        raise CheckpointError(f"{path} is corrupt or truncated ({exc.__class__.__name__})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({exc.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is corrupt: it does not hold a checkpoint dictionary")
    return state


def load_checkpoint(path: str | Path, check: Callable[[dict[str, Any]], None] | None = None, warn: Callable[[str], None] | None = None, fallback: bool = True) -> dict[str, Any]:
    """The newest verified checkpoint at ``path``, falling back to the previous one.

    ``check(state)`` may raise :class:`CheckpointError` for a file that loads but does not belong
    to this kind of run (version, kind). ``warn`` receives a message when the fallback was used.
    ``fallback=False`` reads ``path`` alone and raises its problem: a result reported for a named
    file (``evaluate``, ``export``) must come from that file, not silently from an older one.
    Files are read with ``weights_only=True`` (module docstring).
    """
    path = Path(path)
    hashes = _read_index(path)
    if not fallback:
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist")
        try:
            state = _verify_and_load(path, hashes)
            if check is not None:
                check(state)
        except CheckpointError as exc:
            raise CheckpointError(f"no usable checkpoint in {path.parent}: {exc}. Use another checkpoint of the run, or start it again in a new folder") from None
        return state
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
            warn(f"{path.name} is unusable ({problems[0] if problems else 'missing'}); using the previous good checkpoint {candidate.name} instead")
        return state
    if not problems:
        raise CheckpointError(f"{path} does not exist: nothing to resume; run without --resume to start afresh")
    if len(problems) == 2 and problems[1] == problems[0].replace(str(path), str(previous_path(path)), 1):
        problems = [problems[0], f"{previous_path(path)} has the same problem"]
    raise CheckpointError(f"no usable checkpoint in {path.parent}: {'; '.join(problems)}. The run cannot continue from these files: start it again in a new folder")


def rng_state() -> dict[str, Any]:
    """Every global random state a run draws from, as tensors and plain numbers (so the checkpoint
    opens with ``weights_only=True``): restoring it makes a resumed run bit-identical."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(version), "state": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (or the NumPy/tuple form older checkpoints held)."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    if isinstance(saved, dict):
        keys = np.asarray(saved["keys"].tolist(), dtype=np.uint32)
        np.random.set_state((saved["kind"], keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]))
    else:
        np.random.set_state(saved)
    saved = state["python"]
    if isinstance(saved, dict):
        random.setstate((saved["version"], tuple(int(w) for w in saved["state"].tolist()), saved["gauss_next"]))
    else:
        random.setstate(saved)


def has_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() or previous_path(path).is_file()
