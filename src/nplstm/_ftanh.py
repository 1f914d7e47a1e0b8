"""tanh for float32 inside numba kernels: vectorizable, within a few ulp (and the kernels' constants).

It is Eigen's rational approximation (``ftanh``: clamped at +-7.9, one division, no branch),
which LLVM vectorizes; libm's scalar tanh would cost more than the rest of an LSTM step. So
the compiled float32 paths use it and float64 keeps NumPy's tanh. The kernels that call it are
compiled with ``error_model="numpy"``: numba's default checks each division
for zero, and that check alone keeps LLVM from vectorizing the division (measured: 7x slower
per tanh). The cell's sigmoid is sigma(z) = (1 + tanh(z/2)) / 2 through the same function.

Vector width. On Intel's AVX-512 CPUs LLVM's tuning prefers 256-bit vectors (8 float32 lanes),
for the clock drop 512-bit instructions caused on the first of them. ``wide_vectors()``, called
in a kernel (or in an inline helper it uses: ``ftanh`` calls it), marks that kernel's LLVM
function "prefer-vector-width"="512", so its loops take 16 lanes where the CPU has them; on
AVX2 and AMD's AVX-512 it changes nothing (the widest legal, or already preferred). Measured on
an Intel Xeon with AVX-512 (1 thread): ``ftanh`` 0.17-0.19 ns an element against 0.28-0.30,
and LSTM inference 3-8% faster at the bench's small points (benchmarks/RESULTS.md). numba has no
option for it, nor a per-function one for CPU features; its global ``NUMBA_CPU_FEATURES`` would
change every user's kernels, so the attribute goes on ours alone.
"""
import numpy as np

try:
    import numba
    from numba.core import types
    from numba.extending import intrinsic
except ImportError:                                       # then no kernel calls it
    numba = None

_A = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_B = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


# float32 constants throughout: a Python float (or int) would promote every operation to
# float64 and stop LLVM from vectorizing over 16 float32 lanes
_f32 = np.float32
_a1, _a3, _a5, _a7, _a9, _a11, _a13 = (_f32(v) for v in _A)
_b0, _b2, _b4, _b6 = (_f32(v) for v in _B)
_LIM, HALF, ONE = _f32(7.90531110763549805), _f32(0.5), _f32(1.0)


def _wide_vectors(typingctx):
    """wide_vectors(): the calling kernel's loops may use 512-bit vectors (see the module's note)."""
    def codegen(context, builder, signature, args):
        # llvmlite's attribute set accepts only its list of names; a string attribute
        # "key"="value" is written into the function's definition as it stands
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()
    return types.none(), codegen


wide_vectors = intrinsic(_wide_vectors) if numba else None


def _ftanh(x):
    """tanh for float32, Eigen's rational approximation: vectorizable (no branch, one division)."""
    wide_vectors()
    x = min(max(x, -_LIM), _LIM)
    x2 = x * x
    p = ((((((x2 * _a13 + _a11) * x2 + _a9) * x2 + _a7) * x2 + _a5) * x2 + _a3) * x2 + _a1) * x
    q = ((x2 * _b6 + _b4) * x2 + _b2) * x2 + _b0
    return p / q


ftanh = numba.njit(inline="always", fastmath=True, error_model="numpy")(_ftanh) if numba else None
