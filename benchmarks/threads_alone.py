"""nplstm.LSTM alone in a process (no torch), at 1 and 2 threads: what its own threading gives.

The interleaved benchmark (bench_lstm.py --threads 2) runs torch in the same process, whose
OpenMP workers keep spinning after each call; this measures nplstm without them.

    python benchmarks/threads_alone.py 64,128,32,50
    python benchmarks/threads_alone.py 128,256,64,100 --onednn-threads

``--onednn-threads`` is an experiment, not a setting: it lifts nplstm._blas's rule that oneDNN
runs only on one OpenMP thread, so at 2 threads the batch-major path runs on oneDNN's two
OpenMP threads (beside OpenBLAS's pool, which the small GEMMs still use). It shows what a
one-pool threading policy could give; the rule stays because two busy pools on the same cores
were measured 8x slower in the training app.
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import _blas


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="?", default="64,128,32,50", help="I,H,B,T")
    ap.add_argument("--onednn-threads", action="store_true", help="the experiment in the module's note")
    args = ap.parse_args()
    I, H, B, T = (int(v) for v in args.config.split(","))
    if args.onednn_threads and "onednn" in _blas.PROVIDERS:
        _blas._omp_threads = lambda: 1                    # the experiment: see the module's note
    x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
    lstm = nplstm.LSTM(I, H, seed=0)
    g = np.ones((T, B, H), np.float32)

    def train():
        _, _, cache = lstm.forward(x, train=True)
        lstm.backward(g, cache)
    for threads in (1, 2, 1, 2):                          # twice each, interleaved: the machine drifts
        with threadpool_limits(threads):
            tag = lstm.forward(x, train=True)[2]["layers"][0][0][0]   # which loop (nplstm.engine._batch_major)
            path = "batch-major loop" if isinstance(tag, str) else "engine loop"
            for name, f in (("inference", lambda: lstm(x)), ("training step", train)):
                times = []
                for _ in range(15):
                    t0 = time.perf_counter()
                    f()
                    times.append(time.perf_counter() - t0)
                print(f"{threads} thread(s), {path}, GEMMs {_blas.provider()}: {name} {np.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
