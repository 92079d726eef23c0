"""The search you can watch: history records, frame choice, settling, and the highlighted picture."""

from __future__ import annotations

from archgraph.core.decode import sample_architecture
from archgraph.core.spaces_api import build_space
from archgraph.outputs.render import HIGHLIGHT_COLOUR, to_dot
from archgraph.outputs.watch import changed_nodes, frame_label, history_record, pick_frames, settling


def _record(stage: int, epoch: int, **choices: tuple[str, list[str]]) -> dict:
    return {"stage": stage, "epoch": epoch, "ops": {}, "inputs": {}, "decisions": {n: {"op": op, "inputs": inputs} for n, (op, inputs) in choices.items()}}


def test_settling_finds_the_first_epoch_of_each_final_decision():
    history = [
        _record(0, -1, a=("mb_k3_e3", ["s"]), b=("mb_k5_e6", ["s"])),
        _record(0, 0, a=("mb_k7_e3", ["s"]), b=("mb_k5_e6", ["s"])),
        _record(0, 1, a=("mb_k3_e3", ["s"]), b=("mb_k5_e6", ["a"])),
        _record(0, 2, a=("mb_k3_e3", ["s"]), b=("mb_k5_e6", ["a"])),
    ]
    s = settling(history)
    assert s.nodes == ["a", "b"]
    assert s.final_from == {"a": 2, "b": 2}  # a went back to its start op at epoch 2; b took input a then
    assert s.unsettled == [1, 2, 0, 0]
    assert s.matrix == [[True, False, True, True], [False, False, True, True]]
    assert s.labels == ["start", "epoch 1", "epoch 2", "epoch 3"]


def test_a_node_that_leaves_the_architecture_counts_as_changed():
    before = {"a": {"op": "x", "inputs": ["s"]}, "gone": {"op": "x", "inputs": ["s"]}}
    after = {"a": {"op": "x", "inputs": ["s"]}, "new": {"op": "y", "inputs": ["a"]}}
    assert changed_nodes(before, after) == ["gone", "new"]
    assert changed_nodes(None, after) == []


def test_frames_are_spread_evenly_and_keep_both_ends():
    assert pick_frames(5, 12) == [0, 1, 2, 3, 4]
    picks = pick_frames(40, 12)
    assert len(picks) == 12 and picks[0] == 0 and picks[-1] == 39
    gaps = [b - a for a, b in zip(picks, picks[1:])]
    assert max(gaps) - min(gaps) <= 1
    assert pick_frames(40, 1) == [39]


def test_frame_labels_count_from_one_and_name_stages():
    assert frame_label({"stage": 0, "epoch": -1}, 1) == "start"
    assert frame_label({"stage": 0, "epoch": 0}, 1) == "epoch 1"
    assert frame_label({"stage": 2, "epoch": 4}, 3) == "stage 3 epoch 5"


def test_history_record_holds_the_derived_decisions():
    space = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
    arch = sample_architecture(space, 0)
    record = history_record(0, 1, ({"n": [0.25, 0.75]}, {}), arch)
    fusion = [n for n in arch.nodes if arch.nodes[n]["kind"] == "fusion"]
    assert sorted(record["decisions"]) == sorted(fusion)
    for n in fusion:
        assert record["decisions"][n] == {"op": arch.nodes[n]["ops"][0], "inputs": sorted(arch.predecessors(n))}
    assert record["ops"] == {"n": [0.25, 0.75]} and record["epoch"] == 1


def test_highlighted_nodes_are_outlined_and_only_they():
    space = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})
    fusion = [n for n in space.nodes if space.nodes[n]["kind"] == "fusion"]
    source = to_dot(space, highlight=[fusion[0]])
    outlined = [line for line in source.splitlines() if HIGHLIGHT_COLOUR in line]
    assert len(outlined) == 1
    assert outlined[0].lstrip().lstrip('"').startswith(fusion[0])
    assert HIGHLIGHT_COLOUR not in to_dot(space)
