"""The step's product h (M, K) @ W_hh^T (K, N) in the forms oneDNN offers, on one thread.

What the batch-major loop uses (``_batchmajor_loops.step_product``) is oneDNN's packed sgemm
(``sgemm_compute`` on W_hh^T packed once by ``sgemm_pack``, ``_blas.pack_right``). The other
forms of the same library, timed here against it in one process, interleaved:

- ``packed``: that;
- ``sgemm``: plain ``dnnl_sgemm`` on W_hh^T as it lies (oneDNN packs its panels at each call);
- ``packed-b``: the same packed sgemm the other way round, W_hh packed as oneDNN's "B" operand
  and the gates coming out feature-major, (N, M) (the layout the cells would then read);
- ``matmul``: oneDNN's matmul primitive, through its C API, with the weights in the layout it
  picks for itself (format tag "any", reordered once; its brgemm kernels where it has them).

Each rep times ``--steps`` products back to back (as a time loop runs them: the weights read
from cache, or streamed through it where they outgrow L2); the table gives each form's median
GFLOP/s and its time over ``packed``'s (paired medians, ``nplstm.bench.paired_ratio``). It also
times what each form costs to prepare the weights: ``sgemm_pack`` against the matmul's reorder.
The default shapes are (512,512,64,50)'s step: 32 rows (a row block of two threads) and 64
(the whole batch), K = 512, N = 4H = 2048. Needs oneDNN (``pip install "nplstm[fast]"``).

    python benchmarks/step_gemm_forms.py
    python benchmarks/step_gemm_forms.py --shape 16,256,1024 --shape 64,256,1024

Results in benchmarks/RESULTS.md (twenty-second round).
"""
import argparse
import ctypes

import numpy as np

from nplstm import _aligned, _blas, bench

_vp = ctypes.c_void_p
_DIMS = ctypes.c_int64 * 12                                # dnnl_dims_t (DNNL_MAX_NDIMS)
_CPU, _IN_ORDER, _F32 = 1, 1, 3                            # dnnl_cpu, dnnl_stream_in_order, dnnl_f32
_ANY, _AB = 1, 3                                           # dnnl_format_tag_any, dnnl_ab (row-major 2-D)
_WEIGHTS_MD = 131                                          # dnnl_query_weights_md
_SRC, _WEIGHTS, _DST = 1, 33, 17                           # DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST


class _Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", _vp)]    # dnnl_exec_arg_t


class Matmul:
    """Y = X @ W through oneDNN's matmul primitive (C API, ctypes), W reordered once into the
    layout the primitive chose. Keeps the arrays it points at."""

    def __init__(self, lib, X, W, Y):
        self.lib, self.arrays = lib, [X, W, Y]
        lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        lib.dnnl_primitive_desc_query_md.restype = _vp
        self.engine, self.stream = _vp(), _vp()
        self._check(lib.dnnl_engine_create(ctypes.byref(self.engine), _CPU, ctypes.c_size_t(0)), "engine")
        self._check(lib.dnnl_stream_create(ctypes.byref(self.stream), self.engine, _IN_ORDER), "stream")
        (M, K), N = X.shape, W.shape[1]
        src, dst, plain_w = self._md((M, K), _AB), self._md((M, N), _AB), self._md((K, N), _AB)
        pd = _vp()
        self._check(lib.dnnl_matmul_primitive_desc_create(ctypes.byref(pd), self.engine, src, self._md((K, N), _ANY),
                                                          None, dst, None), "matmul descriptor")
        w_md = _vp(lib.dnnl_primitive_desc_query_md(pd, _WEIGHTS_MD, 0))
        self.prim = self._primitive(pd)
        self.Wr = np.empty(lib.dnnl_memory_desc_get_size(w_md) // 4, np.float32)
        rpd = _vp()
        self._check(lib.dnnl_reorder_primitive_desc_create(ctypes.byref(rpd), plain_w, self.engine, w_md,
                                                           self.engine, None), "reorder descriptor")
        self.reorder_prim = self._primitive(rpd)
        self.reorder_args = (_Arg * 2)(_Arg(_SRC, self._mem(plain_w, W)), _Arg(_DST, self._mem(w_md, self.Wr)))
        self.args = (_Arg * 3)(_Arg(_SRC, self._mem(src, X)), _Arg(_WEIGHTS, self._mem(w_md, self.Wr)),
                               _Arg(_DST, self._mem(dst, Y)))
        self.reorder()

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise RuntimeError(f"oneDNN's {what} failed with dnnl_status_t {status}")

    def _md(self, shape, tag):
        md = _vp()
        self._check(self.lib.dnnl_memory_desc_create_with_tag(ctypes.byref(md), len(shape), _DIMS(*shape), _F32, tag),
                    "memory descriptor")
        return md

    def _primitive(self, pd):
        prim = _vp()
        self._check(self.lib.dnnl_primitive_create(ctypes.byref(prim), pd), "primitive")
        return prim

    def _mem(self, md, array):
        mem = _vp()
        self._check(self.lib.dnnl_memory_create(ctypes.byref(mem), md, self.engine, _vp(array.ctypes.data)), "memory")
        return mem

    def reorder(self):
        self._check(self.lib.dnnl_primitive_execute(self.reorder_prim, self.stream, 2, self.reorder_args), "reorder")
        self.lib.dnnl_stream_wait(self.stream)

    def __call__(self):
        self._check(self.lib.dnnl_primitive_execute(self.prim, self.stream, 3, self.args), "matmul")
        self.lib.dnnl_stream_wait(self.stream)


class PackedB:
    """Y^T (N, M) = (X W)^T with W (K, N) packed as oneDNN's "B" operand: in its column-major terms
    C (M x N) = A (M x K) B (K x N), A = X^T row-major (ld M), B = W^T row-major (ld K), C = Y^T
    row-major (ld M)."""

    def __init__(self, X, W, Yt):
        size_of, pack, self.compute = _blas._packing
        (M, K), N = X.shape, W.shape[1]
        self.Xt, Wt, self.Yt = np.ascontiguousarray(X.T), np.ascontiguousarray(W.T), Yt
        flags = np.array([ord("B"), ord("N"), ord("N")], np.uint8)
        dims = np.array([M, N, K, M, K], np.int64)         # M, N, K, lda, ldb
        f, d = flags.ctypes.data, dims.ctypes.data
        size, recommended = np.zeros(1, np.uint64), np.zeros(1, np.uint8)
        Matmul._check(size_of(f, f + 1, f + 2, d, d + 8, d + 16, d + 24, d + 32, size.ctypes.data,
                              recommended.ctypes.data), "sgemm_pack_get_size")
        self.Bp = _aligned.empty((int(size[0]),), np.uint8)
        Matmul._check(pack(f, f + 1, f + 2, d, d + 8, d + 16, d + 24, d + 32, Wt.ctypes.data, self.Bp.ctypes.data),
                      "sgemm_pack")
        self.flags = np.array([ord("N"), ord("P")], np.uint8)
        self.dims = np.array([M, N, K, M, K, M], np.int64)  # M, N, K, lda, ldb, ldc
        self.beta = np.zeros(1, np.float32)

    def __call__(self):
        f, d = self.flags.ctypes.data, self.dims.ctypes.data
        self.compute(f, f + 1, d, d + 8, d + 16, self.Xt.ctypes.data, d + 24, self.Bp.ctypes.data, d + 32,
                     self.beta.ctypes.data, self.Yt.ctypes.data, d + 40)


def runners(M, K, N, steps, lib):
    """{form: run ``steps`` products}, and {form: prepare the weights}; every form's Y checked
    against float64 first."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((M, K)).astype(np.float32)
    W = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32)
    Ys = {name: np.empty((M, N), np.float32) for name in ("packed", "sgemm", "matmul")}
    Yt = np.empty((N, M), np.float32)
    sgemm_fn, compute, _ = _blas.onednn_functions()
    Rp = _blas.pack_right(W, M)
    mm = Matmul(lib, X, W, Ys["matmul"])
    one = {"packed": lambda: _blas.gemm_packed(compute, Rp, M, N, K, X.ctypes.data, K, Ys["packed"].ctypes.data, N),
           "sgemm": lambda: _blas.sgemm(sgemm_fn, False, False, M, N, K, X.ctypes.data, K, W.ctypes.data, N,
                                        Ys["sgemm"].ctypes.data, N),
           "packed-b": PackedB(X, W, Yt), "matmul": mm}
    expected = X.astype(np.float64) @ W
    Ys["packed-b"] = Yt.T
    for name, run in one.items():
        run()
        err = np.abs(Ys[name] - expected).max()
        if err > 1e-3:
            raise AssertionError(f"{name}: max error {err}")

    def times(run):
        return lambda: [run() for _ in range(steps)]
    prepare = {"sgemm_pack": lambda: _blas.pack_right(W, M), "matmul reorder": mm.reorder}
    return {name: times(run) for name, run in one.items()}, prepare


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", action="append", help="M,K,N (repeatable; default 32,512,2048 and 64,512,2048)")
    ap.add_argument("--steps", type=int, default=50, help="products back to back in one timed run")
    ap.add_argument("--reps", type=int, default=31)
    args = ap.parse_args()
    if _blas.onednn_functions() is None:
        raise SystemExit("needs oneDNN and its packed sgemm: pip install \"nplstm[fast]\"")
    lib = ctypes.CDLL(_blas.onednn_path())                # (the library _blas loaded: the same handle)
    with _blas.one_omp_thread():
        for shape in args.shape or ["32,512,2048", "64,512,2048"]:
            M, K, N = (int(v) for v in shape.split(","))
            run, prepare = runners(M, K, N, args.steps, lib)
            t = bench.interleaved_times(run, args.reps, settle=0)
            p = bench.interleaved_times(prepare, args.reps, settle=0)
            flops = 2.0 * M * K * N * args.steps
            print(f"({M}x{K}) @ ({K}x{N}), {args.steps} products a run, 1 thread, medians of {args.reps}:")
            for name, ts in t.items():
                ratio, lo, hi = bench.paired_ratio(t, name, "packed")
                rate = flops / np.median(ts) / 1e9
                print(f"  {name:8s} {rate:6.1f} GFLOP/s, / packed {ratio:.3f} ({lo:.3f}-{hi:.3f})")
            print("  preparing the weights: " + ", ".join(f"{k} {np.median(v) * 1e6:.0f} us" for k, v in p.items()))


if __name__ == "__main__":
    main()
