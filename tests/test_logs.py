"""Logs a person or grep can read: no mid-field wrapping without a TTY, one line per interruption
(Ctrl-C or SIGTERM, in every command), warnings as ``warning: ...``, config values as typed in YAML."""

from __future__ import annotations

import os
import signal
import time
import warnings

import pytest

from archgraph.cli import main
from archgraph.commands import core
from archgraph.configtools import key_suggestion, yaml_text
from archgraph.errors import ArchgraphError, Interrupted


def test_console_without_a_terminal_never_breaks_a_line(capsys, monkeypatch):
    from archgraph.commands import rank_console

    monkeypatch.delenv("COLUMNS", raising=False)
    line = "done: mIoU 0.5136 pixel acc 0.8779 (best at epoch 16/16), 382,365 params, 0.012 GFLOPs at 64x64 -> " + "x/" * 40 + "metrics.json"
    rank_console().print(line)
    assert capsys.readouterr().out == line + "\n"  # rich's default: cut at 80 columns, inside "0.012 GFLOPs"


def _run_command(monkeypatch, body) -> int:
    """``archgraph spaces`` running ``body`` instead (the parser binds the module's function at each main())."""
    monkeypatch.setattr(core, "cmd_spaces", lambda args: body())
    return main(["spaces"])


def test_an_engine_interruption_is_one_line(monkeypatch, capsys):
    def stopped():
        raise Interrupted("interrupted at stage 1 epoch 2 step 3: checkpoint saved; continue with: archgraph search --out r --resume")

    assert _run_command(monkeypatch, stopped) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == ["interrupted at stage 1 epoch 2 step 3: checkpoint saved; continue with: archgraph search --out r --resume"]


def test_graceful_stop_raises_the_line_instead_of_printing_it(capsys):
    from archgraph.engine.loop import GracefulStop

    stop = GracefulStop("archgraph train --resume --out r")
    stop.requested = True
    with pytest.raises(Interrupted, match="interrupted at epoch 2 step 1: checkpoint saved; continue with: archgraph train"):
        stop.exit_if_requested("epoch 2 step 1")
    assert capsys.readouterr().err == ""


def test_sigterm_in_any_command_gives_one_line_and_130(monkeypatch, capsys):
    """What correlate did: SIGTERM killed it silently with 143."""

    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert _run_command(monkeypatch, terminated) == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert signal.getsignal(signal.SIGTERM) is before  # restored after the command


def test_warnings_look_like_every_other_message(monkeypatch, capsys):
    def warns():
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("strategy.tau_min is ignored by spos", UserWarning, stacklevel=1)
        return 0

    assert _run_command(monkeypatch, warns) == 0
    err = capsys.readouterr().err
    assert err == "warning: strategy.tau_min is ignored by spos\n", err  # no path, no "UserWarning", no code line


def test_strategies_prints_values_as_yaml(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    assert "betas=[0.5, 0.999]" in out and "(0.5, 0.999)" not in out
    assert "=false" in out and "=False" not in out and "=None" not in out


@pytest.mark.parametrize(
    "value, text", [((0.5, 0.999), "[0.5, 0.999]"), ([0.0, 0.999], "[0.0, 0.999]"), (False, "false"), (None, "null"), ("fcn", "fcn"), ({"flip": True}, "{flip: true}"), (1e-3, "0.001")]
)
def test_yaml_text(value, text):
    assert yaml_text(value) == text


def test_glued_yaml_option_gets_a_did_you_mean():
    from archgraph.data.synthetic import Synthetic

    with pytest.raises(ArchgraphError, match=r"did you mean '\{flip: false\}'\? \(YAML needs a space after the colon\)"):
        Synthetic("train", **{"flipp:false": None})  # what data.options={flipp:false} parses to
    assert key_suggestion("flipp", False, ["flip", "crop"]) == "; did you mean 'flip'?"


def test_misspelt_random_baseline_mentions_random_n():
    from archgraph.studies.compare.plan import parse_baselines

    with pytest.raises(ArchgraphError, match=r"randm:3.*random:N"):
        parse_baselines("randm:3")
