"""`archgraph search` end to end on tiny synthetic settings: files, determinism, resume, report."""

from __future__ import annotations

import json

import pytest
import torch

from archgraph import load_graph
from archgraph.cli import main
from archgraph.core.graph import graphs_equal
from helpers import TINY_CLI_SEARCH, assert_architecture_trains

TINY = TINY_CLI_SEARCH


def search(out, *extra, resume=False):
    argv = ["search", "--out", str(out), "--no-progress", "--set", *TINY, *extra]
    if resume:
        argv.append("--resume")
    return main(argv)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    assert search(out) == 0
    return out


def test_search_writes_the_run_folder(run):
    for name in ("arch.yaml", "search.jsonl", "supernet.yaml", "scores.json", "config.yaml", "checkpoint.pt"):
        assert (run / name).is_file(), name
    assert (run / "supernet.svg").is_file() or (run / "supernet.dot").is_file()
    records = [json.loads(l) for l in (run / "search.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for key in ("loss", "arch_loss", "s_miou", "tau", "step_time", "peak_rss_mb", "entropy_alpha", "entropy_beta"):
        assert key in records[-1], key  # peak_rss_mb: the CPU's peak, named for its quantity (archgraph.core.measure)
    assert 0.0 <= records[-1]["s_miou"] <= 1.0
    assert records[0]["tau"] > records[1]["tau"]


def test_search_moves_alpha_and_beta_and_the_arch_trains(run):
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    alphas = [v for k, v in state["net"].items() if k.startswith("arch.alpha.")]
    betas = [v for k, v in state["net"].items() if k.startswith("arch.beta.")]
    assert alphas and betas
    assert max(a.abs().max() for a in alphas) > 1e-2  # init is 1e-3 * N(0, 1)
    assert max(b.abs().max() for b in betas) > 1e-2
    arch = load_graph(run / "arch.yaml")
    assert_architecture_trains(arch, classes=5)


def test_same_seed_gives_identical_arch_yaml(run, tmp_path):
    assert search(tmp_path / "again") == 0
    assert (tmp_path / "again" / "arch.yaml").read_text() == (run / "arch.yaml").read_text()


def test_channel_masks_never_change_during_search(run):
    """The masks in the final checkpoint are the ones drawn when the supernet was built."""
    from archgraph.config import SearchConfig
    from archgraph.strategies.dcnas import DCNAS, DCNASParams

    fresh = DCNAS(load_graph(run / "supernet.yaml"), DCNASParams(), SearchConfig(), seed=0).build_supernet()
    saved = torch.load(run / "checkpoint.pt", weights_only=False)["net"]
    masks = {k: v for k, v in fresh.state_dict().items() if k.endswith("channel_index")}
    assert len(masks) == 8
    for k, v in masks.items():
        assert torch.equal(saved[k], v), k


def test_kill_after_first_epoch_then_resume(tmp_path, monkeypatch):
    """A search interrupted after its first epoch resumes and ends with the uninterrupted result."""
    import archgraph.engine.search as engine

    full = tmp_path / "full"
    assert search(full) == 0

    out = tmp_path / "killed"

    def die_after_checkpoint(path, obj):
        from archgraph.engine.checkpoint import save_checkpoint

        save_checkpoint(path, obj)
        if obj.get("epoch") == 0 and obj.get("finished_epoch"):
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", die_after_checkpoint)
    assert search(out) == 130
    monkeypatch.undo()
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 0
    masks_before = {k: v.clone() for k, v in state["net"].items() if k.endswith("channel_index")}
    assert search(out, resume=True) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1
    for k, v in masks_before.items():
        assert torch.equal(state["net"][k], v)
    assert graphs_equal(load_graph(out / "arch.yaml"), load_graph(full / "arch.yaml"))
    # the epoch-by-epoch record of the resumed run is the uninterrupted run's: no epoch twice, none lost
    assert (out / "history.jsonl").read_text() == (full / "history.jsonl").read_text()
    for k, v in torch.load(full / "checkpoint.pt", weights_only=False)["net"].items():
        if k.startswith("arch."):
            assert torch.equal(state["net"][k], v), k


def test_existing_run_is_not_overwritten_and_bad_resume_is_clear(run, tmp_path, capsys):
    before = (run / "arch.yaml").read_text()
    for resume in (False, True):  # a finished search gets one message, with or without --resume
        assert search(run, resume=resume) == 2
        err = capsys.readouterr().err
        assert "finished search" in err and "new --out" in err and "pass --resume" not in err
    assert (run / "arch.yaml").read_text() == before
    assert search(tmp_path / "nothing", resume=True) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_corrupt_checkpoint_is_reported(tmp_path, capsys):
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (out / "config.yaml").write_text("{}\n")
    assert main(["search", "--out", str(out), "--no-progress", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt" in err and "corrupt" in err


def test_report_is_self_contained(run):
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "<svg" in page or "missing" in page
    assert "space:" in page  # the config
    assert "<th>parameters</th>" in page and "<th>FLOPs</th>" in page
    assert "<th>last epoch</th><td>2</td>" in page  # epochs counted from 1, as on the console (2 epochs)
    assert "<th>lr</th>" not in page  # a summary, not a dump of the last log line
    assert (run / "curves.png").is_file() and (run / "curves.svg").is_file()


def test_report_shows_the_search_epoch_by_epoch(run):
    """history.jsonl holds the start and every epoch; the report has a slider over their pictures."""
    from archgraph.outputs.render import graphviz_available
    from archgraph.outputs.watch import read_history

    history = read_history(run)
    assert [(r["stage"], r["epoch"]) for r in history] == [(0, -1), (0, 0), (0, 1)]
    scores = json.loads((run / "scores.json").read_text())
    assert history[-1]["ops"] == scores["ops"] and history[-1]["inputs"] == scores["inputs"]
    assert history[0]["ops"] != history[-1]["ops"]  # alpha moved between the start and the end
    arch = load_graph(run / "arch.yaml")
    assert set(history[-1]["decisions"]) == {n for n in arch.nodes if arch.nodes[n]["kind"] == "fusion"}
    assert main(["report", str(run), "--frames", "2"]) == 0
    page = (run / "report.html").read_text()
    assert "The search, epoch by epoch" in page and 'id="watch-slider"' in page and 'max="1"' in page
    frames = page.split('class="watch-frame"')[1:]
    assert [f.split('data-label="')[1].split('"')[0] for f in frames] == ["start", "epoch 2"]
    if graphviz_available():
        assert all("<svg" in f.split("</table>")[0] for f in frames)
    assert "when the topology was decided" in page
    with pytest.raises(SystemExit):  # at least one picture
        main(["report", str(run), "--frames", "0"])
