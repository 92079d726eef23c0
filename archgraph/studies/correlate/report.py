"""What the study writes and reads back: correlation.json, correlation.{png,svg}, correlation.md.

:func:`write_outputs` writes a study's result; :func:`correlation_summary` reads one back for
``archgraph compare``'s report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archgraph.io import atomic_write_bytes, atomic_write_json, atomic_write_text

RESULT = "correlation.json"
RESULT_VERSION = 1
# DCNAS, Table 1: supernet vs stand-alone correlation as the paper reports it (docs/correlation.md).
PAPER_DCNAS = {"pearson": 0.73, "kendall": 0.55}
PAPER_OTHERS = {"pearson": (0.31, 0.49), "kendall": (0.21, 0.38)}  # the other one-shot methods of the table, lowest to highest
STAT_TITLES = (("pearson", "Pearson"), ("spearman", "Spearman"), ("kendall", "Kendall"), ("top_kendall", "top-20% Kendall"))


def write_outputs(out: Path, result: dict[str, Any]) -> None:
    """``out/correlation.json``, the scatter plot as PNG and SVG, and ``correlation.md``."""
    atomic_write_json(out / RESULT, result)
    png, svg = scatter_plot(result)
    atomic_write_bytes(out / "correlation.png", png)
    atomic_write_bytes(out / "correlation.svg", svg)
    atomic_write_text(out / "correlation.md", markdown_table(result))


def fmt_stat(s: dict[str, Any]) -> str:
    """A statistic with its interval, as the study's tables print it: ``0.244 [0.03, 0.47]``."""
    v, ci = s["value"], s["ci"]
    if v is None:
        return f"n/a ({s.get('why', 'a side is constant')})"
    band = "" if ci["low"] is None else f" [{ci['low']:.2f}, {ci['high']:.2f}]"
    return f"{v:.3f}{band}"


def scatter_plot(result: dict[str, Any]) -> tuple[bytes, bytes]:
    """(PNG, SVG): supernet mIoU against stand-alone mIoU, the derived architecture marked."""
    from archgraph.outputs.plots import figure_bytes, pyplot

    plt = pyplot()
    archs = result["archs"]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for source, marker, color, label in (("sample", "o", "#4c72b0", "sampled"), ("derived", "*", "#dd4444", "derived (searched)")):
        pts = [(a["supernet_miou"], a["standalone_miou"]) for a in archs if a["source"] == source]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=120 if marker == "*" else 36, color=color, label=label, zorder=3)
    level = int(round(result["pearson"]["ci"]["level"] * 100))
    ax.set_title(f"{result['strategy']}: rho {fmt_stat(result['pearson'])}, tau {fmt_stat(result['kendall'])}\n(n={result['n']}, {level}% bootstrap CI)", fontsize=9)
    ax.set_xlabel("supernet mIoU (shared weights, BN recalibrated)")
    ax.set_ylabel("stand-alone mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return figure_bytes(fig)


def markdown_table(result: dict[str, Any]) -> str:
    level = int(round(result["pearson"]["ci"]["level"] * 100))
    lines = [
        f"# Correlation study: {result['strategy']}",
        "",
        f"Search: `{result['search_dir']}`; {result['n']} architectures; stand-alone recipe `{result['standalone']['recipe_hash']}` "
        f"(seed {result['standalone']['seed']}, {result['standalone']['recipe']['train']['epochs']} epochs).",
        "",
        f"| statistic | value [{level}% CI] | p-value |",
        "|---|---|---|",
    ]
    for name, title in (("pearson", "Pearson rho"), ("kendall", "Kendall tau-b")):
        s = result[name]
        p = "-" if s["p_value"] is None else f"{s['p_value']:.3g}"
        lines.append(f"| {title} | {fmt_stat(s)} | {p} |")
    lines += scorer_table(result)
    lines += ["", "| # | architecture | source | supernet mIoU | stand-alone mIoU | params | pre-score |", "|---|---|---|---|---|---|---|"]
    for i, a in enumerate(sorted(result["archs"], key=lambda a: -a["standalone_miou"]), 1):
        params = "-" if a["params"] is None else f"{a['params']:,}"
        quick = "-" if a["quick_score"] is None else f"{a['quick_score']:.4f}"
        lines.append(f"| {i} | [`{a['arch_hash']}`]({a['file']}) | {a['source']} | {a['supernet_miou']:.4f} | {a['standalone_miou']:.4f} | {params} | {quick} |")
    lines += ["", "![scatter](correlation.png)", ""]
    return "\n".join(lines)


def scorer_table(result: dict[str, Any]) -> list[str]:
    """Markdown lines: every scorer's four statistics against stand-alone mIoU, with intervals, and the
    paper's Table 1 figures for the supernet (``[]`` for a result written before scorers existed)."""
    scorers = result.get("scorers")
    if not scorers:
        return []
    level = int(round(result["pearson"]["ci"]["level"] * 100))
    lines = [
        "",
        f"## Every scorer against stand-alone mIoU ({level}% bootstrap CI, {result['bootstrap']['resamples']} resamples)",
        "",
        "| scorer | better | n | " + " | ".join(t for _, t in STAT_TITLES) + " | seconds |",
        "|---|---|---|" + "---|" * len(STAT_TITLES) + "---|",
    ]
    for name, s in scorers.items():
        n = f"{s['n']}" + (f" ({s['dropped']} n/a)" if s.get("dropped") else "")
        secs = "-" if s.get("seconds") is None else f"{s['seconds']:.1f}"
        lines.append(f"| {name} | {'higher' if s['higher_is_better'] else 'lower'} | {n} | " + " | ".join(fmt_stat(s[k]) for k, _ in STAT_TITLES) + f" | {secs} |")
    dcnas = "this strategy" if result.get("strategy") == "dcnas" else "DCNAS"
    lo_r, hi_r = PAPER_OTHERS["pearson"]
    lo_t, hi_t = PAPER_OTHERS["kendall"]
    lines.append(f"| paper, Table 1: {dcnas} (supernet) | higher | - | {PAPER_DCNAS['pearson']:.2f} | - | {PAPER_DCNAS['kendall']:.2f} | - | - |")
    lines.append(f"| paper, Table 1: other one-shot methods | higher | - | {lo_r:.2f}-{hi_r:.2f} | - | {lo_t:.2f}-{hi_t:.2f} | - | - |")
    lines += ["", "Top-20% Kendall: Kendall's tau over the architectures in the top 20% by stand-alone mIoU. The paper reports no Spearman or top-k figures and no proxies."]
    lines += pick_table(scorers, level)
    return lines


def pick_table(scorers: dict[str, Any], level: int) -> list[str]:
    """Markdown lines: what keeping each scorer's best of K would give, in standard deviations of
    stand-alone mIoU above a random pick, beside the oracle's best of K (``[]`` for results written
    before the pick was computed)."""
    ks = sorted({s[key]["k"] for s in scorers.values() for key in s if key.startswith("pick_of_")})
    if not ks:
        return []
    lines = [
        "",
        f"## Keeping each scorer's best of K (stand-alone mIoU of the pick, standard deviations above a random pick; {level}% CI)",
        "",
        "| scorer | " + " | ".join(f"best of {k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    oracle = {}
    for name, s in scorers.items():
        cells = []
        for k in ks:
            p = s.get(f"pick_of_{k}")
            cells.append("-" if p is None else fmt_stat(p))
            if p is not None and p.get("oracle") is not None:
                oracle[k] = p["oracle"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| oracle (the best of K by stand-alone mIoU) | " + " | ".join(f"{oracle[k]:.3f}" if k in oracle else "-" for k in ks) + " |")
    lines += [
        "",
        "Exact over every draw of K of the studied architectures (stats.pick_of_k); a selector scoring K uniform draws sees this when the studied ones are uniform draws too (`--pool` = `--archs` - 1).",
    ]
    return lines


def correlation_summary(path: str | Path) -> dict[str, Any]:
    """The numbers ``archgraph compare`` shows for one strategy; ``{}`` when no study exists.

    ``path`` is a correlate folder (``archgraph correlate --out DIR``), a ``correlation.json``, or a
    search run folder: then ``RUN/correlation.json`` or, when the search ran inside a correlate folder
    (``DIR/search``), ``DIR/correlation.json`` are used if their ``search_dir`` is that run.
    Keys: ``strategy``, ``n``, ``pearson``, ``pearson_low``, ``pearson_high``, ``kendall``,
    ``kendall_low``, ``kendall_high`` (floats or None), ``level``, ``path``.
    """
    p = Path(path)
    candidates = [p] if p.suffix == ".json" else [p / RESULT, p.parent / RESULT]
    for file in candidates:
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if not isinstance(data, dict) or data.get("version") != RESULT_VERSION:
            continue
        if file == p.parent / RESULT and p.is_dir() and Path(data.get("search_dir", "")) != p.resolve():
            continue  # a sibling study of another search
        return {
            "strategy": data["strategy"],
            "n": data["n"],
            "pearson": data["pearson"]["value"],
            "pearson_low": data["pearson"]["ci"]["low"],
            "pearson_high": data["pearson"]["ci"]["high"],
            "kendall": data["kendall"]["value"],
            "kendall_low": data["kendall"]["ci"]["low"],
            "kendall_high": data["kendall"]["ci"]["high"],
            "level": data["pearson"]["ci"]["level"],
            "path": str(file),
        }
    return {}
