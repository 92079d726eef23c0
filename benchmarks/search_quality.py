"""Does the search find better architectures than chance? A search-quality study on CamVid.

For each strategy and seed: a search, then its derived architecture trained stand-alone. Against it:
``--random`` architectures drawn uniformly from the same space and the space's presets (FCN,
hourglass, DeepLabv3, HRNet), every one trained with the *same* recipe. Reported per entry: T-mIoU on
CamVid val (mean +- sample std), and for the searches how far the architecture parameters moved
(decision margins and entropies at the start and the end, decisions changed, architecture steps).
The searched mean is tested against the random mean with Welch's t-test and a bootstrap interval of
the difference (scipy.stats), and its distance from the random mean is given in random standard
deviations.

    OMP_NUM_THREADS=1 python benchmarks/search_quality.py --data ../shared/datasets/camvid --out runs/quality
    python benchmarks/search_quality.py --out runs/quality --report-only        # re-read finished runs

Jobs run in ``--workers`` processes (one thread each); a killed study resumes where it stopped
(finished searches and trainings are kept, unfinished searches continue from their checkpoint).
``--smoke`` runs the same pipeline on tiny synthetic data (seconds; what the test suite checks).
The recipe (RECIPE below) is the one in benchmarks/README.md; change it with ``--set``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

# CamVid at quarter resolution (90x120 images, 88x120 crops), DCSS L=4, F=8; 8 search epochs of 30
# steps (2 weight-only warm-up), every architecture trained 8 epochs alike. One CPU core: about 6 min
# per search and 2.5 min per training.
RECIPE = [
    "data.name=camvid",
    "data.scale=0.25",
    "data.crop=[88,120]",
    "data.batch_size=4",
    "space.layers=4",
    "space.base_channels=8",
    "search.epochs=8",
    "search.warmup_epochs=2",
    "search.steps_per_epoch=30",
    "search.eval_every=8",
    "train.epochs=8",
    "train.eval_every=8",
    "train.lr=0.05",
]
SMOKE = [
    "data.name=synthetic",
    "data.crop=[32,32]",
    "data.num_samples=32",
    "data.batch_size=4",
    "space.layers=2",
    "space.base_channels=4",
    "search.epochs=2",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=3",
    "search.eval_every=2",
    "search.bn_recalib_batches=1",
    "train.epochs=1",
    "train.steps_per_epoch=2",
]


# --------------------------------------------------------------------------------------------------
# jobs (each runs in a worker process)


def _config(overrides: list[str], seed: int, strategy: str | None = None):
    from archgraph.config import load_config

    extra = [f"seed={seed}"] + ([f"strategy.name={strategy}"] if strategy else [])
    return load_config(None, overrides + extra)


def _train(cfg, graph, folder: Path) -> dict[str, Any]:
    from archgraph.engine.train import METRICS, LAST, run_training

    if (folder / METRICS).is_file():
        return json.loads((folder / METRICS).read_text())
    return run_training(cfg, graph, folder, resume=(folder / LAST).is_file(), progress=False)


def search_and_train(overrides: list[str], strategy: str, seed: int, folder: str, entry: str | None = None, variant: list[str] | None = None, selectors: list[str] = ()) -> list[dict[str, Any]]:
    """One strategy (or variant of it) x seed: search (resumed if unfinished), then train what it derived,
    and for each of ``selectors`` the architecture that selector picks from the same trained supernet
    (selection as its own stage, :mod:`archgraph.studies.reselect`), trained alike."""
    import torch

    from archgraph.core.graph import load
    from archgraph.core.measure import Timer
    from archgraph.engine.checkpoint import has_checkpoint
    from archgraph.engine.search import CHECKPOINT, run_search

    torch.set_num_threads(1)
    root = Path(folder)
    search_dir = root / "search"
    cfg = _config(overrides + list(variant or []), seed, strategy)
    with Timer(cfg.device) as clock:
        if not (search_dir / "final.json").is_file():
            run_search(cfg, search_dir, resume=has_checkpoint(search_dir / CHECKPOINT), progress=False)
    search_seconds = clock.seconds
    metrics = _train(_config(overrides, seed), load(search_dir / "arch.yaml"), root / "train")
    name = entry or strategy
    results = [
        {
            "entry": name,
            "seed": seed,
            "t_miou": metrics["miou"],
            "params": metrics["params"],
            "flops": metrics["flops"],
            "folder": folder,
            "search_seconds": search_seconds,
            **search_movement(search_dir),
        }
    ]
    for spec in selectors:
        results.append(_select_and_train(overrides, search_dir, root, name, seed, spec))
    return results


def _select_and_train(overrides: list[str], search_dir: Path, root: Path, entry: str, seed: int, spec: str) -> dict[str, Any]:
    """Selector ``spec`` run on the finished search's supernet (kept under search/selected/), its pick trained."""
    from archgraph.commands.select import selection_folder
    from archgraph.core.graph import load, save
    from archgraph.io import atomic_write_json
    from archgraph.studies.reselect import select_from_run

    folder = selection_folder(search_dir, spec)
    if not (folder / "selection.json").is_file():
        derived, scores, record = select_from_run(search_dir, spec)
        folder.mkdir(parents=True, exist_ok=True)
        save(derived, folder / "arch.yaml")
        atomic_write_json(folder / "selection.json", record)
    record = json.loads((folder / "selection.json").read_text())
    metrics = _train(_config(overrides, seed), load(folder / "arch.yaml"), root / f"train-{folder.name}")
    return {
        "entry": f"{entry}+{spec}",
        "seed": seed,
        "t_miou": metrics["miou"],
        "params": metrics["params"],
        "flops": metrics["flops"],
        "folder": str(root),
        "selection_seconds": record.get("seconds"),
        "selection_candidates": record.get("candidates"),
        "s_miou": None,
        "selector": spec,
    }


def train_baseline(overrides: list[str], entry: str, seed: int, arch_file: str, folder: str) -> dict[str, Any]:
    import torch

    from archgraph.core.graph import load

    torch.set_num_threads(1)
    metrics = _train(_config(overrides, seed), load(arch_file), Path(folder))
    return {"entry": entry, "seed": seed, "t_miou": metrics["miou"], "params": metrics["params"], "flops": metrics["flops"], "folder": folder}


def search_movement(search_dir: Path) -> dict[str, Any]:
    """How far the architecture parameters moved: margins and entropies at the first and the last
    epoch (the first is a warm-up epoch, so it shows the initialisation), decisions changed in all."""
    records = [json.loads(l) for l in (search_dir / "search.jsonl").read_text().splitlines() if l.strip()]
    final = json.loads((search_dir / "final.json").read_text())
    first, last = records[0], records[-1]
    out: dict[str, Any] = {"s_miou": final.get("s_miou"), "arch_steps": final.get("arch_steps_total"), "warning": final.get("warning")}
    for key in ("margin_alpha", "margin_beta", "entropy_alpha", "entropy_beta"):
        out[f"{key}_start"], out[f"{key}_end"] = first.get(key), last.get(key)
    out["changed_ops"] = sum(r.get("changed_ops", 0) for r in records)
    out["changed_inputs"] = sum(r.get("changed_inputs", 0) for r in records)
    out["grad_snr"] = [r.get("arch_grad_snr") for r in records]
    return out


# --------------------------------------------------------------------------------------------------
# planning


def baseline_jobs(overrides: list[str], out: Path, random_count: int, seeds: list[int]) -> list[tuple]:
    """(entry, seed, arch file, folder) for the presets (first seed) and the random architectures
    (seeds in turn), their architecture files written now so a resumed study trains the same ones."""
    from archgraph.builders import space_for_training
    from archgraph.core.graph import save
    from archgraph.core.spaces_api import build_preset, preset_names
    from archgraph.studies.compare.baselines import random_architectures

    cfg = _config(overrides, seeds[0])
    space = space_for_training(cfg)
    jobs = []
    for name in preset_names(cfg.space_name):
        path = out / "archs" / f"preset-{name}.yaml"
        if not path.is_file():
            save(build_preset(name, space), path)
        jobs.append((f"preset:{name}", seeds[0], str(path), str(out / "runs" / f"preset-{name}")))
    for i, (_, arch) in enumerate(random_architectures(space, random_count, seed=cfg.seed, image_hw=tuple(cfg.data.crop))):
        path = out / "archs" / f"random-{i}.yaml"
        if not path.is_file():
            save(arch, path)
        seed = seeds[i % len(seeds)]
        jobs.append(("random", seed, str(path), str(out / "runs" / f"random-{i}")))
    return jobs


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    """``NAME:STRATEGY:key=value,key=value`` -> (entry name, strategy, overrides)."""
    name, strategy, settings = (text.split(":", 2) + ["", ""])[:3]
    if not name or not strategy:
        raise SystemExit(f"--variant {text!r}: write NAME:STRATEGY:key=value,key=value, e.g. lr0.03:dcnas:search.arch_lr=0.03")
    return name, strategy, [s for s in settings.split(",") if s]


def run_jobs(
    overrides: list[str],
    out: Path,
    strategies: list[str],
    seeds: list[int],
    random_count: int,
    workers: int,
    variants: list[tuple[str, str, list[str]]] = (),
    retrain: str | None = None,
    search_seeds: list[int] | None = None,
    selectors: list[str] = (),
) -> list[dict[str, Any]]:
    """Every job in ``workers`` processes, searches first (they take longest); results as they come."""
    results: list[dict[str, Any]] = []
    baselines = baseline_jobs(overrides, out, random_count, seeds)
    if retrain:  # one architecture, every seed: how much of a spread is training noise
        arch = out / "runs" / f"{retrain}-seed{seeds[0]}" / "search" / "arch.yaml"
        baselines += [(f"retrain:{retrain}", seed, str(arch), str(out / "runs" / f"retrain-{retrain}-seed{seed}")) for seed in seeds]
    searches = [(s, s, []) for s in strategies] + list(variants)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(search_and_train, overrides, strategy, seed, str(out / "runs" / f"{name}-seed{seed}"), name, extra, list(selectors))
            for name, strategy, extra in searches
            for seed in (search_seeds or seeds)
        ]
        futures += [pool.submit(train_baseline, overrides, entry, seed, arch, folder) for entry, seed, arch, folder in baselines]
        for future in as_completed(futures):
            done = future.result()
            for result in done if isinstance(done, list) else [done]:
                results.append(result)
                print(f"[{time.strftime('%H:%M:%S')}] {result['entry']} seed {result['seed']}: T-mIoU {result['t_miou']:.4f}", flush=True)
                with (out / "jobs.jsonl").open("a") as log:
                    log.write(json.dumps(result) + "\n")
    return results


# --------------------------------------------------------------------------------------------------
# analysis


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def compare_to_random(searched: list[float], random: list[float], seed: int = 0) -> dict[str, Any]:
    """Welch's t-test and a bootstrap 95% interval of mean(searched) - mean(random)."""
    import numpy as np
    from scipy import stats

    out: dict[str, Any] = {"diff": statistics.fmean(searched) - statistics.fmean(random)}
    r_std = statistics.stdev(random) if len(random) > 1 else None
    out["diff_in_random_sd"] = out["diff"] / r_std if r_std else None
    if len(searched) > 1 and len(random) > 1:
        t = stats.ttest_ind(searched, random, equal_var=False)
        out["welch_t"], out["welch_p"] = float(t.statistic), float(t.pvalue)
        boot = stats.bootstrap(
            (np.asarray(searched), np.asarray(random)), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), n_resamples=2000, confidence_level=0.95, method="percentile", random_state=seed
        )
        out["diff_ci95"] = [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]
    return out


def summarise(results: list[dict[str, Any]], strategies: list[str]) -> dict[str, Any]:
    """Per entry mean/std, the tests against random, the best preset, the movement of the parameters."""
    by_entry: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: (r["entry"], r["seed"])):
        by_entry.setdefault(r["entry"], []).append(r)
    random = [r["t_miou"] for r in by_entry.get("random", [])]
    presets = {e: rs[0]["t_miou"] for e, rs in by_entry.items() if e.startswith("preset:")}
    best_preset = max(presets.items(), key=lambda kv: kv[1]) if presets else None
    summary: dict[str, Any] = {"entries": {}, "best_preset": best_preset}
    for entry, rows in by_entry.items():
        mean, std = _mean_std([r["t_miou"] for r in rows])
        item: dict[str, Any] = {"n": len(rows), "t_miou_mean": mean, "t_miou_std": std, "runs": rows, "params_mean": statistics.fmean(r["params"] for r in rows)}
        if entry in strategies:
            if len(random) > 1:
                item["vs_random"] = compare_to_random([r["t_miou"] for r in rows], random)
            if best_preset:
                item["vs_best_preset"] = mean - best_preset[1]
            for key in (
                "margin_alpha_start",
                "margin_alpha_end",
                "margin_beta_start",
                "margin_beta_end",
                "entropy_alpha_start",
                "entropy_alpha_end",
                "entropy_beta_start",
                "entropy_beta_end",
                "changed_ops",
                "changed_inputs",
                "arch_steps",
            ):
                values = [r[key] for r in rows if r.get(key) is not None]
                if values:
                    item[key] = statistics.fmean(values)
            sd = item.get("vs_random", {}).get("diff_in_random_sd")
            item["targets_met"] = {
                "two_random_sd": sd is not None and sd >= 2,
                "one_point_over_best_preset": best_preset is not None and mean - best_preset[1] >= 0.01,
            }
        summary["entries"][entry] = item
    return summary


def markdown(summary: dict[str, Any], strategies: list[str]) -> str:
    lines = [
        "| entry | n | T-mIoU (val) | vs random | Welch p | params (M) | margin alpha start -> end | margin beta start -> end | H(alpha) end | decisions changed (ops / inputs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = strategies + sorted(e for e in summary["entries"] if e.startswith("preset:")) + ["random"] + sorted(e for e in summary["entries"] if e.startswith("retrain:"))
    for entry in order:
        item = summary["entries"].get(entry)
        if item is None:
            continue
        pm = f"{item['t_miou_mean']:.4f}" + (f" ± {item['t_miou_std']:.4f}" if item["t_miou_std"] is not None else "")
        vs = item.get("vs_random", {})
        sd = f"{vs['diff']:+.4f} ({vs['diff_in_random_sd']:+.1f} sd)" if vs.get("diff_in_random_sd") is not None else "-"
        p = f"{vs['welch_p']:.3f}" if "welch_p" in vs else "-"
        mv = lambda k: f"{item[k + '_start']:.4f} -> {item[k + '_end']:.4f}" if k + "_start" in item and k + "_end" in item else "-"
        ent = f"{item['entropy_alpha_end']:.4f}" if "entropy_alpha_end" in item else "-"
        changed = f"{item.get('changed_ops', 0):.0f} / {item.get('changed_inputs', 0):.0f}" if "changed_ops" in item else "-"
        name = entry.replace("preset:", "") + (" (preset)" if entry.startswith("preset:") else "")
        name = f"{entry.split(':', 1)[1]} seed-0 architecture, every seed" if entry.startswith("retrain:") else name
        lines.append(f"| {name} | {item['n']} | {pm} | {sd} | {p} | {item['params_mean'] / 1e6:.3f} | {mv('margin_alpha')} | {mv('margin_beta')} | {ent} | {changed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="study folder (resumed when it exists)")
    p.add_argument("--data", default="../shared/datasets/camvid", help="CamVid folder (SegNet layout)")
    p.add_argument("--strategies", default="dcnas", help="comma-separated strategies (default: dcnas; 'none' for variants only)")
    p.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        metavar="NAME:STRATEGY:KEY=VALUE,...",
        help="a searched entry with its own settings, e.g. lr0.03:dcnas:search.arch_lr=0.03 (repeatable)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (baselines cycle through them)")
    p.add_argument("--search-seeds", default=None, metavar="LIST", help="seeds for the searched entries only, e.g. 3,4 to add seeds to a finished study (default: the --seeds)")
    p.add_argument("--random", type=int, default=6, help="random architectures (default 6)")
    p.add_argument("--workers", type=int, default=2, help="worker processes, one thread each (default 2)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE", help="change the recipe")
    p.add_argument("--retrain", default=None, metavar="ENTRY", help="also train ENTRY's seed-0 architecture (e.g. dcnas) with every seed: the training noise of one architecture")
    p.add_argument(
        "--selectors",
        default="",
        metavar="SPEC,...",
        help="also run each selector on every finished search's supernet and train its pick, e.g. topk,proxy:synflow:24 "
        "(entries STRATEGY+SPEC; the search's own derived architecture stays the STRATEGY entry)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny synthetic recipe (seconds)")
    p.add_argument("--report-only", action="store_true", help="only summarise the jobs already in OUT/jobs.jsonl")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip() and s.strip() != "none"]
    variants = [parse_variant(v) for v in args.variants]
    overrides = (SMOKE if args.smoke else RECIPE + [f"data.root={args.data}"]) + args.overrides
    seeds = list(range(args.seeds))
    if not args.report_only:
        from archgraph.core.measure import Timer

        clock = Timer()
        search_seeds = [int(s) for s in args.search_seeds.split(",")] if args.search_seeds else None
        selectors = [x.strip() for x in args.selectors.split(",") if x.strip()]
        run_jobs(overrides, out, strategies, seeds, args.random, args.workers, variants, args.retrain, search_seeds, selectors)
        print(f"all jobs: {clock.read():.0f} s wall with {args.workers} workers", flush=True)
    # Every job ever finished in this folder (earlier invocations too), the latest per entry and seed.
    latest = {(r["entry"], r["seed"], r["params"], r["flops"]): r for r in (json.loads(l) for l in (out / "jobs.jsonl").read_text().splitlines() if l.strip())}
    results = list(latest.values())
    searched = sorted({r["entry"] for r in results if "s_miou" in r}, key=lambda e: (e not in strategies, e))
    summary = summarise(results, searched)
    summary["recipe"] = overrides
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = markdown(summary, searched)
    (out / "summary.md").write_text(table)
    print(table)
    for s in searched:
        item = summary["entries"].get(s, {})
        print(f"{s}: targets {item.get('targets_met')}; vs random {json.dumps(item.get('vs_random'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
