"""Entry-point plug-ins and the support matrix.

The example plug-in in tests/plugin_example is really installed with pip (``--target`` a temporary
folder, so the shared virtual environment is never modified) and put on PYTHONPATH: importlib.metadata
then finds its entry points exactly as after ``pip install`` into an environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archgraph.errors import ConfigError
from archgraph.core.registry import (
    DEFAULT_HANDLES,
    SPACES,
    STRATEGIES,
    StrategyInfo,
    check_support,
    get_strategy,
    load_plugins,
    support_matrix,
    unsupported_reason,
)
from archgraph.core.spaces_api import build_space

EXAMPLE = Path(__file__).parent / "plugin_example"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """pip-install the example plug-in into a temporary site folder (about 3 s, offline)."""
    base = tmp_path_factory.mktemp("plugin")
    src = base / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = base / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--target", str(target), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("archgraph_tiny_plugin-*.dist-info/entry_points.txt")), "pip wrote no entry points"
    return target


def cli(site: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    code = "import sys, torch; torch.set_num_threads(1); from archgraph.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


@pytest.fixture
def plugin_in_process(site):
    """The plug-in visible to this interpreter; registries (spaces, strategies, ops) restored afterwards."""
    from archgraph.core.ops import OPS
    from archgraph.core.registry import PRESET_REGISTRY
    from archgraph.data import DATASETS
    from archgraph.engine.selection.registry import SELECTOR_REGISTRY
    from archgraph.studies.executors import EXECUTOR_REGISTRY

    load_plugins()
    SELECTOR_REGISTRY.load()
    EXECUTOR_REGISTRY.load()
    tables = (SPACES, STRATEGIES, OPS, PRESET_REGISTRY.table, DATASETS, SELECTOR_REGISTRY.table, EXECUTOR_REGISTRY.table)
    before = [dict(t) for t in tables]
    sys.path.insert(0, str(site))
    try:
        load_plugins(reload=True)
        yield
    finally:
        sys.path.remove(str(site))
        for module in ("archgraph_tiny_plugin", "archgraph_tiny_plugin.data", "archgraph_tiny_plugin.selectors", "archgraph_tiny_plugin.executors"):
            sys.modules.pop(module, None)
        for table, saved in zip(tables, before):
            table.clear(), table.update(saved)
        load_plugins(reload=True)  # forget the plug-in's entry points and warnings again


def test_an_installed_plugin_shows_up_in_the_listings(site):
    spaces = cli(site, "spaces")
    assert spaces.returncode == 0, spaces.stderr
    assert "tiny_chain" in spaces.stdout and "tiny_width" in spaces.stdout and "autodeeplab" in spaces.stdout
    strategies = cli(site, "strategies")
    assert strategies.returncode == 0, strategies.stderr
    out = " ".join(strategies.stdout.split())
    assert "tiny_darts" in out
    assert "support" not in strategies.stderr.lower()
    # the matrix: every strategy refuses tiny_width, with the reason
    assert "no: strategy 'tiny_darts' handles input, op choices, but space 'tiny_width' has width choices" in out


def test_an_installed_plugin_runs_a_search(site, tmp_path):
    out = tmp_path / "run"
    proc = cli(
        site,
        "search",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "space.name=tiny_chain",
        "strategy.name=tiny_darts",
        "data.num_samples=8",
        "data.crop=[32,32]",
        "data.batch_size=2",
        "search.epochs=1",
        "search.warmup_epochs=0",
        "search.steps_per_epoch=2",
        "search.bn_recalib_batches=1",
        "data.val_limit=2",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from archgraph import load_graph

    arch = load_graph(out / "arch.yaml")
    assert arch.graph["space"] == "tiny_chain" and set(arch.nodes) >= {"image", "stem", "head"}


def test_unsupported_pair_fails_fast_with_the_reason(plugin_in_process):
    graph = build_space("tiny_width", {})
    for name in ("darts", "dcnas", "tiny_darts"):
        with pytest.raises(ConfigError, match=r"handles input, op choices, but space 'tiny_width' has width choices"):
            check_support(get_strategy(name), graph)
    check_support(get_strategy("tiny_darts"), build_space("tiny_chain", {}))  # supported: no error
    rows = {(st, sp): reason for st, sp, reason in support_matrix()}
    assert rows[("darts", "tiny_chain")] is None and rows[("darts", "autodeeplab")] is None
    assert "width" in rows[("dcnas", "tiny_width")]


def test_a_strategy_declaring_a_new_kind_is_supported_there(plugin_in_process):
    class Wide:
        handles = frozenset({"op", "input", "width"})

    info = StrategyInfo("wide", Wide, object, "")
    assert unsupported_reason(info, {"op", "width"}, "tiny_width") is None
    check_support(info, build_space("tiny_width", {}))
    assert unsupported_reason(get_strategy("darts"), {"op"}, "x") is None
    assert getattr(get_strategy("darts").cls, "handles", DEFAULT_HANDLES) >= {"op", "input"}


def test_search_refuses_an_unsupported_pair_before_loading_data(site, tmp_path):
    import archgraph.engine.search as search_module
    import inspect

    if "check_support" not in inspect.getsource(search_module):
        pytest.skip("archgraph/engine/search.py does not call registry.check_support yet (the lead wires it in)")
    proc = cli(
        site, "search", "--out", str(tmp_path / "run"), "--no-progress", "--set", "space.name=tiny_width", "strategy.name=darts", "data.name=camvid", "data.root=/nonexistent"
    )  # data would fail: it must not be reached
    assert proc.returncode == 2
    assert "has width choices" in proc.stdout + proc.stderr
    assert "nonexistent" not in proc.stdout + proc.stderr  # the dataset error would name the missing root


def test_a_broken_entry_point_is_reported_not_fatal(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[archgraph.spaces]\nbroken = no_such_module_xyz:build\n")
    proc = cli(tmp_path, "spaces")
    assert proc.returncode == 0
    text = " ".join((proc.stdout + proc.stderr).split())
    assert "broken" in text and "failed to load" in text and "dcss" in text


# ------------------------------------------------------------------------------------------------
# A plug-in's ops are first-class


def test_archgraph_ops_lists_plugin_and_space_ops_with_who_registered_them(site):
    proc = cli(site, "ops")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") >= 4}
    assert "archgraph-tiny-plugin: spaces tiny_chain, tiny_width" in rows["tiny_dil_conv3x3"]
    assert "dilated 3x3 conv" in rows["tiny_dil_conv3x3"]
    for op in ("none", "cell_concat", "head_aspp_sum96"):  # Auto-DeepLab's own ops, registered by its module
        assert "archgraph: space autodeeplab" in rows[op], op
    assert "archgraph (core)" in rows["mbconv_k3_r3"] and "parameter-free" in rows["skip_connect"]
    assert "up-sampling modes" in proc.stdout  # the alignment branches' modes, a registry of their own
    assert "archgraph (core)" in rows["transposed"] and "archgraph (core)" in rows["bilinear"]


def _plugin_architecture(path: Path) -> Path:
    from archgraph.core.decode import derive_by_name
    from archgraph.core.graph import save

    arch = derive_by_name(build_space("tiny_chain", {}), ops={"a": "tiny_dil_conv3x3", "b": "conv1x1"}, inputs={"b": ["a"]})
    return save(arch, path)


def test_a_plugin_architecture_loads_in_a_fresh_process(site, plugin_in_process, tmp_path):
    """Plug-ins load before the file is validated: its op (and its space, for the space check) exist."""
    path = _plugin_architecture(tmp_path / "arch.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    code = (
        "import sys; from archgraph.core.archfile import load_architecture; from archgraph.core.ops import OPS; "
        "assert 'tiny_dil_conv3x3' not in OPS; g = load_architecture(sys.argv[1]); print(g.nodes['a']['ops'], g.graph['space'])"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['tiny_dil_conv3x3']", "tiny_chain"]
    inspect = cli(site, "inspect", str(path), "--crop", "32", "48", "--json")  # and its size, from the command line
    assert inspect.returncode == 0, inspect.stderr
    import json

    summary = json.loads(inspect.stdout)
    assert summary["space"] == "tiny_chain" and summary["crop"] == [32, 48] and summary["params"] > 0 and summary["flops"] > 0


def test_an_unknown_op_says_what_was_meant(plugin_in_process, tmp_path):
    from archgraph.core.archfile import load_architecture
    from archgraph.core.graph import load, save
    from archgraph.core.ops import get_op
    from archgraph.errors import GraphError, RegistryError

    with pytest.raises(RegistryError, match=r"unknown op 'tiny_dil_conv3x4'; did you mean 'tiny_dil_conv3x3'\?"):
        get_op("tiny_dil_conv3x4")
    arch = load(_plugin_architecture(tmp_path / "arch.yaml"))
    arch.nodes["a"]["ops"] = ["tiny_dilconv3x3"]
    with pytest.raises(GraphError, match=r"unknown ops \['tiny_dilconv3x3'\]; did you mean 'tiny_dil_conv3x3'\?"):
        load_architecture(save(arch, tmp_path / "typo.yaml"))


def test_a_name_registered_without_an_entry_point_is_warned_about(monkeypatch):
    from archgraph.core.registry import UNDECLARED

    load_plugins()
    Extra = type("Extra", (get_strategy("darts").cls,), {"__module__": "my_plugin.extra", "name": "extra"})
    monkeypatch.setitem(STRATEGIES, "extra", StrategyInfo("extra", Extra, object, "registered by hand"))
    try:
        with pytest.warns(UserWarning, match=r"strategy 'extra' is registered by module 'my_plugin.extra' but has no entry point in group 'archgraph.strategies'"):
            load_plugins(reload=True)
        assert len(UNDECLARED) == 1  # the built-ins (imported by name) are not warned about
        assert 'extra = "my_plugin.extra:Extra"' in UNDECLARED[0] and "reinstall" in UNDECLARED[0]
    finally:
        monkeypatch.undo()
        load_plugins(reload=True)
    assert UNDECLARED == []


# ------------------------------------------------------------------------------------------------
# Every kind through entry points, one duplicate policy


def test_a_dataset_a_preset_and_a_selector_plug_in_through_entry_points(plugin_in_process):
    from archgraph.core.spaces_api import build_preset
    from archgraph.data import DATASET_REGISTRY, build_dataset
    from archgraph.engine.selection.registry import SELECTOR_REGISTRY, get_selector

    ds = build_dataset("tiny_stripes", "train", num_samples=2, crop=(16, 16), train=True)
    assert type(ds).__name__ == "TinyStripes" and ds.noise == 0.0 and len(ds) == 2
    SELECTOR_REGISTRY.load(reload=True)
    assert get_selector("first").name == "first"
    arch = build_preset("straight", build_space("tiny_chain", {}))
    assert list(arch.predecessors("b")) == ["a"] and arch.graph["space"] == "tiny_chain"
    assert "tiny_stripes" in DATASET_REGISTRY.names()


def test_archgraph_spaces_lists_every_space_s_presets(site):
    proc = cli(site, "spaces")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") >= 5}
    assert "fcn, hourglass, deeplabv3, hrnet" in rows["dcss"] and "straight" in rows["tiny_chain"]


def test_one_duplicate_policy_for_every_registry():
    from archgraph.core.ops import OPS, register_op
    from archgraph.core.registry import REGISTRIES, Registry
    from archgraph.errors import RegistryError

    def conv3x3(node, inputs):  # a second definition under a taken name
        raise AssertionError("never built")

    with pytest.raises(RegistryError, match=r"op 'conv3x3' is registered twice: by archgraph\.core\.ops:.* and by .*conv3x3; rename one"):
        register_op("conv3x3")(conv3x3)
    same = OPS["conv3x3"]
    register_op("conv3x3", doc=same.doc)(same.build)  # the same definition again: a quiet no-op
    assert OPS["conv3x3"].build is same.build
    import archgraph.data  # noqa: F401 - the datasets' and executors' registries live with them
    import archgraph.studies.executors  # noqa: F401

    assert set(REGISTRIES) >= {
        "archgraph.spaces",
        "archgraph.strategies",
        "archgraph.presets",
        "archgraph.ops",
        "archgraph.upsamplers",
        "archgraph.decoders",
        "archgraph.datasets",
        "archgraph.executors",
    }
    reg: Registry = Registry("widget", "archgraph.test_widgets")
    try:
        reg.add("w", conv3x3)
        with pytest.raises(RegistryError, match="widget 'w' is registered twice"):
            reg.add("w", same.build)
    finally:
        REGISTRIES.pop("archgraph.test_widgets")


def test_builtins_are_declared_as_the_entry_points_plug_ins_use():
    """pyproject.toml declares archgraph's own entry points; the registry loads the same list."""
    import tomllib

    from archgraph.core.registry import BUILTIN_ENTRY_POINTS

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert set(declared) == set(BUILTIN_ENTRY_POINTS)
    for group, lines in BUILTIN_ENTRY_POINTS.items():
        assert {f"{k} = {v}" for k, v in declared[group].items()} == set(lines), group


@pytest.fixture
def registries_loaded_before_the_plugin():
    """The datasets, selectors and scorers registries already scanned before the plug-in appears (what
    any earlier test in the same worker does)."""
    from archgraph.data import DATASET_REGISTRY
    from archgraph.engine.scoring import SCORER_REGISTRY
    from archgraph.engine.selection.registry import SELECTOR_REGISTRY

    for registry in (DATASET_REGISTRY, SELECTOR_REGISTRY, SCORER_REGISTRY):
        registry.load()


def test_a_plugin_installed_after_the_registries_loaded_is_found(registries_loaded_before_the_plugin, plugin_in_process):
    """load_plugins(reload=True) rescans every kind, not only the core ones: the dataset of a plug-in
    installed into a running interpreter is found (it was not when the datasets registry had loaded first)."""
    from archgraph.data import build_dataset
    from archgraph.engine.selection.registry import get_selector

    assert type(build_dataset("tiny_stripes", "train", num_samples=2, crop=(16, 16), train=True)).__name__ == "TinyStripes"
    assert get_selector("first").name == "first"


# ------------------------------------------------------------------------------------------------
# Executors: a plug-in's runs a compare, chosen by name as the built-ins are


def test_a_compare_runs_through_a_plugin_executor(site, tmp_path):
    """`--executor tiny_timed` (the plug-in's entry point) runs every job of a compare on the plug-in's
    space, strategy and preset; the executor's own file names each job once."""
    out = tmp_path / "cmp"
    proc = cli(
        site,
        "compare",
        "--executor",
        "tiny_timed",
        "--strategies",
        "tiny_darts",
        "--seeds",
        "1",
        "--baselines",
        "preset:straight",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "space.name=tiny_chain",
        "data.num_samples=8",
        "data.crop=[32,32]",
        "data.batch_size=2",
        "data.val_limit=2",
        "search.epochs=1",
        "search.warmup_epochs=0",
        "search.steps_per_epoch=2",
        "search.bn_recalib_batches=1",
        "train.epochs=1",
        "train.steps_per_epoch=2",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    results = json.loads((out / "results.json").read_text())
    assert {e["name"]: [r["status"] for r in e["runs"]] for e in results["entries"]} == {"tiny_darts": ["done"], "preset:straight": ["done"]}
    ran = [line.split("\t")[0] for line in (out / "jobs" / "timings.tsv").read_text().splitlines()]
    assert sorted(ran) == sorted(p.stem for p in (out / "jobs").glob("*.json")) and len(ran) == 3  # a search and two trainings, once each
    assert ran.index("search-tiny_darts-seed0") < ran.index("train-tiny_darts-seed0")


def test_executor_names_come_from_the_registry(site):
    """`compare --help` lists the installed plug-in's executor; a mistyped name is one line naming the closest."""
    help_text = " ".join(cli(site, "compare", "--help").stdout.split())
    assert "or an installed plug-in's: tiny_timed" in help_text
    proc = cli(site, "compare", "--executor", "tiny_timd", "--out", "/nonexistent/never-made")
    assert proc.returncode == 2
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "unknown executor 'tiny_timd'; did you mean 'tiny_timed'? (available: embedded, processes, ray, tiny_timed" in line


# ------------------------------------------------------------------------------------------------
# docs/plugins.md, section 9: every kind's example works, and the test plug-in's excerpts are its code

DOC = ROOT / "docs" / "plugins.md"


def _doc_blocks(marker: str) -> dict[str, str]:
    """``<!-- marker: NAME -->`` followed by a fenced block in docs/plugins.md: NAME -> the block's text."""
    import re

    found = re.findall(rf"<!-- {marker}: (\S+) -->\n```\w+\n(.*?)\n```", DOC.read_text(), re.S)
    return dict(found)


def test_the_docs_excerpts_of_the_test_plugin_are_its_code():
    blocks = _doc_blocks("plugin_example")
    assert set(blocks) >= {"archgraph_tiny_plugin/data.py", "pyproject.toml", "archgraph_tiny_plugin/selectors.py", "archgraph_tiny_plugin/executors.py"}
    for path, block in blocks.items():
        assert block in (EXAMPLE / path).read_text(), f"docs/plugins.md's excerpt of tests/plugin_example/{path} is not the file's code"


@pytest.fixture
def doc_kinds(monkeypatch):
    """Each kind's example of docs/plugins.md run as a module of its own; every registry restored afterwards."""
    import types
    import warnings

    from archgraph.core.decode import DECODERS
    from archgraph.core.ops import OPS, UPSAMPLERS
    from archgraph.core.registry import PRESET_REGISTRY
    from archgraph.data import DATASETS
    from archgraph.engine.scoring import SCORER_REGISTRY

    load_plugins()
    SCORER_REGISTRY.load()
    tables = (SPACES, STRATEGIES, OPS, UPSAMPLERS, DECODERS, PRESET_REGISTRY.table, DATASETS, SCORER_REGISTRY.table)
    before = [dict(t) for t in tables]
    blocks = _doc_blocks("kind example")
    assert set(blocks) == {"space", "strategy", "op", "upsampler", "decoder", "preset", "dataset", "scorer"}
    modules = {}
    for kind, code in blocks.items():  # the space before its presets: the order of the docs
        module = types.ModuleType(f"plugins_md_{kind}")
        monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
        exec(compile(code, f"docs/plugins.md:{kind}", "exec"), module.__dict__)
        modules[kind] = module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # registered without entry points: warned about, as the docs say
            yield modules
    finally:
        for table, saved in zip(tables, before):
            table.clear(), table.update(saved)
        load_plugins(reload=True)


def test_every_kind_s_example_in_the_docs_works(doc_kinds, tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from archgraph.cli import main
    from archgraph.core.choices import discover_choices
    from archgraph.core.decode import decode, decisions
    from archgraph.core.graph import NodeSpec
    from archgraph.core.ops import get_op, get_upsample
    from archgraph.core.spaces_api import build_preset
    from archgraph.data import build_dataset, register_dataset
    from archgraph.engine.scoring import ScoringContext, get_scorer

    pair = build_space("pair", {"channels": 4})
    assert list(pair.nodes) == ["image", "stem", "a", "head"]
    # the op and the up-sampling mode keep their contracts' shapes
    x = torch.randn(2, 4, 8, 8)
    assert get_op("conv3x3_gelu").build(NodeSpec("fusion", 1, 4, 4, ("conv3x3_gelu",)), [])(x).shape == x.shape
    assert get_upsample("bicubic").build(4, 6, 2)(x).shape == (2, 6, 16, 16)
    # the presets of the `pair` space
    assert build_preset("separable", pair).nodes["a"]["ops"] == ["sep_conv_3x3"]
    assert build_preset("identity", pair).nodes["a"]["ops"] == ["skip_connect"]
    # the decoder: every candidate input kept, in decode and in the subnet decisions alike
    dcss = build_space("dcss", {"layers": 2, "base_channels": 4})
    dcss.graph["decoder"] = "keep_all"
    choices = discover_choices(dcss)
    ops = {c.label: [0.0, 1.0] + [0.0] * (len(c.candidates) - 2) for c in choices.ops}
    inputs = {c.label: [1.0] + [0.0] * (len(c.candidates) - 1) for c in choices.inputs}
    arch = decode(dcss, ops, inputs)
    first = choices.inputs[0]
    assert sorted(arch.predecessors(first.node)) == sorted(first.candidates) and len(first.candidates) > 2
    assert decisions(choices, ops, inputs)[1][first.label] == list(range(len(first.candidates)))
    # the scorer, on the pair space's candidates (no trained supernet needed)
    ctx = ScoringContext(None, None, None, None, torch.device("cpu"), pair)
    assert get_scorer("nodes").score(ctx, [({"a": 0}, {}), ({"a": 2}, {})]) == [4.0, 4.0]
    # the dataset, on PNG pairs in its layout
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(2):
            label = np.zeros((24, 20), np.uint8)
            label[4:12, 5:15], label[0] = 1, 255
            for folder, array in (("images", rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)), ("labels", label)):
                (tmp_path / "pairs" / split / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(tmp_path / "pairs" / split / folder / f"{i}.png")
    register_dataset("pairs")(doc_kinds["dataset"].Pairs)
    ds = build_dataset("pairs", "val", root=tmp_path / "pairs")
    image, label = ds[0]
    assert len(ds) == 2 and ds.num_classes == 2 and image.shape == (3, 24, 20) and set(label.unique().tolist()) == {0, 1, 255}
    # the strategy searches the space
    out = tmp_path / "run"
    assert (
        main(
            [
                "search",
                "--out",
                str(out),
                "--no-progress",
                "--set",
                "space.name=pair",
                "space.channels=4",
                "strategy.name=plain",
                "data.num_samples=4",
                "data.crop=[32,32]",
                "data.batch_size=2",
                "data.val_limit=2",
                "search.epochs=1",
                "search.warmup_epochs=0",
                "search.steps_per_epoch=2",
                "search.bn_recalib_batches=1",
            ]
        )
        == 0
    )
    assert (out / "arch.yaml").is_file()


# ------------------------------------------------------------------------------------------------
# An unknown preset names the space it was looked up in (the config's), its presets and the closest


def test_an_unknown_preset_names_the_space_it_was_looked_up_in(plugin_in_process, tmp_path, capsys):
    from archgraph.cli import main

    def error(*argv: str) -> str:
        assert main(list(argv)) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, lines
        return lines[0]

    out = str(tmp_path / "cmp")
    line = error("compare", "--baselines", "preset:hrnet", "--out", out, "--set", "space.name=unet")
    assert "unknown preset 'hrnet' of space 'unet'; 'hrnet' is a preset of space dcss (set space.name=dcss); unet presets: unet" in line
    assert "did you mean" not in line  # the fix is the space, not the name
    line = error("compare", "--baselines", "preset:hrnt", "--out", out)
    assert "unknown preset 'hrnt' of space 'dcss' (did you mean 'hrnet'?); dcss presets: fcn, hourglass, deeplabv3, hrnet" in line
    line = error("compare", "--baselines", "presets,straigt", "--out", out, "--set", "space.name=tiny_chain")
    assert "unknown preset 'straigt' of space 'tiny_chain' (did you mean 'straight'?); tiny_chain presets: straight" in line
    line = error("compare", "--baselines", "random:2", "--flops-band", "0.2", "--flops-reference", "hrnet", "--out", out, "--set", "space.name=unet")
    assert line.startswith("error: --flops-reference 'hrnet': not a strategy of this compare (") and "not an architecture file" in line
    assert "unknown preset 'hrnet' of space 'unet'; 'hrnet' is a preset of space dcss (set space.name=dcss)" in line
    assert not (tmp_path / "cmp").exists()  # every one refused before any work
    line = error("train", "--preset", "straight", "--out", str(tmp_path / "train"), "--set", "space.name=unet")
    assert "unknown preset 'straight' of space 'unet'; 'straight' is a preset of space tiny_chain (set space.name=tiny_chain); unet presets: unet" in line
    line = error("render", "--preset", "fcn", "-o", str(tmp_path / "fcn.svg"), "--set", "space.name=autodeeplab")
    assert "space 'autodeeplab' registers no presets; 'fcn' is a preset of space dcss (set space.name=dcss); presets exist for: dcss, tiny_chain, unet" in line
