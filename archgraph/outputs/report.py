"""``archgraph report RUN_DIR``: one self-contained HTML page for a search run.

The page embeds the pictures (supernet and derived net as inline SVG), the curves of search.jsonl
(loss, S-mIoU, tau, entropies; also written next to it as curves.png and curves.svg), the config, and
the derived model's size (parameters, FLOPs at the training crop). No external files or scripts: the
page can be mailed or attached to an issue as it is.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from archgraph.errors import CheckpointError
from archgraph.io import atomic_write_bytes, atomic_write_text

CURVES = (
    ("loss", "weight loss (trainA)"),
    ("arch_loss", "architecture loss (trainB)"),
    ("s_miou", "S-mIoU (val)"),
    ("tau", "temperature tau"),
    ("entropy_alpha", "entropy of softmax(alpha)"),
    ("entropy_beta", "entropy of softmax(beta)"),
)


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "search.jsonl"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {run_dir} is not a search run folder (run `archgraph search --out {run_dir}` first)")
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill: the finished ones are still valid
    return records


def plot_curves(records: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """(PNG, SVG) of every logged curve against the epoch (stages laid end to end)."""
    from archgraph.outputs.plots import figure_bytes, pyplot

    plt = pyplot()
    present = [(k, title) for k, title in CURVES if any(k in r for r in records)]
    cols = 3
    rows = max(1, -(-len(present) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    xs_all = list(range(1, len(records) + 1))
    for ax, (key, title) in zip(axes.flat, present):
        pts = [(x, r[key]) for x, r in zip(xs_all, records) if r.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        stages = sorted({r.get("stage", 0) for r in records})
        for s in stages[1:]:
            first = next(x for x, r in zip(xs_all, records) if r.get("stage", 0) == s)
            ax.axvline(first - 0.5, color="grey", linestyle=":", linewidth=1)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.tight_layout()
    return figure_bytes(fig)


def derived_size(run_dir: Path) -> dict[str, Any]:
    import yaml

    from archgraph.core.compile import compile_graph
    from archgraph.core.costs import count_params, model_flops
    from archgraph.core.graph import load

    arch = load(run_dir / "arch.yaml")
    net = compile_graph(arch)
    crop = (64, 64)
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        crop = tuple((yaml.safe_load(cfg_file.read_text()).get("data") or {}).get("crop", crop))
    return {"params": count_params(net), "flops": model_flops(net, crop), "flops_at": list(crop), "nodes": arch.number_of_nodes(), "edges": arch.number_of_edges()}


def _svg_inline(path: Path) -> str:
    if not path.is_file():
        dot = path.with_suffix(".dot")
        return f"<p><em>{html.escape(path.name)} is missing" + (f" (Graphviz was not installed; {dot.name} holds the DOT source)" if dot.is_file() else "") + "</em></p>"
    text = path.read_text()
    start = text.find("<svg")
    return f'<div class="pic">{text[start:]}</div>'


def write_report(run_dir: Path, output: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    records = read_log(run_dir)
    png, svg = plot_curves(records)
    atomic_write_bytes(run_dir / "curves.png", png)
    atomic_write_bytes(run_dir / "curves.svg", svg)
    size = derived_size(run_dir)
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else "(no config.yaml)"
    last = records[-1] if records else {}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in {**size, **{f"last {k}": v for k, v in last.items()}}.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>archgraph report: {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; font-size: 0.9em; }}
.pic svg {{ max-width: 100%; height: auto; }} pre {{ background: #f6f6f6; padding: 1em; overflow: auto; }}
</style></head><body>
<h1>Search run <code>{html.escape(str(run_dir))}</code></h1>
<h2>Derived architecture</h2>{_svg_inline(run_dir / "arch.svg")}
<h2>Summary</h2><table>{rows}</table>
<h2>Curves</h2><img alt="search curves" src="data:image/png;base64,{base64.b64encode(png).decode()}" style="max-width:100%">
<h2>Supernet (edge width = probability of the path)</h2>{_svg_inline(run_dir / "supernet.svg")}
<h2>Config</h2><pre>{html.escape(config)}</pre>
</body></html>
"""
    out = output or run_dir / "report.html"
    atomic_write_text(out, page)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)
