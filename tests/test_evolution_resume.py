"""An interrupted SPOS evolution resumes at its last finished generation with the same result."""

from __future__ import annotations

import json

import pytest

from archgraph.strategies.evolution import EvolutionConfig, EvolutionState, Gene, evolve
from helpers import TINY_ONE_EPOCH_SEARCH

GENES = [Gene(4), Gene(4), Gene(5, keep=2), Gene(3), Gene(6, keep=3)]
CFG = EvolutionConfig(population=6, generations=4, select=3, mutation=3, crossover=3)


def fitness(cand) -> float:
    """Deterministic, with many distinct values (so the ranking, not ties, decides)."""
    flat = [v for g in cand for v in (g if isinstance(g, tuple) else (g,))]
    return sum((i + 1) * 0.37 * v for i, v in enumerate(flat)) % 7.3


def legal(cand) -> bool:
    return cand[0] != 3  # some candidates are illegal, so the illegal set matters too


class Interrupt(Exception):
    pass


def test_resume_after_generation_1_gives_the_uninterrupted_result(tmp_path):
    whole = evolve(GENES, fitness, legal, CFG, seed=3)
    calls: list[object] = []

    def stop_after_1(record):
        if record["generation"] == 1:
            raise Interrupt

    state = EvolutionState(tmp_path / "evolution.state.json", {"net": "abc"})
    with pytest.raises(Interrupt):
        evolve(GENES, fitness, legal, CFG, seed=3, on_generation=stop_after_1, state=state)
    saved = json.loads(state.path.read_text())
    assert saved["generation"] == 1  # generation 1's candidates were scored; it was being ranked

    def counted(cand):
        calls.append(cand)
        return fitness(cand)

    seen: list[int] = []
    resumed = evolve(GENES, counted, legal, CFG, seed=3, on_generation=lambda r: seen.append(r["generation"]), state=state)
    assert seen == [1, 2, 3, 4]  # not generation 0 again
    assert (resumed.best, resumed.fitness) == (whole.best, whole.fitness)
    assert resumed.history == whole.history and list(resumed.scored) == list(whole.scored)
    assert len(calls) == len(whole.scored) - len(saved["scored"])  # nothing scored twice


def test_a_state_of_another_evolution_is_ignored(tmp_path):
    state = EvolutionState(tmp_path / "s.json", {"net": "abc"})
    evolve(GENES, fitness, legal, CFG, seed=3, state=state)
    other = EvolutionState(tmp_path / "s.json", {"net": "other weights"})
    seen: list[int] = []
    evolve(GENES, fitness, legal, CFG, seed=3, on_generation=lambda r: seen.append(r["generation"]), state=other)
    assert seen == [0, 1, 2, 3, 4]
    (tmp_path / "s.json").write_text("{not json")
    assert evolve(GENES, fitness, legal, CFG, seed=5, state=other).best == evolve(GENES, fitness, legal, CFG, seed=5).best


TINY = [
    *TINY_ONE_EPOCH_SEARCH,
    "strategy.name=spos",
    "strategy.population=4",
    "strategy.generations=3",
    "strategy.select=2",
    "strategy.mutation=2",
    "strategy.crossover=2",
    "strategy.recalib_batches=1",
]


def test_search_interrupted_in_the_evolution_resumes_at_its_generation(tmp_path, monkeypatch, capsys):
    """A SPOS search killed after evolution generation 1 resumes there (progress lines from 1 on,
    not 0), and derives the architecture of an uninterrupted search."""
    from archgraph.cli import main
    from archgraph.strategies import spos

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["search", "--out", str(whole), "--no-progress", "--set", *TINY]) == 0
    printed = capsys.readouterr().out
    assert [f"evolution generation {g}/3" in printed for g in range(4)] == [True] * 4  # one line each, no TTY

    original = spos.GenerationLines.__call__

    def interrupt_after_1(self, record):
        original(self, record)
        if record["generation"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(spos.GenerationLines, "__call__", interrupt_after_1)
    assert main(["search", "--out", str(cut), "--no-progress", "--set", *TINY]) == 130
    capsys.readouterr()
    monkeypatch.setattr(spos.GenerationLines, "__call__", original)
    assert main(["search", "--out", str(cut), "--no-progress", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "evolution generation 0/3" not in printed and "evolution generation 2/3" in printed
    assert (cut / "arch.yaml").read_text() == (whole / "arch.yaml").read_text()
    lines = [json.loads(line) for line in (cut / "evolution.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in lines] == [0, 1, 2, 3]
    assert lines == [json.loads(line) for line in (whole / "evolution.jsonl").read_text().splitlines()]


def test_default_evolution_is_scaled_to_the_search(tmp_path, capsys):
    """population and generations unset: the evolution scores no more candidates than the search's
    weight steps pay for (3 per step / forward passes per candidate); set, they are used as given."""
    from archgraph.cli import main

    unset = [s for s in TINY if not s.startswith(("strategy.population", "strategy.generations"))]
    out = tmp_path / "run"
    assert main(["search", "--out", str(out), "--no-progress", "--set", *unset]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("evolution: population"))
    population, generations = int(line.split()[2].rstrip(",")), int(line.split()[3])
    passes = int(line.split("candidates of ")[1].split()[0])
    steps = int(line.split("search of ")[1].split()[0])
    budget = 3 * steps // passes
    assert steps == 3 and population == max(2, budget // 2) < 50 and generations == 0, line  # 3 = search.steps_per_epoch
    scored = [json.loads(l)["scored"] for l in (out / "evolution.jsonl").read_text().splitlines()]
    assert len(scored) == 1 and scored[-1] <= max(budget, 2)
