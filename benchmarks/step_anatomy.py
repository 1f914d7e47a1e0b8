"""One batch-major LSTM step, taken apart: its recurrent GEMM, its cell, and the cell's tanh.

Float32, one thread, inference, medians of interleaved runs (``nplstm.bench.median_times``).
Needs numba and oneDNN (nplstm[fast]). Prints, per step of T:

1. the whole compiled loop (``_batchmajor_loops.forward_sequence``), with the step's product the layer
   uses: ``_tilegemm``'s where it suits, else oneDNN's packed GEMM;
2. that GEMM alone: h (B, H) @ W_hh^T, packed, T times from a numba loop;
3. the cell alone: ``_cells_infer`` over every row, on the same A, T steps;

each less a copy of A (every run first restores A, which the loop writes over). If the loop
costs the GEMM plus the cell, nothing else in it is worth chasing. Then the tanh the cell runs
5 times per unit (``_ftanh``) in a vector loop over 512 floats, against the same polynomials
without the clamp and the division, and against a copy: what the tanh's arithmetic costs.

    python benchmarks/step_anatomy.py                  # I,H,B,T = 64,128,16,50
    python benchmarks/step_anatomy.py --config 64,128,32,50
"""
import argparse

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from nplstm import _blas, _tilegemm
from nplstm import _batchmajor_loops as loops
from nplstm._ftanh import _a1, _a3, _a5, _a7, _a9, _a11, _a13, _b0, _b2, _b4, _b6, ftanh, wide_vectors
from nplstm.bench import median_times

_jit = numba.njit(fastmath=True, error_model="numpy")


@numba.njit
def _gemms(compute, Wp, B, G, P, hs, R):
    for t in range(hs.shape[0] - 1):
        loops.gemm_packed(compute, Wp, B, G, P, hs[t].ctypes.data, P, R.ctypes.data, G)


@numba.njit
def _tiles(panels, hs, R):
    for t in range(hs.shape[0] - 1):
        _tilegemm.gemm(panels, hs[t], R.shape[0], R)


@_jit
def _cells(A, R, b, cs, hs):
    T, B, _ = A.shape
    for t in range(T):
        loops._cells_infer(A[t], R, b, cs[t], cs[t + 1], hs[t + 1], B)


@_jit
def _tanh(a, out, reps):
    for _ in range(reps):
        for j in range(a.shape[0]):
            out[j] = ftanh(a[j])


@_jit
def _polynomials(a, out, reps):
    """ftanh's two polynomials, p * q instead of the clamp and p / q (as wide as ftanh's loop)."""
    wide_vectors()
    for _ in range(reps):
        for j in range(a.shape[0]):
            x = a[j]
            x2 = x * x
            p = ((((((x2 * _a13 + _a11) * x2 + _a9) * x2 + _a7) * x2 + _a5) * x2 + _a3) * x2 + _a1) * x
            out[j] = p * (((x2 * _b6 + _b4) * x2 + _b2) * x2 + _b0)


@_jit
def _copy(a, out, reps):
    wide_vectors()
    for _ in range(reps):
        for j in range(a.shape[0]):
            out[j] = a[j]


def step(I, H, B, T, reps):
    G, rng = 4 * H, np.random.default_rng(0)
    A0 = rng.standard_normal((T, B, G)).astype(np.float32)
    b_ih, b_hh = (rng.uniform(-0.1, 0.1, G).astype(np.float32) for _ in range(2))
    h0, c0 = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    W = rng.uniform(-0.1, 0.1, (H, G)).astype(np.float32)                # W_hh^T
    Wp, compute = _blas.pack_right(W, B), _blas.packed_compute()
    panels = _tilegemm.pack(W) if _tilegemm.suits(H, G) else None       # the product the layer uses, as it chooses
    A, R = A0.copy(), rng.uniform(-0.1, 0.1, (B, G)).astype(np.float32)
    hs, cs, tc = np.zeros((T + 1, B, H), np.float32), np.zeros((T + 1, B, H), np.float32), np.zeros((1, B, H), np.float32)
    loop = (None, None, None, panels, None) if panels is not None else (compute, Wp, None, None, None)
    runs = {"loop": lambda: loops.forward_sequence(*loop, A, b_ih, b_hh, h0, c0, hs, cs, tc, None, False, False),
            "GEMM": (lambda: _tiles(panels, hs, R)) if panels is not None else (lambda: _gemms(compute, Wp, B, G, H, hs, R)),
            "cell": lambda: _cells(A, R, b_ih, cs, hs),
            "copy": lambda: None}
    m = median_times({k: (lambda f=f: (np.copyto(A, A0), f())) for k, f in runs.items()}, reps, settle=0)
    us = {k: (v - m["copy"]) / T * 1e6 for k, v in m.items() if k != "copy"}
    print(f"(I,H,B,T) = ({I},{H},{B},{T}), us a step: loop {us['loop']:.1f}, "
          f"GEMM ({'_tilegemm' if panels is not None else 'oneDNN'}) {us['GEMM']:.1f} "
          f"({2 * B * H * G / us['GEMM'] / 1e3:.0f} GFLOP/s), cell {us['cell']:.1f}; "
          f"loop / (GEMM + cell) = {us['loop'] / (us['GEMM'] + us['cell']):.3f}")


def tanh(reps):
    a = (np.random.default_rng(0).standard_normal(512) * 3).astype(np.float32)
    out, inner = np.empty_like(a), 2000
    m = median_times({f.__name__: (lambda f=f: f(a, out, inner)) for f in (_tanh, _polynomials, _copy)}, reps, settle=0)
    ns = {k: v / inner / a.size * 1e9 for k, v in m.items()}
    print(f"ns per float32 element: ftanh {ns['_tanh']:.3f}, its polynomials alone {ns['_polynomials']:.3f}, "
          f"a copy {ns['_copy']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="64,128,16,50", help="I,H,B,T")
    parser.add_argument("--reps", type=int, default=200, help="interleaved timed runs")
    args = parser.parse_args()
    I, H, B, T = (int(v) for v in args.config.split(","))
    with threadpool_limits(1), _blas.one_omp_thread():
        step(I, H, B, T, args.reps)
        tanh(args.reps // 4)


if __name__ == "__main__":
    main()
