"""`archgraph compare` end to end on tiny synthetic settings: files and their schema, resume without
recomputation, random baselines within a FLOPs band, bad input."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from rich.console import Console

import archgraph.engine.search
import archgraph.engine.train
from archgraph import build_space
from archgraph.cli import main
from archgraph.outputs import render as render_module
from archgraph.studies.compare import LiveTable, Plan, parse_baselines, parse_seeds, plan_runs, random_architectures, architecture_flops
from archgraph.config import load_config
from archgraph.errors import ConfigError
from archgraph.core.graph import graph_hash
from archgraph.core.measure import peak_memory_of
from archgraph.core.archfile import check_in_space
from helpers import TINY_COMPARE

TINY = TINY_COMPARE
ENTRIES = ["dcnas", "pc_darts", "preset:fcn", "random"]


class Counter:
    """Wraps a function and counts its calls (with the ``resume`` flags it was given)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs.get("resume", False))
        return self.fn(*args, **kwargs)


def compare(out, *extra):
    return main(
        [
            "compare",
            "--strategies",
            "dcnas,pc_darts",
            "--seeds",
            "1",
            "--baselines",
            "preset:fcn,random:1",
            "--cache",
            str(out.parent / "cache"),
            "--out",
            str(out),
            "--no-progress",
            "--set",
            *TINY,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One compare, with the search and training engines counted."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    mp = pytest.MonkeyPatch()
    search, train = Counter(archgraph.engine.search.run_search), Counter(archgraph.engine.train.run_training)
    mp.setattr(archgraph.engine.search, "run_search", search)
    mp.setattr(archgraph.engine.train, "run_training", train)
    mp.setattr(render_module, "_graphviz_warned", False)  # as in a fresh process
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            assert compare(out) == 0
    finally:
        mp.undo()
    return out, search.calls, train.calls, err.getvalue()


def test_compare_writes_results_plots_topologies_and_report(first):
    out, searches, trainings, err = first
    assert searches == [False, False]  # one search per strategy x seed
    # 1 seed against 1 random architecture: said before the study runs that no p can be below 0.05
    assert "no entry can differ from random at p < 0.05; use --baselines random:" in err, err
    assert 1 <= len(trainings) <= 4  # one per run, fewer when two runs share an architecture (the cache)
    res = json.loads((out / "results.json").read_text())
    assert res["format"] == "archgraph/compare-v1"
    assert res["plan"]["strategies"] == ["dcnas", "pc_darts"] and res["plan"]["seeds"] == [0]
    assert [e["name"] for e in res["entries"]] == ENTRIES
    assert [e["kind"] for e in res["entries"]] == ["strategy", "strategy", "preset", "random"]
    for e in res["entries"]:
        s = e["summary"]
        assert s["runs"] == s["finished"] == 1
        assert 0.0 <= s["t_miou_mean"] <= 1.0 and s["t_miou_std"] is None  # one run: no std
        assert s["params_mean"] > 0 and s["flops_mean"] > 0
        (run,) = e["runs"]
        assert run["status"] == "done" and (out / run["folder"] / "metrics.json").is_file()
        assert (out / run["folder"]).parent.parent == out / "runs"
        if e["kind"] == "strategy":
            peak = peak_memory_of(run)  # named for its quantity: the search's RSS window on Linux, the process's peak elsewhere
            assert 0.0 <= run["s_miou"] <= 1.0 and run["search_seconds"] > 0 and peak.quantity in ("peak_rss_window_mb", "peak_rss_mb") and peak.mb > 50
            assert "peak_mem_mb" not in run
            assert (out / run["folder"] / "search" / "final.json").is_file()
            assert run["arch_hash"] == json.loads((out / run["folder"] / "search" / "final.json").read_text())["arch_hash"]
        else:
            assert s["s_miou_mean"] is None and s["search_seconds_mean"] is None
    # a preset run trains the preset itself
    fcn = json.loads((out / "runs/preset-fcn/seed0/metrics.json").read_text())
    assert fcn["arch_hash"] == res["entries"][2]["runs"][0]["arch_hash"]
    md = (out / "results.md").read_text()
    assert "| entry | runs | S-mIoU | T-mIoU |" in md and "fcn (preset)" in md and "random (n=1)" in md
    for stem in ("tmiou", "tmiou_vs_cost"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{stem}.svg").read_text()
    page = (out / "report.html").read_text()
    # Topologies are SVG where Graphviz is installed; without it, DOT files and one install hint.
    drawn = render_module.graphviz_available()
    suffix = ".svg" if drawn else ".dot"
    assert sorted(p.name for p in (out / "topologies").iterdir()) == [f"{n}{suffix}" for n in ("dcnas", "pc_darts", "preset-fcn", "random")]
    assert page.count("<svg") >= (6 if drawn else 2)  # 2 plots (+ 4 topologies), inline
    assert err.count("Graphviz is not installed") == (0 if drawn else 1) and ("apt-get install graphviz" in err) is not drawn
    assert "src=\"http" not in page and "href=\"http" not in page  # self-contained
    for name in ("dcnas", "pc_darts", "fcn (preset)"):
        assert name in page


def test_second_call_resumes_without_recomputing(first, monkeypatch):
    out, _, _, _ = first
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/**/*") if p.name in ("final.json", "metrics.json", "arch.yaml")}
    before = json.loads((out / "results.json").read_text())
    search, train = Counter(archgraph.engine.search.run_search), Counter(archgraph.engine.train.run_training)
    monkeypatch.setattr(archgraph.engine.search, "run_search", search)
    monkeypatch.setattr(archgraph.engine.train, "run_training", train)
    assert compare(out) == 0
    assert search.calls == [] and train.calls == []
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    after = json.loads((out / "results.json").read_text())
    assert [e["summary"]["t_miou_mean"] for e in after["entries"]] == [e["summary"]["t_miou_mean"] for e in before["entries"]]

    # An interrupted search (no final.json) resumes from its checkpoint; its training comes from the cache.
    run = out / "runs" / "pc_darts" / "seed0"
    (run / "search" / "final.json").unlink()
    (run / "metrics.json").unlink()
    assert compare(out) == 0
    assert search.calls == [True] and train.calls == []
    assert (run / "search" / "final.json").is_file() and (run / "metrics.json").is_file()
    cost = json.loads((run / "search_cost.json").read_text())
    assert [s["resumed"] for s in cost["sessions"]] == [False, True]

    # The base config is part of the comparison: another one is refused, naming the fix.
    assert compare(out, "train.epochs=2") == 2


def test_random_baseline_is_uniform_distinct_and_respects_the_flops_band():
    space = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
    plain = random_architectures(space, 4, seed=0, image_hw=(32, 32))
    assert [s for s, _ in plain] == [s for s, _ in random_architectures(space, 4, seed=0, image_hw=(32, 32))]  # seeded
    assert len({graph_hash(a) for _, a in plain}) == 4
    for _, arch in plain:
        check_in_space(arch)
    flops = [architecture_flops(a, (32, 32)) for _, a in random_architectures(space, 12, seed=1, image_hw=(32, 32))]
    ref = sorted(flops)[len(flops) // 2]
    banded = random_architectures(space, 3, seed=2, image_hw=(32, 32), band=0.1, reference_flops=ref)
    assert all(abs(architecture_flops(a, (32, 32)) - ref) <= 0.1 * ref for _, a in banded)
    with pytest.raises(ConfigError, match="widen --flops-band"):
        random_architectures(space, 2, seed=0, image_hw=(32, 32), band=1e-9, reference_flops=1.0, max_tries=5)


def test_plan_parsing_and_the_live_table(tmp_path):
    assert parse_seeds("3", 5) == [5, 6, 7] and parse_seeds("0,4") == [0, 4]
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("x")
    assert [b.entry for b in parse_baselines("presets,random:3")] == ["preset:fcn", "preset:hourglass", "preset:deeplabv3", "preset:hrnet", "random"]
    with pytest.raises(ConfigError, match="did you mean 'hrnet'"):
        parse_baselines("preset:hrnett")
    with pytest.raises(ConfigError, match="random:N"):
        parse_baselines("random:0")
    plan = Plan(load_config(None, TINY), ["dcnas"], [0, 1], parse_baselines("hrnet,random:3"))
    runs = plan_runs(plan, tmp_path)
    assert [r.label for r in runs] == ["dcnas s0", "dcnas s1", "hrnet (preset) s0", "hrnet (preset) s1", "random #0 s0", "random #1 s1", "random #2 s0"]
    runs[0].status, runs[0].result = "done", {"s_miou": 0.25, "t_miou": 0.5, "search_seconds": 12.0}
    runs[1].status = "search"
    console = Console(record=True, width=140)
    console.print(LiveTable(runs, plan))
    text = console.export_text()
    assert "1/7 runs done" in text and "0.5000" in text and "search epoch 0" in text and "random #2 s0" in text
    assert main(["compare", "--strategies", "dcnas,nope", "--out", str(tmp_path / "x")]) == 2


def test_per_strategy_options_reach_only_their_strategy():
    from archgraph.studies.compare import parse_strategy_options, run_config

    options = parse_strategy_options(["spos.population=8", "spos.generations=2", "dcnas.paths=2"], ["dcnas", "spos"])
    assert options == {"spos": {"population": 8, "generations": 2}, "dcnas": {"paths": 2}}
    base = load_config(None, TINY)
    assert run_config(base, 0, "spos", options).strategy["population"] == 8
    assert run_config(base, 0, "dcnas", options).strategy["paths"] == 2
    assert run_config(base, 0, "pc_darts", options).strategy_name == "pc_darts"
    with pytest.raises(ConfigError, match="did you mean 'strategy.population'"):
        parse_strategy_options(["spos.populaton=8"], ["spos"])
    with pytest.raises(ConfigError, match="not one of --strategies"):
        parse_strategy_options(["p_darts.stages=2"], ["dcnas"])


def test_the_cost_plot_labels_do_not_overlap(tmp_path):
    """Baselines all sit at search time 0 with close T-mIoUs (the CamVid study: 0.236-0.243): their
    labels must still be readable, as must the strategies'."""
    from archgraph.studies.compare.report import cost_figure

    def entry(name, kind, miou, seconds=None):
        return {"name": name, "kind": kind, "summary": {"t_miou_mean": miou, "t_miou_std": 0.01, "runs": 6, "search_seconds_mean": seconds, "search_seconds_std": 5.0 if seconds else None}}

    entries = [
        entry("dcnas", "strategy", 0.241, 400.0),
        entry("long", "strategy", 0.258, 800.0),
        entry("lr", "strategy", 0.256, 410.0),
        entry("preset:fcn", "preset", 0.206),
        entry("preset:hourglass", "preset", 0.2431),
        entry("preset:deeplabv3", "preset", 0.2421),
        entry("preset:hrnet", "preset", 0.2365),
        entry("random", "random", 0.2415),
    ]
    fig = cost_figure(entries, {"strategy": "b", "preset": "r", "random": "g"})
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in fig.axes[0].texts]  # the words, not the leader lines
    assert len(boxes) == len(entries)
    overlaps = [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert overlaps == []
    fig.savefig(tmp_path / "cost.png")
