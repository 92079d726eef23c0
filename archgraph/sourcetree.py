"""``archgraph.spaces`` and ``archgraph.strategies`` when ``archgraph`` is imported from a source tree.

The repository keeps ``spaces/`` and ``strategies/`` at its top level and pyproject.toml installs them
as ``archgraph.spaces`` / ``archgraph.strategies``. An installed package (regular, wheel or editable)
has both. But Python puts the working directory (``python -m``, ``torchrun -m``) or the driver's
folder (Ray workers, ``--jobs`` workers, which inherit the parent's ``sys.path``) ahead of
site-packages, so a process started from the clone's root imports the clone's ``archgraph/``, in
which neither subpackage exists: ``No module named 'archgraph.spaces'`` and every registry lookup
then fails as "unknown space".

:func:`install` appends a finder to ``sys.meta_path`` that serves exactly those two names from the
clone's top-level folders. It is the last finder asked, so wherever the normal machinery (an
installed package, setuptools' editable finder) finds the subpackages it wins; and it only answers
for an ``archgraph/`` that sits in a source tree (a ``pyproject.toml`` beside it and no
``archgraph/spaces`` inside it), so in site-packages, where the folder next to ``archgraph/`` may be
another project's ``spaces`` (Hugging Face's), it never answers.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

SUBPACKAGES = ("spaces", "strategies")


class SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``archgraph.<name>`` for ``name`` in :data:`SUBPACKAGES` in ``<root>/<name>/``."""

    def __init__(self, root: Path):
        self.root = root

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != "archgraph" or name not in SUBPACKAGES:
            return None
        init = self.root / name / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(init.parent)])


def source_root(package_dir: Path) -> Path | None:
    """The clone's root when ``package_dir`` (the imported ``archgraph/``) is a source tree's, else None."""
    root = package_dir.parent
    if (root / "pyproject.toml").is_file() and not (package_dir / "spaces").exists() and (root / "spaces" / "__init__.py").is_file():
        return root
    return None


def install(package_dir: Path) -> None:
    """Register the finder once for a source-tree ``archgraph/`` (a no-op for an installed one)."""
    root = source_root(package_dir)
    if root is None or any(isinstance(f, SourceTreeFinder) for f in sys.meta_path):
        return
    sys.meta_path.append(SourceTreeFinder(root))
