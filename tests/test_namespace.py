"""One namespace: a normal (non-editable) install puts only ``archgraph`` at the top of
site-packages, and a package named ``spaces`` (Hugging Face's, widely installed beside gradio) or
``strategies`` installed next to it shadows nothing.

The repository keeps its top-level folders ``spaces/`` and ``strategies/``; pyproject.toml maps them
to ``archgraph.spaces`` and ``archgraph.strategies`` (setuptools ``package-dir``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """archgraph installed the normal way (a built wheel, not editable) into a fresh target folder."""
    target = tmp_path_factory.mktemp("site")
    proc = _pip("install", "--no-deps", "--no-build-isolation", "--target", str(target), str(ROOT))
    assert proc.returncode == 0, proc.stderr
    return target


def _hf_spaces_wheel(folder: Path) -> Path | None:
    """Hugging Face's ``spaces`` wheel from PyPI (None when PyPI cannot be reached)."""
    proc = _pip("download", "--no-deps", "--only-binary", ":all:", "-d", str(folder), "spaces")
    wheels = sorted(folder.glob("spaces-*.whl"))
    return wheels[0] if proc.returncode == 0 and wheels else None


def _stand_in(folder: Path, name: str) -> Path:
    """A minimal third-party distribution with a top-level package ``name``."""
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text(f"WHO = 'third-party {name}'\n")
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "9.9"
        [tool.setuptools]
        packages = ["{name}"]
    """)
    )
    return folder


def _python(target: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with ``target`` first on the path, from a folder outside the repository (so the
    checkout's own ``spaces/`` cannot be picked up from the working directory)."""
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code], cwd=target, env=env, capture_output=True, text=True, timeout=120)


def test_only_archgraph_lands_at_the_top(installed):
    top = sorted(p.name for p in installed.iterdir() if p.name not in ("bin", "__pycache__"))
    assert [n for n in top if not n.startswith("archgraph-")] == ["archgraph"], top
    assert (installed / "archgraph" / "spaces" / "dcss.py").is_file()
    assert (installed / "archgraph" / "strategies" / "dcnas.py").is_file()


def test_every_module_of_the_checkout_is_installed(installed):
    """The explicit package list in pyproject.toml must name every subpackage."""
    mapping = {"archgraph": ROOT / "archgraph", "archgraph/spaces": ROOT / "spaces", "archgraph/strategies": ROOT / "strategies"}
    missing = []
    for prefix, folder in mapping.items():
        for path in folder.rglob("*.py"):
            rel = Path(prefix) / path.relative_to(folder)
            if not (installed / rel).is_file():
                missing.append(str(rel))
    assert missing == []


def test_installed_package_finds_its_spaces_strategies_and_presets(installed):
    proc = _python(
        installed,
        textwrap.dedent("""
        import archgraph, archgraph.spaces.dcss, archgraph.strategies.dcnas
        from archgraph.core.registry import get_space, get_strategy, list_presets
        from archgraph.core.spaces_api import build_preset, build_space
        assert archgraph.spaces.dcss.__file__.startswith(archgraph.__path__[0]), archgraph.spaces.dcss.__file__
        assert get_space("dcss") and get_strategy("dcnas") and get_strategy("spos")
        assert [p.name for p in list_presets("dcss")] == ["fcn", "hourglass", "deeplabv3", "hrnet"]
        build_preset("hrnet", build_space("dcss", {"layers": 2, "base_channels": 4}))
        print("ok")
    """),
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("name", ["spaces", "strategies"])
def test_a_third_party_package_of_the_same_name_shadows_nothing(installed, tmp_path, name):
    """A stand-in distribution called ``spaces``/``strategies`` installed into the same folder:
    both it and archgraph's own subpackage import, each from its own files."""
    proc = _pip("install", "--no-deps", "--no-build-isolation", "--target", str(installed), str(_stand_in(tmp_path / "dist", name)))
    assert proc.returncode == 0, proc.stderr
    run = _python(
        installed,
        textwrap.dedent(f"""
        import {name}
        import archgraph.{name} as ours
        from archgraph.core.registry import load_plugins, SPACES, STRATEGIES
        load_plugins()
        assert {name}.WHO == "third-party {name}", {name}.__file__
        assert ours.__file__.endswith("archgraph/{name}/__init__.py"), ours.__file__
        assert "dcss" in SPACES and "dcnas" in STRATEGIES
        print("ok")
    """),
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_hugging_face_spaces_next_to_archgraph(installed, tmp_path):
    """The real Hugging Face ``spaces`` wheel (its own dependencies, gradio among them, are not
    installed: the test checks which files each name resolves to, then imports archgraph's)."""
    wheel = _hf_spaces_wheel(tmp_path)
    if wheel is None:
        pytest.skip("PyPI is not reachable: Hugging Face's `spaces` wheel could not be downloaded")
    proc = _pip("install", "--no-deps", "--upgrade", "--target", str(installed), str(wheel))  # replaces the stand-in
    assert proc.returncode == 0, proc.stderr
    run = _python(
        installed,
        textwrap.dedent("""
        import importlib.util, pathlib
        hf = importlib.util.find_spec("spaces")
        assert pathlib.Path(hf.origin).parent.name == "spaces" and "zero" in {p.name for p in pathlib.Path(hf.origin).parent.iterdir()}, hf.origin
        import archgraph.spaces.dcss, archgraph.strategies.dcnas
        from archgraph.core.spaces_api import build_space
        assert "archgraph" in archgraph.spaces.dcss.__file__
        assert build_space("dcss", {"layers": 2}).number_of_nodes() > 0
        print("ok")
    """),
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
