"""Run folders as the commands see them: which command wrote a folder, and whether an output path can
be written, checked before any work so that a message can name the problem and a fix that works.
A foundation module (docs/architecture.md): it knows the files each command writes by name only.

Why here and not in each command: ``evaluate``, ``export`` and ``report`` refuse the wrong kind of
folder with a suggestion that must not write into that same folder, and ``search``, ``train``,
``compare``, ``report`` and ``render`` all refuse an output they cannot write; the suggestions
(:func:`free_path`, :func:`writable_place`) are computed once, here, so each names a path that is
free and writable when the user types it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from archgraph.errors import ConfigError

# Files that only one command writes (a folder holding any of them was written by that command).
MARKERS = {
    "search": ("search.jsonl", "final.json", "supernet.yaml", "checkpoint.pt", "checkpoint.prev.pt"),
    "train": ("train.jsonl", "metrics.json", "last.pt", "last.prev.pt", "best.pt", "best.prev.pt"),
    "compare": ("compare.json",),
    "correlate": ("correlation.json",),
}


def folder_kind(path: Path) -> str | None:
    """``"search"``, ``"train"``, ``"compare"`` or ``"correlate"``; ``None`` for anything else."""
    path = Path(path)
    try:
        if not path.is_dir():
            return None
        for kind in ("compare", "correlate", "train", "search"):  # studies hold runs of both other kinds
            if any((path / name).is_file() for name in MARKERS[kind]):
                return kind
    except OSError:
        return None
    return None


def has_search_checkpoint(folder: Path) -> bool:
    """Whether ``archgraph search --out FOLDER --resume`` has a checkpoint to continue from."""
    return any((Path(folder) / name).is_file() for name in ("checkpoint.pt", "checkpoint.prev.pt"))


def example(path: Path, *patterns: str) -> Path | None:
    """The first folder under ``path`` holding a file matching one of ``patterns`` (for suggestions)."""
    for pattern in patterns:
        for hit in sorted(Path(path).glob(pattern)):
            return hit.parent
    return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a parent that cannot be searched
        return True


def free_path(path: Path, suffix: str = "") -> Path:
    """``path`` + ``suffix`` (``runs/demo`` -> ``runs/demo-train``), numbered ``-2``, ``-3``, ... until
    nothing of that name exists."""
    path = Path(path)
    base = path.with_name(path.name + suffix) if suffix else path
    candidate, n = base, 2
    while _exists(candidate):
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def _nearest_existing(path: Path) -> Path:
    probe = Path(os.path.abspath(path))
    while not _exists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def _writable(folder: Path) -> bool:
    try:
        return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
    except OSError:
        return False


def writable_place(name: str) -> Path:
    """A free path named after ``name`` in a folder this user can write: the current folder, else
    the home folder, else the temporary folder."""
    for folder in (Path("."), Path.home(), Path(tempfile.gettempdir())):
        if _writable(folder):
            return free_path(folder / name)
    return free_path(Path(tempfile.gettempdir()) / name)


def _unwritable_reason(path: Path) -> str | None:
    """Why a file or folder cannot be created at ``path`` (``None`` when it can)."""
    probe = _nearest_existing(path)
    try:
        if not probe.is_dir():
            return f"{probe} is a file, not a folder"
    except OSError as exc:
        return f"{probe} cannot be read ({exc.strerror})"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable (permission denied, or a read-only file system)"
    try:  # what access() cannot tell (special file systems such as /proc, quotas): try it
        os.rmdir(tempfile.mkdtemp(prefix=".archgraph-probe-", dir=probe))
    except OSError as exc:
        return f"{probe} is not writable ({exc.strerror.lower() if exc.strerror else exc.__class__.__name__})"
    return None


def check_output_folder(out: Path, flag: str = "--out") -> None:
    """Refuse ``out`` when it names a file or lies where nothing can be written, before any work."""
    out = Path(out)
    try:
        is_file = out.exists() and not out.is_dir()
    except OSError:
        is_file = False
    if is_file:
        raise ConfigError(f"{flag} {out} is a file, not a folder; {flag} names the run folder to write, "
                          f"e.g. {flag} {free_path(out.with_suffix(''), '-run')}")
    reason = _unwritable_reason(out)
    if reason:
        raise ConfigError(f"{flag} {out} cannot be written: {reason}; choose a folder you can write, e.g. {flag} {writable_place(out.name or 'run')}")


def check_output_file(path: Path, flag: str = "-o", example_name: str = "out") -> None:
    """Refuse an output file that is a folder or lies where nothing can be written, before any work."""
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except OSError:
        is_dir = False
    if is_dir:
        raise ConfigError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {free_path(path / example_name)}")
    reason = _unwritable_reason(path.parent if str(path.parent) else Path("."))
    if reason:
        raise ConfigError(f"{flag} {path} cannot be written: {reason}; write it elsewhere, e.g. {flag} {writable_place(path.name)}")
