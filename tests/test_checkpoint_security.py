"""Opening a shared run folder never runs code from it: checkpoints hold only tensors and plain
containers and are read with ``weights_only=True`` (archgraph/engine/checkpoint.py)."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
import shutil

import numpy as np
import pytest
import torch

from archgraph.cli import main
from archgraph.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from archgraph.errors import CheckpointError
from helpers import search_run, trained_run


class Payload:
    """Unpickling this creates ``path``: the stand-in for any code a crafted checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class Box:
    """An ordinary object: harmless, yet nothing a weights_only load builds."""


def crafted(marker, how: str) -> bytes:
    """A checkpoint-looking file whose unpickling creates ``marker``: a torch.save zip archive,
    torch's legacy format, or a raw pickle."""
    state = {"kind": "archgraph-train", "version": 1, "version_": 2, "finished_epoch": True, "net": {}, "payload": Payload(marker)}
    if how == "raw":
        return pickle.dumps(state)
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=how == "zip")
    return buffer.getvalue()


def plant(path, data: bytes, with_index: bool) -> None:
    """Replace ``path`` (and its spare) by ``data``; with a matching SHA-256 index when asked, since
    whoever ships a checkpoint can ship its index too."""
    path.write_bytes(data)
    path.with_name(path.stem + ".prev" + path.suffix).unlink(missing_ok=True)
    index = path.with_name(path.name + ".sha256.json")
    index.unlink(missing_ok=True)
    if with_index:
        index.write_text(json.dumps({"sha256": [hashlib.sha256(data).hexdigest()]}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    return trained_run(root / "trained"), search_run(root / "search")


def test_the_payload_is_live_when_loaded_unsafely(tmp_path):
    """The test's payload really runs under weights_only=False, so its absence below means something."""
    marker = tmp_path / "ran"
    torch.load(io.BytesIO(crafted(marker, "zip")), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("with_index", [False, True], ids=["no-index", "matching-index"])
@pytest.mark.parametrize("how", ["zip", "legacy", "raw"])
def test_a_crafted_checkpoint_runs_nothing(runs, tmp_path, capsys, how, with_index):
    trained, searched = runs
    marker = tmp_path / "pwned"
    data = crafted(marker, how)

    shared = tmp_path / "shared-train"  # a trained run someone sent: evaluate, export
    shutil.copytree(trained, shared)
    plant(shared / "best.pt", data, with_index)
    calls = [["evaluate", str(shared), "--no-progress"], ["export", str(shared), "-o", str(tmp_path / "m.pt2")]]

    unfinished = tmp_path / "unfinished-train"  # an unfinished training: --resume reads last.pt
    shutil.copytree(trained, unfinished)
    (unfinished / "metrics.json").unlink()
    plant(unfinished / "last.pt", data, with_index)
    calls.append(["train", "--resume", "--out", str(unfinished), "--no-progress"])

    search = tmp_path / "unfinished-search"  # an unfinished search: --resume reads checkpoint.pt
    shutil.copytree(searched, search)
    (search / "final.json").unlink()
    plant(search / "checkpoint.pt", data, with_index)
    calls.append(["search", "--out", str(search), "--resume", "--no-progress"])

    for argv in calls:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert ".pt" in err and "tensors and plain containers" in err, err
        assert not marker.exists(), argv
    assert not (tmp_path / "m.pt2").exists()


def test_the_refusal_names_the_file_and_what_to_do(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(crafted(tmp_path / "pwned", "zip"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "io.open" in msg  # the file, and what it would have called
    assert "tensors and plain containers" in msg and "start the run again in a new folder" in msg
    assert not (tmp_path / "pwned").exists()


def test_real_checkpoints_open_with_plain_weights_only_loading(runs):
    trained, searched = runs
    for path in (trained / "best.pt", trained / "last.pt", searched / "checkpoint.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == [], path
        state = torch.load(path, weights_only=True)  # what anyone can do without archgraph
        assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


def test_saving_refuses_what_could_not_be_opened_safely(tmp_path):
    path = tmp_path / "c.pt"
    with pytest.raises(TypeError, match=r"state\.extra\.table is a NumPy array"):
        save_checkpoint(path, {"extra": {"table": np.zeros(3)}})
    with pytest.raises(TypeError, match="Box"):
        save_checkpoint(path, {"extra": Box()})
    assert not path.exists()
    save_checkpoint(path, {"loss": np.float64(0.5), "step": np.int64(3), "flags": [np.bool_(True)]})  # NumPy scalars: plain numbers
    state = load_checkpoint(path)
    assert state == {"loss": 0.5, "step": 3, "flags": [True]} and type(state["step"]) is int


def test_rng_states_round_trip_bit_identically_through_a_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # NumPy's cached Gaussian is part of the state
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


def test_checkpoints_of_earlier_versions_still_open_but_object_arrays_do_not(tmp_path):
    """Earlier archgraph versions stored NumPy's RNG state as a uint32 array: that one dtype is allowed."""
    legacy = {"rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}
    path = tmp_path / "old.pt"
    torch.save(legacy, path)
    state = load_checkpoint(path)
    set_rng_state(state["rng"])
    assert np.random.rand() == (np.random.set_state(legacy["rng"]["numpy"]) or np.random.rand())
    torch.save({"a": np.array([Payload(tmp_path / "pwned")], dtype=object)}, path)
    with pytest.raises(CheckpointError, match="tensors and plain containers"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
