"""nplstm._blas: the sgemm providers (NumPy's OpenBLAS, oneDNN's) against float64 NumPy."""
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from nplstm import _blas

PROVIDERS = ["openblas", "onednn"]


def need(provider):
    if provider not in _blas.PROVIDERS:
        pytest.skip(f"{provider} sgemm not found here")
    return _blas.PROVIDERS[provider]


def operand(rng, rows, cols, transposed):
    """A (rows, cols) float32 matrix stored row-major, or as the transpose of a row-major (cols, rows)."""
    if transposed:
        return np.ascontiguousarray(rng.standard_normal((cols, rows), dtype=np.float32)).T
    return rng.standard_normal((rows, cols), dtype=np.float32)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_sgemm_each_convention_and_transpose(provider, ta, tb):
    gemm = need(provider)
    rng = np.random.default_rng(0)
    M, N, K = 5, 7, 6                                     # distinct, so a swapped dimension fails
    a, b = operand(rng, M, K, ta), operand(rng, K, N, tb)
    c = np.full((M, N), np.nan, np.float32)               # beta = 0: whatever was there is ignored
    lda, ldb = (M if ta else K), (K if tb else N)
    _blas.sgemm(gemm, ta, tb, M, N, K, a.ctypes.data, lda, b.ctypes.data, ldb, c.ctypes.data, N)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_matmul_takes_any_layout_and_falls_back_for_other_dtypes(provider, monkeypatch):
    need(provider)
    monkeypatch.setattr(_blas, "_SMALL", 0)               # these small products too through the provider
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 6), dtype=np.float32)
    strided = rng.standard_normal((6, 6), dtype=np.float32)[:, ::2]  # neither C nor F order: copied
    for b in (operand(rng, 6, 3, False), operand(rng, 6, 3, True), strided):
        with threadpool_limits(1), _blas.use(provider):
            assert _blas.provider() == provider
            got = _blas.matmul(a, b)
        assert got.dtype == np.float32 and got.shape == (4, 3)
        np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)
    a64 = a.astype(np.float64)
    with _blas.use(provider):
        assert _blas.matmul(a64, a64.T).dtype == np.float64      # float64: NumPy's matmul, exactly
        np.testing.assert_array_equal(_blas.matmul(a64, a64.T), a64 @ a64.T)
        with pytest.raises(ValueError):
            _blas.matmul(a, a)                                    # (4, 6) @ (4, 6): NumPy's shape error


def test_onednn_only_while_its_openmp_runs_one_thread():
    """Two spinning thread pools (OpenMP's and OpenBLAS's) on the same cores were measured 8x slower."""
    need("onednn")
    need("openblas")
    with _blas.use("onednn"):
        with threadpool_limits(1, user_api="openmp"):
            assert _blas.provider() == "onednn"
        with threadpool_limits(2, user_api="openmp"):
            assert _blas.provider() == "openblas"


def test_one_omp_thread_lowers_oneDNNs_openmp_for_a_block_and_restores_it():
    """What lets the batch-major path run a small LSTM's steps on one thread while OpenBLAS keeps its own."""
    need("onednn")
    with _blas.use("onednn"), threadpool_limits(2, user_api="openmp"):
        assert _blas.packed_compute() is None and _blas.packing_preferred() == (_blas._packing is not None)
        with _blas.one_omp_thread() as lowered:
            assert lowered and _blas._omp_threads() == 1 and _blas.provider() == "onednn"
        assert _blas._omp_threads() == 2
        with pytest.raises(KeyError), _blas.one_omp_thread():
            raise KeyError                                # restored on the way out of an error too
        assert _blas._omp_threads() == 2
        with threadpool_limits(1, user_api="openmp"), _blas.one_omp_thread() as lowered:
            assert not lowered and _blas._omp_threads() == 1
    with _blas.use("openblas"):
        assert not _blas.packing_preferred()


def test_use_restores_and_bad_names_are_refused():
    before = _blas.provider()
    for name in _blas.PROVIDERS:
        with threadpool_limits(1), _blas.use(name):
            assert _blas.provider() == name
        assert _blas.provider() == before
    with pytest.raises(ValueError, match="GEMM provider must be one of .* got 'mkl'"):
        _blas.set_provider("mkl")
    assert _blas.provider() == before


def test_the_environment_picks_the_provider():
    code = "from nplstm import _blas; print(_blas.provider())"   # OMP_NUM_THREADS=1: see the test above
    for name in _blas.PROVIDERS:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "NPLSTM_GEMM": name, "OMP_NUM_THREADS": "1"})
        assert run.stdout.strip() == name, run.stderr
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "NPLSTM_GEMM": "mkl"})
    assert run.returncode != 0 and "NPLSTM_GEMM" in run.stderr and "'mkl'" in run.stderr


def test_onednn_is_found_when_installed():
    """The loader checks dnnl_sgemm on one product and drops it if wrong: installed must mean found."""
    from importlib import metadata
    try:
        metadata.distribution("onednn-cpu-gomp")
    except metadata.PackageNotFoundError:
        pytest.skip("onednn-cpu-gomp not installed")
    assert "onednn" in _blas.PROVIDERS
    assert _blas._packing is not None                     # and its packed GEMM, which the batch-major path needs


def test_onednn_path_names_the_wheels_library_or_none(monkeypatch):
    """``onednn_path``: the libdnnl file of the installed wheel; None where the wheel is absent."""
    import os
    from importlib import metadata
    path = _blas.onednn_path()
    if path is not None:
        assert os.path.basename(path).startswith("libdnnl.so") and os.path.exists(path)

    def absent(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "distribution", absent)
    assert _blas.onednn_path() is None


def need_packing():
    need("onednn")
    if _blas._packing is None:
        pytest.skip("oneDNN's packed sgemm not found in this build")


@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("transposed", [False, True], ids=["C", "F"])
@pytest.mark.parametrize("n,M,K", [(5, 7, 6), (3, 64, 129), (16, 512, 128)])
def test_packed_gemm_against_float64(transposed, n, M, K, beta):
    """Y = X @ R + beta Y from R packed once, with fewer rows than packed for (as under lengths) and
    X, Y rows further apart than their width (as for a step's rows inside (T, B, 4H))."""
    need_packing()
    rng = np.random.default_rng(2)
    R = operand(rng, K, M, transposed)
    X = rng.standard_normal((n + 2, K + 3), dtype=np.float32)   # rows K + 3 apart, n + 2 of them
    Y = np.full((n, M + 2), np.nan, np.float32)
    Y[:, :M] = rng.standard_normal((n, M)) if beta else np.nan  # beta = 0: whatever was there is ignored
    want = X[:n, :K].astype(np.float64) @ R.astype(np.float64) + beta * np.nan_to_num(Y[:, :M])
    with threadpool_limits(1), _blas.use("onednn"):
        Rp, compute = _blas.pack_right(R, n + 2), _blas.packed_compute()
    _blas.gemm_packed(compute, Rp, n, M, K, X.ctypes.data, K + 3, Y.ctypes.data, M + 2, beta)
    np.testing.assert_allclose(Y[:, :M], want, rtol=1e-5, atol=1e-4)
    assert np.isnan(Y[:, M:]).all()                       # nothing written past each row's M


def test_packed_gemm_only_while_onednn_is_the_gemm():
    need_packing()
    need("openblas")
    R = np.ones((4, 3), np.float32)
    with threadpool_limits(1), _blas.use("onednn"):
        assert _blas.packed_compute() is not None and _blas.pack_right(R, 2) is not None
    with threadpool_limits(1), _blas.use("openblas"):
        assert _blas.packed_compute() is None and _blas.pack_right(R, 2) is None
    with threadpool_limits(2, user_api="openmp"), _blas.use("onednn"):   # then gemm() is OpenBLAS's
        assert _blas.packed_compute() is None


@pytest.mark.parametrize("shape", [(5, 7), (1, 3), (64, 130), (0, 4)])
def test_c_contiguous_copies_only_what_is_not_row_major(shape):
    rng = np.random.default_rng(3)
    C = rng.standard_normal(shape, dtype=np.float32)
    assert _blas.c_contiguous(C) is C                                  # row-major already: as it is
    for W in (C.T,                                                     # column-major float32: somatcopy where found
              rng.standard_normal(shape).T,                            # float64: NumPy's copy
              rng.standard_normal((shape[0], 2 * shape[1]), dtype=np.float32)[:, ::2]):   # strided: NumPy's
        got = _blas.c_contiguous(W)
        assert got.flags.c_contiguous and got.dtype == W.dtype
        assert got is W if W.flags.c_contiguous else got.base is None   # (a single row or column is both)
        np.testing.assert_array_equal(got, W)


def test_small_and_transposed_products_go_to_numpy(sgemm_calls):
    """Below ~4M multiply-adds a oneDNN call costs more than it saves, and with A transposed (the
    weight gradients) OpenBLAS was faster: NumPy's matmul for both."""
    need("onednn")
    rng = np.random.default_rng(4)
    for M, K, N, ta in ((100, 32, 256, False), (256, 128, 128, False), (256, 130, 128, True), (128, 129, 256, False)):
        a, b = operand(rng, M, K, ta), rng.standard_normal((K, N), dtype=np.float32)   # 0.8M, then 4.2M+
        with threadpool_limits(1), _blas.use("onednn"):
            np.testing.assert_allclose(_blas.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    assert sgemm_calls == [(256, 128, 128), (128, 256, 129)]    # (M, N, K) of the ones that went to oneDNN


@pytest.mark.parametrize("provider", PROVIDERS)
def test_thin_products_go_to_the_sgemm(provider, sgemm_calls):
    """A thin K with a wide product (an LSTM's input side when its input has 1-8 features): to
    oneDNN from ~128k elements (3-4x np.matmul at K = 2), and at K = 1, where np.matmul leaves
    BLAS for a loop 3.4x slower than OpenBLAS's sgemm, to either provider from ~4k elements."""
    need(provider)
    rng = np.random.default_rng(5)
    for M, K, N in ((1600, 1, 512), (64, 1, 64), (63, 1, 64), (256, 2, 512), (255, 2, 512)):
        a, b = rng.standard_normal((M, K), dtype=np.float32), operand(rng, K, N, True)   # b as w_ih.T
        with threadpool_limits(1), _blas.use(provider):
            got = _blas.matmul(a, b)
        if K == 1:                                        # one product an element: exact either way
            np.testing.assert_array_equal(got, a * b)
        np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    wide = [(256, 512, 2)] if provider == "onednn" else []
    assert sgemm_calls == [(1600, 512, 1), (64, 64, 1)] + wide  # (M, N, K): (63, 1, 64) is 4032 elements


def test_matmul_into_a_steps_strided_columns_through_onednn(sgemm_calls):
    """The generic loop's per-step product: W (G, P) times the n active columns of h (P, B) into
    the same columns of rec (G, B), row strides B; oneDNN from ~2M multiply-adds, and np.matmul
    below, for a transposed W, for float64, or where oneDNN is not the gemm."""
    need("onednn")
    rng = np.random.default_rng(6)
    G, P, B, n = 384, 96, 80, 57                          # 384 * 96 * 57 = 2.1M multiply-adds
    W, h = rng.standard_normal((G, P), dtype=np.float32), rng.standard_normal((P, B), dtype=np.float32)
    for a, b, cols, dtype in ((W, h, n, np.float32), (W, h, 56, np.float32), (W.T.copy().T, h, n, np.float32),
                              (W, h, n, np.float64)):
        rec = np.full((G, B), np.nan, dtype)
        with threadpool_limits(1), _blas.use("onednn"):
            got = _blas.matmul_into(a.astype(dtype, copy=False), b[:, :cols].astype(dtype, copy=False), rec[:, :cols])
        assert got is rec[:, :cols] or np.shares_memory(got, rec)
        np.testing.assert_allclose(rec[:, :cols], W.astype(np.float64) @ h[:, :cols], rtol=1e-4, atol=1e-4)
        assert np.isnan(rec[:, cols:]).all()              # the finished columns are left alone
    assert sgemm_calls == [(G, n, P)]                           # 56 columns: 2.06M < 2^21; W.T.T: transposed
    rec = np.empty((G, B), np.float32)
    with threadpool_limits(1), _blas.use("onednn"):       # rows in descending order: np.matmul too
        _blas.matmul_into(W, h[::-1], rec)
    np.testing.assert_allclose(rec, W.astype(np.float64) @ h[::-1], rtol=1e-4, atol=1e-4)
    assert len(sgemm_calls) == 1
    with threadpool_limits(2), _blas.use("onednn"):       # OpenBLAS's threads: oneDNN is not the gemm
        _blas.matmul_into(W, h, np.empty((G, B), np.float32))
    assert len(sgemm_calls) == 1


def test_a_failing_pack_is_an_error_not_a_silent_none():
    """Only "no packing here" is None; a status from oneDNN (say, out of memory) raises, naming it.
    A failing size is not kept: the next call asks again."""
    statuses = iter([3, 0])                               # sgemm_pack_get_size: dnnl_status_t 3, then success
    flaky = (lambda *args: next(statuses), lambda *args: 0, None)
    with pytest.raises(RuntimeError, match="sgemm_pack of a 4x3 matrix failed with dnnl_status_t 3"):
        _blas._pack(flaky, np.ones((4, 3), np.float32), 2)
    assert _blas._pack(flaky, np.ones((4, 3), np.float32), 2) is not None


def test_the_packed_size_is_asked_once_per_shape():
    """A plain layer packs W_hh at every call; oneDNN's sgemm_pack_get_size, as long as the pack
    itself there, is asked once per (R's shape, rows) and its answer kept. The packs still multiply
    right."""
    need_packing()
    size_of, pack, compute = _blas._packing
    asked = []

    def counting(*args):
        asked.append(args)
        return size_of(*args)
    fns, rng = (counting, pack, compute), np.random.default_rng(5)
    R, X = rng.standard_normal((6, 7), dtype=np.float32), rng.standard_normal((4, 6), dtype=np.float32)
    with threadpool_limits(1), _blas.use("onednn"):
        packs = [_blas._pack(fns, R, 3), _blas._pack(fns, R, 3), _blas._pack(fns, R, 4), _blas._pack(fns, R.T, 3)]
    assert len(asked) == 3                                # (6x7, 3 rows) once; 4 rows; R^T (7x6)
    for Rp, n in zip(packs, (3, 3, 4)):
        Y = np.empty((n, 7), np.float32)
        _blas.gemm_packed(compute, Rp, n, 7, 6, X.ctypes.data, 6, Y.ctypes.data, 7)
        np.testing.assert_allclose(Y, X[:n].astype(np.float64) @ R, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (0, 4), (2, 3, 7)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_aligned_arrays_start_on_64_bytes(dtype, shape, order):
    """``_aligned.empty``/``copy``: the shape, dtype and order asked for, data on a 64-byte boundary
    (NumPy's own: 16), and a copy equal to its source."""
    from nplstm import _aligned
    a = _aligned.empty(shape, dtype, order)
    assert a.shape == shape and a.dtype == dtype and a.flags[order + "_CONTIGUOUS"]
    assert a.size == 0 or a.ctypes.data % 64 == 0
    src = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    b = _aligned.copy(src, order)
    assert b.flags[order + "_CONTIGUOUS"] and (b.size == 0 or b.ctypes.data % 64 == 0)
    np.testing.assert_array_equal(b, src)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_compiled_alignment_check_reads_the_address(layout):
    """``_batchmajor_loops.aligned`` (compiled, for batch 1's call) says what ``_aligned.is_aligned``
    says, from the array's address: true only at offsets of 16 float32 from a 64-byte boundary,
    whatever the layout (the batch-1 weights are transposed views)."""
    pytest.importorskip("numba")
    from nplstm import _aligned, _batchmajor_loops
    buf = _aligned.empty((40 * 7 * 2,))
    seen = []
    for offset in range(20):
        flat = buf[offset:offset + 7 * 2 * 10]
        a = {"C": flat.reshape(14, 10), "F": flat.reshape(10, 14).T, "strided": flat.reshape(14, 10)[:, ::2]}[layout]
        assert _batchmajor_loops.aligned(a) == _aligned.is_aligned(a)
        seen.append(_batchmajor_loops.aligned(a))
    assert seen == [offset % 16 == 0 for offset in range(20)]


def test_matmul_tn_against_float64_and_where_it_goes(sgemm_calls, monkeypatch):
    """a.T @ b (the weight gradients dZ^T X over all T*B rows): oneDNN's product the other way
    round, (b^T a)^T, F-contiguous, from ~4M multiply-adds where oneDNN's kernels are AVX-512 ones;
    np.matmul below, for float64, for strided operands, with OpenBLAS, and on AVX2."""
    need("onednn")
    monkeypatch.setattr(_blas, "_avx512", True)          # (the rule; the CPU's own answer is checked below)
    rng = np.random.default_rng(7)
    K, M, N = 700, 96, 70                                # 4.7M multiply-adds; distinct sizes
    a, b = rng.standard_normal((K, M), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)
    expected = a.astype(np.float64).T @ b.astype(np.float64)
    with threadpool_limits(1), _blas.use("onednn"):
        got = _blas.matmul_tn(a, b)
        assert sgemm_calls == [(N, M, K)] and got.shape == (M, N) and got.flags.f_contiguous
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        for x, y in ((a[:600], b[:600]),                  # 4.0M < 2^22: np.matmul
                     (a.astype(np.float64), b.astype(np.float64)), (a[::2], b[::2]), (a, b[:, ::2])):
            np.testing.assert_allclose(_blas.matmul_tn(x, y), x.astype(np.float64).T @ y, rtol=1e-4, atol=1e-4)
        with _blas.use("openblas"):
            np.testing.assert_allclose(_blas.matmul_tn(a, b), expected, rtol=1e-4, atol=1e-4)
        monkeypatch.setattr(_blas, "_avx512", False)
        np.testing.assert_allclose(_blas.matmul_tn(a, b), expected, rtol=1e-4, atol=1e-4)
    assert len(sgemm_calls) == 1



def test_onednn_reports_the_cpus_vector_width():
    """``_avx512`` (oneDNN's ISA, asked at load) says what /proc/cpuinfo says."""
    need("onednn")
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo here")
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    assert _blas._avx512 == ("avx512f" in flags and "avx512bw" in flags)
