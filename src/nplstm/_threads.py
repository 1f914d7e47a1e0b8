"""One BLAS thread for the batch-of-one path, whose GEMMs are too small to split.

OpenBLAS splits even a (256x32) @ (32x100) GEMM over every thread it has. When the other
core is busy, for instance with the OpenMP workers another library (torch) leaves spinning
after its own call, the split GEMM waits for a thread that cannot run: measured on 2 cores,
33 us with one BLAS thread against 3.5 ms with two, right after a torch.nn.LSTM call.
``single_blas_thread`` sets the BLAS libraries loaded in this process (found once, through
threadpoolctl) to one thread for a block and restores them after. For OpenBLAS it calls
``openblas_get/set_num_threads`` through ctypes directly: ~1 us a use, where threadpoolctl's
setters, which look their symbol up at every call, took ~10 us (a tenth of a short
inference call). Process-wide, as every BLAS thread setting is: don't rely on it from several
Python threads.
"""
import ctypes

_switches = None
_AFFIXES = [(prefix, suffix) for prefix in ("", "scipy_") for suffix in ("", "64_", "_64")]   # as threadpoolctl's


def blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries loaded in this process now ([] without it)."""
    try:
        from threadpoolctl import ThreadpoolController
        return ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:                                     # threadpoolctl missing or unable: leave BLAS alone
        return []


def _switch(lib):
    """(get, set) of one library's thread count: OpenBLAS's own C functions where found, else the
    controller's methods."""
    if lib.internal_api == "openblas":
        try:
            handle = ctypes.CDLL(lib.filepath)
            for prefix, suffix in _AFFIXES:
                name = f"{prefix}openblas_%s_num_threads{suffix}"
                if hasattr(handle, name % "get") and hasattr(handle, name % "set"):
                    get, set_ = getattr(handle, name % "get"), getattr(handle, name % "set")
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    return get, set_
        except OSError:
            pass
    return lib.get_num_threads, lib.set_num_threads


class single_blas_thread:
    """``with single_blas_thread(): ...`` -- every BLAS library on one thread for a block, restored
    after. A class rather than a generator: @contextmanager costs ~2.5 us a use here."""

    def __enter__(self):
        global _switches
        if _switches is None:                             # found at the first use, not at import: by then
            _switches = [_switch(lib) for lib in blas_libraries()]   # the libraries a program uses are loaded
        self.saved = [get() for get, _ in _switches]
        for (_, set_), n in zip(_switches, self.saved):
            if n != 1:
                set_(1)

    def __exit__(self, *exc):
        for (_, set_), n in zip(_switches, self.saved):
            if n != 1:
                set_(n)
