"""At several threads: small LSTM steps on one thread (the rule in nplstm.engine) against the OpenBLAS loop.

Alone in a process (no torch), float32, at ``--threads`` for every library. Interleaves the
layer's two paths call by call (``nplstm.bench.median_times``): the rule as it is (``engine._one_thread_step``:
steps too small to split run batch-major, oneDNN on one OpenMP thread) and the rule switched
off (OpenBLAS's feature-major loop, every step's GEMM split over the threads). Prints medians
and the ratio rule / off: below 1 the rule is faster. Needs numba and oneDNN (nplstm[fast]).

    python benchmarks/one_thread_steps.py 64,128,16,50 64,128,16,50,2,1 32,96,32,64
"""
import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import engine
from nplstm.bench import median_times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="I,H,B,T[,layers,bidirectional]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=40, help="interleaved timed runs per path")
    args = parser.parse_args()
    rule, off = engine._one_thread_step, (lambda B, weights: False)
    for config in args.configs:
        I, H, B, T, L, bi = ([int(v) for v in config.split(",")] + [1, 0])[:6]
        lstm = nplstm.LSTM(I, H, num_layers=L, bidirectional=bool(bi), seed=0)
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        g = np.ones((T, B, H * (2 if bi else 1)), np.float32)

        def train():
            _, _, cache = lstm.forward(x, train=True)
            lstm.backward(g, cache)

        def under(choice, fn):                            # the path is chosen per call, from the rule
            return lambda: (setattr(engine, "_one_thread_step", choice), fn())
        runners = {(name, kind): under(choice, fn) for kind, fn in (("inference", lambda: lstm(x)), ("training", train))
                   for name, choice in (("rule", rule), ("off", off))}
        try:
            with threadpool_limits(args.threads):
                m = median_times(runners, args.reps)
        finally:
            engine._one_thread_step = rule
        print(f"{config} at {args.threads} threads: " + ", ".join(
            f"{kind} {m[('rule', kind)] * 1e3:.2f} / {m[('off', kind)] * 1e3:.2f} ms "
            f"({m[('rule', kind)] / m[('off', kind)]:.2f})" for kind in ("inference", "training")))


if __name__ == "__main__":
    main()
