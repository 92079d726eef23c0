"""checklist.md: the NAS best-practice checklist (Lindauer & Hutter 2020), filled in from a comparison.

Why: a reader of a results table needs to know, before the numbers, whether the runs were comparable
(same seeds, budgets, data, training), whether the baselines that matter were there, which split
picked the architectures, how much tuning went in, on what hardware and with what code. Each item is
answered from results.json and the plan, not from what the user meant to run: the budget item reads
the steps each search *recorded* (final.json ``spent``).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def code_version() -> str:
    """``git describe --always --dirty`` of the source tree when it is a checkout, else the installed
    package's version."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=here, capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return f"git {out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"archgraph {version('archgraph')}"
    except PackageNotFoundError:
        return "unknown (not a git checkout, package not installed)"


def hardware(device: str) -> str:
    """The device the runs used, as a person would name it."""
    cpu = f"{platform.machine()} {platform.processor() or ''}".strip()
    text = f"{device}; host {cpu}, {os.cpu_count()} CPU cores, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}"
    if device.startswith("cuda"):
        try:
            import torch

            text += f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no GPU visible to this process"
        except Exception:  # noqa: BLE001 - the checklist must be written whatever torch says
            pass
    return text


def _spent_equal(results: dict[str, Any]) -> str:
    """Whether every finished search recorded the same weight and architecture steps; a strategy that
    takes no architecture steps by design (SPOS, rsws: final.json's ``arch_steps_note``) is held to
    the weight steps only."""
    seen, by_design, names = set(), set(), set()
    for e in results["entries"]:
        for r in e["runs"]:
            spent = r.get("spent") or {}
            if e["kind"] == "strategy" and r.get("status") == "done" and spent:
                if r.get("arch_steps_note") and not spent.get("arch_steps"):
                    by_design.add(spent.get("weight_steps"))
                    names.add(e["name"])
                else:
                    seen.add((spent.get("weight_steps"), spent.get("arch_steps")))
    if not seen and not by_design:
        return "not recorded (no finished search carries final.json's \"spent\")"
    weights = {w for w, _ in seen} | by_design
    if len(seen) <= 1 and len(weights) == 1:
        w = next(iter(weights))
        arch = f"{next(iter(seen))[1]} architecture steps" if seen else "no architecture steps"
        tail = f" ({', '.join(sorted(names))}: none, by design)" if names and seen else ""
        return f"yes: every search took {w} weight steps and {arch}{tail}"
    return "no: the searches took different steps (weight, architecture): " + ", ".join(f"({w}, {a})" for w, a in sorted(seen, key=str)) + "; read T-mIoU together with the spent columns"


def checklist_markdown(results: dict[str, Any]) -> str:
    """The filled-in checklist, one answered item per line."""
    plan = results["plan"]
    cfg = plan["config"]
    entries = results["entries"]
    kinds = {e["kind"] for e in entries}
    random = next((e for e in entries if e["kind"] == "random"), None)
    seeds = plan["seeds"]
    options = plan.get("strategy_options") or {}
    variants = plan.get("variants") or {}
    search = cfg.get("search", {})
    split = search.get("select_split", "trainB (the default where the config has no search.select_split)")
    strategies = [e["name"] for e in entries if e["kind"] == "strategy"]
    rsws = [s for s in strategies if (variants.get(s, {}).get("strategy", s)) == "rsws"]
    study = plan.get("study")
    items = [
        ("Seeds", f"{len(seeds)} ({', '.join(map(str, seeds))}), the same for every strategy and preset; random architectures take the seeds in turn. Search and training both vary with the seed."),
        ("Budget mode", f"`{plan.get('budget', 'official')}` (search.budget)"),
        ("Equal search budgets (recorded)", _spent_equal(results)),
        (
            "Same training and evaluation",
            f"every architecture trained with one recipe ({cfg['train']['epochs']} epochs) and scored on the same split ({cfg['data'].get('val_split', 'val')}) at the same crop",
        ),
        ("Random architectures", f"yes, n = {random['summary']['runs']}" if random else "no: add --baselines random:N (the first baseline Yu et al. 2020 ask for)"),
        ("Random search with weight sharing (rsws)", "yes" if rsws else "no: add rsws to --strategies (Li & Talwalkar 2019)"),
        ("Hand-designed baselines", "yes" if "preset" in kinds else "no"),
        ("Selection split", f"architectures are picked on {split}, carved from the training data; data.val is read only to report (S-mIoU per epoch and T-mIoU)"),
        (
            "Tuning effort",
            ("strategy options set for this study: " + "; ".join(f"{k}: {v}" for k, v in options.items()) if options else "none: every strategy runs with its paper's defaults, untuned on this data")
            + (f"; the named study {study['name']} ({study['size']}) fixes each entry's settings" if study else ""),
        ),
        ("Hardware", hardware(str(cfg.get("device", "cpu")))),
        ("Code version", code_version()),
        ("Statistics", results.get("statistics", {}).get("method", "-")),
    ]
    lines = [
        "# Best-practice checklist",
        "",
        "Lindauer & Hutter (2020), \"Best practices for scientific research on neural architecture search\", answered from this comparison's records (results.json, compare.json).",
        "",
    ]
    lines += [f"- **{k}**: {v}" for k, v in items]
    return "\n".join(lines) + "\n"
