"""nplstm.bench's timing harness (the timings themselves live in benchmarks/, not in tests)."""
import itertools
import threading
import time

import pytest

from nplstm import bench


def test_each_timed_run_follows_settle_seconds_of_untimed_runs():
    """A turn runs its implementation untimed for ``settle`` seconds, then times one more run:
    long enough for the other libraries' spinning workers to go idle first."""
    log = []
    runners = {name: (lambda name=name: log.append((name, time.perf_counter()))) for name in ("a", "b")}
    medians = bench.median_times(runners, reps=3, warmup=0, settle=0.02)
    assert sorted(medians) == ["a", "b"]
    turns = [[t for _, t in group] for _, group in itertools.groupby(log, key=lambda e: e[0])]
    assert [name for name, _ in itertools.groupby(log, key=lambda e: e[0])] == ["a", "b"] * 3   # interleaved
    for times in turns:
        assert len(times) >= 2 and times[-1] - times[0] >= 0.019   # (before: one untimed run, then the timed one)


def _burn(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_turn_first_waits_for_the_other_threads_to_go_quiet():
    """``wait_quiet`` sleeps while another thread of the process uses CPU (a library's workers
    spinning after its call) and returns soon once none does; each turn of ``median_times``
    starts with it."""
    if bench._others_cpu_ns() is None:
        pytest.skip("needs Linux's /proc/self/task/*/schedstat")
    assert bench.wait_quiet() < 0.25                      # nothing else runs: a window or a few
    busy = threading.Thread(target=_burn, args=(0.3,))
    t0 = time.perf_counter()
    busy.start()
    waited = bench.wait_quiet(limit=2.0)
    busy.join()
    assert 0.25 <= waited < 1.5 and waited <= time.perf_counter() - t0

    starts = []
    busy = threading.Thread(target=_burn, args=(0.3,))
    t0 = time.perf_counter()
    busy.start()
    bench.median_times({"a": lambda: starts.append(time.perf_counter())}, reps=1, warmup=0, settle=0.01)
    busy.join()
    assert starts[0] - t0 >= 0.25                         # the turn's first run waited for the busy thread
