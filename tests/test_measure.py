"""archgraph.core.measure: every peak-memory number carries the name of its quantity, old records
still read, and a window sees an allocation (no machine-specific sizes asserted)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from archgraph.core import measure as M


def test_a_loop_records_the_quantity_its_device_gives():
    assert M.peak_quantity("cpu") == "peak_rss_mb"
    assert M.peak_quantity(torch.device("cuda:0")) == "peak_cuda_allocated_mb"  # a name only: no GPU needed to ask
    fields = M.peak_fields("cpu")
    assert list(fields) == ["peak_rss_mb"] and fields["peak_rss_mb"] > 0
    M.reset_peak("cpu")  # the CPU's peak cannot be reset: a no-op, not an error
    assert M.peak_fields("cpu")["peak_rss_mb"] >= fields["peak_rss_mb"]


def test_every_name_is_described_and_every_window_quantity_has_a_growth_name():
    for key in (*M.PEAK_MEMORY_KEYS, M.LEGACY_PEAK_MB, *M.GROWTH_OF.values(), M.SAVED_TENSORS_MB):
        assert M.QUANTITIES[key]
    assert set(M.GROWTH_OF) == set(M.PEAK_MEMORY_KEYS)
    assert len(set(M.GROWTH_OF.values())) == len(M.GROWTH_OF)  # no two quantities share a name


def test_the_compat_reader_reads_new_and_old_records():
    assert M.peak_memory_of({"peak_rss_mb": 812.5}) == ("peak_rss_mb", 812.5)
    assert M.peak_memory_of({"peak_cuda_allocated_mb": 3}) == M.PeakMemory("peak_cuda_allocated_mb", 3.0)
    assert M.peak_memory_of({"loss": 1.0}) is None and M.peak_memory_of({"peak_rss_mb": None}) is None
    # an old search.jsonl line: its quantity is unknown unless the caller knows the run's device
    old = {"epoch": 3, "peak_mem_mb": 640.0}
    assert M.peak_memory_of(old) == ("peak_mem_mb", 640.0)
    assert M.peak_memory_of(old, M.peak_quantity("cpu")) == ("peak_rss_mb", 640.0)
    # an old compare run said what it measured in peak_mem_source
    assert M.peak_memory_of({"peak_mem_mb": 900.0, "peak_mem_source": "rss-window"}) == ("peak_rss_window_mb", 900.0)
    assert M.peak_memory_of({"peak_mem_mb": 900.0, "peak_mem_source": "cuda"}) == ("peak_cuda_allocated_mb", 900.0)
    assert M.peak_memory_of({"peak_mem_mb": 900.0, "peak_mem_source": "search.jsonl"}) == ("peak_mem_mb", 900.0)
    assert M.peak_memory_label("peak_rss_mb") != M.peak_memory_label("peak_cuda_allocated_mb")


def test_a_window_on_the_cpu_sees_an_allocation():
    with M.MemoryWindow("cpu") as window:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        block += 1
    del block
    assert window.quantity in ("peak_rss_window_mb", "peak_rss_mb")
    assert window.windowed == (window.quantity == "peak_rss_window_mb")
    ((name, peak),) = window.fields().items()
    assert name == window.quantity and peak >= window.baseline_mb > 0
    ((growth_name, growth),) = window.growth_fields().items()
    assert growth_name == M.GROWTH_OF[window.quantity]
    if window.windowed:  # the high-water mark was reset: the window sees most of the block (pages may be shared or lazily counted)
        assert growth > 16
    else:
        assert growth >= 0  # the process's peak could not be reset: only a lower bound
    json.dumps(window.fields())  # a record's fields are plain JSON


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the RSS window needs /proc/self/clear_refs")
def test_on_linux_the_window_is_reset():
    with M.MemoryWindow("cpu") as window:
        pass
    assert window.windowed and window.quantity == "peak_rss_window_mb"


def test_open_and_close_without_with():
    window = M.MemoryWindow().open()
    inside = window.read()
    assert window.close() >= inside and window.peak_mb is not None
    with pytest.raises(RuntimeError, match="outside its window"):
        M.MemoryWindow().read()


def test_saved_tensors_count_activations_once_and_not_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x = torch.randn(5, 8)
    with M.SavedTensors(net) as saved:
        net(x).sum()
    # saved for backward: x (5x8) for the first weight's gradient, ReLU's output (5x16) for its own and
    # the second weight's; every weight is a parameter and not counted
    assert saved.bytes == (5 * 8 + 5 * 16) * 4
    assert saved.mb == saved.bytes / 2**20
    with M.SavedTensors() as everything:  # no module: parameters count too
        net(x).sum()
    assert everything.bytes > saved.bytes


def test_the_timer_reads_the_wall_clock_and_keeps_the_last_interval():
    with M.Timer() as t:
        sum(range(10_000))
    assert t.seconds > 0
    running = M.Timer()
    first = running.read()
    assert running.read() >= first >= 0  # it keeps running
    assert running.stop() == running.seconds >= first
    M.synchronize(None), M.synchronize("cpu")  # nothing to wait for: no error


# -------------------------------------------------------------------------------------------- the readers


def test_compare_reads_old_and_new_search_cost_sessions():
    from archgraph.studies.compare.execute import search_peak

    old_sessions = [{"seconds": 5.0, "peak_mem_mb": 700.0, "resumed": False, "finished": False}, {"seconds": 3.0, "peak_mem_mb": 650.0, "resumed": True, "finished": True}]
    assert search_peak(old_sessions, [], "cpu") == ("peak_rss_window_mb", 700.0)  # what compare measured on the CPU then
    assert search_peak(old_sessions, [], "cuda") == ("peak_cuda_allocated_mb", 700.0)
    assert search_peak([{"seconds": 2.0, "peak_rss_window_mb": 512.0}], [], "cpu") == ("peak_rss_window_mb", 512.0)
    # no session could open a window: the search log's own peaks, old name or new
    unmeasured = [{"seconds": 2.0, "peak_mem_mb": None}]
    assert search_peak(unmeasured, [{"peak_mem_mb": 300.0}, {"peak_mem_mb": 310.0}], "cpu") == ("peak_rss_mb", 310.0)
    assert search_peak(unmeasured, [{"peak_rss_mb": 320.0}], "cpu") == ("peak_rss_mb", 320.0)
    assert search_peak([], [], "cpu") is None


def test_compare_tables_read_an_old_results_json():
    from archgraph.studies.compare.results import run_peak_mb, summary_peak

    assert summary_peak({"peak_mem_mb_mean": 812.0}) == ("peak_mem_mb", 812.0)
    assert summary_peak({"peak_rss_window_mb_mean": 900.0, "peak_rss_window_mb_std": None}) == ("peak_rss_window_mb", 900.0)
    assert summary_peak({"search_seconds_mean": 1.0}) is None
    assert run_peak_mb({"peak_mem_mb": 640.0, "peak_mem_source": "rss-window"}) == 640.0
    assert run_peak_mb({"peak_cuda_allocated_mb": 2048.0}) == 2048.0 and run_peak_mb({"t_miou": 0.5}) is None


def test_the_run_report_labels_the_peak_with_its_quantity():
    from archgraph.outputs.report import SearchStatus, summary_rows

    status = SearchStatus(finished=True, epochs_done=2, epochs_planned=2, resumable=False)
    new = summary_rows({}, {"epoch": 1, "step_time": 0.5, "peak_rss_mb": 812.0}, status)
    old = summary_rows({}, {"epoch": 1, "step_time": 0.5, "peak_mem_mb": 640.0}, status)
    assert new["peak RSS (MB)"] == 812.0 and "peak memory (MB)" not in new
    assert old["peak memory (MB)"] == 640.0  # an old search.jsonl: its quantity is not in the record
    for rows, label in ((new, "peak RSS (MB)"), (old, "peak memory (MB)")):  # in the summary's place: after the step time
        assert list(rows).index(label) == list(rows).index("seconds per step") + 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the gpu lane)")
def test_on_cuda_the_window_and_the_loop_fields_are_the_allocator_peak():
    device = torch.device("cuda")
    with M.MemoryWindow(device) as window, M.Timer(device) as clock:
        block = torch.ones(64 * 2**20 // 4, device=device)  # exactly 64 MB of tensors
        block.mul_(2)
    del block
    assert window.windowed and window.quantity == "peak_cuda_allocated_mb"
    assert window.growth_fields()["peak_cuda_allocated_growth_mb"] >= 64 and clock.seconds > 0
    M.reset_peak(device)
    ((name, value),) = M.peak_fields(device).items()
    assert name == "peak_cuda_allocated_mb" and value < window.peak_mb  # the block is gone and the peak was reset
