"""Arrays that start on a 64-byte boundary: a cache line, and one AVX-512 vector.

NumPy aligns its allocations to 16 bytes (glibc's malloc: a large array sits at a page plus 16)
and numba's ``np.empty`` to 32. The compiled float32 kernels read rows with 64-byte vector
loads, and a row that starts inside a cache line makes every such load touch two lines.
Measured on an Intel Xeon with AVX-512, 1 thread (``benchmarks/RESULTS.md``, fifteenth round):
batch 1's recurrent product h W_hh^T, which streams W_hh^T from L2 at every step, (64 x 256)
0.41 us a step with W_hh^T aligned against 0.70 at an offset of 16, 32 or 48 bytes; (128 x 512)
1.61 against 2.73. So that weight is held aligned (``recurrent``'s ``_held``), as are oneDNN's
packed weights (``_blas``) and the step's product in the loop (``_batchmajor``).
"""
import math

import numpy as np

ALIGN = 64                                                # bytes


def empty(shape, dtype=np.float32, order="C"):
    """np.empty(shape, dtype, order) starting on a 64-byte boundary: a view into a buffer 64 bytes
    longer, which it keeps alive."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    n = math.prod(shape)
    buf = np.empty(n + ALIGN // dtype.itemsize, dtype)
    start = (-buf.ctypes.data % ALIGN) // dtype.itemsize  # (any allocation is itemsize-aligned)
    flat = buf[start:start + n]
    return flat.reshape(shape[::-1]).T if order == "F" else flat.reshape(shape)


def is_aligned(a):
    return a.ctypes.data % ALIGN == 0


def copy(a, order="C"):
    """A copy of ``a`` in ``order`` ("C" or "F"), 64-byte aligned."""
    out = empty(a.shape, a.dtype, order)
    np.copyto(out, a)
    return out
