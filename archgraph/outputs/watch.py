"""The search you can watch: the architecture parameters of every epoch, and when each decision settled.

During a search the engine appends one line per epoch to ``history.jsonl`` in the run folder
(:func:`history_record`): the epoch's scores (softmax(alpha) / softmax(beta) per choice label, as in
``scores.json``) and the decisions of the architecture derived from them (the op and the kept inputs
of every node the decoder kept). A line with ``"epoch": -1`` holds the state before the first step of
a stage, so the first picture shows the near-uniform start. Strategies with several stages (P-DARTS)
search a different supernet per stage; each stage's graph is saved as ``supernet.stage<k>.yaml``.

From that file, ``archgraph report`` draws the supernet of chosen epochs with the same pinned layout
(nodes never move between frames, so the eye follows edges thickening and fading), outlines the
nodes whose decision changed since the frame before, and plots when each node reached its final
decision (:func:`settling`). Everything is recorded from the graph and the scores the search used;
nothing is recomputed from a strategy afterwards.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import networkx as nx

from archgraph.core.graph import node_spec

HISTORY = "history.jsonl"
DEFAULT_FRAMES = 12  # enough to see the trend; each frame is one supernet picture in the page

Decisions = dict[str, dict[str, Any]]  # node id -> {"op": name, "inputs": [source ids]}


def stage_graph_name(stage: int) -> str:
    """The file a multi-stage search saves stage ``stage``'s supernet graph in."""
    return f"supernet.stage{stage}.yaml"


def decisions(derived: nx.DiGraph, prefix: str = "") -> Decisions:
    """The op and kept inputs of every searchable node of a derived graph (cells: their bodies too,
    as ``<cell>/<node>``), in the graph's node order."""
    out: Decisions = {}
    for n in derived.nodes:
        spec = node_spec(derived, n)
        if spec.kind not in ("fusion", "cell"):
            continue
        key = f"{prefix}{n}"
        out[key] = {"op": spec.ops[0] if spec.kind == "fusion" and spec.ops else spec.kind, "inputs": sorted(derived.predecessors(n))}
        if spec.kind == "cell" and spec.body is not None:
            out.update(decisions(spec.body, f"{key}/"))
    return out


def history_record(stage: int, epoch: int, scores: tuple[Mapping[str, Any], Mapping[str, Any]], derived: nx.DiGraph, label: str | None = None) -> dict[str, Any]:
    """One line of ``history.jsonl``: scores and derived decisions after ``epoch`` (-1: before the first
    step). ``label`` names a state that is no epoch's, such as the pick of SPOS's evolution at the end."""
    ops, inputs = scores
    record = {"stage": int(stage), "epoch": int(epoch), "ops": _plain(ops), "inputs": _plain(inputs), "decisions": decisions(derived)}
    return {**record, "label": label} if label else record


def _plain(value: Any) -> Any:
    """JSON-ready copy of a score mapping (tensors and numpy numbers become floats)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``history.jsonl`` in search order; a line cut by a kill is skipped."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "decisions" in record:
            records.append(record)
    return records


def frame_label(record: Mapping[str, Any], stages: int) -> str:
    """What a person calls the frame: ``start``, ``epoch 3``, ``stage 2 epoch 3`` (counted from 1)."""
    if record.get("label"):
        return str(record["label"])
    stage = f"stage {int(record['stage']) + 1} " if stages > 1 else ""
    epoch = int(record["epoch"])
    return f"{stage}start" if epoch < 0 else f"{stage}epoch {epoch + 1}"


def pick_frames(count: int, most: int = DEFAULT_FRAMES) -> list[int]:
    """Indices of at most ``most`` frames of ``count``, evenly spread, always the first and the last."""
    if count <= most:
        return list(range(count))
    if most < 2:
        return [count - 1]
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def changed_nodes(before: Decisions | None, after: Decisions) -> list[str]:
    """Nodes whose op or kept inputs differ, or that entered or left the derived architecture."""
    if before is None:
        return []
    return [n for n in dict.fromkeys([*before, *after]) if before.get(n) != after.get(n)]


@dataclass(frozen=True)
class Settling:
    """When the decisions stopped changing, per node of the final architecture."""

    labels: list[str]  # frame labels of every record
    nodes: list[str]  # nodes of the final architecture
    final_from: dict[str, int]  # node -> index of the first record from which its decision never changed
    unsettled: list[int]  # per record: final-architecture nodes whose decision then differs from the final one
    matrix: list[list[bool]]  # [node][record]: the decision then equals the final one


def settling(history: Sequence[Mapping[str, Any]]) -> Settling | None:
    """Where and when the topology was decided: for each node of the last record's architecture, the
    first record from which its decision (op and kept inputs) stayed what it ended as."""
    if not history:
        return None
    stages = len({r["stage"] for r in history})
    final = history[-1]["decisions"]
    nodes = list(final)
    matrix = [[r["decisions"].get(n) == final[n] for r in history] for n in nodes]
    final_from = {}
    for n, row in zip(nodes, matrix):
        first = len(row) - 1
        while first > 0 and row[first - 1]:
            first -= 1
        final_from[n] = first
    unsettled = [sum(not row[i] for row in matrix) for i in range(len(history))]
    return Settling([frame_label(r, stages) for r in history], nodes, final_from, unsettled, matrix)


def plot_settling(s: Settling) -> tuple[bytes, bytes]:
    """(PNG, SVG): how many nodes still differ from their final decision, and the node-by-epoch map."""
    from archgraph.outputs.plots import figure_bytes, pyplot

    plt = pyplot()
    rows = len(s.nodes)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 2.4 + min(0.16 * rows, 9.0)), sharex=True, gridspec_kw={"height_ratios": [1, max(1.5, min(rows / 8, 6))]})
    xs = list(range(len(s.labels)))
    top.plot(xs, s.unsettled, marker="o", markersize=3)
    top.set_ylabel("nodes not yet\nat final choice", fontsize=8)
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    top.set_title("When the topology was decided (final architecture's nodes)", fontsize=10)
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator

    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.imshow([[1.0 if v else 0.0 for v in row] for row in s.matrix], aspect="auto", cmap=ListedColormap(["#e8e8e8", "#1f4e9a"]), vmin=0.0, vmax=1.0, interpolation="nearest")
    bottom.set_yticks(range(rows))
    bottom.set_yticklabels(s.nodes, fontsize=max(4, min(8, 220 // max(rows, 1))))
    step = max(1, len(xs) // 12)
    bottom.set_xticks(xs[::step])
    bottom.set_xticklabels(s.labels[::step], rotation=30, ha="right", fontsize=7)
    bottom.set_xlabel("blue: the node's op and kept inputs are already those it ends with; grey: not yet")
    fig.tight_layout()
    return figure_bytes(fig)


# ------------------------------------------------------------------------------------------------ the HTML


FIGURES = (  # (search.jsonl key, label) shown beside each frame
    ("loss", "weight loss"),
    ("arch_loss", "arch loss"),
    ("s_miou", "S-mIoU"),
    ("tau", "tau"),
    ("entropy_alpha", "H(alpha)"),
    ("entropy_beta", "H(beta)"),
    ("margin_alpha", "margin alpha"),
    ("margin_beta", "margin beta"),
    ("changed_ops", "op decisions changed"),
    ("changed_inputs", "input decisions changed"),
)

SCRIPT = """<script>
(function () {
  var slider = document.getElementById("watch-slider"), label = document.getElementById("watch-label");
  var frames = document.querySelectorAll(".watch-frame"), play = document.getElementById("watch-play"), timer = null;
  function show(i) {
    frames.forEach(function (f, j) { f.hidden = j !== i; });
    label.textContent = frames[i].dataset.label + " (" + (i + 1) + " of " + frames.length + ")";
  }
  slider.addEventListener("input", function () { show(+slider.value); });
  play.addEventListener("click", function () {
    if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
    play.textContent = "pause";
    if (+slider.value === frames.length - 1) { slider.value = 0; show(0); }
    timer = setInterval(function () {
      if (+slider.value >= frames.length - 1) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
      slider.value = +slider.value + 1; show(+slider.value);
    }, 900);
  });
  show(+slider.value);
})();
</script>"""


def _figures_table(record: Mapping[str, Any] | None, changed: list[str]) -> str:
    rows = []
    for key, label in FIGURES:
        v = (record or {}).get(key)
        if v is not None:
            rows.append(f"<tr><th>{label}</th><td>{v:.4g}</td></tr>" if isinstance(v, float) else f"<tr><th>{label}</th><td>{v}</td></tr>")
    what = ", ".join(html.escape(n) for n in changed) if changed else "none"
    rows.append(f'<tr><th>nodes changed since the previous frame<br>(outlined red)</th><td class="changed">{what}</td></tr>')
    return f"<table>{''.join(rows)}</table>"


def _frame_picture(graph: nx.DiGraph, record: Mapping[str, Any], changed: list[str], title: str) -> str | None:
    from archgraph.outputs.render import picture

    data = picture(graph, "svg", scores={"ops": record["ops"], "inputs": record["inputs"]}, title=title, highlight=[n for n in changed if n in graph])
    if data is None:
        return None
    svg = data.decode(errors="replace")
    return svg[svg.find("<svg") :]


def watch_section(run_dir: Path, log: Sequence[Mapping[str, Any]], most: int = DEFAULT_FRAMES) -> str:
    """The report's epoch-by-epoch view: a slider over supernet pictures of chosen epochs, each beside
    that epoch's figures, and the settling plot. Empty when the run recorded no history."""
    from archgraph.core.graph import load

    history = read_history(run_dir)
    if not history:
        return ""
    stages = len({r["stage"] for r in history})
    by_epoch = {(int(r.get("stage", 0)), int(r.get("epoch", 0))): r for r in log}
    graphs: dict[int, nx.DiGraph] = {}
    frames, missing_dot = [], False
    picks = pick_frames(len(history), most)
    for position, i in enumerate(picks):
        record = history[i]
        stage = int(record["stage"])
        if stage not in graphs:
            path = run_dir / (stage_graph_name(stage) if stages > 1 else "supernet.yaml")
            graphs[stage] = load(path) if path.is_file() else load(run_dir / "supernet.yaml")
        before = history[picks[position - 1]]["decisions"] if position else None
        changed = changed_nodes(before, record["decisions"])
        label = frame_label(record, stages)
        svg = _frame_picture(graphs[stage], record, changed, f"supernet after {label}" if record["epoch"] >= 0 else f"supernet at the {label}")
        missing_dot = missing_dot or svg is None
        pic = f'<div class="pic">{svg}</div>' if svg else "<p><em>(Graphviz is not installed: no picture)</em></p>"
        hidden = "" if position == len(picks) - 1 else " hidden"
        frames.append(
            f'<div class="watch-frame" data-label="{html.escape(label)}"{hidden}><div class="watch-grid">{pic}{_figures_table(by_epoch.get((stage, int(record["epoch"]))), changed)}</div></div>'
        )
    settled = settling(history)
    import base64

    png, _ = plot_settling(settled)
    note = "" if len(picks) == len(history) else f" ({len(picks)} of {len(history)} recorded states, evenly spread; <code>archgraph report --frames N</code> shows more)"
    hint = "<p><em>Install Graphviz to see the supernet of each frame; the plot below needs nothing.</em></p>" if missing_dot else ""
    return f"""<h2>The search, epoch by epoch</h2>
<p>Drag the slider (or press play) to see the supernet sharpen: edge width and darkness follow the probability of each
path, labels show each node's most probable op, dark edges are those the decoder keeps at that point{note}.</p>{hint}
<div class="watch"><input type="range" id="watch-slider" min="0" max="{len(frames) - 1}" value="{len(frames) - 1}" style="width:60%">
<button id="watch-play" type="button">play</button> <span id="watch-label"></span>
{''.join(frames)}</div>
<noscript><style>.watch-frame[hidden] {{ display: block; }}</style></noscript>
<img alt="when the topology was decided" src="data:image/png;base64,{base64.b64encode(png).decode()}" style="max-width:100%">
{SCRIPT}"""
