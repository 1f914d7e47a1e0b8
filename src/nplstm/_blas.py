"""sgemm for the engine's float32 LSTM on the CPU: NumPy's own OpenBLAS, or oneDNN's where installed.

Two uses, one function (``sgemm``):

- the compiled time loop (``_cellmath_numba``) calls it for each step's GEMM from inside numba.
  A time step of a batch > 1 is one GEMM plus one fused elementwise pass, and from Python the
  call overhead around them (slicing, ufunc and numba dispatch: ~10 us a step) costs as much as
  the pass itself at mid sizes. The ctypes function is an argument, so numba still caches the loop;
- ``matmul``: the big GEMMs around the loop (the input side of all T steps, dx) in float32,
  and ``matmul_tn`` the weight gradients dZ^T X (made as (X^T dZ)^T on oneDNN's AVX-512 kernels).

Providers (``PROVIDERS``: name -> ctypes function; ``use``/``set_provider`` pick the preferred
one, the environment variable ``NPLSTM_GEMM`` the default; else the first present in this order):

    "onednn"    ``dnnl_sgemm`` from oneDNN (the onednn-cpu-gomp wheel: ``pip install "nplstm[fast]"``
                on Linux x86-64), the library PyTorch's CPU LSTM runs on. Measured on this
                project's machine (AMD EPYC, AVX-512, 1 thread): 99-110 GFLOP/s at the engine's
                shapes against OpenBLAS's 92-101; on AVX2 at par, except products with A
                transposed, 1.1-2.5x slower, which ``matmul`` leaves to OpenBLAS (benchmarks/RESULTS.md).
    "openblas"  ``cblas_sgemm`` of the OpenBLAS NumPy itself uses, found through threadpoolctl
                (NumPy's wheels ship it with ``scipy_``-prefixed, 64-bit-integer symbols).

oneDNN threads through OpenMP (libgomp; threadpoolctl controls it as "openmp"), a second
thread pool beside NumPy's OpenBLAS. With both pools at 2 threads on 2 cores, their spinning
workers took turns on the cores: ``nplstm train`` on the dinosaur names ran 8x slower (41 s
against 5 s). So ``gemm()`` uses oneDNN only while its OpenMP runs one thread (for instance
under ``threadpoolctl.threadpool_limits(1)`` or ``OMP_NUM_THREADS=1``), and NumPy's OpenBLAS,
with its own threads, otherwise. ``one_omp_thread()`` sets oneDNN's OpenMP to one thread for a
block: there oneDNN is ``gemm()`` again, and no second pool spins up (the engine uses it for
LSTM steps too small to split over threads: ``engine._batch_major``).

Where no provider is found, ``gemm()`` is None and the engine keeps its Python loop and
np.matmul (same results to rounding).

    sgemm(gemm, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc)
        C (M, N) = op(A) op(B), all row-major; A, B, C are addresses (``arr.ctypes.data``)

Packed right operand (oneDNN only). A time loop multiplies by the same weights at every step;
``pack_right`` copies them once into oneDNN's blocked kernel layout and ``gemm_packed`` then
multiplies from there (oneDNN's own ``sgemm_pack``/``sgemm_compute`` of ``dnnl::impl::cpu``,
exported for its RNN primitive, found by their C++ names and checked on one product at load;
``packed_compute()`` is None where they are absent, wrong, or oneDNN is not ``gemm()`` now):

    gemm_packed(compute, Rp, n, M, K, X, ldx, Y, ldy, beta=0.0)
        Y (n, M) = X (n, K) @ R (K, M) + beta Y, R packed by ``pack_right(R, n)``; X, Y addresses

And ``c_contiguous(W)``: a row-major copy of a transposed matrix through OpenBLAS's ``somatcopy``.
"""
import ctypes
import os
from contextlib import contextmanager

import numpy as np

from . import _aligned
from ._threads import blas_libraries

try:
    import numba
    from numba.extending import overload
except ImportError:                                       # then nothing calls sgemm from numba
    numba = None

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112                # CBLAS enums
_N, _T, _P = ord("N"), ord("T"), ord("P")                 # oneDNN's flags: as is, transposed, packed
_SYMBOLS = (("scipy_cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm64_", ctypes.c_int64),
            ("scipy_cblas_sgemm", ctypes.c_int), ("cblas_sgemm", ctypes.c_int))
_i64, _f32 = ctypes.c_int64, ctypes.c_float               # addresses as 64-bit integers: the same ABI on x86-64


def _openblas():
    """NumPy's OpenBLAS: cblas_sgemm, and its cblas_somatcopy (for ``c_contiguous``) as a global."""
    global _omatcopy
    libs = sorted(blas_libraries(), key=lambda lib: "numpy" not in lib.filepath)   # NumPy's own first
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for name, integer in _SYMBOLS:
            if hasattr(handle, name):
                c_int = ctypes.c_int
                proto = ctypes.CFUNCTYPE(None, c_int, c_int, c_int, integer, integer, integer, _f32,
                                         _i64, integer, _i64, integer, _f32, _i64, integer)
                copy = name.replace("sgemm", "somatcopy")   # (order, trans, rows, cols, alpha, A, lda, B, ldb)
                if hasattr(handle, copy):
                    _omatcopy = ctypes.CFUNCTYPE(None, c_int, c_int, integer, integer, _f32, _i64, integer, _i64,
                                                 integer)((copy, handle))
                return proto((name, handle))
    return None


def c_contiguous(W):
    """W as a C-contiguous array: W itself where it is one (and CuPy arrays as they are); a copy
    where it is not, through OpenBLAS's somatcopy where W is the transposed view of a C-contiguous
    float32 matrix (measured here 2.5-11x faster than NumPy's copy: (2048, 512) 0.3 ms against
    3.5 ms), else NumPy's."""
    if type(W) is not np.ndarray or W.flags.c_contiguous:
        return W
    if _omatcopy is None or W.dtype != np.float32 or W.ndim != 2 or not W.T.flags.c_contiguous:
        return np.ascontiguousarray(W)
    S = W.T                                               # (M, N) row-major; W = S^T is what we copy out
    M, N = S.shape
    out = np.empty((N, M), np.float32)
    if S.size:
        _omatcopy(ROW_MAJOR, TRANS, M, N, 1.0, S.ctypes.data, max(N, 1), out.ctypes.data, max(M, 1))
    return out


def onednn_path():
    """The path of the onednn-cpu-gomp wheel's libdnnl, or None where that is not installed."""
    from importlib import metadata
    try:
        dist = metadata.distribution("onednn-cpu-gomp")
        return next(str(dist.locate_file(f)) for f in dist.files or () if f.name.startswith("libdnnl.so"))
    except (metadata.PackageNotFoundError, StopIteration):
        return None


def _onednn():
    """dnnl_sgemm from the onednn-cpu-gomp wheel, checked on one small product; None if absent or wrong."""
    path = onednn_path()
    if path is None:
        return None
    try:
        handle = ctypes.CDLL(path)
        threads = handle.omp_get_max_threads             # its OpenMP's (libgomp's) thread count, ~0.1 us a call
        set_threads = handle.omp_set_num_threads          # (for the calling thread's later parallel regions)
    except (OSError, AttributeError):
        return None
    i8 = ctypes.c_int8                                    # char flags: the same ABI as int8
    fn = ctypes.CFUNCTYPE(ctypes.c_int, i8, i8, _i64, _i64, _i64, _f32, _i64, _i64, _i64, _i64, _f32, _i64, _i64)(
        ("dnnl_sgemm", handle))
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = np.empty((2, 2), np.float32)
    sgemm(fn, False, True, 2, 2, 3, a.ctypes.data, 3, a.ctypes.data, 3, c.ctypes.data, 2)
    if not np.array_equal(c, a @ a.T):
        return None
    global _omp_threads, _omp_set_threads, _packing, _avx512
    _omp_threads, _omp_set_threads = threads, set_threads
    _packing = _onednn_packing(handle)
    try:                                                  # dnnl_cpu_isa_t: bit 0x20 in every AVX-512 ISA
        _avx512 = bool(handle.dnnl_get_effective_cpu_isa() & 0x20)   # (avx512_core 0x27 and up; avx2 0x7)
    except AttributeError:
        _avx512 = False
    return fn


_PACKING = ("_ZN4dnnl4impl3cpu19sgemm_pack_get_sizeEPKcS3_S3_PKlS5_S5_S5_S5_PmPb",   # dnnl::impl::cpu::
            "_ZN4dnnl4impl3cpu10sgemm_packEPKcS3_S3_PKlS5_S5_S5_S5_PKfPf",            # sgemm_pack_get_size,
            "_ZN4dnnl4impl3cpu13sgemm_computeEPKcS3_PKlS5_S5_PKfS5_S7_S5_S7_PfS5_")   # sgemm_pack, sgemm_compute


def _onednn_packing(handle):
    """oneDNN's (get_size, pack, compute), every argument a pointer (Fortran style), checked on one
    product; None if absent or wrong."""
    try:
        fns = [ctypes.CFUNCTYPE(ctypes.c_int, *[_i64] * n)((name, handle)) for n, name in zip((10, 10, 12), _PACKING)]
    except AttributeError:
        return None
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    r = np.arange(12, dtype=np.float32).reshape(4, 3).T   # (3, 4), a transposed view: copied first
    y = np.empty((2, 4), np.float32)
    try:
        rp = _pack(fns, r, 2)
    except RuntimeError:
        return None
    gemm_packed(fns[2], rp, 2, 4, 3, x.ctypes.data, 3, y.ctypes.data, 4)
    return fns if np.array_equal(y, x @ r) else None


def _pack(fns, R, n):
    """R (K, M) packed now: ``_plan``'s buffer, filled."""
    buf, (R, flags, dims) = _plan(fns, R, n)
    f, d = flags.ctypes.data, dims.ctypes.data
    check_packed(fns[1](f, f + 1, f + 2, d, d + 8, d + 16, d + 24, d + 32, R.ctypes.data, buf.ctypes.data), R.shape)
    return buf


def _plan(fns, R, n):
    """(buffer, (R, flags, dims)): the room for R (K, M) packed for n rows, and the operands of
    oneDNN's sgemm_pack that fills it (``_pack`` now, or a ``_gilfree`` pack row later). In
    oneDNN's column-major terms Y^T (M, n) = R^T (M, K) X^T (K, n): R is the "A" operand to pack."""
    size_of = fns[0]
    K, M = R.shape
    R = np.ascontiguousarray(R, np.float32)               # (its "T" case crashed oneDNN 2023.2 at small sizes)
    flags = np.array([ord("A"), _N, _N], np.uint8)        # R row-major is R^T column-major: "A", as it is
    dims = np.array([M, n, K, M, K], np.int64)            # M, N, K, lda, ldb (X's, any: not read)
    status, size = _packed_size(size_of, flags.ctypes.data, dims.ctypes.data, (M, n, K))
    check_packed(status, R.shape)
    return _aligned.empty((int(size),), np.uint8), (R, flags, dims)   # 64-byte aligned, as oneDNN's own are


def check_packed(status, shape):
    """RuntimeError where oneDNN's packing of a matrix of ``shape`` reported a failure (status != 0)."""
    if status:
        raise RuntimeError(f"oneDNN's sgemm_pack of a {shape[0]}x{shape[1]} matrix failed with dnnl_status_t {status}")


_packed_sizes = {}     # (id(size_of), M, n, K) -> (size_of, bytes): ``_packed_size``'s, successes only


def _packed_size(size_of, f, d, shape):
    """(status, bytes) of oneDNN's packing of R (K, M) for n rows (shape: (M, n, K); f, d: the
    addresses of ``_pack``'s flags and dims), asked once per shape: a plain layer packs W_hh at
    every call, and ``sgemm_pack_get_size`` took 13-84 us of it in the call (2 threads,
    (64,128,32,50); benchmarks/RESULTS.md, tenth round), as long as the pack itself."""
    key = id(size_of), *shape                             # (its entry keeps size_of alive: the id stays its)
    if key not in _packed_sizes:
        size, recommended = np.zeros(1, np.uint64), np.zeros(1, np.uint8)
        status = size_of(f, f + 1, f + 2, d, d + 8, d + 16, d + 24, d + 32, size.ctypes.data, recommended.ctypes.data)
        if status:
            return status, 0
        _packed_sizes[key] = size_of, int(size[0])
    return 0, _packed_sizes[key][1]


def pack_right(R, n):
    """R (K, M) float32 packed for ``gemm_packed`` with up to n rows on the left; None where
    ``packed_compute()`` is None; RuntimeError if oneDNN reports a failure."""
    return None if packed_compute() is None else _pack(_packing, R, n)


def pack_later(R, n, later):
    """``pack_right``'s buffer, not filled yet: its packing is appended to ``later`` as (buffer,
    operands), for a ``_gilfree`` pack row to run (``check_packed`` its status after)."""
    if packed_compute() is None:
        return None
    buf, operands = _plan(_packing, R, n)
    later.append((buf, operands))
    return buf


def packed_compute():
    """oneDNN's sgemm_compute while oneDNN is ``gemm()`` and its packing was found, else None."""
    return _packing[2] if _packing is not None and gemm() is PROVIDERS.get("onednn") else None


def packing_preferred():
    """Whether oneDNN is the preferred provider, its packing was found and a GEMM is in use at all
    (``gemm()``): ``packed_compute()`` is then not None wherever oneDNN's OpenMP runs one thread
    (``one_omp_thread``)."""
    return _packing is not None and _preferred == "onednn" and gemm() is not None


def onednn_functions():
    """(dnnl_sgemm, sgemm_compute, sgemm_pack) where oneDNN and its packing were found, else None,
    whatever the calling thread's OpenMP count: what ``_gilfree``'s rows run with, on threads set
    to one (``one_omp_thread_for_good``)."""
    return None if _packing is None or "onednn" not in PROVIDERS else (PROVIDERS["onednn"], _packing[2], _packing[1])


def one_omp_thread_for_good():
    """oneDNN's OpenMP on one thread for the calling thread from now on (a pool thread's setting)."""
    if _omp_threads is not None and _omp_threads() > 1:
        _omp_set_threads(1)


def omp_threads():
    """oneDNN's OpenMP thread count now, for the calling thread (1 where oneDNN is absent)."""
    return 1 if _omp_threads is None else _omp_threads()


class one_omp_thread:
    """``with one_omp_thread() as lowered: ...`` -- oneDNN's OpenMP on one thread for a block (the
    calling thread's setting, restored after); nothing where oneDNN is absent or already on one
    thread. ``lowered``: whether it lowered the count. (A class: @contextmanager costs ~2.5 us.)"""

    def __enter__(self):
        self.n = omp_threads()
        if self.n > 1:
            _omp_set_threads(1)
        return self.n > 1

    def __exit__(self, *exc):
        if self.n > 1:
            _omp_set_threads(self.n)


def gemm_packed(compute, Rp, n, M, K, X, ldx, Y, ldy, beta=0.0):
    """Y (n, M) = X (n, K) @ R + beta Y, R packed (``pack_right``); X, Y addresses, rows ldx, ldy apart.
    Python or numba: the small arrays carry the arguments, which oneDNN takes by pointer."""
    flags = np.array([_P, _N], np.uint8)                  # A packed, B (X^T column-major) as it is
    dims = np.array([M, n, K, K, ldx, ldy], np.int64)     # M, N, K, lda (not read), ldb, ldc
    b = np.full(1, beta, np.float32)
    f, d = flags.ctypes.data, dims.ctypes.data
    compute(f, f + 1, d, d + 8, d + 16, Rp.ctypes.data, d + 24, X, d + 32, b.ctypes.data, Y, d + 40)


def _cblas(gemm, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc):
    """cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)"""
    gemm(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, M, N, K,
         1.0, A, lda, B, ldb, 0.0, C, ldc)


def _dnnl(gemm, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc):
    """dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), flags as chars"""
    gemm(_T if trans_a else _N, _T if trans_b else _N, M, N, K, 1.0, A, lda, B, ldb, 0.0, C, ldc)


def sgemm(gemm, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc):
    """C = op(A) op(B) through either provider's function (row-major; numba-callable, see below)."""
    call = _cblas if len(gemm.argtypes) == 14 else _dnnl
    call(gemm, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc)


if numba is not None:
    @overload(sgemm)
    def _sgemm_in_numba(gemm, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc):
        """The same dispatch inside numba, decided at compile time from the function's signature."""
        return _cblas if len(gemm.sig.args) == 14 else _dnnl


def _layout(a):
    """(transposed?, leading dimension, array) of a 2-D array as a row-major matrix, copying if neither order."""
    if a.flags.c_contiguous:
        return False, max(a.shape[1], 1), a
    if a.flags.f_contiguous:
        return True, max(a.shape[0], 1), a
    return False, max(a.shape[1], 1), np.ascontiguousarray(a)


_SMALL = 1 << 22                                          # multiply-adds below which np.matmul is faster,
_WIDE = 1 << 17                                           # unless the product has this many elements
_OUTER = 1 << 12                                          # K = 1 from this many elements: see matmul()


def _float32_matrices(a, b):
    """Whether a and b are both 2-D float32 NumPy arrays (what an sgemm call can take)."""
    return type(a) is type(b) is np.ndarray and a.ndim == b.ndim == 2 and a.dtype == b.dtype == np.float32


def matmul(a, b):
    """a @ b; through an sgemm of ``gemm()`` where that is faster, for 2-D float32 NumPy arrays
    with ``a`` C-contiguous; else np.matmul.

    - oneDNN's from ~4M multiply-adds on, or ~128k elements in the product (a thin K: an LSTM's
      input side when its input has few features). Below both, np.matmul: the call costs more
      than oneDNN's kernels save (measured at 1 thread: (100x32)@(32x256) 27 us with NumPy's
      OpenBLAS, 31 us here). Above, oneDNN measured 8-24% faster on AMD's AVX-512 from ~13M
      multiply-adds, and on an Intel Xeon (AVX-512) 1.3x at (400x8)@(8x512) and 3.3-4.3x at
      K = 2, (1600x2)@(2x512) and (6400x2)@(2x1024), where OpenBLAS was no faster than np.matmul.
    - Either provider's at K = 1 from ~4k elements: there np.matmul leaves BLAS for a loop of its
      own, 3.4x slower than OpenBLAS's sgemm and 10-12x than oneDNN's ((1600x1)@(1x512): 850 us,
      246, 72). A univariate time series is an LSTM whose input size is 1.
    - np.matmul when ``a`` is not C-contiguous (a transposed view: the weight gradients Z^T X,
      whose K is all T*B rows): on an AVX2 EPYC (Zen 3, 1 thread) oneDNN ran (1024x6400)^T-shaped
      products 2.1-2.5x slower than OpenBLAS, and every other transposed-A shape tried 1.0-1.5x
      slower (benchmarks/RESULTS.md)."""
    if not (_float32_matrices(a, b) and a.flags.c_contiguous):
        return np.matmul(a, b)
    (M, K), (K2, N) = a.shape, b.shape
    fn = gemm()
    onednn = fn is not None and fn is PROVIDERS.get("onednn")
    if K != K2 or fn is None or not ((onednn and (M * N * K >= _SMALL or M * N >= _WIDE))
                                     or (K == 1 and M * N >= _OUTER)):
        return np.matmul(a, b)                            # (and NumPy's own shape error)
    tb, ldb, b = _layout(b)                               # (a is row-major here, rows K apart)
    out = np.empty((M, N), np.float32)
    sgemm(fn, False, tb, M, N, K, a.ctypes.data, K, b.ctypes.data, ldb, out.ctypes.data, N)
    return out


def matmul_tn(a, b):
    """a.T @ b for C-contiguous float32 a (K, M) and b (K, N) with K long: the weight gradients
    dZ^T X, K all T*B rows. Where ``gemm()`` is oneDNN on its AVX-512 kernels, oneDNN makes it the
    other way round, (b^T a)^T, b's few columns the transposed operand, and the result is an
    F-contiguous (M, N) (a gradient laid out as the layer holds its weights, ``recurrent``).
    Measured on an Intel Xeon (AVX-512, 1 thread) for an LSTM's dZ^T X and dZ^T H together: 0.83-0.90
    of np.matmul's time (OpenBLAS) at (1600, 512) with 64 and 128 columns up to (3200, 2048) with 512;
    oneDNN's product the first way round, a^T b, was 1.7x slower at the largest (benchmarks/RESULTS.md,
    nineteenth round). Else np.matmul(a.T, b): below ~4M multiply-adds, with OpenBLAS, and on AVX2,
    where oneDNN's transposed-A products measured 1.0-2.5x slower (``matmul``)."""
    fn = gemm()
    if not (_avx512 and fn is not None and fn is PROVIDERS.get("onednn") and _float32_matrices(a, b)
            and a.flags.c_contiguous and b.flags.c_contiguous and a.shape[0] == b.shape[0]
            and a.size * b.shape[1] >= _SMALL):
        return np.matmul(a.T, b)
    (K, M), N = a.shape, b.shape[1]
    out = np.empty((N, M), np.float32)                    # (a.T @ b).T, row-major
    sgemm(fn, True, False, N, M, K, b.ctypes.data, N, a.ctypes.data, M, out.ctypes.data, M)
    return out.T


_STEP = 1 << 21                                          # multiply-adds from which matmul_into calls oneDNN


def matmul_into(a, b, out):
    """out[...] = a @ b: one time step's product in the engine's generic loop (GRU, RNN, an LSTM
    with projection), 2-D, rows of any stride. Through oneDNN's sgemm where it is ``gemm()``, the
    three are float32 NumPy arrays with unit-stride rows and the product has ~2M multiply-adds;
    else np.matmul. Measured on an Intel Xeon (AVX-512, 1 thread, us a step, np.matmul against
    oneDNN): (768x256)@(256x64) 150 against 121, (1536x512)@(512x64) 662 against 507,
    (256x256)@(256x64) 52 against 44; below ~1.5M multiply-adds the call's ~5 us outweighs it.
    A transposed ``a`` (the backward's W_hh^T) is best passed as a row-major copy: oneDNN's
    transposed-A kernels were the slow ones (see ``matmul``)."""
    (M, K), N = a.shape, b.shape[1]
    fn = gemm()
    if (fn is None or fn is not PROVIDERS.get("onednn") or M * N * K < _STEP
            or not (type(a) is type(b) is type(out) is np.ndarray and a.dtype == b.dtype == out.dtype == np.float32)
            or not (a.strides[1] == b.strides[1] == out.strides[1] == 4) or out.shape != (M, N)
            or a.strides[0] < 4 * K or b.strides[0] < 4 * N or out.strides[0] < 4 * N):   # (rows apart, ascending)
        return np.matmul(a, b, out=out)
    sgemm(fn, False, False, M, N, K, a.ctypes.data, a.strides[0] // 4, b.ctypes.data, b.strides[0] // 4,
          out.ctypes.data, out.strides[0] // 4)
    return out


_omp_threads = _omp_set_threads = _packing = _omatcopy = None
_avx512 = False                                           # oneDNN's kernels are AVX-512 ones (``_onednn``)
PROVIDERS = {}
if ctypes.sizeof(ctypes.c_void_p) == 8:                   # addresses are passed as int64
    PROVIDERS = {name: fn for name, fn in (("onednn", _onednn()), ("openblas", _openblas())) if fn is not None}


def gemm():
    """The sgemm function to call now (see the module's note on threads), or None."""
    if _preferred == "onednn" and _omp_threads() > 1 and "openblas" in PROVIDERS:
        return PROVIDERS["openblas"]
    return PROVIDERS.get(_preferred)


def provider():
    """The name of the provider ``gemm()`` gives now, or None (no compiled loop; np.matmul)."""
    fn = gemm()
    return next((name for name, f in PROVIDERS.items() if f is fn), None)


def set_provider(name):
    """Prefer ``name`` (a key of ``PROVIDERS``) for every later float32 GEMM of the engine."""
    global _preferred
    if name not in PROVIDERS:
        raise ValueError(f"GEMM provider must be one of {sorted(PROVIDERS)}, got {name!r}")
    _preferred = name


@contextmanager
def use(name):
    """``with use("openblas"): ...`` -- prefer a provider for a block, then restore the preference."""
    global _preferred
    old = _preferred
    set_provider(name)
    try:
        yield
    finally:
        _preferred = old


_preferred = None
_default = os.environ.get("NPLSTM_GEMM") or next(iter(PROVIDERS), None)
if _default is not None:
    try:
        set_provider(_default)
    except ValueError as e:
        raise ValueError(f"environment variable NPLSTM_GEMM: {e}") from None
