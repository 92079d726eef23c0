"""Atomic file output: a run folder never holds a half-written file, even if the process is killed."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results should be as readable as any other

    tmp_path = Path(tmp)
    try:
        with named_os_errors(path):
            write(tmp_path)
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_with(path, lambda p: p.write_text(text))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write_with(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> Path:
    import torch

    return atomic_write_with(path, lambda p: torch.save(obj, p))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync, so a killed run keeps every finished record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with named_os_errors(path), open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def named_os_errors(path: Path) -> Iterator[None]:
    """Give an ``OSError`` without a file name (``f.write`` on a full disk: ENOSPC, EDQUOT) the name
    of the file being written, so the CLI's one-line message can say which file and what to do."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or not exc.errno:
            raise
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc


def read_json(path: Path) -> Any:
    """A JSON file a command reads back (a run's final.json, scores.json, a study's plan), with a
    damaged one named: a truncated copy or a hand edit otherwise ends the command in a
    ``JSONDecodeError`` traceback that says neither which file nor what to do."""
    from archgraph.errors import CheckpointError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); archgraph writes it whole, so it was cut short or edited: restore it from a copy, or run the command that writes it again") from None


# --------------------------------------------------------------------------------------------------
# Bounded YAML input

MAX_YAML_BYTES = 64 * 2**20  # a supernet.yaml of DCSS at L=14 is well under 1 MB
MAX_YAML_VALUES = 2_000_000  # values after aliases are expanded; the largest file we write has ~10^5


def load_yaml_text(text: str, source: str = "<string>") -> Any:
    """``yaml.safe_load`` with bounds, for every YAML file that comes in (configs, graphs, saved runs).

    Why: ``safe_load`` refuses tags that would run code, but not a document whose aliases nest
    (``a1: [*a0, *a0, ...]``, "billion laughs"): it loads in microseconds, as shared references, and
    grows to gigabytes in whatever later walks it (a graph's validation, a JSON dump). So the document
    is composed first and its size with every alias expanded is counted (each distinct node once,
    memoised, so counting is linear in the file); above :data:`MAX_YAML_VALUES` it is refused with a
    :class:`~archgraph.errors.ConfigError` before anything is built. Syntax errors stay
    ``yaml.YAMLError`` for the caller to word.
    """
    import yaml

    from archgraph.errors import ConfigError

    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: {len(text) / 2**20:.0f} MB of YAML is more than any archgraph file holds (at most {MAX_YAML_BYTES // 2**20} MB); pass the config or architecture file itself")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_size(node, {})
        if values > MAX_YAML_VALUES:
            raise ConfigError(
                f"{source}: its YAML aliases (*name) expand to more than {MAX_YAML_VALUES:,} values (a 'billion "
                "laughs' file?); archgraph does not read it. Write the values out, or use an archgraph-written file"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, seen: dict[int, int]) -> int:
    """Values under ``node`` with aliases expanded (an alias is the same node object, counted once per use)."""
    import yaml

    key = id(node)
    if key in seen:
        return seen[key]
    seen[key] = MAX_YAML_VALUES + 1  # a recursive alias expands without end
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, seen) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, seen) + _expanded_size(v, seen) for k, v in node.value)
    else:
        total = 1
    seen[key] = min(total, MAX_YAML_VALUES + 1)
    return seen[key]


def load_yaml_file(path: Path) -> Any:
    """:func:`load_yaml_text` of a file, refusing one too large before reading it."""
    from archgraph.errors import ConfigError

    path = Path(path)
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: {size / 2**20:.0f} MB is more than any archgraph YAML file holds (at most {MAX_YAML_BYTES // 2**20} MB); is it the right file?")
    return load_yaml_text(path.read_text(), str(path))
