import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

SEED_FILE = Path(os.environ.get(
    "NPLSTM_SEED", Path(__file__).resolve().parents[1].parent / "shared" / "seed" / "lstm_seed_notebook.txt"))


def _textbook_rnn_utils():
    """The course's rnn_utils, written plainly here so the seed oracle does not run our code."""
    mod = types.ModuleType("rnn_utils")

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def softmax(x):
        e_x = np.exp(x - np.max(x, axis=0, keepdims=True))
        return e_x / e_x.sum(axis=0, keepdims=True)

    mod.sigmoid, mod.softmax = sigmoid, softmax
    return mod


@pytest.fixture(scope="session")
def seed():
    """The seed notebook's own functions, loaded from ../shared/seed at test time (skipped when absent)."""
    if not SEED_FILE.is_file():
        pytest.skip(f"seed notebook not found at {SEED_FILE}")
    source = re.sub(r"^In \[\d*\]:\s*$", "", SEED_FILE.read_text(encoding="utf-8"), flags=re.M)
    module = types.ModuleType("lstm_seed")
    saved = sys.modules.get("rnn_utils")
    sys.modules["rnn_utils"] = _textbook_rnn_utils()
    try:
        exec(compile(source, str(SEED_FILE), "exec"), module.__dict__)
    finally:
        if saved is None:
            sys.modules.pop("rnn_utils", None)
        else:
            sys.modules["rnn_utils"] = saved
    return module


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=__import__("nplstm").engine.backends())
def backend(request):
    """Run a test once per elementwise backend of the engine (numpy, and numba when installed)."""
    from nplstm import engine
    with engine.use_backend(request.param):
        yield request.param


@pytest.fixture
def sgemm_calls(monkeypatch):
    """The (M, N, K) of every ``nplstm._blas.sgemm`` call the test makes, in order; each call still runs."""
    from nplstm import _blas
    calls, real = [], _blas.sgemm
    monkeypatch.setattr(_blas, "sgemm", lambda *args: calls.append(args[3:6]) or real(*args))
    return calls


@pytest.fixture
def python_loop(monkeypatch):
    """Call it to switch the engine, for the rest of the test, to its own Python time loop with
    NumPy's matmul: no batch-major path, no compiled GEMM calls (the independent path that the
    compiled loops are checked against)."""
    from nplstm import _blas, engine

    def switch():
        monkeypatch.setattr(engine, "_batch_major", lambda w, x, kinds=None: False)
        monkeypatch.setattr(_blas, "gemm", lambda: None)
    return switch
