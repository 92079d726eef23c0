"""What a comparison writes besides results.json's numbers: the plots, the topologies, report.html.

``tmiou.{png,svg}`` (T-mIoU with error bars), ``tmiou_vs_cost.{png,svg}`` (T-mIoU against search
time), ``topologies/<entry>.svg`` (every distinct architecture of each entry, ``<entry>-<k>.svg`` when
there are several, all on the supernet's full grid: a node at the same place in every picture),
``checklist.md`` (the best-practice checklist) and one self-contained ``report.html`` with the
statistics, the degenerate flags, the searches' warnings, each entry's options, the plots and the
pictures inline. A comparison whose every run failed still gets all of these, with its failures.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any

from archgraph.core.graph import load as load_graph
from archgraph.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from archgraph.outputs.svgsafe import safe_svg
from archgraph.studies.compare.plan import entry_slug
from archgraph.studies.compare.results import (
    PAIR_HEAD,
    RANDOM_HEAD,
    TABLE_HEAD,
    display_name,
    format_value,
    pair_rows,
    random_test_rows,
    results_markdown,
    run_peak_mb,
    search_warnings,
    table_rows,
)


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    from archgraph.studies.compare.checklist import checklist_markdown

    atomic_write_json(out / "results.json", results)
    plots = write_plots(out, results)
    topologies = write_topologies(out, results)
    atomic_write_text(out / "results.md", results_markdown(results, plots, topologies))
    atomic_write_text(out / "checklist.md", checklist_markdown(results))
    atomic_write_text(out / "report.html", report_html(out, results, plots, topologies))


def write_plots(out: Path, results: dict[str, Any]) -> list[str]:
    """T-mIoU with error bars, and T-mIoU against search cost; PNG and SVG of each."""
    from archgraph.outputs.plots import figure_bytes, pyplot

    plt = pyplot()
    entries = [e for e in results["entries"] if e["summary"]["t_miou_mean"] is not None]
    colour = {"strategy": "#3b75af", "preset": "#e1812c", "random": "#7f7f7f"}
    written: list[str] = []
    if not entries:  # every run failed: nothing to plot (the tables list the failures)
        return written

    def save_fig(fig, stem: str) -> None:
        for fmt, data in zip(("png", "svg"), figure_bytes(fig, dpi=120, tight=True)):
            atomic_write_bytes(out / f"{stem}.{fmt}", data)
            written.append(f"{stem}.{fmt}")

    from archgraph.studies.compare.stats import interval

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(entries) + 1.5), 3.6))
    xs = list(range(len(entries)))
    means = [e["summary"]["t_miou_mean"] for e in entries]
    # Error bars: the 95% t-interval of the mean (what the tests read), not the sd; every run is a dot,
    # so a reader sees n and the spread at once (with 3 seeds a bar alone hides both).
    runs = [[float(r["t_miou"]) for r in e["runs"] if r.get("t_miou") is not None] for e in entries]
    cis = [interval(v)["ci"] for v in runs]
    low = [m - ci[0] if ci else 0.0 for m, ci in zip(means, cis)]
    high = [ci[1] - m if ci else 0.0 for m, ci in zip(means, cis)]
    ax.bar(xs, means, yerr=[low, high], color=[colour[e["kind"]] for e in entries], alpha=0.75, capsize=4)
    for x, values in zip(xs, runs):
        offsets = [0.0] if len(values) == 1 else [0.3 * (i / (len(values) - 1) - 0.5) for i in range(len(values))]
        ax.scatter([x + o for o in offsets], values, s=12, color="black", zorder=3)
    ax.set_xticks(xs, [display_name(e) for e in entries], rotation=30, ha="right")
    ax.set_ylabel("T-mIoU (stand-alone)")
    ax.set_title("stand-alone mIoU: mean, 95% interval, every run")
    ax.grid(axis="y", alpha=0.3)
    save_fig(fig, "tmiou")

    save_fig(cost_figure(entries, colour), "tmiou_vs_cost")
    return written


def _spread(ys: list[float], gap: float) -> list[float]:
    """Label heights near ``ys`` (any order) at least ``gap`` apart, kept as close to them as can be."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = [0.0] * len(ys)
    last = float("-inf")
    for i in order:
        placed[i] = max(ys[i], last + gap)
        last = placed[i]
    shift = (max(placed[i] - ys[i] for i in order) / 2) if order else 0.0  # centre the column on the points
    return [p - shift for p in placed]


def cost_figure(entries: list[dict[str, Any]], colour: dict[str, str]):
    """T-mIoU against search wall time. The baselines (no search) sit at 0; their labels form a
    column to the left, each tied to its point by a thin line, so they never overlap."""
    from archgraph.outputs.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    xs = [e["summary"]["search_seconds_mean"] or 0.0 for e in entries]
    ys = [e["summary"]["t_miou_mean"] for e in entries]
    for e, x, y in zip(entries, xs, ys):
        s = e["summary"]
        ax.errorbar([x], [y], xerr=[s["search_seconds_std"] or 0], yerr=[s["t_miou_std"] or 0], fmt="o" if e["kind"] == "strategy" else "s", color=colour[e["kind"]], capsize=3)
    span = max(max(xs), 1.0)
    low, high = min(ys), max(ys)
    gap = max(high - low, 0.01) * 0.12
    for group, x_text, align in ((lambda x: x == 0, -0.06 * span, "right"), (lambda x: x > 0, None, "left")):
        members = [i for i, x in enumerate(xs) if group(x)]
        heights = _spread([ys[i] for i in members], gap)
        for i, h in zip(members, heights):
            ax.annotate(
                display_name(entries[i]),
                (xs[i], ys[i]),
                xytext=(x_text if x_text is not None else xs[i] + 0.04 * span, h),
                ha=align,
                va="center",
                fontsize=8,
                arrowprops=dict(arrowstyle="-", lw=0.5, color="#999999"),
            )
    ax.set_xlim(-0.55 * span, 1.35 * span)
    ax.set_ylim(low - 5 * gap, high + 5 * gap)
    ax.set_xticks([tick for tick in ax.get_xticks() if 0 <= tick <= 1.35 * span])  # no negative times
    ax.set_xlabel("search wall time (s); baselines (no search) at 0")
    ax.set_ylabel("T-mIoU (stand-alone)")
    ax.set_title("accuracy against search cost")
    ax.grid(alpha=0.3)
    return fig


def _entry_archs(out: Path, entry: dict[str, Any]) -> list[tuple[Path, list[int]]]:
    """Each distinct architecture of an entry's runs (by file hash) with the seeds that found it."""
    found: dict[str, tuple[Path, list[int]]] = {}
    for r in entry["runs"]:
        folder = out / r["folder"]
        for path in (folder / "search" / "arch.yaml", folder / "arch.yaml"):
            if path.is_file():
                key = r.get("arch_hash") or hashlib.sha256(path.read_bytes()).hexdigest()
                found.setdefault(key, (path, []))[1].append(r["seed"])
                break
    return list(found.values())


def _supernet(graph):
    """The space an architecture was derived from (its ``space`` and ``params``), or ``None``."""
    from archgraph.core.spaces_api import build_space

    name, params = graph.graph.get("space"), graph.graph.get("params")
    if not name or not isinstance(params, dict):
        return None
    try:
        return build_space(name, params)
    except Exception:  # noqa: BLE001 - a space that is gone: the pictures keep their own grid
        return None


def write_topologies(out: Path, results: dict[str, Any]) -> dict[str, str]:
    """Every distinct architecture of every entry (a random entry: all of them), each drawn on its
    supernet's full grid shared by all pictures of the same grid (:func:`archgraph.outputs.render.grid_frame`),
    so a node sits at the same place in every picture and no empty layer is dropped."""
    from archgraph.outputs.render import grid_frame, render

    pictures = []  # (caption, file stem, graph)
    for e in results["entries"]:
        archs = _entry_archs(out, e)
        for k, (path, seeds) in enumerate(archs, 1):
            several = len(archs) > 1
            caption = display_name(e) + (f" #{k}" if several else "") + f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
            pictures.append((caption, entry_slug(e["name"]) + (f"-{k}" if several else ""), load_graph(path)))
    groups: dict[str, list] = {}
    for caption, stem, graph in pictures:  # one frame per grid: same space name and parameters
        groups.setdefault(json.dumps([graph.graph.get("space"), graph.graph.get("params")], sort_keys=True, default=str), []).append(graph)
    frames = {key: grid_frame(graphs, _supernet(graphs[0])) for key, graphs in groups.items()}
    drawn: dict[str, str] = {}
    for caption, stem, graph in pictures:
        key = json.dumps([graph.graph.get("space"), graph.graph.get("params")], sort_keys=True, default=str)
        result = render(graph, out / "topologies" / f"{stem}.svg", title=caption, frame=frames[key])
        drawn[caption] = str(result.path.relative_to(out))
    return drawn


def _inline_svg(path: Path) -> str:
    """A picture of the study folder pasted into the page, scripts removed (a study folder may come
    from anyone: :mod:`archgraph.outputs.svgsafe`)."""
    if path.suffix != ".svg" or not path.is_file():
        return f"<p><em>{html.escape(path.name)}: no picture (install Graphviz to draw it)</em></p>"
    svg = safe_svg(path.read_text(errors="replace"))
    return svg if svg is not None else f"<p><em>{html.escape(path.name)} is not an SVG picture; draw it again with archgraph render</em></p>"


def report_html(out: Path, results: dict[str, Any], plots: list[str], topologies: dict[str, str]) -> str:
    plan = results["plan"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in TABLE_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(results))
    run_head = ("entry", "seed", "status", "S-mIoU", "T-mIoU", "search s", "peak MB", "params", "GFLOPs", "arch", "folder")
    run_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in (
                display_name(e),
                r["seed"],
                r.get("error") or r["status"],
                format_value(r.get("s_miou")),
                format_value(r.get("t_miou")),
                format_value(r.get("search_seconds"), "{:.0f}"),
                format_value(run_peak_mb(r), "{:.0f}"),
                r.get("params", ""),
                format_value(r.get("flops") and r["flops"] / 1e9, "{:.3g}"),
                r.get("arch_hash", ""),
                r["folder"],
            )
        )
        + "</tr>"
        for e in results["entries"]
        for r in e["runs"]
    )
    st = results.get("statistics") or {}

    def table(head, rows) -> str:
        return (
            "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
        )

    flagged = {n: f for n, f in (st.get("flags") or {}).items() if f}
    flags = ("<h2>Degenerate results</h2><ul class=\"warn\">" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape('; '.join(f))}</li>" for n, f in flagged.items()) + "</ul>") if flagged else ""
    warns = search_warnings(results)
    warned = ("<h2>Search warnings</h2><ul class=\"warn\">" + "".join(f"<li>{html.escape(w)}</li>" for w in warns) + "</ul>") if warns else ""
    tests = f"<h2>Strategies against random architectures ({html.escape(str(st.get('random_entry')))})</h2>" + table(RANDOM_HEAD, random_test_rows(results)) if random_test_rows(results) else ""
    pairs = ("<h2>Strategy against strategy (Holm-corrected across the pairs)</h2>" + table(PAIR_HEAD, pair_rows(results))) if pair_rows(results) else ""
    method = f"<p><small>{html.escape(st['method'])}.</small></p>" if st.get("method") else ""
    settings = [(e["name"], e.get("strategy", ""), json.dumps(e.get("options") or {}), json.dumps(e.get("settings") or {})) for e in results["entries"] if e["kind"] == "strategy"]
    options = ("<h2>Strategy entries: options (--strategy-set) and settings</h2>" + table(("entry", "strategy", "options", "settings (study, selector)"), settings)) if settings else ""
    study = plan.get("study")
    budget = (
        f"<p>Search budget: <b>{html.escape(str(results.get('budget', 'official')))}</b>"
        + (f"; named study <b>{html.escape(study['name'])}</b> ({html.escape(study['size'])}; {html.escape(study.get('estimate', ''))})" if study else "")
        + ". Best-practice checklist: <code>checklist.md</code>.</p>"
    )
    pics = "".join(f'<div class="pic">{_inline_svg(out / p)}</div>' for p in plots if p.endswith(".svg"))
    topo = "".join(f'<figure><figcaption>{html.escape(n)}</figcaption>{_inline_svg(out / p)}</figure>' for n, p in topologies.items())
    notes = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in results["notes"].items())
    config = html.escape(json.dumps(plan["config"], indent=2))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>archgraph compare: {html.escape(out.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; font-size: 0.9em; }}
.pics, .topos {{ display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }}
.pic svg {{ max-width: 640px; height: auto; }} figure {{ margin: 0; max-width: 440px; }}
figure svg {{ max-width: 440px; height: auto; }} .warn li {{ color: #8a3b00; }} pre {{ background: #f6f6f6; padding: 1em; overflow: auto; }}
</style></head><body>
<h1>Strategy comparison <code>{html.escape(str(out))}</code></h1>
<p>Strategies {html.escape(', '.join(plan['strategies']))}; seeds {html.escape(', '.join(map(str, plan['seeds'])))};
baselines {html.escape(', '.join(b['kind'] + (':' + b['name'] if b['name'] else f":{b['count']}") for b in plan['baselines']) or 'none')}.
Every architecture is trained with the same recipe (the config's <code>train</code> and <code>data</code> sections).</p>
{budget}
<h2>Results (mean ± sample std over runs, 95% interval of the mean, what each search spent)</h2><table><tr>{head}</tr>{body}</table>
{flags}{warned}{tests}{pairs}{method}
<ul>{notes}</ul>
{options}
<h2>Plots</h2><div class="pics">{pics}</div>
<h2>Topologies (every distinct architecture, on the supernet's full grid)</h2><div class="topos">{topo}</div>
<h2>Runs</h2><table><tr>{''.join(f'<th>{h}</th>' for h in run_head)}</tr>{run_rows}</table>
<h2>Config</h2><pre>{config}</pre>
</body></html>
"""
