"""Do other supernets rank the architectures of a finished correlation study as training does?

``archgraph correlate`` trains N architectures stand-alone once; this scores the *same* N with the
shared weights of other finished searches (other seeds, longer searches, other strategies of the same
space and size) and reports, per search, the rank statistics and the scorer's pick of K against the
study's stand-alone mIoU, each with its bootstrap interval (the correlate study's own statistics,
``archgraph.studies.correlate.stats``). No training: one supernet scoring pass per search.

Why: whether a longer search or another seed ranks better is the question behind "what search budget
would make selection pay", and answering it by retraining N architectures per supernet costs N
trainings each time.

    OMP_NUM_THREADS=1 python benchmarks/supernet_ranking.py --study runs/corr-seed0 \\
        --search runs/seed1 --search runs/seed2 --search long=runs/seed0-32ep --markdown
    python benchmarks/supernet_ranking.py --smoke        # a tiny study on synthetic data (tests run this)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

STATS = (("kendall", "Kendall"), ("spearman", "Spearman"), ("top_kendall", "top-20% Kendall"))


def rank_search(study: dict[str, Any], study_dir: Path, search: Path, resamples: int, seed: int) -> dict[str, Any]:
    """The study's architectures scored with ``search``'s supernet, and the statistics against the
    study's stand-alone mIoU."""
    from archgraph.engine.scoring import parse_scorers
    from archgraph.studies.correlate.scores import architecture_candidates, run_scorers, scoring_context
    from archgraph.studies.correlate.stats import scorer_stats
    from archgraph.studies.correlate.supernet import load_searched_supernet

    sup = load_searched_supernet(search)
    archs = study["archs"]
    cands = architecture_candidates(sup, [study_dir / a["file"] for a in archs])
    (result,) = run_scorers(scoring_context(sup), [(c.op_idx, c.input_idx) for c in cands], parse_scorers(["supernet"]), log=lambda m: None)
    truth = [a["standalone_miou"] for a in archs]
    final = json.loads((search / "final.json").read_text())
    steps = (final.get("spent") or {}).get("arch_steps")
    return {
        "search": str(search),
        "arch_steps": steps,
        "seconds": result.seconds,
        "scores": result.values,
        "stats": scorer_stats(result.values, truth, True, resamples, 0.95, seed),
    }


def markdown(rows: list[tuple[str, dict[str, Any]]], n: int) -> str:
    from archgraph.studies.correlate.report import fmt_stat

    ks = sorted({v["k"] for _, r in rows for key, v in r["stats"].items() if key.startswith("pick_of_")})
    head = ["search", "architecture steps", *[t for _, t in STATS], *[f"best of {k}" for k in ks], "scoring s"]
    lines = [f"{n} architectures; 95% bootstrap intervals; best of K in stand-alone standard deviations above a random pick", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    oracle = {}
    for label, r in rows:
        s = r["stats"]
        cells = [label, "-" if r["arch_steps"] is None else str(r["arch_steps"])]
        cells += [fmt_stat(s[key]) for key, _ in STATS]
        for k in ks:
            p = s.get(f"pick_of_{k}")
            cells.append("-" if p is None else fmt_stat(p))
            if p is not None and p.get("oracle") is not None:
                oracle[k] = p["oracle"]
        cells.append(f"{r['seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| oracle | - | 1 | 1 | 1 | " + " | ".join(f"{oracle[k]:.3f}" if k in oracle else "-" for k in ks) + " | - |")
    return "\n".join(lines)


def _smoke(tmp: Path) -> tuple[Path, list[Path]]:
    """A tiny correlate study and a second tiny search of the same space, on synthetic data."""
    from archgraph.cli import main as cli

    tiny = [
        "data.crop=[32,32]",
        "data.num_samples=12",
        "data.batch_size=2",
        "data.val_limit=2",
        "space.layers=2",
        "space.base_channels=4",
        "search.epochs=2",
        "search.warmup_epochs=1",
        "search.steps_per_epoch=2",
        "search.bn_recalib_batches=1",
        "search.eval_every=0",
        "train.epochs=1",
        "train.steps_per_epoch=1",
    ]
    assert cli(["correlate", "--archs", "4", "--pool", "3", "--out", str(tmp / "study"), "--cache", str(tmp / "cache"), "--no-progress", "--set", *tiny]) == 0
    assert cli(["search", "--out", str(tmp / "other"), "--no-progress", "--set", *tiny, "seed=1"]) == 0
    return tmp / "study", [tmp / "study" / "search", tmp / "other"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", help="a finished `archgraph correlate --out` folder (its correlation.json)")
    p.add_argument("--search", action="append", default=[], metavar="[LABEL=]RUN", help="a finished search of the same space and size (repeat)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", default=None, help="write every search's scores and statistics here")
    p.add_argument("--smoke", default=None, metavar="DIR", help="build a tiny study in DIR and rank it (for tests)")
    args = p.parse_args(argv)
    if args.smoke:
        study_dir, searches = _smoke(Path(args.smoke))
        specs = [str(s) for s in searches]
    else:
        if not args.study or not args.search:
            p.error("--study and at least one --search are needed (or --smoke DIR)")
        study_dir, specs = Path(args.study), args.search
    study = json.loads((study_dir / "correlation.json").read_text())
    rows = []
    for spec in specs:
        label, _, path = spec.rpartition("=") if "=" in spec else (spec, "", spec)
        rows.append((label, rank_search(study, study_dir, Path(path), args.bootstrap, args.bootstrap_seed)))
        print(f"scored {len(study['archs'])} architectures with {path}", file=sys.stderr, flush=True)
    text = markdown(rows, len(study["archs"]))
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({label: r for label, r in rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
