"""``archgraph report RUN_DIR``: one self-contained HTML page for a search run.

The page embeds the pictures (supernet and derived net as inline SVG), the curves of search.jsonl
(loss, S-mIoU, tau, entropies), the config, and the derived model's size (parameters, FLOPs at the
training crop). No external files or scripts: the page can be mailed or attached to an issue as it
is. When the report goes into the run folder (the default), the curves are also written there as
``curves.png`` and ``curves.svg``; with ``-o`` elsewhere the run folder is only read.

Pictures: the run's ``arch.svg`` / ``supernet.svg`` when the search drew them; otherwise (a search
on a machine without Graphviz, or one that has not finished) they are drawn now from ``arch.yaml``,
``supernet.yaml`` and ``scores.json`` when Graphviz is installed.

The epoch-by-epoch view (:mod:`archgraph.outputs.watch`) comes right after the derived architecture:
a slider over supernet pictures drawn from ``history.jsonl`` (the scores and decisions the search
recorded after every epoch), each beside that epoch's figures, with the nodes whose decision changed
outlined, and a plot of when each node of the final architecture settled.

An unfinished search (no ``final.json``) is reported as such, with the epochs done and planned
(:func:`search_status`).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archgraph.core.measure import peak_memory_label, peak_memory_of
from archgraph.errors import ArchgraphError, CheckpointError, GraphError
from archgraph.outputs.svgsafe import safe_svg
from archgraph.io import atomic_write_bytes, atomic_write_text, load_yaml_file, load_yaml_text, read_json
from archgraph.outputs.watch import DEFAULT_FRAMES, watch_section
from archgraph.runfolder import check_output_file, example, folder_kind, has_search_checkpoint

CURVES = (
    ("loss", "weight loss (trainA)"),
    ("arch_loss", "architecture loss (trainB)"),
    ("s_miou", "S-mIoU (val)"),
    ("tau", "temperature tau"),
    ("entropy_alpha", "entropy of softmax(alpha)"),
    ("entropy_beta", "entropy of softmax(beta)"),
    ("margin_alpha", "decision margin of alpha (top-1 - top-2)"),
    ("margin_beta", "decision margin of beta (last kept - first dropped)"),
    ("changed_ops", "op decisions changed since the epoch before"),
    ("changed_inputs", "input decisions changed since the epoch before"),
    ("arch_grad_snr", "arch gradient SNR (dashed: pure noise)"),
)
COMPANIONS = {"arch_grad_snr": "arch_grad_snr_noise"}  # drawn dashed in the same panel


def _not_a_search_run(run_dir: Path) -> str:
    """Why ``run_dir`` cannot be reported, with a command that works (never one writing into it)."""
    kind = folder_kind(run_dir)
    if not run_dir.is_dir():
        return f"{run_dir}: no such folder; pass the --out folder of `archgraph search`"
    if kind == "train":
        return (
            f"{run_dir} is a training run folder (written by `archgraph train`), not a search run; `archgraph report` "
            f"reads the --out folder of `archgraph search`. For this run's numbers: `archgraph evaluate {run_dir}`"
        )
    if kind == "compare":
        search = example(run_dir, "runs/*/*/search/search.jsonl")
        also = f"; one of its searches: `archgraph report {search}`" if search else ""
        return f"{run_dir} is a comparison folder; its report is {run_dir / 'report.html'}, written by `archgraph compare`{also}"
    if kind == "correlate":
        search = example(run_dir, "search/search.jsonl")
        also = f"; its search: `archgraph report {search}`" if search else ""
        return f"{run_dir} is a correlation study (results in correlation.md and correlation.json){also}"
    if kind == "search":
        go_on = f"; continue it with `archgraph search --out {run_dir} --resume`" if has_search_checkpoint(run_dir) else ""
        return f"{run_dir} is a search that has not logged an epoch yet (no search.jsonl), so there is nothing to report{go_on}"
    return f"{run_dir} holds no search run (no search.jsonl); pass the --out folder of `archgraph search`"


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "search.jsonl"
    if not path.is_file():
        raise CheckpointError(_not_a_search_run(run_dir))
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: the finished ones are still valid
            if isinstance(record, dict):
                records.append(record)
    return records


@dataclass(frozen=True)
class SearchStatus:
    finished: bool  # final.json exists
    epochs_done: int  # epochs logged in search.jsonl (all stages)
    epochs_planned: int | None  # from the run's config and strategy (None when it cannot be read)
    resumable: bool  # a checkpoint exists, so `archgraph search --out RUN --resume` continues it

    def describe(self) -> str:
        if self.finished:
            return f"finished ({self.epochs_done} epochs)"
        planned = f" of {self.epochs_planned}" if self.epochs_planned is not None else ""
        return f"unfinished: {self.epochs_done}{planned} epochs done"


def _planned_epochs(run_dir: Path) -> int | None:
    """Epochs of every stage, as the run's config and strategy plan them."""
    import yaml

    from archgraph.config import config_from_dict
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy
    from archgraph.core.spaces_api import build_space

    try:
        cfg = config_from_dict(load_yaml_file(run_dir / "config.yaml") or {})
        info = get_strategy(cfg.strategy_name)
        params = dataclass_from_dict(info.params, cfg.strategy_params, "strategy")
        strategy = info.cls(build_space(cfg.space_name, cfg.space_params), params, cfg.search, cfg.seed)
        return int(sum(strategy.stage_epochs(s) for s in range(strategy.num_stages())))
    except (ArchgraphError, OSError, yaml.YAMLError, TypeError, ValueError, KeyError, AttributeError):
        return None


def search_status(run_dir: Path, records: list[dict[str, Any]] | None = None) -> SearchStatus:
    """Whether the search in ``run_dir`` finished, and how far it got."""
    run_dir = Path(run_dir)
    records = read_log(run_dir) if records is None else records
    done = len({(r.get("stage", 0), r.get("epoch", i)) for i, r in enumerate(records)})
    finished = (run_dir / "final.json").is_file()
    return SearchStatus(finished, done, None if finished else _planned_epochs(run_dir), has_search_checkpoint(run_dir))


def plot_curves(records: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """(PNG, SVG) of every logged curve against the epoch (stages laid end to end)."""
    from archgraph.outputs.plots import figure_bytes, pyplot

    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    present = [(k, title) for k, title in CURVES if any(k in r for r in records)]
    cols = 3
    rows = max(1, -(-len(present) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    xs_all = list(range(1, len(records) + 1))
    for ax, (key, title) in zip(axes.flat, present):
        pts = [(x, r[key]) for x, r in zip(xs_all, records) if r.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
        if key in COMPANIONS:
            ref = [(x, r[COMPANIONS[key]]) for x, r in zip(xs_all, records) if r.get(COMPANIONS[key]) is not None]
            ax.plot([p[0] for p in ref], [p[1] for p in ref], linestyle="--", color="grey")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
        stages = sorted({r.get("stage", 0) for r in records})
        for s in stages[1:]:
            first = next(x for x, r in zip(xs_all, records) if r.get("stage", 0) == s)
            ax.axvline(first - 0.5, color="grey", linestyle=":", linewidth=1)
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    fig.tight_layout()
    return figure_bytes(fig)


def health_section(run_dir: Path, records: list[dict[str, Any]]) -> str:
    """How the architecture parameters moved: margins at the start and the end, decisions changed,
    architecture steps, and the search's own verdict when it could not learn (final.json)."""
    final = read_json(run_dir / "final.json") if (run_dir / "final.json").is_file() else {}
    if not records:
        return ""
    first, last = records[0], records[-1]
    rows = []
    for key, what in (
        ("margin_alpha", "decision margin of alpha"),
        ("margin_beta", "decision margin of beta"),
        ("entropy_alpha", "entropy of softmax(alpha)"),
        ("entropy_beta", "entropy of softmax(beta)"),
    ):
        if first.get(key) is not None and last.get(key) is not None:
            rows.append(f"<tr><th>{what}</th><td>{first[key]:.4f} &rarr; {last[key]:.4f}</td></tr>")
    changed = [sum(r.get(k, 0) for r in records) for k in ("changed_ops", "changed_inputs")]
    rows.append(f"<tr><th>decisions changed (ops / inputs), all epochs</th><td>{changed[0]} / {changed[1]}</td></tr>")
    steps = final.get("arch_steps_total", sum(r.get("arch_steps", 0) for r in records))
    rows.append(f"<tr><th>architecture steps</th><td>{steps}</td></tr>")
    verdict = (
        f'<p class="unfinished"><strong>{html.escape(final["warning"])}</strong></p>'
        if final.get("warning")
        else "<p>The decisions are past the initialisation's noise (docs/strategies.md, search health).</p>"
        if final
        else ""
    )
    return f"<h2>Search health</h2>{verdict}<table>{''.join(rows)}</table>"


def selection_section(run_dir: Path) -> str:
    """How the final architecture was picked (final.json): the selector, its candidates' scores on the
    selection split and the one kept; what the search spent under which budget; its cost against a
    cost limit. Empty for an unfinished search."""
    final_file = run_dir / "final.json"
    if not final_file.is_file():
        return ""
    final = read_json(final_file)
    parts: list[str] = []
    sel = final.get("selection")
    if sel:
        scores = [float(x) for x in sel.get("scores", [])]
        picked = sel.get("picked")
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:12]
        kept = ' class="changed"'
        cells = "".join(f"<tr{kept if i == picked else ''}><td>{i + 1}</td><td>{scores[i]:.4f}</td><td>{'kept' if i == picked else ''}</td></tr>" for i in ranked)
        more = f"<p>{len(scores) - len(ranked)} more candidates not shown.</p>" if len(scores) > len(ranked) else ""
        parts.append(
            f"<h2>Selection</h2><p>The architecture was picked by <code>{html.escape(str(sel.get('selector')))}</code> from "
            f"{sel.get('candidates')} candidates scored on the selection split (carved from the training data; "
            f"never val) in {float(sel.get('seconds', 0)):.1f} s. docs/strategies.md, \"Selection\".</p>"
            f"<table><tr><th>candidate</th><th>score</th><th></th></tr>{cells}</table>{more}"
        )
    elif final.get("derived_by"):
        parts.append(f"<h2>Selection</h2><p>Picked by {html.escape(str(final['derived_by']))}.</p>")
    spent = final.get("spent")
    if spent:
        rows = "".join(
            f"<tr><th>{html.escape(label)}</th><td>{html.escape(_fmt(spent[key]))}</td></tr>"
            for key, label in (("weight_steps", "weight steps"), ("arch_steps", "architecture steps"), ("images", "images"), ("forward_gflop", "forward GFLOPs"), ("wall_seconds", "wall seconds"))
            if key in spent
        )
        parts.append(f"<h2>What the search spent</h2><p>Budget: <code>{html.escape(str(final.get('budget', 'official')))}</code>.</p><table>{rows}</table>")
    cost = final.get("cost")
    if cost:
        within = cost.get("within_budget")
        verdict = "within its budget" if within else '<strong class="unfinished">over its budget</strong>' if within is False else ""
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(cost[k]))}</td></tr>"
            for k in ("limit", "metric", "unit", "resolution", "predicted", "measured", "rule", "excess")
            if cost.get(k) is not None
        )
        parts.append(f"<h2>Cost</h2><p>The derived architecture is {verdict}.</p><table>{rows}</table>")
    return "".join(parts)


def derived_size(run_dir: Path) -> dict[str, Any]:
    from archgraph.core.compile import compile_graph
    from archgraph.core.costs import count_params, model_flops
    from archgraph.core.graph import load

    if not (run_dir / "arch.yaml").is_file():
        return {}
    arch = load(run_dir / "arch.yaml")
    net = compile_graph(arch)
    crop = (64, 64)
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        crop = tuple(((load_yaml_file(cfg_file) or {}).get("data") or {}).get("crop", crop))
    return {"params": count_params(net), "flops": model_flops(net, crop), "flops_at": list(crop), "nodes": arch.number_of_nodes(), "edges": arch.number_of_edges()}


def _svg_inline(svg: str) -> str:
    """A picture drawn now, pasted into the page."""
    return f'<div class="pic">{svg[svg.find("<svg") :]}</div>'


def _picture(run_dir: Path, name: str, title: str) -> str:
    """The run's ``<name>.svg`` (:func:`~archgraph.outputs.svgsafe.safe_svg`: a run folder may come from
    anyone), or the picture drawn now from the run's graph (and scores) when there is none that parses."""
    from archgraph.core.graph import load
    from archgraph.outputs.render import INSTALL_HINT, picture

    svg = run_dir / f"{name}.svg"
    kept = safe_svg(svg.read_text(errors="replace")) if svg.is_file() else None  # the run folder's picture, scripts removed
    if kept is not None:
        return f'<div class="pic">{kept}</div>'
    graph_file = run_dir / f"{name}.yaml"
    if not graph_file.is_file():
        return f"<p><em>{html.escape(svg.name)} is missing, and so is {html.escape(graph_file.name)} to draw it from</em></p>"
    scores, derived = None, None
    if name == "supernet" and (run_dir / "scores.json").is_file():
        scores = read_json(run_dir / "scores.json")
        try:  # the run's own derivation, drawn as it is (not decoded again); an unreadable one is decoded from the scores
            derived = load(run_dir / "arch.yaml") if (run_dir / "arch.yaml").is_file() else None
        except GraphError:
            derived = None
    data = picture(load(graph_file), "svg", scores=scores, title=title, derived=derived)
    if data is None:
        return f"<p><em>{html.escape(svg.name)} is missing and cannot be drawn: Graphviz is not installed; {html.escape(INSTALL_HINT)}, then run archgraph report again</em></p>"
    return _svg_inline(data.decode(errors="replace"))


def write_report(run_dir: Path, output: Path | None = None, frames: int = DEFAULT_FRAMES) -> Path:
    """Write the report page; ``frames``: supernet pictures in the epoch-by-epoch view."""
    run_dir = Path(run_dir)
    records = read_log(run_dir)
    out = Path(output) if output else run_dir / "report.html"
    check_output_file(out, "-o", "report.html")
    status = search_status(run_dir, records)
    png, svg = plot_curves(records)
    if out.parent.resolve() == run_dir.resolve():
        atomic_write_bytes(run_dir / "curves.png", png)
        atomic_write_bytes(run_dir / "curves.svg", svg)
    size = derived_size(run_dir)
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else "(no config.yaml)"
    strategy = ""
    if (run_dir / "config.yaml").is_file():
        strategy = str(((load_yaml_text(config, str(run_dir / 'config.yaml')) or {}).get("strategy") or {}).get("name", ""))
    last = records[-1] if records else {}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in summary_rows(size, last, status).items())
    state = html.escape(status.describe())
    if not status.finished:
        state = f'<strong class="unfinished">{state}</strong>: the pictures and numbers show the search so far'
        if status.resumable:
            state += f"; continue it with <code>archgraph search --out {html.escape(str(run_dir))} --resume</code>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>archgraph report: {html.escape(run_dir.name)}{'' if status.finished else ' (unfinished)'}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; font-size: 0.9em; }}
.pic svg {{ max-width: 100%; height: auto; }} pre {{ background: #f6f6f6; padding: 1em; overflow: auto; }}
.unfinished {{ color: #a33; }}
.watch-grid {{ display: flex; gap: 1em; align-items: flex-start; }} .watch-grid .pic {{ flex: 1 1 auto; min-width: 0; }}
.watch-grid table {{ flex: 0 0 16em; }} .changed {{ color: #d62728; }}
</style></head><body>
<h1>Search run <code>{html.escape(str(run_dir))}</code></h1>
<p>Status: {state}.</p>
<h2>Derived architecture{'' if status.finished else ' (so far)'}</h2>{_picture(run_dir, "arch", f"arch ({strategy})")}
{selection_section(run_dir)}
{watch_section(run_dir, records, frames)}
{health_section(run_dir, records)}
<h2>Summary</h2><table>{rows}</table>
<h2>Curves</h2><img alt="search curves" src="data:image/png;base64,{base64.b64encode(png).decode()}" style="max-width:100%">
<h2>Supernet (edge width = probability of the path)</h2>{_picture(run_dir, "supernet", f"supernet ({strategy})")}
<h2>Config</h2><pre>{html.escape(config)}</pre>
</body></html>
"""
    atomic_write_text(out, page)
    return out


PEAK_MEMORY = "peak memory"  # not a record key: whichever peak the record carries, labelled with its quantity (archgraph.core.measure)
SUMMARY_FIELDS = (  # (record key, what a reader calls it); epochs and stages are counted from 1, as on the console
    ("s_miou", "S-mIoU (val, derived architecture in the supernet)"),
    ("loss", "weight loss (trainA)"),
    ("arch_loss", "architecture loss (trainB)"),
    ("entropy_alpha", "entropy of softmax(alpha)"),
    ("entropy_beta", "entropy of softmax(beta)"),
    ("margin_alpha", "decision margin of alpha"),
    ("margin_beta", "decision margin of beta"),
    ("tau", "temperature tau"),
    ("step_time", "seconds per step"),
    (PEAK_MEMORY, "peak memory (MB)"),
    ("arch_hash", "architecture hash"),
)


def summary_rows(size: dict[str, Any], last: dict[str, Any], status: SearchStatus) -> dict[str, Any]:
    """The summary table: the derived model's size, then the chosen fields of the last epoch."""
    rows: dict[str, Any] = {"parameters": size.get("params"), "FLOPs": size.get("flops"), "FLOPs measured at (H, W)": size.get("flops_at")} if size else {}
    if last:
        epoch = f"{int(last.get('epoch', 0)) + 1}" + (f" (stage {int(last['stage']) + 1})" if last.get("stage") else "")
        rows[f"{'last' if status.finished else 'latest'} epoch"] = epoch
    for key, label in SUMMARY_FIELDS:
        if key == PEAK_MEMORY:
            peak = peak_memory_of(last)
            if peak is not None:
                rows[peak_memory_label(peak.quantity)] = peak.mb
        elif last.get(key) is not None:
            rows[label] = last[key]
    return {k: v for k, v in rows.items() if v is not None}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)
