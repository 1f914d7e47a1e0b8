"""One BLAS thread for the batch-of-one path, whose GEMMs are too small to split.

OpenBLAS splits even a (256x32) @ (32x100) GEMM over every thread it has. When the other
core is busy, for instance with the OpenMP workers another library (torch) leaves spinning
after its own call, the split GEMM waits for a thread that cannot run: measured on 2 cores,
33 us with one BLAS thread against 3.5 ms with two, right after a torch.nn.LSTM call.
``single_blas_thread`` sets the BLAS libraries loaded in this process (found once, through
threadpoolctl) to one thread for a block and restores them after; about 2 us per use.
Process-wide, as every BLAS thread setting is: don't rely on it from several Python threads.
"""
from contextlib import contextmanager

_libs = None


def blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries loaded in this process now ([] without it)."""
    try:
        from threadpoolctl import ThreadpoolController
        return ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:                                     # threadpoolctl missing or unable: leave BLAS alone
        return []


@contextmanager
def single_blas_thread():
    global _libs
    if _libs is None:                                     # found at the first use, not at import: by then
        _libs = blas_libraries()                          # the libraries a program uses are loaded
    libs = _libs
    saved = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, saved):
            lib.set_num_threads(n)
