"""The CuPy path on a real NVIDIA GPU: the CUDA kernels and cuBLAS against the NumPy engine.

Skipped where CuPy or a GPU is missing (CPU CI). Run them with ``bash benchmarks/gpu_check.sh``,
or ``python -m pytest -q tests/test_gpu.py`` on a machine with a GPU and ``nplstm[cuda]``.
"""
import numpy as np
import pytest

import nplstm
from nplstm import engine
from nplstm.gradcheck import check_layer
from strict_device import LAYERS
from strict_device import run_layer as run

cupy = pytest.importorskip("cupy")
try:
    if cupy.cuda.runtime.getDeviceCount() < 1:
        raise RuntimeError("no device")
except Exception as err:                                  # CuPy installed, but no driver or no GPU
    pytest.skip(f"no usable CUDA device: {err}", allow_module_level=True)

pytestmark = pytest.mark.gpu

I, H, B, T = 3, 5, 4, 6
LENGTHS = np.array([6, 3, 1, 5])



def compare(cls, kw, lengths, dtype, atol, backend):
    rng = np.random.default_rng(0)
    cpu = cls(I, H, dtype=dtype, seed=3, **kw)
    for v in cpu.params.values():                         # random non-zero weights, biases included
        v[...] = rng.uniform(-0.8, 0.8, v.shape)
    gpu = cls(I, H, dtype=dtype, seed=3, device="cuda", **kw)
    gpu.load_state_dict(cpu.state_dict())
    x = rng.standard_normal((B, T, I) if cpu.batch_first else (T, B, I)).astype(dtype)
    with engine.use_backend("numpy"):
        want = run(cpu, lambda a: a, x, lengths)
    with engine.use_backend(backend):                     # "numba"/default: the CUDA kernels; "numpy": ufuncs
        got = run(gpu, cupy.asarray, x, lengths)
    for k in want:
        assert isinstance(got[k], cupy.ndarray), k
        np.testing.assert_allclose(cupy.asnumpy(got[k]), want[k], rtol=0, atol=atol, err_msg=k)


@pytest.mark.parametrize("cls, kw", LAYERS, ids=[f"{c.__name__}-{k}" for c, k in LAYERS])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("backend", ["kernels", "numpy"])
def test_float64_matches_the_numpy_engine(cls, kw, lengths, backend):
    compare(cls, kw, lengths, "float64", 1e-10, engine.get_backend() if backend == "kernels" else "numpy")


@pytest.mark.parametrize("cls, kw", LAYERS[:2] + LAYERS[4:], ids=lambda v: getattr(v, "__name__", str(v)))
def test_float32_matches_the_numpy_engine(cls, kw):
    compare(cls, kw, LENGTHS, "float32", 1e-4, engine.get_backend())


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, proj_size=2)], ids=["1", "2bi-proj"])
def test_gradcheck_on_the_gpu(kw):
    lstm = nplstm.LSTM(I, H, dtype="float64", seed=0, device="cuda", **kw)
    x = np.random.default_rng(1).standard_normal((T, B, I))
    report = check_layer(lstm, x, lengths=LENGTHS)
    assert report.ok, report


def test_char_model_trains_on_the_gpu_as_on_the_cpu(tmp_path):
    from nplstm.checkpoint import load
    from nplstm.train import config_from, train
    cfg = config_from("tiny", steps=6, eval_every=3, sample_every=6, checkpoint_every=3, dtype="float64")
    quiet = dict(log=lambda *a: None, progress=False)
    with engine.use_backend("numpy"):
        train(cfg, tmp_path / "cpu", **quiet)
    model = train(cfg, tmp_path / "gpu", device="cuda", **quiet)
    assert all(isinstance(v, cupy.ndarray) for v in model.params.values())
    (cpu, _), (gpu, _) = load(tmp_path / "cpu"), load(tmp_path / "gpu")
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=0, atol=1e-9, err_msg=k)
