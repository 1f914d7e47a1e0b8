"""Device dispatch (the CuPy/GPU path), checked on the CPU through a strict fake device.

The layers, loss, optimizers and training loop run on the "strict" device of ``strict_device``:
NumPy arithmetic, but any host array mixed into its arrays raises, as CuPy does. Results must
equal the CPU's (same elementwise backend, so the same arithmetic) and stay on the device.
What only a real GPU can check (the CUDA kernels, cuBLAS) is in ``test_gpu.py``.
"""
import importlib.util
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import nplstm
import strict_device
from nplstm import _cellmath, _kinds, _xp, engine
from nplstm.losses import softmax_cross_entropy
from nplstm.optim import SGD, Adam, clip_grad_norm
from strict_device import STRICT, Strict
from strict_device import LAYERS
from strict_device import run_layer as run

strict_device.register()

I, H, B, T = 3, 5, 4, 6               # distinct sizes: a transposed axis cannot pass
LENGTHS = np.array([6, 3, 1, 5])


def on_strict(a):
    return STRICT.array(a)                                # a copy, as a real transfer is


def test_the_fake_device_refuses_host_arrays():
    a = STRICT.zeros((3, 4))
    for mix in (lambda: np.add(a, np.ones((3, 4))), lambda: STRICT.matmul(a, np.ones((4, 2))),
                lambda: STRICT.tensordot(a, np.ones((4, 2)), 1), lambda: a[np.array([0, 1])],
                lambda: np.tanh(a, out=np.empty((3, 4)))):
        with pytest.raises(TypeError, match="host numpy array"):
            mix()
    assert type(STRICT.asarray(np.ones(3))) is Strict and type(STRICT.asnumpy(a)) is np.ndarray


def test_a_host_buffer_in_the_time_loop_is_caught(monkeypatch):
    """What the strict device is for: an engine buffer allocated with numpy by name fails here."""
    real = _kinds.LSTMCell.buffers

    def leaky(T, H, B, dtype, w, backend):
        ext = real(T, H, B, dtype, w, backend)
        ext["tc"] = np.empty((T, H, B), dtype)
        return ext
    monkeypatch.setattr(_kinds.LSTMCell, "buffers", staticmethod(leaky))
    lstm = nplstm.LSTM(I, H, dtype="float64", seed=0, device="strict")
    with engine.use_backend("numpy"), pytest.raises(TypeError, match="host numpy array"):
        lstm(on_strict(np.ones((T, B, I))))




@pytest.mark.parametrize("cls, kw", LAYERS, ids=[f"{c.__name__}-{k}" for c, k in LAYERS])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_layer_on_the_device_equals_the_cpu(cls, kw, lengths):
    rng = np.random.default_rng(0)
    cpu = cls(I, H, dtype="float64", seed=3, **kw)
    for v in cpu.params.values():                         # random non-zero weights, biases included
        v[...] = rng.uniform(-0.8, 0.8, v.shape)
    dev = cls(I, H, dtype="float64", seed=3, device="strict", **kw)
    dev.load_state_dict(cpu.state_dict())                 # host arrays in, device arrays kept
    assert all(type(v) is Strict for v in dev.params.values())
    x = rng.standard_normal((B, T, I) if cpu.batch_first else (T, B, I))
    with engine.use_backend("numpy"):                     # the same arithmetic on both sides
        want, got = run(cpu, lambda a: a, x, lengths), run(dev, on_strict, x, lengths)
    assert want.keys() == got.keys()
    for k in want:
        assert _xp.device_of(got[k]) == "strict", k
        np.testing.assert_allclose(STRICT.asnumpy(got[k]), want[k], rtol=0, atol=1e-12, err_msg=k)


def test_to_moves_the_weights_there_and_back():
    lstm = nplstm.LSTM(I, H, num_layers=2, seed=0)
    host = lstm.state_dict()
    assert lstm.to("strict") is lstm and lstm.device == "strict" and "device='strict'" in repr(lstm)
    assert all(type(v) is Strict for v in lstm.params.values())
    lstm.to("cpu")
    assert all(type(v) is np.ndarray and np.array_equal(v, host[k]) for k, v in lstm.params.items())


def test_optimizers_and_clipping_on_the_device():
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(s) for k, s in (("w", (4, 3)), ("b", (5,)))}
    for opt_cls in (lambda: Adam(lr=0.1), lambda: SGD(lr=0.1, momentum=0.9)):
        host, dev = {k: v.copy() for k, v in params.items()}, {k: on_strict(v) for k, v in params.items()}
        opt_h, opt_d = opt_cls(), opt_cls()
        for step in range(3):
            g = {k: rng.standard_normal(v.shape) * 10 for k, v in params.items()}
            g_dev = {k: on_strict(v) for k, v in g.items()}
            assert clip_grad_norm(g_dev, 1.0) == pytest.approx(clip_grad_norm(g, 1.0), rel=1e-14)
            opt_h.step(host, g)
            opt_d.step(dev, g_dev)
        for k in params:
            assert type(dev[k]) is Strict
            np.testing.assert_allclose(STRICT.asnumpy(dev[k]), host[k], rtol=1e-14)
        assert all(type(v) is Strict for v in opt_d.state.values())


def _history(run_dir):
    import csv
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(r["train_loss"], r["val_loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("mode", ["lines", "stream"])
def test_training_on_the_device_equals_the_cpu_and_resumes_anywhere(tmp_path, mode):
    from nplstm.checkpoint import load
    from nplstm.train import config_from, train
    extra = {} if mode == "lines" else dict(corpus="shakespeare", line_mode=False, lowercase=False, seq_len=12)
    cfg = config_from("tiny", steps=4, eval_every=2, sample_every=4, checkpoint_every=2, dtype="float64",
                      dropout=0.2, layers=2, **extra)
    quiet = dict(log=lambda *a: None, progress=False)
    with engine.use_backend("numpy"):
        train(cfg, tmp_path / "cpu", **quiet)
        model = train(cfg, tmp_path / "dev", device="strict", **quiet)
        assert all(type(v) is Strict for v in model.params.values())
        assert _history(tmp_path / "dev") == _history(tmp_path / "cpu")
        cpu_arrays, _ = load(tmp_path / "cpu")
        dev_arrays, _ = load(tmp_path / "dev")            # the checkpoint holds host arrays
        assert cpu_arrays.keys() == dev_arrays.keys()
        for k in cpu_arrays:
            np.testing.assert_allclose(dev_arrays[k], cpu_arrays[k], rtol=0, atol=1e-12, err_msg=k)
        train({"steps": 6}, tmp_path / "dev", resume=True, device="cpu", **quiet)   # on another device
        train({"steps": 6}, tmp_path / "cpu", resume=True, device="strict", **quiet)
        assert _history(tmp_path / "dev") == _history(tmp_path / "cpu")


def test_sampling_from_a_device_model_equals_the_cpu():
    from nplstm.data import Vocab
    from nplstm.model import CharModel, ModelConfig, sample
    vocab = Vocab.from_text("abcdefg\n")
    cpu = CharModel(ModelConfig(len(vocab), 4, 6, dtype="float64"), seed=1)
    dev = CharModel(ModelConfig(len(vocab), 4, 6, dtype="float64"), seed=1, device="strict")
    with engine.use_backend("numpy"):
        assert sample(dev, vocab, "ab", 30, seed=2, stop_at=None) == sample(cpu, vocab, "ab", 30, seed=2, stop_at=None)


@pytest.mark.parametrize("make", [lambda: nplstm.LSTM(3, 5, device="tpu"), lambda: nplstm.GRU(3, 5, device="gpu"),
                                  lambda: nplstm.Linear(3, 4, device=0), lambda: nplstm.LSTM(3, 5).to("cuda:0")],
                         ids=["tpu", "gpu", "int", "cuda:0"])
def test_unknown_device_names_the_choices(make):
    with pytest.raises(ValueError, match="device must be one of 'cpu', 'cuda'"):
        make()


def test_mixing_devices_is_an_error_that_names_the_argument():
    x = np.zeros((T, B, I))
    with pytest.raises(ValueError, match="x is on device 'strict' but the layer's weights are on 'cpu'"):
        nplstm.LSTM(I, H)(on_strict(x))
    dev = nplstm.LSTM(I, H, device="strict")
    with pytest.raises(ValueError, match=r"x is on device 'cpu'.*nplstm.to_device\(x, 'strict'\)"):
        dev(x)
    with pytest.raises(ValueError, match="h0 is on device 'cpu'"):
        dev(on_strict(x), (np.zeros((1, B, H)), None))
    with pytest.raises(ValueError, match="idx is on device 'cpu'"):
        nplstm.Embedding(5, 3, device="strict").forward(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="x is on device 'cpu'"):
        nplstm.Linear(3, 4, device="strict").forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="targets is on device 'cpu'"):
        softmax_cross_entropy(on_strict(np.zeros((2, 3, 4))), np.zeros((2, 3), int))


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_without_cupy_says_what_to_install(tmp_path):
    with pytest.raises(ImportError, match=r'pip install "nplstm\[cuda\]"'):
        nplstm.LSTM(3, 5, device="cuda")
    r = subprocess.run([sys.executable, "-m", "nplstm", "train", "--preset", "tiny", "--device", "cuda",
                        "--out", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and 'pip install "nplstm[cuda]"' in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- the CUDA kernels' bodies
class KernelOnNumpy:
    """``cupy.ElementwiseKernel`` with its semantics on NumPy arrays, for _cellmath's straight-line bodies.

    Every argument is read as a value first (in-params are values in CUDA; out-params are read
    before they are written), then each statement runs over all elements at once, then the
    out-params are written back into the arrays passed (views included).
    """

    def __init__(self, in_params, out_params, body, name):
        self.ins = [p.split()[1] for p in in_params.split(",")]
        self.outs = [p.split()[1] for p in out_params.split(",")]
        code = re.sub(r"//[^\n]*", "", body).replace("(T)", "")
        lines = [re.sub(r"^T\s+", "", line.strip()).rstrip(";") for line in code.splitlines() if line.strip()]
        self.code = compile("\n".join(re.sub(r"\btanh\(", "np.tanh(", line) for line in lines), name, "exec")

    def __call__(self, *args):
        assert len(args) == len(self.ins) + len(self.outs)
        assert all(a.shape == args[0].shape for a in args), "every argument is one (H, n) view"
        env = {"np": np, **{name: np.array(a) for name, a in zip(self.ins + self.outs, args)}}
        exec(self.code, env)
        for name, a in zip(self.outs, args[len(self.ins):]):
            a[...] = env[name]


@pytest.fixture
def kernel_pair(monkeypatch):
    """_cellmath's CUDA pair, built against a fake cupy whose kernels run their bodies on NumPy."""
    fake = types.ModuleType("cupy")
    fake.ElementwiseKernel = KernelOnNumpy
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return _cellmath._cupy_backend()


def test_the_cuda_kernel_bodies_compute_what_the_numpy_backend_does(kernel_pair):
    rng = np.random.default_rng(0)
    Hh, n, T_, B_ = 5, 3, 4, 5                            # n < B: strided (H, n) views, as with lengths
    A0 = rng.uniform(-1.5, 1.5, (4 * Hh, T_, B_))
    rec, c_prev = rng.uniform(-1.5, 1.5, (4 * Hh, n)), rng.uniform(-1.5, 1.5, (Hh, n))
    results = []
    for fwd, bwd in (_cellmath.BACKENDS["numpy"]["lstm"], kernel_pair):
        A = A0.copy()
        c, tc, h, ig = (np.zeros((Hh, n)) for _ in range(4))
        fwd(A, 2, A, 2, rec, c_prev, c, tc, h, ig)        # training: the gates overwrite the input side
        slot = np.zeros((4 * Hh, 1, B_))
        fwd(A0, 1, slot, 0, rec, c_prev, c.copy(), tc.copy(), h.copy(), ig)   # inference: into a scratch
        dr, dc = np.linspace(-1, 1, Hh * n).reshape(Hh, n), np.full((Hh, n), 0.3)
        dZ = np.zeros((4 * Hh, T_, B_))
        bwd(A, dZ, 2, tc, c_prev, dr, dc, np.empty((Hh, n)), np.empty((3 * Hh, n)))
        results.append(dict(A=A, slot=slot, c=c, tc=tc, h=h, dZ=dZ, dc=dc))
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=0, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, proj_size=2)], ids=["1", "2bi-proj"])
def test_an_lstm_on_the_cuda_kernel_bodies_equals_the_cpu(kernel_pair, monkeypatch, kw):
    monkeypatch.setattr(_cellmath, "for_module", lambda xp, name: {**_cellmath.BACKENDS[name], "lstm": kernel_pair}
                        if xp is STRICT else _cellmath.BACKENDS[name])
    rng = np.random.default_rng(0)
    cpu = nplstm.LSTM(I, H, dtype="float64", seed=3, **kw)
    for v in cpu.params.values():
        v[...] = rng.uniform(-0.8, 0.8, v.shape)
    dev = nplstm.LSTM(I, H, dtype="float64", seed=3, device="strict", **kw)
    dev.load_state_dict(cpu.state_dict())
    x = rng.standard_normal((T, B, I))
    with engine.use_backend("numpy"):
        want, got = run(cpu, lambda a: a, x, LENGTHS), run(dev, on_strict, x, LENGTHS)
    for k in want:
        np.testing.assert_allclose(STRICT.asnumpy(got[k]), want[k], rtol=0, atol=1e-12, err_msg=k)


def test_exports_from_a_device_layer_are_host_copies():
    pytest.importorskip("onnx")
    from nplstm.interop import onnx_model_bytes, to_keras_weights
    cpu, dev = nplstm.LSTM(I, H, seed=0), nplstm.LSTM(I, H, seed=0, device="strict")
    for got, want in zip(to_keras_weights(dev), to_keras_weights(cpu)):
        assert type(got) is np.ndarray and np.array_equal(got, want)
    assert onnx_model_bytes(dev) == onnx_model_bytes(cpu)
    assert dev.device == "strict" and all(type(v) is Strict for v in dev.params.values())   # left where it was
