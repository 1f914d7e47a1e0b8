"""Attacks rather than happy paths: extremes, crafted files, faults, random shapes (see docs/robustness.md)."""
import errno
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import nplstm
from nplstm import checkpoint as ckpt
from nplstm import reference as ref
from nplstm.losses import softmax_cross_entropy

LAYERS = [lambda **k: nplstm.LSTM(3, 5, **k), lambda **k: nplstm.GRU(3, 5, **k), lambda **k: nplstm.RNN(3, 5, **k),
          lambda **k: nplstm.RNN(3, 5, nonlinearity="relu", **k)]


def strict():
    """NumPy warnings and floating-point errors (but underflow) become exceptions."""
    ctx = np.errstate(over="raise", invalid="raise", divide="raise")
    warnings.simplefilter("error")
    return ctx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", LAYERS, ids=["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_extreme_preactivations_stay_finite(make, dtype):
    layer = make(num_layers=2, bidirectional=True, dtype=dtype, seed=0)
    for v in layer.params.values():
        v *= 100                                          # weights x100
    x = np.random.default_rng(0).choice([-1e4, 1e4], size=(7, 3, 3)).astype(dtype)
    with warnings.catch_warnings(), strict():
        out, state, cache = layer.forward(x, train=True)
        dx, _, grads = layer.backward(np.ones_like(out), cache)
    for a in (out, dx, *grads.values()):
        assert np.all(np.isfinite(a))
    if isinstance(layer, nplstm.RNN) and layer.nonlinearity == "relu":
        return                                            # relu is unbounded by design
    assert np.abs(out).max() <= 1


def test_reference_and_loss_extremes():
    p = ref.initialize_parameters(3, 5, 4, seed=0, scale=100.0)
    x = np.full((3, 2, 4), 1e4)
    with warnings.catch_warnings(), strict():
        a, y, c, caches = ref.lstm_forward(x, np.zeros((5, 2)), p)
        loss, g = ref.softmax_cross_entropy(a, np.zeros((2, 4), int), p)
        grads = ref.lstm_backward(g["da"], caches)
        l2, d2 = softmax_cross_entropy(np.array([[[1e4, -1e4, 0.0]]]), np.array([[1]]))
    assert np.isfinite(loss) and all(np.all(np.isfinite(v)) for v in grads.values())
    assert l2 == pytest.approx(2e4) and np.all(np.isfinite(d2))


def craft(tmp_path, **model_meta):
    """A checksum-valid checkpoint whose metadata lies about the model sizes."""
    model = nplstm.model.CharModel(nplstm.model.ModelConfig(vocab_size=5, embed=3, hidden=4), seed=0)
    meta = {"model": {**model.config_dict(), **model_meta}, "vocab": "abcde", "config": {}, "step": 1}
    path = tmp_path / "crafted.safetensors"
    ckpt.save(path, {f"model.{k}": v for k, v in model.params.items()}, meta)
    return path


@pytest.mark.parametrize("lie", [dict(hidden=10**9), dict(vocab_size=-1), dict(layers=True), dict(embed=3.5),
                                 dict(hidden=8), dict(cell="transformer"), dict(layers=2)])
def test_crafted_metadata_is_refused_before_any_allocation(lie, tmp_path):
    from nplstm.train import load_model
    with pytest.raises(ckpt.CheckpointError, match="metadata is invalid"):
        load_model(craft(tmp_path, **lie))


def test_no_code_path_unpickles():
    src = os.path.join(os.path.dirname(nplstm.__file__))
    for root, _, files in os.walk(src):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    text = f.read()
                for bad in ("pickle.load", "allow_pickle=True", "torch.load(", "np.load(", "shell=True", "os.system("):
                    assert bad not in text, f"{name} contains {bad}"


def test_disk_full_during_checkpoint_leaves_old_file_and_no_temp(tmp_path, monkeypatch, capsys):
    from nplstm import _io, cli
    args = ["train", "--preset", "tiny", "--steps", "4", "--checkpoint-every", "2", "--quiet", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    before = (tmp_path / ckpt.FILENAME).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(_io.os, "fsync", full)
    assert cli.main(["train", "--out", str(tmp_path), "--resume", "--steps", "6", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert (tmp_path / ckpt.FILENAME).read_bytes() == before            # the old checkpoint is intact
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]   # nothing half-written remains


def test_output_folder_that_cannot_exist(tmp_path, capsys):
    from nplstm import cli
    (tmp_path / "file").write_text("x")
    assert cli.main(["train", "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "file" / "run")]) == 1
    assert "cannot read or write" in capsys.readouterr().err


@pytest.mark.slow
def test_twenty_random_sigkills_then_same_weights(tmp_path):
    """A chain of 20 kills at random moments (often mid-checkpoint), each resumed, ends where an
    uninterrupted run ends, bit for bit."""
    common = ["train", "--preset", "tiny", "--steps", "1500", "--checkpoint-every", "1", "--eval-every", "100000",
              "--sample-every", "100000", "--quiet", "--hidden", "16", "--seed", "5"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "nplstm", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=600)
    assert run(*common, "--out", str(tmp_path / "full")).returncode == 0
    out, rng, kills = tmp_path / "killed", np.random.default_rng(0), 0
    while kills < 20:
        resume = ["--resume"] if (out / ckpt.FILENAME).exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "nplstm", *common, "--out", str(out), *resume],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 1.6))
        if proc.poll() is not None:
            break                                         # it finished first
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        if (out / ckpt.FILENAME).exists():
            ckpt.load(out)                                # intact after every kill: loads and checksums
    assert kills >= 10
    r = run(*common, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    a, meta_a = ckpt.load(tmp_path / "full")
    b, meta_b = ckpt.load(out)
    assert meta_a["step"] == meta_b["step"] == 1500
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.slow
def test_hundred_thousand_steps():
    lstm = nplstm.LSTM(8, 128, seed=0)
    x = np.random.default_rng(0).standard_normal((100_000, 1, 8)).astype(np.float32)
    out, (h, c), cache = lstm.forward(x, train=True)
    dx, _, grads = lstm.backward(np.ones_like(out) / out.size, cache)
    assert np.all(np.isfinite(dx)) and all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.parametrize("make", LAYERS[:3], ids=["lstm", "gru", "rnn"])
def test_checkpointed_training_equals_plain(make):
    """Gradient checkpointing (recompute every k steps) changes memory, not numbers."""
    layer = make(num_layers=2, bidirectional=True, dropout=0.3, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((23, 4, 3))
    lens = [23, 7, 1, 15]
    results = []
    for every in (None, 5, 1, 100):
        layer.rng = np.random.default_rng(1)              # the same dropout masks each time
        out, state, cache = layer.forward(x, lengths=lens, train=True, checkpoint_every=every)
        G = np.random.default_rng(2).standard_normal(out.shape)
        if isinstance(layer, nplstm.LSTM):
            d_state = tuple(np.random.default_rng(3).standard_normal(s.shape) for s in state)
        else:
            d_state = np.random.default_rng(3).standard_normal(state.shape)
        results.append((out, layer.backward(G, cache, d_state)))
    (out0, back0), rest = results[0], results[1:]
    for out, back in rest:
        np.testing.assert_array_equal(out, out0)
        np.testing.assert_array_equal(back[0], back0[0])                      # dx
        for k in back0[-1]:
            np.testing.assert_allclose(back[-1][k], back0[-1][k], rtol=0, atol=1e-12, err_msg=k)
    with pytest.raises(ValueError, match="checkpoint_every"):
        layer.forward(x, train=True, checkpoint_every=0)
