"""Latency tables: measured once per distinct module, saved and loaded with their meta, refused for
another device, resolution or dtype; `archgraph latency` writes and extends one."""

from __future__ import annotations

import json

import pytest

from archgraph.cli import main
from archgraph.core.costitems import distinct_items, graph_items
from archgraph.core.costmodel import CostModel
from archgraph.core.decode import sample_architecture
from archgraph.core.latency import LatencyTable, measure_latency_table
from archgraph.errors import ConfigError

HW = (32, 64)


@pytest.fixture(scope="module")
def table(request):
    from archgraph import build_space

    graph = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
    seen = []
    table = measure_latency_table(graph, HW, "cpu", "fp32", warmup=0, reps=1, progress=lambda done, total, key: seen.append((done, total, key)))
    return graph, table, seen


def test_each_distinct_module_is_timed_once(table):
    graph, table, seen = table
    items = distinct_items(graph, HW)
    assert len(seen) == len(items) == len(table.entries) and seen[-1][:2] == (len(items), len(items))
    assert len({key for _, _, key in seen}) == len(seen)  # no key timed twice
    candidates = sum(len(n.ops) + len(n.branches) for n in graph_items(graph, HW).values())
    assert len(items) < candidates  # identical candidates (same op, size, channels) share one entry
    assert all(key.endswith("|fp32|cpu") and ms >= 0 for key, ms in table.entries.items())
    assert {"device", "device_name", "dtype", "resolution", "torch", "archgraph", "date"} <= set(table.meta)


def test_table_round_trips_and_predicts_from_its_entries(table, tmp_path):
    graph, table, _ = table
    path = table.save(tmp_path / "t.json")
    back = LatencyTable.load(path, device="cpu", resolution=HW, dtype="fp32")
    assert back.entries == table.entries and back.meta == table.meta
    derived = sample_architecture(graph, 0)
    model = CostModel(graph, "latency", HW, back)
    want = sum(back.lookup(i) for node in graph_items(derived, HW, 32).values() for i in [*node.ops, *node.branches.values(), node.fuse, node.sum_for(len(node.inputs))] if i is not None)
    assert model.unit == "ms" and model.of_graph(derived) == pytest.approx(want, rel=1e-12) and want > 0


@pytest.mark.parametrize("asked, says", [({"resolution": (64, 64)}, "resolution 64x64"), ({"device": "cuda"}, "device cuda"), ({"dtype": "bf16"}, "dtype bf16")])
def test_a_mismatched_table_is_refused(table, tmp_path, asked, says):
    _, table, _ = table
    path = table.save(tmp_path / "t.json")
    with pytest.raises(ConfigError) as err:
        LatencyTable.load(path, **asked)
    assert says in str(err.value) and "archgraph latency" in str(err.value)


def test_a_table_lacking_entries_or_not_a_table_is_refused(table, tmp_path):
    graph, table, _ = table
    partial = LatencyTable(dict(table.meta), dict(list(table.entries.items())[1:]))
    with pytest.raises(ConfigError, match="lacks 1 item"):
        CostModel(graph, "latency", HW, partial)
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigError, match="not an archgraph latency table"):
        LatencyTable.load(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="does not exist"):
        LatencyTable.load(tmp_path / "none.json")


def test_the_latency_command_writes_and_extends_a_table(tmp_path, capsys):
    out = tmp_path / "cpu.json"
    argv = ["latency", "--space", "dcss", "--set", "space.layers=2", "space.base_channels=4", "--resolution", "32x64", "--reps", "1", "--warmup", "0", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["resolution"] == [32, 64] and data["meta"]["device"] == "cpu" and len(data["entries"]) > 10
    assert main([*argv, "--set", "space.layers=3"]) == 0  # the same table extended with the deeper space's modules
    grown = json.loads(out.read_text())
    assert set(data["entries"]) < set(grown["entries"]) and all(grown["entries"][k] == v for k, v in data["entries"].items())
    capsys.readouterr()
    assert main([*argv, "--resolution", "64x64"]) != 0  # an existing table of another resolution is not overwritten
    assert "--force" in capsys.readouterr().err


def test_export_writes_the_measured_latency_beside_the_model(tmp_path):
    from archgraph import build_space, save_graph

    space = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
    save_graph(sample_architecture(space, 0), tmp_path / "arch.yaml")
    tiny = ["data.crop=[32,64]", "data.batch_size=2", "data.num_samples=4", "data.val_limit=1", "train.epochs=1", "train.steps_per_epoch=1"]
    assert main(["train", str(tmp_path / "arch.yaml"), "--out", str(tmp_path / "run"), "--no-progress", "--set", *tiny]) == 0
    model = tmp_path / "model.pt2"
    assert main(["export", str(tmp_path / "run"), "-o", str(model), "--frame", "32x64"]) == 0
    programs = json.loads((tmp_path / "model.pt2.json").read_text())["programs"]
    assert programs and programs[0]["latency"] == "model.pt2.latency.json"
    for program in programs:  # one measured latency per exported frame size, at that size
        record = json.loads((tmp_path / program["latency"]).read_text())
        assert record["resolution"] == program["frame"] and record["device"] == "cpu" and record["median_ms"] > 0 and record["reps"] == 5


def test_a_table_from_the_command_serves_a_search_of_the_same_config(tmp_path):
    """The head's class count is part of its key: `archgraph latency` sizes the head for the config's
    dataset as the search does (it did not, and a table for 19 classes was refused by a 5-class search)."""
    from archgraph.config import load_config
    from archgraph.engine.search import run_search

    out = tmp_path / "cpu.json"
    tiny = ["space.layers=2", "space.base_channels=4", "data.num_classes=3"]
    assert main(["latency", "--set", *tiny, "--resolution", "32x32", "--reps", "1", "--warmup", "0", "--out", str(out), "--no-progress"]) == 0
    assert any(k.startswith("head|") and "|3|1|" in k for k in json.loads(out.read_text())["entries"])
    search = [*tiny, "data.crop=[32,32]", "data.batch_size=2", "data.num_samples=4", "data.val_limit=1", "search.epochs=1", "search.warmup_epochs=0", "search.steps_per_epoch=1", "search.eval_every=0"]
    cfg = load_config(None, [*search, "search.cost_limit=latency=1000ms@32x32", f"search.cost_table={out}"])
    final = run_search(cfg, tmp_path / "run", progress=False)
    assert final["cost"]["predicted"] > 0 and final["cost"]["within_budget"] is True
    assert final["cost"]["calibration"]["archs"] == 20  # the command's default calibration travels into the result
    other = load_config(None, [*search, "data.num_classes=4", "search.cost_limit=latency=1000ms@32x32", f"search.cost_table={out}"])
    with pytest.raises(ConfigError, match="class count"):
        run_search(other, tmp_path / "other", progress=False)


def test_an_interrupted_latency_command_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of a table keeps what was timed (OUT.partial.json) and the same command
    continues from there, timing only the rest; it used to lose every measurement."""
    import archgraph.core.latency as latency

    out = tmp_path / "cpu.json"
    argv = ["latency", "--set", "space.layers=2", "space.base_channels=4", "--resolution", "32x32", "--reps", "1", "--warmup", "0", "--calibrate", "0", "--out", str(out), "--no-progress"]
    original, timed = latency.time_item_ms, []

    def interrupted_after_five(*args, **kwargs):
        if len(timed) == 5:
            raise KeyboardInterrupt
        timed.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(latency, "time_item_ms", interrupted_after_five)
    assert main(argv) == 130
    assert "OUT.partial.json" in capsys.readouterr().err and not out.exists()
    partial = json.loads((tmp_path / "cpu.json.partial.json").read_text())
    assert len(partial["samples"]) == 5
    monkeypatch.setattr(latency, "time_item_ms", lambda *a, **k: timed.append(1) or original(*a, **k))
    assert main(argv) == 0
    table = json.loads(out.read_text())
    rounds = table["meta"]["rounds"]
    assert len(timed) == len(table["entries"]) * rounds  # nothing timed twice in a round
    assert not (tmp_path / "cpu.json.partial.json").exists()
