"""sgemm for the engine's float32 LSTM on the CPU: NumPy's own OpenBLAS, or oneDNN's where installed.

Two uses, one function (``sgemm``):

- the compiled time loop (``_cellmath_numba``) calls it for each step's GEMM from inside numba.
  A time step of a batch > 1 is one GEMM plus one fused elementwise pass, and from Python the
  call overhead around them (slicing, ufunc and numba dispatch: ~10 us a step) costs as much as
  the pass itself at mid sizes. The ctypes function is an argument, so numba still caches the loop;
- ``matmul``: the big GEMMs around the loop (the input side of all T steps, the weight
  gradients, dx) in float32.

Providers (``PROVIDERS``: name -> ctypes function; ``use``/``set_provider`` pick the preferred
one, the environment variable ``NPLSTM_GEMM`` the default; else the first present in this order):

    "onednn"    ``dnnl_sgemm`` from oneDNN (the onednn-cpu-gomp wheel: ``pip install "nplstm[fast]"``
                on Linux x86-64), the library PyTorch's CPU LSTM runs on. Measured on this
                project's machine (AMD EPYC, AVX-512, 1 thread): 99-110 GFLOP/s at the engine's
                shapes against OpenBLAS's 92-101 (benchmarks/RESULTS.md).
    "openblas"  ``cblas_sgemm`` of the OpenBLAS NumPy itself uses, found through threadpoolctl
                (NumPy's wheels ship it with ``scipy_``-prefixed, 64-bit-integer symbols).

oneDNN threads through OpenMP (libgomp; threadpoolctl controls it as "openmp"), a second
thread pool beside NumPy's OpenBLAS. With both pools at 2 threads on 2 cores, their spinning
workers took turns on the cores: ``nplstm train`` on the dinosaur names ran 8x slower (41 s
against 5 s). So ``gemm()`` uses oneDNN only while its OpenMP runs one thread (for instance
under ``threadpoolctl.threadpool_limits(1)`` or ``OMP_NUM_THREADS=1``), and NumPy's OpenBLAS,
with its own threads, otherwise.

Where no provider is found, ``gemm()`` is None and the engine keeps its Python loop and
np.matmul (same results to rounding).

    sgemm(gemm, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc)
        C (M, N) = op(A) op(B), all row-major; A, B, C are addresses (``arr.ctypes.data``)
"""
import ctypes
import os
from contextlib import contextmanager

import numpy as np

from ._threads import blas_libraries

try:
    import numba
    from numba.extending import overload
except ImportError:                                       # then nothing calls sgemm from numba
    numba = None

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112                # CBLAS enums
_N, _T = ord("N"), ord("T")                               # oneDNN's transpose flags
_SYMBOLS = (("scipy_cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm64_", ctypes.c_int64),
            ("scipy_cblas_sgemm", ctypes.c_int), ("cblas_sgemm", ctypes.c_int))
_i64, _f32 = ctypes.c_int64, ctypes.c_float               # addresses as 64-bit integers: the same ABI on x86-64


def _openblas():
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
                return proto((name, handle))
    return None


def _onednn():
    """dnnl_sgemm from the onednn-cpu-gomp wheel, checked on one small product; None if absent or wrong."""
    from importlib import metadata
    try:
        dist = metadata.distribution("onednn-cpu-gomp")
        path = next(str(dist.locate_file(f)) for f in dist.files or () if f.name.startswith("libdnnl.so"))
        handle = ctypes.CDLL(path)
        threads = handle.omp_get_max_threads             # its OpenMP's (libgomp's) thread count, ~0.1 us a call
    except (metadata.PackageNotFoundError, StopIteration, OSError, AttributeError):
        return None
    i8 = ctypes.c_int8                                    # char flags: the same ABI as int8
    fn = ctypes.CFUNCTYPE(ctypes.c_int, i8, i8, _i64, _i64, _i64, _f32, _i64, _i64, _i64, _i64, _f32, _i64, _i64)(
        ("dnnl_sgemm", handle))
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = np.empty((2, 2), np.float32)
    sgemm(fn, False, True, 2, 2, 3, a.ctypes.data, 3, a.ctypes.data, 3, c.ctypes.data, 2)
    if not np.array_equal(c, a @ a.T):
        return None
    global _omp_threads
    _omp_threads = threads
    return fn


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


def matmul(a, b):
    """a @ b; through oneDNN when ``gemm()`` is it and both are 2-D float32 NumPy arrays, else np.matmul."""
    fn = gemm()
    if fn is None or fn is not PROVIDERS.get("onednn") or not all(
            type(v) is np.ndarray and v.dtype == np.float32 and v.ndim == 2 and v.size for v in (a, b)):
        return np.matmul(a, b)
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        return np.matmul(a, b)                            # NumPy's own shape error
    (ta, lda, a), (tb, ldb, b) = _layout(a), _layout(b)
    out = np.empty((M, N), np.float32)
    sgemm(fn, ta, tb, M, N, K, a.ctypes.data, lda, b.ctypes.data, ldb, out.ctypes.data, N)
    return out


_omp_threads = None
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
