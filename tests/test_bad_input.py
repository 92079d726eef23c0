"""Bad input a new user tries, each through the CLI as typed (docs/reliability.md has the table).

Every case ends in one line, ``error: <problem>; <fix>`` (no traceback), or in a warning that names
the fix; nothing the user had is lost or changed; and the fix the message suggests is typed here
and works (:func:`typed` runs the commands a message names).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archgraph import build_space, save_graph
from archgraph.cli import main
from archgraph.core.decode import sample_architecture
from archgraph.outputs import render as render_module
from helpers import TINY_SEARCH, TINY_TRAIN, search_run, trained_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished tiny training (best.pt, last.pt, metrics.json) and a finished tiny search."""
    root = tmp_path_factory.mktemp("bad-input")
    return trained_run(root / "trained"), search_run(root / "search")


def copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def fails(capsys, argv: list[str]) -> str:
    """Run ``archgraph ARGV``; it must fail with exit status 2 and one line ``error: ...`` (returned
    without the prefix) on stderr, and no traceback."""
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0][len("error: ") :]


def commands(message: str) -> list[list[str]]:
    """The ``archgraph ...`` commands a message suggests (in backticks, with arguments: a bare
    `archgraph train` only names the command), as argument lists."""
    found = [shlex.split(c)[1:] for c in re.findall(r"`(archgraph [^`]+)`", message)]
    return [argv for argv in found if len(argv) > 1]


def typed(message: str) -> None:
    """Type every command the message suggests: each must succeed."""
    found = commands(message)
    assert found, message
    for argv in found:
        extra = ["--no-progress"] if argv[0] in ("search", "train", "evaluate") else []
        assert main(argv + extra) == 0, argv


def suggested_path(message: str, flag: str) -> str:
    """The path of ``e.g. FLAG PATH`` in a message."""
    match = re.search(rf"e\.g\. {re.escape(flag)} (\S+?)[;,.)]?(?:\s|$)", message)
    assert match, message
    return match.group(1)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_arch(path: Path, classes: int = 5) -> Path:
    save_graph(sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": classes}), 0), path)
    return path


# ---- tracebacks before: binary files, --out naming a file, folders that cannot be written ------------


def test_a_binary_file_given_as_the_architecture_is_named(runs, tmp_path, capsys):
    trained, searched = runs
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 512, dtype=np.uint8)))  # not UTF-8
    zeros = tmp_path / "zeros.yaml"
    zeros.write_bytes(b"nodes: []\n\0\0\0")
    for bad in (trained / "best.pt", noise, zeros):
        out = tmp_path / f"train-{bad.name}"
        message = fails(capsys, ["train", str(bad), "--out", str(out), "--no-progress", "--set", *TINY_TRAIN])
        assert str(bad) in message and "not a graph YAML" in message and "arch.yaml" in message
        assert not out.exists()
        assert "not a graph YAML" in fails(capsys, ["render", str(bad), "-o", str(tmp_path / "x.svg")])
    assert "is a checkpoint or other zip archive" in fails(capsys, ["render", str(trained / "last.pt"), "-o", str(tmp_path / "x.svg")])
    # the fix: an arch.yaml, or the run folder holding it
    assert main(["render", str(searched), "-o", str(tmp_path / "arch.svg")]) == 0
    assert main(["train", str(searched), "--out", str(tmp_path / "t"), "--no-progress", "--set", *TINY_TRAIN]) == 0
    # a binary file as the search's config
    message = fails(capsys, ["search", str(trained / "best.pt"), "--out", str(tmp_path / "s")])
    assert "binary file, not a YAML config" in message and not (tmp_path / "s").exists()
    assert main(["config"]) == 0  # the fix: `archgraph config > config.yaml`
    (tmp_path / "config.yaml").write_text(capsys.readouterr().out)
    assert main(["config", str(tmp_path / "config.yaml")]) == 0


def test_out_naming_an_existing_file_is_refused_and_the_file_kept(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    arch = write_arch(tmp_path / "arch.yaml")
    cases = [
        ["search", "--out", str(notes), "--no-progress", "--set", *TINY_SEARCH],
        ["train", str(arch), "--out", str(notes), "--no-progress", "--set", *TINY_TRAIN],
        ["compare", "--strategies", "dcnas", "--baselines", "none", "--out", str(notes), "--no-progress", "--set", *TINY_SEARCH],
    ]
    for argv in cases:
        message = fails(capsys, argv)
        assert f"--out {notes} is a file, not a folder" in message, message
        assert notes.read_text() == "keep me\n"
    fix = suggested_path(message, "--out")
    assert fix == str(tmp_path / "notes-run")
    assert main(["search", "--out", fix, "--no-progress", "--set", *TINY_SEARCH]) == 0  # the fix, typed
    # a file where a folder of the path should be
    for argv in (["search", "--out", str(notes / "run"), "--no-progress"], ["render", str(arch), "-o", str(notes / "x.svg")]):
        message = fails(capsys, argv)
        assert f"{notes} is a file, not a folder" in message
    assert main(["render", str(arch), "-o", suggested_path(message, "-o")]) == 0
    assert notes.read_text() == "keep me\n"


CHILD = """
import contextlib, io, json, sys
from archgraph.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    results.append([rc, err.getvalue()])
print(json.dumps(results))
"""


def _obey_file_modes() -> None:
    """In the child, before exec: root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from
    the bounding set, so the exec'd interpreter never has them) is refused by file modes like anyone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_output_folders_that_cannot_be_written_are_named_before_any_work(runs, tmp_path):
    """A folder this user cannot write (mode 0555; root runs without its permission override)."""
    trained, searched = runs
    work = tmp_path / "work"
    work.mkdir()
    locked = tmp_path / "locked"
    copy(searched, locked / "search")
    arch = shutil.copy(searched / "arch.yaml", tmp_path / "arch.yaml")
    for p in [locked, *locked.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    before = snapshot(locked)

    def run(batch):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(batch)],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            preexec_fn=_obey_file_modes if os.geteuid() == 0 else None,
        )
        if done.returncode != 0 and "PR_CAPBSET_DROP" in done.stderr:
            pytest.skip("cannot drop root's permission override here")
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    try:
        results = run(
            [
                ["render", str(arch), "-o", str(locked / "probe.svg")],
                ["search", "--out", str(locked / "new"), "--no-progress", "--set", *TINY_SEARCH],
                ["train", str(arch), "--out", str(locked / "new"), "--no-progress", "--set", *TINY_TRAIN],
                ["report", str(locked / "search")],
                ["render", str(arch), "-o", str(locked / "arch.svg")],
            ]
        )
        if results.pop(0)[0] == 0:
            pytest.skip("this user can write a mode-0555 folder here")
        fixes = []
        for (rc, err), flag in zip(results, ("--out", "--out", "-o", "-o")):
            lines = err.strip().splitlines()
            assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
            assert "cannot be written" in err and "not writable" in err and str(locked) in err, err
            fixes.append(suggested_path(err, flag))
        assert snapshot(locked) == before  # nothing written, nothing lost
        results = run(
            [  # the fixes, typed
                ["search", "--out", fixes[0], "--no-progress", "--set", *TINY_SEARCH],
                ["report", str(locked / "search"), "-o", fixes[2]],
                ["render", str(arch), "-o", fixes[3]],
            ]
        )
        assert [rc for rc, _ in results] == [0, 0, 0], results
        assert (work / fixes[0] / "final.json").is_file() and (work / fixes[2]).is_file()
        assert snapshot(locked) == before
    finally:
        for p in [locked, *locked.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


# ---- silently wrong before: export format, unfinished searches, pictures, crops ----------------------


def test_export_takes_the_format_from_the_suffix_and_refuses_a_mismatch(runs, tmp_path, capsys):
    import importlib.util

    trained, _ = runs
    onnx = tmp_path / "model.onnx"
    if importlib.util.find_spec("onnx") is None:  # the suffix asks for ONNX: never a torch.export archive under it
        assert "pip install archgraph[onnx]" in fails(capsys, ["export", str(trained), "-o", str(onnx)]) and not onnx.exists()
    else:
        assert main(["export", str(trained), "-o", str(onnx)]) == 0
        assert onnx.read_bytes()[:2] != b"PK"  # torch.export archives are zip files; ONNX is protobuf
    message = fails(capsys, ["export", str(trained), "-o", str(onnx), "--format", "pt2"])
    assert "names a .onnx file but --format pt2" in message and not onnx.exists() or onnx.read_bytes()[:2] != b"PK"
    fix = suggested_path(message.replace("write -o", "e.g. -o"), "-o")
    assert main(["export", str(trained), "-o", fix, "--format", "pt2"]) == 0
    assert Path(fix).read_bytes()[:2] == b"PK" and fix.endswith(".pt2")
    message = fails(capsys, ["export", str(trained), "-o", str(tmp_path / "model.bin")])
    assert "names no export format" in message and str(tmp_path / "model.pt2") in message
    assert not (tmp_path / "model.bin").exists()


def test_report_says_when_a_search_is_unfinished(tmp_path, capsys, monkeypatch):
    import archgraph.engine.search as engine
    from archgraph.engine.checkpoint import save_checkpoint

    def stop_after_first_epoch(path, state):
        save_checkpoint(path, state)
        if state.get("epoch") == 0 and state.get("finished_epoch"):
            raise KeyboardInterrupt

    out = tmp_path / "half"
    monkeypatch.setattr(engine, "save_checkpoint", stop_after_first_epoch)
    assert main(["search", "--out", str(out), "--no-progress", "--set", *TINY_SEARCH]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {out} is an unfinished search (1 of 2 epochs done)" in err
    page = (out / "report.html").read_text()
    assert "unfinished: 1 of 2 epochs done" in page and "(unfinished)</title>" in page
    assert "<svg" in page if render_module.graphviz_available() else "cannot be drawn" in page  # drawn from arch.yaml now
    typed(err)  # `archgraph search --out HALF --resume`
    assert main(["report", str(out)]) == 0
    assert "unfinished" not in capsys.readouterr().err and "finished (2 epochs)" in (out / "report.html").read_text()


def test_report_draws_the_pictures_a_search_without_graphviz_could_not(tmp_path, capsys, monkeypatch):
    """Why report kept saying Graphviz was missing: it only embedded the search's arch.svg and
    supernet.svg, which a search without Graphviz never wrote. It now draws them from the run's graphs."""
    monkeypatch.setattr(render_module, "_graphviz_warned", False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # the search ran before Graphviz was installed
    out = search_run(tmp_path / "run")
    assert {p.name for p in out.glob("*.dot")} == {"arch.dot", "supernet.dot"} and not list(out.glob("*.svg"))
    assert capsys.readouterr().err.count("Graphviz is not installed") == 1  # once, however many pictures
    monkeypatch.undo()  # Graphviz "installed": the machine's PATH again
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    frames = page.count('class="watch-frame"')  # the epoch-by-epoch view: start + 2 epochs
    assert frames == 3
    if render_module.graphviz_available():
        assert page.count("<svg") == 2 + frames and "cannot be drawn" not in page
    else:
        assert page.count("cannot be drawn") == 2 and "apt-get install graphviz" in page


# ---- datasets: labels checked before training, crops larger than the images -------------------------


@pytest.fixture()
def camvid(tmp_path: Path) -> Path:
    """CamVid's layout with 32x32 images: 4 training and 2 validation samples, labels 0..10 and void 11."""
    root = tmp_path / "camvid"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        lines = []
        for i in range(n):
            name = f"0001TP_{i:06d}.png"
            for folder, arr in ((split, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), (f"{split}annot", rng.integers(0, 12, (32, 32), dtype=np.uint8))):
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / folder / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def camvid_set(root: Path, crop: int = 32) -> list[str]:
    return [
        "data.name=camvid",
        f"data.root={root}",
        f"data.crop=[{crop},{crop}]",
        "data.batch_size=2",
        "train.epochs=1",
        "train.steps_per_epoch=1",
        "search.epochs=1",
        "search.steps_per_epoch=1",
        "search.bn_recalib_batches=1",
        "space.layers=2",
        "space.base_channels=4",
    ]


def test_a_bad_validation_label_stops_before_the_first_step(camvid, tmp_path, capsys):
    bad = camvid / "valannot" / "0001TP_000001.png"
    Image.fromarray(np.full((32, 32), 40, dtype=np.uint8)).save(bad)
    arch = write_arch(tmp_path / "arch.yaml", classes=11)
    for argv, out in ((["train", str(arch)], tmp_path / "t"), (["search"], tmp_path / "s")):
        message = fails(capsys, [*argv, "--out", str(out), "--no-progress", "--set", *camvid_set(camvid)])
        assert str(bad) in message and "[40]" in message and "0..11" in message and "11 classes" in message
        for written in ("train.jsonl", "last.pt", "search.jsonl", "checkpoint.pt"):  # nothing was trained
            assert not (out / written).exists()


def test_large_splits_check_labels_spread_over_the_split(camvid, monkeypatch):
    from archgraph.data import DatasetError, build_dataset
    from archgraph.data.base import SegmentationDataset

    monkeypatch.setattr(SegmentationDataset, "LABEL_CHECK_ALL", 2)
    monkeypatch.setattr(SegmentationDataset, "LABEL_CHECK_SPREAD", 2)  # of 4: the first and the last
    ds = build_dataset("camvid", "train", root=camvid)
    middle = camvid / "trainannot" / "0001TP_000001.png"
    Image.fromarray(np.full((32, 32), 40, dtype=np.uint8)).save(middle)
    assert len(ds.check_labels()) == 2  # not checked up front: found by name when read
    with pytest.raises(DatasetError, match=re.escape(str(middle))):
        ds[1]
    last = camvid / "trainannot" / "0001TP_000003.png"
    Image.fromarray(np.full((32, 32), 40, dtype=np.uint8)).save(last)
    with pytest.raises(DatasetError, match=re.escape(str(last))):
        ds.check_labels()


def test_a_crop_larger_than_the_images_is_warned_about_with_the_fix(camvid, tmp_path, capsys):
    arch = write_arch(tmp_path / "arch.yaml", classes=11)
    assert main(["train", str(arch), "--out", str(tmp_path / "big"), "--no-progress", "--set", *camvid_set(camvid, 64)]) == 0
    err = capsys.readouterr().err
    assert "warning: data.crop=[64, 64] is larger than the camvid train images (32x32" in err
    assert "lower data.crop to at most [32, 32]" in err
    assert main(["train", str(arch), "--out", str(tmp_path / "fits"), "--no-progress", "--set", *camvid_set(camvid, 32)]) == 0
    assert "data.crop" not in capsys.readouterr().err


# ---- fixes that did not work: finished runs, the wrong kind of folder, a corrupt best.pt -------------


def test_a_finished_training_gets_one_message_and_its_fixes_work(runs, tmp_path, capsys):
    trained, _ = runs
    run = copy(trained, tmp_path / "run")
    before = snapshot(run)
    arch = write_arch(tmp_path / "arch.yaml")
    messages = []
    for argv in (["train", str(arch), "--out", str(run)], ["train", "--resume", "--out", str(run)]):
        messages.append(fails(capsys, [*argv, "--no-progress"]))
    assert messages[0] == messages[1] and "finished training run" in messages[0] and "pass --resume" not in messages[0]
    assert snapshot(run) == before
    typed(messages[0])  # `archgraph evaluate RUN`
    fix = suggested_path(messages[0], "--out")
    assert main(["train", str(arch), "--out", fix, "--no-progress", "--set", *TINY_TRAIN]) == 0


def test_the_wrong_kind_of_folder_gets_a_command_that_writes_elsewhere(runs, tmp_path, capsys):
    trained, searched = runs
    search = copy(searched, tmp_path / "search")
    before = snapshot(search)
    message = fails(capsys, ["evaluate", str(search), "--no-progress"])
    assert "is a search run folder" in message and f"--out {search}-train" in message
    typed(message)  # train into search-train, then evaluate it
    assert snapshot(search) == before and (tmp_path / "search-train" / "metrics.json").is_file()
    message = fails(capsys, ["export", str(search), "-o", str(tmp_path / "m.pt2")])
    assert f"--out {search}-train-2" in message and f"archgraph export {search}-train-2 -o {tmp_path / 'm.pt2'}" in message
    assert snapshot(search) == before

    trained_copy = copy(trained, tmp_path / "trained")
    message = fails(capsys, ["report", str(trained_copy)])
    assert "is a training run folder" in message and f"`archgraph evaluate {trained_copy}`" in message
    typed(message)

    study = tmp_path / "cmp"  # a comparison folder, as `archgraph compare` lays it out
    copy(searched, study / "runs" / "dcnas" / "seed0" / "search")
    copy(trained, study / "runs" / "preset-fcn" / "seed0")
    (study / "compare.json").write_text("{}")
    for argv in (["report", str(study)], ["evaluate", str(study), "--no-progress"]):
        message = fails(capsys, argv)
        assert "is a comparison folder" in message
        typed(message)


def test_a_corrupt_best_checkpoint_points_to_the_intact_last_one(runs, tmp_path, capsys):
    trained, _ = runs
    run = copy(trained, tmp_path / "run")
    for name in ("best.pt", "best.prev.pt"):
        if (run / name).exists():
            (run / name).write_bytes((run / name).read_bytes()[:200])  # truncated
    message = fails(capsys, ["evaluate", str(run), "--no-progress"])
    assert f"{run / 'best.pt'} cannot be used" in message and "start it again" not in message
    assert f"`archgraph evaluate {run} --checkpoint last.pt`" in message
    typed(message)
    model = tmp_path / "m.pt2"
    message = fails(capsys, ["export", str(run), "-o", str(model)])
    typed(message)  # archgraph export RUN -o m.pt2 --checkpoint last.pt
    assert model.read_bytes()[:2] == b"PK"
    (run / "last.pt").write_bytes(b"")  # both unusable: no false hope
    (run / "last.prev.pt").unlink(missing_ok=True)
    assert "--checkpoint last.pt`" not in fails(capsys, ["evaluate", str(run), "--no-progress"])


def test_a_full_disk_or_a_refused_write_mid_command_is_one_line(tmp_path, capsys, monkeypatch):
    """The last net (archgraph/cli.py): an OSError the user can fix, raised anywhere, is one line."""
    import errno

    import archgraph.outputs.render as render

    arch = write_arch(tmp_path / "arch.yaml")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.svg"))

    monkeypatch.setattr(render, "render", full)
    message = fails(capsys, ["render", str(arch), "-o", str(tmp_path / "x.svg")])
    assert message.startswith(f"{tmp_path / 'x.svg'}: No space left on device; the disk is full")


# ---- issue 29: evaluation results are never silently replaced; a broken best.pt is never stood in for ---


def test_evaluations_with_other_settings_sit_side_by_side_and_are_not_replaced_without_force(runs, tmp_path, capsys):
    trained, _ = runs
    run = copy(trained, tmp_path / "run")
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    plain = json.loads((run / "eval-synthetic-val.json").read_text())
    assert main(["evaluate", str(run), "--no-progress", "--set", "train.multi_scale_eval=[0.5,1.0]", "train.flip_eval=true"]) == 0
    both = json.loads((run / "eval-synthetic-val-s0.5_1-flip.json").read_text())
    assert both["eval_scales"] == [0.5, 1.0] and both["eval_flip"] is True
    assert json.loads((run / "eval-synthetic-val.json").read_text()) == plain  # the first one is untouched
    # the same file asked for other settings (here with -o): refused, naming what differs and both ways on
    target = tmp_path / "e.json"
    assert main(["evaluate", str(run), "--no-progress", "-o", str(target)]) == 0
    message = fails(capsys, ["evaluate", str(run), "--no-progress", "-o", str(target), "--set", "train.flip_eval=true"])
    assert "other settings (eval_flip)" in message and "--force" in message and "-o FILE" in message
    assert json.loads(target.read_text())["eval_flip"] is False
    assert main(["evaluate", str(run), "--no-progress", "-o", str(target), "--set", "train.flip_eval=true", "--force"]) == 0
    assert json.loads(target.read_text())["eval_flip"] is True


def test_a_corrupt_best_checkpoint_is_never_replaced_silently_by_its_previous_copy(runs, tmp_path, capsys):
    trained, _ = runs
    run = copy(trained, tmp_path / "run")
    shutil.copyfile(run / "best.pt", run / "best.prev.pt")  # an intact previous best, listed in the SHA-256 index
    (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:300])
    for argv in (["evaluate", str(run), "--no-progress"], ["export", str(run), "-o", str(tmp_path / "m.pt2")]):
        message = fails(capsys, argv)
        assert f"{run / 'best.pt'} cannot be used" in message and "resuming" not in message, message
        assert "--checkpoint best.prev.pt` uses best.prev.pt (the previous best" in message
        assert "--checkpoint last.pt` uses last.pt" in message
    assert not list(run.glob("eval-*.json")) and not (tmp_path / "m.pt2").exists()
    message = fails(capsys, ["evaluate", str(run), "--no-progress"])
    capsys.readouterr()
    typed(message)  # both suggestions work when typed
    result = json.loads((run / "eval-synthetic-val-best-prev.json").read_text())
    assert result["checkpoint"] == "best.prev.pt"  # the result names the file it came from
    assert main(["export", str(run), "-o", str(tmp_path / "m.pt2"), "--checkpoint", "best.prev.pt"]) == 0
    assert json.loads((tmp_path / "m.pt2.json").read_text())["checkpoint"].endswith("best.prev.pt")
    assert "warning" not in capsys.readouterr().err


# ---- issue 29: values checked against what can work ---------------------------------------------------


def test_crops_below_the_networks_stride_and_absurd_epoch_counts_are_refused_with_the_bound(tmp_path, capsys):
    arch = write_arch(tmp_path / "arch.yaml")
    for argv in (["search", "--out", str(tmp_path / "s"), "--set", *TINY_SEARCH, "data.crop=[1,1]"], ["train", str(arch), "--out", str(tmp_path / "t"), "--set", *TINY_TRAIN, "data.crop=[16,64]"]):
        message = fails(capsys, argv)
        assert "smaller than the total stride 32" in message and "the smallest crop that works is [32,32]" in message, message
    # a crop of the stride itself is fine with two images, but one leaves BN a single value per channel
    for argv in (["search", "--out", str(tmp_path / "s"), "--set", *TINY_SEARCH, "data.batch_size=1"], ["train", str(arch), "--out", str(tmp_path / "t"), "--set", *TINY_TRAIN, "data.batch_size=1"]):
        message = fails(capsys, argv)
        assert "data.crop=[32,32]" in message and "one value per channel" in message, message
        assert "data.batch_size to 2" in message and "data.crop=[64,64]" in message, message  # both ways out
    for key in ("search.epochs", "train.epochs"):
        message = fails(capsys, ["search", "--out", str(tmp_path / "s"), "--set", f"{key}=1000000000"])
        assert key in message and "allowed: [1, 100000]" in message
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()


def test_a_one_pixel_flipped_crop_normalises_and_a_long_run_says_how_long():
    from archgraph.data.transforms import normalize, to_label
    from archgraph.engine.loop import long_run_note

    image = np.arange(3, dtype=np.uint8).reshape(1, 1, 3)[:, ::-1]  # a flipped 1x1 view: negative stride
    assert normalize(image).shape == (3, 1, 1) and to_label(np.zeros((1, 1), np.uint8)[:, ::-1]).shape == (1, 1)
    assert long_run_note(5, 10.0, "cmd") is None  # under half an hour: nothing to say
    note = long_run_note(999_999, 3.0, "archgraph search --out r --resume")
    assert "999999 more epochs" in note and "days" in note and "`archgraph search --out r --resume`" in note


# ---- a command's --out holding another command's run ---------------------------------------------------


def test_search_train_and_compare_refuse_a_folder_another_command_wrote(tmp_path, capsys):
    """``archgraph train runs/demo --out runs/demo`` is an easy slip: it would have overwritten the
    search's config.yaml and arch.yaml, and select/score/train --resume would then read a config
    that does not belong to the checkpoint beside it."""
    arch = write_arch(tmp_path / "arch.yaml")
    searched, trained = tmp_path / "searched", tmp_path / "trained"
    searched.mkdir()
    trained.mkdir()
    (searched / "final.json").write_text("{}")
    (searched / "config.yaml").write_text("seed: 7\n")
    (trained / "metrics.json").write_text("{}")
    before = {p: p.read_bytes() for p in (*searched.iterdir(), *trained.iterdir())}
    cases = [
        (["train", str(arch), "--out", str(searched), "--set", *TINY_TRAIN], "holds an archgraph search run", f"--out {tmp_path / 'searched-train'}"),
        (["search", "--out", str(trained), "--set", *TINY_SEARCH], "holds an archgraph train run", f"--out {tmp_path / 'trained-search'}"),
        (["compare", "--strategies", "dcnas", "--out", str(searched)], "holds an archgraph search run", f"--out {tmp_path / 'searched-compare'}"),
    ]
    for argv, problem, fix in cases:
        message = fails(capsys, argv)
        assert problem in message and fix in message, message
    assert {p: p.read_bytes() for p in (*searched.iterdir(), *trained.iterdir())} == before  # nothing written


def test_a_damaged_json_file_of_a_run_is_named_not_a_traceback(runs, tmp_path, capsys):
    """final.json cut short (a copy interrupted, a sync, a hand edit): report and select name the file
    and what to do; they ended in a JSONDecodeError traceback."""
    run = copy(runs[1], tmp_path / "run")
    text = (run / "final.json").read_text()
    (run / "final.json").write_text(text[: len(text) // 2])
    for argv in (["report", str(run)], ["select", str(run), "--select", "topk:2:uniform"]):
        message = fails(capsys, argv)
        assert f"{run / 'final.json'} is not valid JSON" in message and "restore it" in message, message
