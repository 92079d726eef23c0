"""Every entry point works from the clone's root with a regular, wheel or editable install.

Started from the repository root, ``python -m archgraph`` (and ``torchrun -m``, and the workers that
inherit its ``sys.path``) import the clone's ``archgraph/`` ahead of the installed one; the clone has
no ``archgraph/spaces`` (pyproject.toml maps the top-level ``spaces/`` there), and before
archgraph/sourcetree.py a regular install failed with ``No module named 'archgraph.spaces'``.

Each install kind goes into a fresh virtual environment whose only archgraph is the one installed
(the development environment's editable finder is not loaded: its ``.pth`` files are never run, its
site-packages is only on the path for torch and the other dependencies). Nothing is downloaded
(``--no-build-isolation``, ``--no-deps``), so the test runs offline; it is skipped where pip or
setuptools is missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.install
KINDS = ("regular", "wheel", "editable")


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True, text=True, timeout=300)


def _venv(folder: Path) -> tuple[Path, Path]:
    """A venv without pip (fast) whose site-packages reaches this environment's dependencies."""
    for needed in ("pip", "setuptools"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"building archgraph needs {needed}")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    # A plain path line: the dependencies import, but no .pth file of that folder (the editable finder) runs.
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, site


@pytest.fixture(scope="module", params=KINDS)
def env(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """(kind, the venv's python, its site-packages) with archgraph installed that way."""
    folder = tmp_path_factory.mktemp(request.param)
    python, site = _venv(folder / "venv")
    common = ("--no-deps", "--no-build-isolation", "--target", str(site))
    if request.param == "regular":
        proc = _pip("install", *common, str(ROOT))
    elif request.param == "editable":
        proc = _pip("install", *common, "-e", str(ROOT))
    else:
        proc = _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(folder / "dist"), str(ROOT))
        wheels = sorted((folder / "dist").glob("archgraph-*.whl"))
        assert proc.returncode == 0 and wheels, proc.stderr
        proc = _pip("install", "--no-deps", "--target", str(site), str(wheels[0]))
    assert proc.returncode == 0, proc.stderr
    return request.param, python, site


def _run(python: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the venv's python from the repository root, as a user in the clone would."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_python_m_archgraph_from_the_root(env):
    kind, python, _ = env
    proc = _run(python, "-m", "archgraph", "spaces")
    assert proc.returncode == 0 and "dcss" in proc.stdout, (kind, proc.stderr[-2000:])


def test_console_script_from_the_root(env):
    kind, python, site = env
    script = site / "bin" / "archgraph"
    if not script.is_file():
        pytest.skip(f"pip put no console script into the {kind} target folder")
    proc = _run(python, str(script), "strategies")
    assert proc.returncode == 0 and "spos" in proc.stdout, (kind, proc.stderr[-2000:])


def test_job_workers_and_spaces_from_the_root(env):
    """A --jobs worker (spawn: the parent's sys.path, the clone's root first) builds a space by name."""
    kind, python, _ = env
    code = textwrap.dedent("""
        import tempfile, pathlib
        from archgraph.core.spaces_api import build_space
        from archgraph.studies.executors import Job, ExecutorSpec, run_jobs
        job = Job(key="space", label="space", fn=build_space, args=("dcss", {"layers": 2, "base_channels": 4}))
        run_jobs([job], ExecutorSpec(kind="processes", jobs=1), pathlib.Path(tempfile.mkdtemp()) / "jobs")
        assert job.state == "done", job.error
        print("nodes", job.result.number_of_nodes())
    """)
    proc = _run(python, "-c", code)
    assert proc.returncode == 0 and "nodes" in proc.stdout, (kind, proc.stderr[-2000:])


def test_torchrun_m_archgraph_from_the_root(env):
    kind, python, _ = env
    if kind != "regular":
        pytest.skip("torchrun starts `python -m archgraph` per process: one install kind shows it")
    proc = _run(python, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_port=0", "-m", "archgraph", "spaces")
    assert proc.returncode == 0 and "dcss" in proc.stdout, (kind, proc.stderr[-2000:])
