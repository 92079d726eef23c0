"""The results of a comparison: per entry, the runs and their mean and std, as JSON, a table and Markdown.

:func:`collect_results` turns the runs into results.json's dict; :func:`table_rows` and
:func:`results_markdown` format it (the console table, results.md, the report's table).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable

from archgraph.studies.compare.plan import FORMAT, Plan, Run


def _mean_std(values: Iterable[Any]) -> tuple[float | None, float | None]:
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def collect_results(plan: Plan, out: Path, runs: list[Run]) -> dict[str, Any]:
    """results.json's dict: the plan, per entry its runs and a summary (mean and sample std over the
    finished runs), and notes on what each number is."""
    entries: list[dict[str, Any]] = []
    order = list(dict.fromkeys(r.entry for r in runs))
    for name in order:
        mine = [r for r in runs if r.entry == name]
        done = [r for r in mine if r.status == "done"]
        rows = []
        for r in mine:
            row = {"seed": r.seed, "status": r.status, "folder": str(r.folder.relative_to(out)), **r.result}
            if r.error:
                row["error"] = r.error
            rows.append(row)
        summary: dict[str, Any] = {"runs": len(mine), "finished": len(done), "distinct_archs": len({r.result.get("arch_hash") for r in done})}
        for key in ("t_miou", "s_miou", "search_seconds", "peak_mem_mb", "params", "flops"):
            mean, std = _mean_std(r.result.get(key) for r in done)
            summary[f"{key}_mean"], summary[f"{key}_std"] = mean, std
        entries.append({"name": name, "kind": mine[0].kind, "summary": summary, "runs": rows})
    return {
        "format": FORMAT,
        "plan": plan.to_dict(),
        "entries": entries,
        "notes": {
            "t_miou": "stand-alone mIoU on the validation split after training with the config's train section (mean and sample std over runs)",
            "s_miou": "mIoU of the derived architecture inside the supernet (subnet mode, BN recalibrated) at the end of the search",
            "search_seconds": "wall time of run_search summed over sessions",
            "peak_mem_mb": "CUDA: peak allocated; CPU: peak RSS of the process during the search (includes the process baseline)",
            "random": "one architecture per run; its mean and std are over architectures, not seeds",
        },
    }


def display_name(entry: dict[str, Any]) -> str:
    name = entry["name"]
    if entry["kind"] == "preset":
        return f"{name.split(':', 1)[1]} (preset)"
    if entry["kind"] == "random":
        return f"random (n={entry['summary']['runs']})"
    return name


def _pm(mean: float | None, std: float | None, fmt: str = "{:.4f}") -> str:
    if mean is None:
        return "-"
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if std is not None else "")


def _scaled(v: float | None, div: float, fmt: str) -> str:
    return "-" if v is None else fmt.format(v / div)


def format_value(v: Any, fmt: str = "{:.4f}") -> str:
    return "" if v is None else fmt.format(v)


TABLE_HEAD = ("entry", "runs", "S-mIoU", "T-mIoU", "search time (s)", "peak mem (MB)", "params (M)", "GFLOPs")


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for e in results["entries"]:
        s = e["summary"]
        rows.append([
            display_name(e), f"{s['finished']}/{s['runs']}", _pm(s["s_miou_mean"], s["s_miou_std"]), _pm(s["t_miou_mean"], s["t_miou_std"]),
            _pm(s["search_seconds_mean"], s["search_seconds_std"], "{:.0f}"), _scaled(s["peak_mem_mb_mean"], 1, "{:.0f}"),
            _scaled(s["params_mean"], 1e6, "{:.3g}"), _scaled(s["flops_mean"], 1e9, "{:.3g}"),
        ])
    return rows


def results_markdown(results: dict[str, Any], plots: list[str], topologies: dict[str, str]) -> str:
    plan = results["plan"]
    crop = plan["config"]["data"]["crop"]
    lines = [
        "# archgraph compare", "",
        f"Strategies {', '.join(plan['strategies'])}; seeds {', '.join(map(str, plan['seeds']))}; "
        f"data {plan['config']['data']['name']} (crop {crop[0]}x{crop[1]}, scale {plan['config']['data']['scale']}); "
        f"training: {plan['config']['train']['epochs']} epochs. Mean ± sample std over runs; FLOPs at the crop.", "",
        "| " + " | ".join(TABLE_HEAD) + " |", "|" + "---|" * len(TABLE_HEAD),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(results)]
    failed = [(e["name"], r) for e in results["entries"] for r in e["runs"] if r.get("status") == "failed"]
    if failed:
        lines += ["", "Failed runs:", *[f"- {n} seed {r['seed']}: {r.get('error')}" for n, r in failed]]
    lines += ["", "## Plots", *[f"![{p}]({p})" for p in plots if p.endswith(".svg")], "", "## Topologies"]
    lines += [f"- {name}: [{path}]({path})" for name, path in topologies.items()]
    return "\n".join(lines) + "\n"
