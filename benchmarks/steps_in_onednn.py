"""A lead measured and not built: each step's input side inside the loop on oneDNN's packed GEMM
(for I > 256, past ``_tilegemm``'s reach), against one GEMM before the loop.

GEMMs only, no cell, float32, 1 thread, oneDNN's packed sgemm_compute throughout, T steps of a
batch of B; ms, medians of interleaved runs and each run's ratio to ``before``:

- ``before``: x (T*B, I) @ W_ih^T in one GEMM, W_ih^T packed at the call (as the plain layer's
  matmul packs inside), then per step h (B, P) @ W_hh^T added onto A[t];
- ``before_prepacked``: the same with W_ih^T packed once (as ``frozen()`` keeps it);
- ``in_loop``: per step x_t W_ih^T into one (B, 4H) buffer, then h W_hh^T added onto it;
- ``concat``: per step one GEMM [x_t | h] (B, I + P) @ [W_ih; W_hh]^T.

    python benchmarks/steps_in_onednn.py --config 512,512,64,50 --reps 11

Results in benchmarks/RESULTS.md (seventeenth round).
"""
import argparse
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from nplstm import _blas
from nplstm import _batchmajor_loops as loops


@numba.njit(nogil=True)
def _before(compute, Wih_p, Whh_p, X, A, H, T, B, I, P, G):
    loops.gemm_packed(compute, Wih_p, T * B, G, I, X.ctypes.data, I, A.ctypes.data, G)
    for t in range(T):
        loops.gemm_packed(compute, Whh_p, B, G, P, H.ctypes.data, P, A[t].ctypes.data, G, 1.0)


@numba.njit(nogil=True)
def _in_loop(compute, Wih_p, Whh_p, X, A, H, T, B, I, P, G):
    for t in range(T):
        loops.gemm_packed(compute, Wih_p, B, G, I, X[t].ctypes.data, I, A[0].ctypes.data, G)
        loops.gemm_packed(compute, Whh_p, B, G, P, H.ctypes.data, P, A[0].ctypes.data, G, 1.0)


@numba.njit(nogil=True)
def _concat(compute, Wc_p, X, XH, A, T, B, I, P, G):
    for t in range(T):
        XH[:, :I] = X[t]
        loops.gemm_packed(compute, Wc_p, B, G, I + P, XH.ctypes.data, I + P, A[0].ctypes.data, G)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", help="I,H,B,T (repeatable)")
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args(argv)
    with threadpool_limits(1):
        _blas.one_omp_thread_for_good()
        compute = _blas.packed_compute()
        for cfg in args.config or ["512,512,64,50"]:
            I, P, B, T = map(int, cfg.split(","))
            G = 4 * P
            rng = np.random.default_rng(0)
            Wih, Whh = (rng.standard_normal((K, G), dtype=np.float32) * 0.05 for K in (I, P))
            X, H = rng.standard_normal((T, B, I), dtype=np.float32), rng.standard_normal((B, P), dtype=np.float32)
            A, A1 = np.empty((T, B, G), np.float32), np.empty((1, B, G), np.float32)
            XH = np.empty((B, I + P), np.float32)
            XH[:, I:] = H
            Whh_p, Wih_p, Wih_all = _blas.pack_right(Whh, B), _blas.pack_right(Wih, B), _blas.pack_right(Wih, T * B)
            Wc_p = _blas.pack_right(np.concatenate([Wih, Whh]), B)
            runs = {"before": lambda: _before(compute, _blas.pack_right(Wih, T * B), Whh_p, X, A, H, T, B, I, P, G),
                    "before_prepacked": lambda: _before(compute, Wih_all, Whh_p, X, A, H, T, B, I, P, G),
                    "in_loop": lambda: _in_loop(compute, Wih_p, Whh_p, X, A1, H, T, B, I, P, G),
                    "concat": lambda: _concat(compute, Wc_p, X, XH, A1, T, B, I, P, G)}
            for run in runs.values():
                run()
            times = {k: [] for k in runs}
            for _ in range(args.reps):
                for k, run in runs.items():
                    t0 = time.perf_counter()
                    run()
                    times[k].append(time.perf_counter() - t0)
            base = np.array(times["before"])
            print(f"({cfg}) " + ", ".join(f"{k} {np.median(v) * 1e3:.2f} ms ({np.median(np.array(v) / base):.3f})"
                                          for k, v in times.items()), flush=True)


if __name__ == "__main__":
    main()
