"""The BLAS that NumPy itself uses, callable from numba: ``sgemm`` for the compiled time loop.

A time step of a batch > 1 is one GEMM plus one fused elementwise pass. From Python, the
call overhead around them (slicing, ufunc and numba dispatch: ~10 us a step) costs as much
as the pass itself at mid sizes. Calling ``cblas_sgemm`` from inside a numba loop (through
ctypes; the function pointer is an argument, so numba still caches the loop) leaves one
Python call per sequence. The library is the one threadpoolctl finds loaded for NumPy:
NumPy's wheels ship OpenBLAS with ``scipy_``-prefixed, 64-bit-integer (ILP64) symbols.
Where none of the known symbols is found, ``SGEMM`` is None and the engine keeps its Python
loop (same results).

    SGEMM(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        C = alpha op(A) op(B) + beta C; A, B, C are addresses (``arr.ctypes.data``)
"""
import ctypes

from ._threads import blas_libraries

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_SYMBOLS = (("scipy_cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm64_", ctypes.c_int64),
            ("scipy_cblas_sgemm", ctypes.c_int), ("cblas_sgemm", ctypes.c_int))


def _find_sgemm():
    libs = sorted(blas_libraries(), key=lambda lib: "numpy" not in lib.filepath)   # NumPy's own first
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for name, integer in _SYMBOLS:
            if hasattr(handle, name):
                c_int, f = ctypes.c_int, ctypes.c_float
                proto = ctypes.CFUNCTYPE(None, c_int, c_int, c_int, integer, integer, integer, f,
                                         ctypes.c_int64, integer, ctypes.c_int64, integer, f, ctypes.c_int64, integer)
                return proto((name, handle))              # pointers as 64-bit integers: the same ABI on x86-64
    return None


SGEMM = _find_sgemm() if ctypes.sizeof(ctypes.c_void_p) == 8 else None   # addresses passed as int64
