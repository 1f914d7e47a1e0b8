"""nplstm.bench's timing harness (the timings themselves live in benchmarks/, not in tests).

The harness is checked on a fake clock, so that nothing here depends on how busy the machine is:
a turn's untimed runs and its waits are counted, not timed."""
import itertools
import pathlib
import subprocess
import sys
import threading
import time

import pytest

from nplstm import bench


class FakeClock:
    """perf_counter and sleep for ``bench``: time moves only when a run or a sleep moves it."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bench.time, "perf_counter", fake.perf_counter)
    monkeypatch.setattr(bench.time, "sleep", fake.sleep)
    return fake


def test_each_turn_waits_then_runs_untimed_for_settle_seconds_then_times_one_run(clock, monkeypatch):
    """A turn first waits for the other threads to go quiet (``wait_quiet``), then runs its
    implementation untimed for ``settle`` seconds, then times one more run: the other libraries'
    spinning workers are asleep and this one's awake."""
    log = []
    monkeypatch.setattr(bench, "wait_quiet", lambda: log.append("wait"))

    def runner(name, seconds):
        def run():
            log.append(name)
            clock.now += seconds
        return run
    medians = bench.median_times({"a": runner("a", 0.004), "b": runner("b", 0.003)}, reps=2, warmup=1, settle=0.02)
    assert medians == pytest.approx({"a": 0.004, "b": 0.003})
    turn_a, turn_b = ["wait"] + ["a"] * 6, ["wait"] + ["b"] * 8   # 20 ms of untimed runs (5 and 7), one timed
    assert log == ["a", "b"] + (turn_a + turn_b) * 2              # (after a warm-up run each) interleaved


def test_settle_zero_does_not_wait_and_runs_untimed_once(clock, monkeypatch):
    log = []
    monkeypatch.setattr(bench, "wait_quiet", lambda: log.append("wait"))
    bench.median_times({"a": lambda: log.append("a"), "b": lambda: log.append("b")}, reps=3, warmup=0, settle=0)
    assert log == ["a", "a", "b", "b"] * 3


def test_wait_quiet_sleeps_until_no_other_thread_runs(clock, monkeypatch):
    """It polls the other threads' CPU time every ``window``: done at the first window in which none
    ran for more than ``IDLE`` of it, or at ``limit``."""
    window = bench.QUIET
    busy, idle = window * 1e9, bench.IDLE * window * 1e9 / 2     # ns of CPU a thread uses in one window

    def polls(per_window):                                        # what each poll reads: CPU used so far
        used = itertools.accumulate(itertools.chain([0.0], per_window))
        return lambda exclude=(): {7: next(used)}
    monkeypatch.setattr(bench, "_others_cpu_ns", polls([busy, busy, busy] + [idle] * 9))
    assert bench.wait_quiet(window, limit=1.0) == pytest.approx(4 * window)   # 3 busy windows, then a quiet one
    monkeypatch.setattr(bench, "_others_cpu_ns", polls(itertools.repeat(busy)))
    clock.now = 0.0
    assert bench.wait_quiet(window, limit=0.1) == pytest.approx(0.1, abs=window)   # never quiet: the limit
    monkeypatch.setattr(bench, "_others_cpu_ns", lambda exclude=(): None)
    assert bench.wait_quiet(window) == 0                          # no /proc statistics: no wait


def test_others_cpu_ns_reports_each_other_thread_by_its_id():
    if bench._others_cpu_ns() is None:
        pytest.skip("needs Linux's /proc/self/task/*/schedstat")
    burned, release = threading.Event(), threading.Event()

    def burn():
        start = time.thread_time()
        while time.thread_time() - start < 0.03:                  # 30 ms of its own CPU, however busy the machine
            pass
        burned.set()
        release.wait()
    worker = threading.Thread(target=burn)
    worker.start()
    try:
        assert burned.wait(30)
        cpu = bench._others_cpu_ns()
        assert cpu[worker.native_id] >= 25e6                      # ns (schedstat counts what it ran)
        assert threading.get_native_id() not in cpu               # not the calling thread
        assert worker.native_id not in bench._others_cpu_ns(exclude={worker.native_id})
    finally:
        release.set()
        worker.join()


def test_paired_ratio_takes_each_reps_ratio_not_the_ratio_of_the_medians():
    """The machine slows between reps: a's runs are always half b's, yet the medians of a and b
    come from different reps (10 and 2: a ratio of 5)."""
    times = {"a": [1.0, 10.0, 10.0, 1.5], "b": [2.0, 20.0, 2.0, 3.0]}   # rep ratios 0.5, 0.5, 5, 0.5
    mid, lo, hi = bench.paired_ratio(times, "a", "b")
    assert (mid, lo, hi) == pytest.approx((0.5, 0.5, 1.625))            # numpy's linear percentiles
    assert bench.paired_ratio(times, "b", "a")[0] == pytest.approx(2.0)


def test_format_row_prints_paired_ratios_with_quartiles_and_median_times():
    row = dict(cfg=(3, 4, 5, 6, 1, False), reference=None, cell="lstm",
               train={"nplstm": [0.001, 0.004, 0.003], "torch": [0.002, 0.002, 0.006]},
               infer={"nplstm": [0.001, 0.001, 0.001], "frozen": [0.002, 0.002, 0.002],
                      "torch": [0.004, 0.004, 0.004]})
    cells = [c.strip() for c in bench.format_row(row).split("|")[1:-1]]
    assert cells[0] == "(3,4,5,6,1,no)"
    assert cells[1] == "0.50 (0.50-1.25)"           # rep ratios 0.5, 2.0, 0.5
    assert cells[2] == "0.25 (0.25-0.25)"
    assert cells[3] == "n/a"                        # no ONNX Runtime in this run
    assert cells[4] == "0.50 (0.50-0.50) / n/a"
    assert cells[5] == "3.00 / 2.00"                # medians, ms
    assert cells[6] == "1.00 / 4.00"


def test_new_over_old_reports_the_paired_ratio_and_the_medians(monkeypatch):
    seen = []

    def times(runners, reps, settle):
        seen.append((sorted(runners), reps, settle))
        return {"old": [0.002, 0.010, 0.004], "new": [0.001, 0.010, 0.001]}   # rep ratios 0.5, 1, 0.25
    monkeypatch.setattr(bench, "interleaved_times", lambda runners, reps, warmup=2, settle=1: times(runners, reps, settle))
    line = bench.new_over_old({"old": None, "new": None}, 7)
    assert seen == [(["new", "old"], 7, 0)]
    assert line == "new / old 0.500 (0.375-0.750); us old 4000.0, new 1000.0"


def test_pair_lines_report_the_pairs_present_and_every_median():
    """Each pair whose two sides ran (a missing side, such as torch uninstalled, is left out),
    with its paired ratio and quartiles, then the medians in the unit asked for."""
    times = {"old": [0.002, 0.010, 0.004], "new": [0.001, 0.010, 0.001]}   # rep ratios 0.5, 1, 0.25
    assert bench.pair_lines(times, [("new", "old"), ("new", "torch")]) == [
        "  new / old 0.500 (0.375-0.750)", "  ms: old 4.00, new 1.00"]
    assert bench.pair_lines(times, [("old", "new")], unit="us") == [
        "  old / new 2.000 (1.500-3.000)", "  us: old 4000.0, new 1000.0"]


def test_memory_runs_the_cell_it_is_asked_for(monkeypatch):
    """``--memory --cell gru``: each child process is told the cell, and the child builds that
    layer (it built an LSTM whatever --cell said)."""
    import json
    import subprocess
    argvs = []

    def fake_run(argv, **kw):
        argvs.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=json.dumps({"peak_bytes": 1}) + "\n")
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    bench.run_memory([(3, 4, 2, 5, 1, False)], 1, "gru")
    assert [a[-1] for a in argvs] == ["gru", "gru"]       # nplstm's child and torch's
    cells = []
    monkeypatch.setattr(bench, "make_pair", lambda cfg, seed=0, cell="lstm": cells.append(cell) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bench._memory_child("nplstm", (3, 4, 2, 5, 1, False), 1, "gru")
    assert cells == ["gru"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_twin_holds_the_layers_weights(cell):
    """torch_twin(ours): torch's module of the same kind and sizes (two layers, both directions here),
    with ours' weights: its outputs are ours' (float32, biases non-zero)."""
    torch = pytest.importorskip("torch")
    import numpy as np

    import nplstm
    ours = getattr(nplstm, bench.CELLS[cell][1])(3, 5, num_layers=2, bidirectional=True, seed=4)
    rng = np.random.default_rng(2)
    for v in ours.params.values():
        v[...] = rng.uniform(-0.5, 0.5, v.shape)
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    twin = bench.torch_twin(ours, cell)
    assert isinstance(twin, getattr(torch.nn, bench.CELLS[cell][0]))
    with torch.no_grad():
        want = twin(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(ours(x)[0], want, rtol=0, atol=1e-5)


def test_with_patched_sets_attributes_for_the_run_and_puts_them_back_even_on_error():
    import types
    module = types.SimpleNamespace(rule=1, other=2)
    seen = []
    run = bench.with_patched(module, {"rule": 10}, lambda: seen.append((module.rule, module.other)) or "done")
    assert run() == "done" and seen == [(10, 2)] and module.rule == 1

    def fails():
        raise KeyError("x")
    with pytest.raises(KeyError):
        bench.with_patched(module, {"rule": 10, "other": 20}, fails)()
    assert (module.rule, module.other) == (1, 2)


BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_script_says_how_to_run_it(script):
    """``python benchmarks/<script> --help`` prints a usage and exits 0, without running anything
    (each script's docstring gives the commands that reproduce benchmarks/RESULTS.md)."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")
