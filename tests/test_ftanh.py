"""nplstm._ftanh: the compiled float32 paths' tanh, and the vector width of the kernels that use it."""
import numpy as np
import pytest

numba = pytest.importorskip("numba")
from nplstm import _ftanh  # noqa: E402

_jit = numba.njit(fastmath=True, error_model="numpy")   # as the kernels are compiled


def _tanh_loop(x, y):
    for j in range(x.shape[0]):
        y[j] = _ftanh.ftanh(x[j])


def _axpy_loop(a, x, y):
    _ftanh.wide_vectors()
    for j in range(x.shape[0]):
        y[j] += a * x[j]


def test_ftanh_against_float64_tanh():
    """Within a few float32 ulp of tanh over the range an LSTM sees, past the clamp too, and
    relatively so near 0, where tanh(x) ~ x."""
    x = np.concatenate([np.linspace(-12, 12, 200_001), [-1e30, -8.0, 8.0, 1e30]]).astype(np.float32)
    y = np.empty_like(x)
    _jit(_tanh_loop)(x, y)
    exact = np.tanh(x.astype(np.float64))
    assert np.max(np.abs(y - exact)) < 4 * np.finfo(np.float32).eps   # ~5e-7; |tanh| <= 1
    np.testing.assert_allclose(y[-4:], [-1, -1, 1, 1], rtol=0, atol=4 * np.finfo(np.float32).eps)
    small = (np.abs(x) < 1e-3) & (x != 0)
    assert np.max(np.abs(y[small] - exact[small]) / np.maximum(np.abs(exact[small]), 1e-30)) < 1e-6


@pytest.mark.parametrize("kernel", [_tanh_loop, _axpy_loop], ids=["through ftanh", "called"])
def test_wide_vectors_marks_the_kernel_it_is_in(kernel):
    """The LLVM function of a kernel that calls wide_vectors() (itself or through ftanh) asks for
    512-bit vectors; on a CPU with AVX-512 its loop then uses them (zmm registers)."""
    f = _jit(kernel)
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    args = (x, np.zeros_like(x)) if kernel is _tanh_loop else (np.float32(2), x, np.zeros_like(x))
    f(*args)
    (ir,) = f.inspect_llvm().values()
    assert '"prefer-vector-width"="512"' in ir
    import llvmlite.binding as ll
    if "+avx512f" in ll.get_host_cpu_features().flatten().split(","):
        (asm,) = f.inspect_asm().values()
        assert "zmm" in asm


def test_without_it_a_kernel_keeps_numbas_default():
    """The attribute is the kernel's own: a kernel that does not call it is left as numba makes it."""
    def plain(a, x, y):
        for j in range(x.shape[0]):
            y[j] += a * x[j]
    f = _jit(plain)
    x = np.ones(8, np.float32)
    f(np.float32(2), x, x.copy())
    (ir,) = f.inspect_llvm().values()
    assert "prefer-vector-width" not in ir
