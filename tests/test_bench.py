"""nplstm.bench's timing harness (the timings themselves live in benchmarks/, not in tests)."""
import itertools
import time

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
