"""How much two threads on two cores slow each other, for work that shares nothing.

At 2 threads a batch runs as row blocks, one thread each (``nplstm.set_num_threads``). Each
block alone takes about half the 1-thread call, yet the call takes more than half: the blocks
run slower together than alone. This separates the machine's share of that from ours. Each
kernel runs alone, then as two copies at once (a thread each; numba and the compiled LSTM let
the GIL go), interleaved, and the ratio of the medians is printed:

- ``fma``: 8 vectors of independent multiply-adds in registers (no memory at all);
- ``l2``: sums over a 256 KiB array, which stays in each core's own L2;
- ``block``: a frozen LSTM on one block of rows, one thread (oneDNN's packed GEMM per step and
  the compiled cell), the work of each thread in a 2-thread call.

    python benchmarks/cores_together.py [--block 64,128,16,50] [--reps 15]
"""
import argparse
import threading
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _blas


@numba.njit(nogil=True, fastmath=True)
def _fma(a, n):
    acc = np.zeros(64, np.float32)                        # 8 AVX2 vectors: throughput, not latency, bound
    for _ in range(n):
        for j in range(64):
            acc[j] = acc[j] * np.float32(0.999) + a[j]
    return acc.sum()


@numba.njit(nogil=True, fastmath=True)
def _l2(a, n):
    s = np.float32(0)
    for _ in range(n):
        for j in range(a.shape[0]):
            s += a[j]
    return s


def _timed(fn, copies):
    """Seconds the slowest of ``copies`` runs of fn() took, each on a new thread, started at once
    (alone too: every copy runs with a new thread's settings, such as OpenMP's thread count)."""
    times = []

    def run():
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    threads = [threading.Thread(target=run) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", default="64,128,16,50", help="I,H,B,T of the LSTM block")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)
    I, H, B, T = (int(v) for v in args.block.split(","))
    small, l2 = np.ones(64, np.float32), np.ones(64 * 1024, np.float32)
    lstm = nplstm.LSTM(I, H, seed=0).frozen()
    x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)

    def block():
        with _blas.one_omp_thread():                      # as a row block's thread: oneDNN on one thread (a new
            for _ in range(4):                            # thread's OpenMP default would put it on OpenBLAS)
                lstm(x)
    kernels = {"fma": lambda: _fma(small, 3_000_000), "l2": lambda: _l2(l2, 3000), "block": block}
    with threadpool_limits(1):
        nplstm.set_num_threads(1)                        # each copy: one thread, one block
        for fn in kernels.values():                       # compile, warm up
            _timed(fn, 1)
        times = {(k, copies): [] for k in kernels for copies in (1, 2)}
        for _ in range(args.reps):
            for (name, copies), ts in times.items():
                ts.append(_timed(kernels[name], copies))
    for name in kernels:
        alone, both = (np.median(times[name, copies]) for copies in (1, 2))
        print(f"{name:6s} alone {alone * 1e3:7.2f} ms, two at once {both * 1e3:7.2f} ms: {both / alone:.3f}")


if __name__ == "__main__":
    main()
