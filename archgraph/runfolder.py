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

import contextlib
import json
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

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


def check_output_folder(out: Path, flag: str = "--out", kind: str | None = None) -> None:
    """Refuse ``out`` when it names a file or lies where nothing can be written, before any work;
    with ``kind`` (the command about to write there), also when another command's run lives there:
    a search into a training folder (or the reverse) would overwrite its config.yaml and arch.yaml,
    and every later command would read the wrong config against the old checkpoints."""
    out = Path(out)
    other = folder_kind(out) if kind is not None else None
    if other is not None and other != kind:
        raise ConfigError(
            f"{flag} {out} holds an archgraph {other} run; `archgraph {kind}` would overwrite its config and files. Write the {kind} to a folder of its own, e.g. {flag} {free_path(out, '-' + kind)}"
        )
    try:
        is_file = out.exists() and not out.is_dir()
    except OSError:
        is_file = False
    if is_file:
        raise ConfigError(f"{flag} {out} is a file, not a folder; {flag} names the run folder to write, e.g. {flag} {free_path(out.with_suffix(''), '-run')}")
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


# --------------------------------------------------------------------------------------------------
# One writer per run folder

LOCK_FILE = ".lock"

_locks_guard = threading.Lock()
_locks: dict[str, Any] = {}  # folder -> threading.RLock
_depth: dict[str, int] = {}  # folder -> how often the holding thread entered it


class FolderBusy(ConfigError):
    """Another process holds the folder's lock (:func:`folder_lock` with ``wait=False``)."""

    def __init__(self, folder: Path, owner: dict[str, Any]) -> None:
        self.folder, self.owner = folder, owner
        super().__init__(f"{folder} is in use by another process ({describe_owner(owner)})")


def lock_owner(folder: Path) -> dict[str, Any]:
    """Who holds (or last held) ``folder``'s lock: ``{"pid", "host", "since", "command"}``, ``{}`` when unknown."""
    try:
        data = json.loads((Path(folder) / LOCK_FILE).read_text() or "{}")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_owner(owner: dict[str, Any]) -> str:
    """``pid 123 on host, `archgraph search --out runs/a`, since 12:03`` (what is known of it)."""
    parts = [f"pid {owner.get('pid', '?')}" + (f" on {owner['host']}" if owner.get("host") else "")]
    if owner.get("command"):
        parts.append(f"`{owner['command']}`")
    if isinstance(owner.get("since"), (int, float)):
        parts.append("since " + time.strftime("%H:%M:%S", time.localtime(owner["since"])))
    return ", ".join(parts)


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("archgraph", "__main__.py"):
        argv[0] = "archgraph"
    return shlex.join(argv)[:300]


def _settled_owner(folder: Path, patience: float = 1.0) -> dict[str, Any]:
    """The holder's record; one that has just taken the lock writes it a moment later (between its
    flock and its write the file is empty), so wait up to ``patience`` seconds for it."""
    deadline = time.monotonic() + patience
    owner = lock_owner(folder)
    while not owner.get("pid") and time.monotonic() < deadline:
        time.sleep(0.02)
        owner = lock_owner(folder)
    return owner


@contextlib.contextmanager
def folder_lock(folder: str | Path, on_wait: Callable[[dict[str, Any]], None] | None = None, wait: bool = True) -> Iterator[None]:
    """Exclusive use of one run folder (a search, a training, a cache entry) among threads and processes.

    Why ``fcntl.flock`` and not an ``O_CREAT | O_EXCL`` lock file: the kernel drops an flock when its
    holder dies, however it dies (``kill -9``, out of memory, a lost node on NFS v4, which emulates
    flock with byte-range locks), so a killed run never leaves a stale lock to detect and break.
    The holder writes its pid, host, start time and command line into ``.lock`` for the messages of
    whoever comes next, and removes the file when it lets go (a process that opened the old file in
    the meantime sees it was replaced and opens it again, so two holders never lock different files).

    ``wait=False`` raises :class:`FolderBusy` at once when another process holds it; otherwise
    ``on_wait(owner)`` is called once and the caller blocks until the lock is free. Threads of one
    process queue on a re-entrant lock per folder first: a thread that holds a folder (the run cache
    training an entry) may enter it again (the training's own lock) without deadlocking.
    A folder this call creates is removed again when it is left empty.
    """
    folder = Path(folder)
    key = os.path.abspath(folder)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.RLock())
    if not lock.acquire(blocking=wait):
        raise FolderBusy(folder, {"pid": os.getpid(), "host": socket.gethostname(), "command": "another thread of this process"})
    try:
        if _depth.get(key, 0):  # re-entered by the thread that holds it
            _depth[key] += 1
            try:
                yield
            finally:
                _depth[key] -= 1
            return
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # no advisory file locks on this platform: thread safety only
            fcntl = None
        try:
            handle = _acquire_file_lock(folder, fcntl, on_wait, wait) if fcntl is not None else None
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        _depth[key] = 1
        try:
            yield
        finally:
            _depth[key] = 0
            if handle is not None:
                with contextlib.suppress(OSError):
                    (folder / LOCK_FILE).unlink()
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                handle.close()
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: a refused or failed run leaves no folder behind
    finally:
        lock.release()


def _acquire_file_lock(folder: Path, fcntl: Any, on_wait: Callable[[dict[str, Any]], None] | None, wait: bool):
    """The open, flocked ``.lock`` of ``folder``, holding this process's record."""
    told = False
    while True:
        handle = open(folder / LOCK_FILE, "a+")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _settled_owner(folder)
                if not wait:
                    raise FolderBusy(folder, owner) from None
                if on_wait is not None and not told:
                    on_wait(owner)
                    told = True
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(folder / LOCK_FILE).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder we waited for removed the file: lock the current one
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": _command_line()}))
            handle.flush()
            return handle
        except BaseException:
            if not handle.closed:
                handle.close()
            raise


@contextlib.contextmanager
def run_lock(folder: str | Path, command: str) -> Iterator[None]:
    """:func:`folder_lock` for a command that writes ``folder`` (``search``, ``train``, ``evaluate``):
    refused at once, with a one-line error naming the other process and the way forward, when
    another process writes it. Under torchrun only rank 0 takes it (every rank names the same folder)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    try:
        with folder_lock(folder, wait=False):
            yield
    except FolderBusy as exc:
        if exc.folder != Path(folder):
            raise
        raise ConfigError(
            f"{folder} is being written by another process ({describe_owner(exc.owner)}); two {command} runs into one "
            f"folder would mix their files. Wait for it to finish (or stop it), or use another folder, "
            f"e.g. {free_path(Path(folder), '-2')}"
        ) from None
