"""The results of a comparison: per entry, the runs and their mean and std, as JSON, a table and Markdown.

:func:`collect_results` turns the runs into results.json's dict; :func:`table_rows` and
:func:`results_markdown` format it (the console table, results.md, the report's table).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable

from archgraph.core.measure import LEGACY_PEAK_MB, PEAK_CUDA_ALLOCATED_MB, PEAK_MEMORY_KEYS, PEAK_RSS_MB, PEAK_RSS_WINDOW_MB, PeakMemory, peak_memory_of
from archgraph.studies.compare.plan import FORMAT, Plan, Run
from archgraph.studies.compare.stats import study_statistics

SPENT = ("weight_steps", "arch_steps", "images", "forward_gflop", "wall_seconds")  # final.json "spent" (interface 2)
PEAK_NOTES = {  # a search's peak memory, under the name of its quantity (archgraph.core.measure; execute.search_peak)
    PEAK_CUDA_ALLOCATED_MB: "CUDA: peak memory allocated to tensors during the search",
    PEAK_RSS_WINDOW_MB: "CPU: peak RSS of the process during the search (includes the process baseline)",
    PEAK_RSS_MB: "CPU where the RSS peak cannot be reset: the searching process's peak RSS since it started, from search.jsonl",
    LEGACY_PEAK_MB: "an older results.json's peak memory: CUDA allocated on a GPU, peak RSS on the CPU",
}


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
        for key in ("t_miou", "s_miou", "search_seconds", "params", "flops"):
            mean, std = _mean_std(r.result.get(key) for r in done)
            summary[f"{key}_mean"], summary[f"{key}_std"] = mean, std
        peaks = [p for p in (peak_memory_of(r.result) for r in done) if p is not None]
        for quantity in dict.fromkeys(p.quantity for p in peaks):  # one per device in practice; never averaged across quantities
            summary[f"{quantity}_mean"], summary[f"{quantity}_std"] = _mean_std(p.mb for p in peaks if p.quantity == quantity)
        for key in SPENT:
            summary[f"spent_{key}_mean"] = _mean_std((r.result.get("spent") or {}).get(key) for r in done)[0]
        kind = mine[0].kind
        entries.append({"name": name, "kind": kind, "summary": summary, "runs": rows, **entry_settings(plan, name, kind)})
    return {
        "format": FORMAT,
        "plan": plan.to_dict(),
        "budget": plan.budget,
        "entries": entries,
        "statistics": study_statistics(entries),
        "notes": {
            "t_miou": "stand-alone mIoU on the validation split after training with the config's train section (mean and sample std over runs)",
            "s_miou": "mIoU of the derived architecture inside the supernet (subnet mode, BN recalibrated) at the end of the search",
            "search_seconds": "wall time of run_search summed over sessions",
            **{q: PEAK_NOTES[q] for q in PEAK_MEMORY_KEYS},
            "random": "one architecture per run; its mean and std are over architectures, not seeds",
            "ci": "95% Student-t interval of the mean over runs (none with one run)",
            "spent": "what each search recorded in final.json's spent (means over runs): weight steps, architecture steps, training images seen, forward GFLOPs, wall seconds",
            "best-of-N": "nothing here is a best run: every number is a mean over runs or a test on all of them",
        },
    }


def entry_settings(plan: Plan, name: str, kind: str) -> dict[str, Any]:
    """What makes an entry what it is, for the report: its strategy, its ``--strategy-set`` options,
    its variant settings (a study's, a selector), and the space it searched (the statistics test an
    entry against random architectures only from the same space)."""
    from archgraph.studies.compare.plan import run_config

    if kind != "strategy":
        return {"space": run_config(plan.base, plan.seeds[0]).space}
    variant = plan.variants.get(name, {})
    cfg = run_config(plan.base, plan.seeds[0], name, plan.strategy_options, variant or None, search=False)
    options = {**plan.strategy_options.get(plan.strategy_of(name), {}), **plan.strategy_options.get(name, {})}
    return {"strategy": plan.strategy_of(name), "options": options, "settings": {k: v for k, v in variant.items() if k != "strategy" and v not in (None, {})}, "space": cfg.space}


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


TABLE_HEAD = ("entry", "runs", "S-mIoU", "T-mIoU", "95% CI", "weight steps", "arch steps", "images", "search GFLOP", "search time (s)", "peak mem (MB)", "params (M)", "GFLOPs", "flags")


def summary_peak(summary: dict[str, Any]) -> PeakMemory | None:
    """An entry's mean search peak memory and its quantity; an older results.json's ``peak_mem_mb_mean`` too."""
    for quantity in (*PEAK_MEMORY_KEYS, LEGACY_PEAK_MB):
        if summary.get(f"{quantity}_mean") is not None:
            return PeakMemory(quantity, summary[f"{quantity}_mean"])
    return None


def run_peak_mb(run: dict[str, Any]) -> float | None:
    """A run's search peak memory in MB, whichever quantity it is (old results.json rows too)."""
    peak = peak_memory_of(run)
    return None if peak is None else peak.mb


def peak_quantities(results: dict[str, Any]) -> list[str]:
    """The peak-memory quantities the table's column shows, in the order entries show them."""
    found = (summary_peak(e["summary"]) for e in results["entries"])
    return list(dict.fromkeys(p.quantity for p in found if p is not None))


def _ci(stats: dict[str, Any] | None) -> str:
    ci = (stats or {}).get("ci")
    return "-" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    st = results.get("statistics") or {}
    for e in results["entries"]:
        s = e["summary"]
        flags = (st.get("flags") or {}).get(e["name"], [])
        rows.append(
            [
                display_name(e),
                f"{s['finished']}/{s['runs']}",
                _pm(s["s_miou_mean"], s["s_miou_std"]),
                _pm(s["t_miou_mean"], s["t_miou_std"]),
                _ci((st.get("entries") or {}).get(e["name"])),
                _scaled(s.get("spent_weight_steps_mean"), 1, "{:.0f}"),
                _scaled(s.get("spent_arch_steps_mean"), 1, "{:.0f}"),
                _scaled(s.get("spent_images_mean"), 1, "{:.0f}"),
                _scaled(s.get("spent_forward_gflop_mean"), 1, "{:.4g}"),
                _pm(s["search_seconds_mean"], s["search_seconds_std"], "{:.0f}"),
                _scaled(getattr(summary_peak(s), "mb", None), 1, "{:.0f}"),
                _scaled(s["params_mean"], 1e6, "{:.3g}"),
                _scaled(s["flops_mean"], 1e9, "{:.3g}"),
                f"{len(flags)} ⚠" if flags else "",
            ]
        )
    return rows


def _p(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3g}" if v >= 1e-3 else "<0.001")


def random_test_rows(results: dict[str, Any]) -> list[list[str]]:
    """Each strategy against the random architectures: difference, test, p, Holm's p, effect, percentile."""
    st = results.get("statistics") or {}
    rows = []
    for name, block in (st.get("entries") or {}).items():
        test = block.get("vs_random")
        if not test:
            continue
        if "skipped" in test:
            rows.append([name, "-", "-", "-", "-", "-", "-", test["skipped"]])
            continue
        eff, pct = test.get("effect_random_sd"), test.get("percentile_among_random")
        rows.append(
            [name, _scaled(test["diff"], 1, "{:+.4f}"), test["test"] or "none", _p(test["p"]), _p(test.get("p_holm")), "-" if eff is None else f"{eff:+.2f}", "-" if pct is None else f"{pct:.0f}", ""]
        )
    return rows


RANDOM_HEAD = ("strategy", "T-mIoU - random", "test", "p", "p (Holm)", "effect (random sd)", "percentile among random", "note")
PAIR_HEAD = ("a", "b", "mean a - b", "test", "p", "p (Holm)")


def pair_rows(results: dict[str, Any]) -> list[list[str]]:
    return [[p["a"], p["b"], _scaled(p["diff"], 1, "{:+.4f}"), p["test"] or "none", _p(p["p"]), _p(p.get("p_holm"))] for p in (results.get("statistics") or {}).get("pairs", [])]


def search_warnings(results: dict[str, Any]) -> list[str]:
    """Every search's final.json warning, with its entry and seed."""
    return [f"{e['name']} seed {r['seed']}: {r['search_warning']}" for e in results["entries"] for r in e["runs"] if r.get("search_warning")]


def _md_table(head: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *["| " + " | ".join(r) + " |" for r in rows]]


def results_markdown(results: dict[str, Any], plots: list[str], topologies: dict[str, str]) -> str:
    plan = results["plan"]
    crop = plan["config"]["data"]["crop"]
    lines = [
        "# archgraph compare",
        "",
        f"Strategies {', '.join(plan['strategies'])}; seeds {', '.join(map(str, plan['seeds']))}; "
        f"data {plan['config']['data']['name']} (crop {crop[0]}x{crop[1]}, scale {plan['config']['data']['scale']}); "
        f"training: {plan['config']['train']['epochs']} epochs; search budget: **{results.get('budget', 'official')}**"
        + (f"; named study {plan['study']['name']} ({plan['study']['size']})" if plan.get("study") else "")
        + ". Mean ± sample std over runs, 95% t-interval of the mean; FLOPs at the crop; the spent columns are what "
        "each search recorded (means over runs). No number is a best-of-N." + "".join(f" Peak mem: `{q}`, {PEAK_NOTES[q]}." for q in peak_quantities(results)),
        "",
        *_md_table(TABLE_HEAD, table_rows(results)),
    ]
    st = results.get("statistics") or {}
    flagged = {n: f for n, f in (st.get("flags") or {}).items() if f}
    if flagged:
        lines += ["", "## Degenerate results (read these entries with care)", ""]
        lines += [f"- **{n}**: {'; '.join(f)}" for n, f in flagged.items()]
    tests = random_test_rows(results)
    if tests:
        lines += ["", f"## Strategies against random architectures ({st.get('random_entry')})", "", *_md_table(RANDOM_HEAD, tests)]
    pairs = pair_rows(results)
    if pairs:
        lines += ["", "## Strategy against strategy (Holm-corrected across the pairs)", "", *_md_table(PAIR_HEAD, pairs)]
    if st.get("method"):
        lines += ["", f"Method: {st['method']}."]
    warnings = search_warnings(results)
    if warnings:
        lines += ["", "## Search warnings", "", *[f"- {w}" for w in warnings]]
    options = [(e["name"], e.get("options"), e.get("settings")) for e in results["entries"] if e.get("options") or e.get("settings")]
    if options:
        lines += ["", "## Entry settings", "", *[f"- {n}: " + "; ".join(f"{k}={v}" for k, v in {**(o or {}), **(st_ or {})}.items()) for n, o, st_ in options]]
    failed = [(e["name"], r) for e in results["entries"] for r in e["runs"] if r.get("status") == "failed"]
    if failed:
        lines += ["", "Failed runs:", *[f"- {n} seed {r['seed']}: {r.get('error')}" for n, r in failed]]
    lines += ["", "## Plots", *[f"![{p}]({p})" for p in plots if p.endswith(".svg")], "", "## Topologies"]
    lines += [f"- {name}: [{path}]({path})" for name, path in topologies.items()]
    return "\n".join(lines) + "\n"
