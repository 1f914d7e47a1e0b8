"""ONNX export of nplstm.LSTM, checked by onnxruntime (skipped without onnx/onnxruntime)."""
import numpy as np
import pytest

import nplstm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from nplstm.interop import export_onnx, onnx_model_bytes  # noqa: E402


@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True), dict(bias=False, num_layers=3)])
def test_onnxruntime_reproduces_outputs(config, tmp_path):
    lstm = nplstm.LSTM(3, 5, seed=1, **config)
    for v in lstm.params.values():                        # non-zero biases on both sides
        v[...] = np.random.default_rng(v.size).uniform(-0.7, 0.7, v.shape)
    path = tmp_path / "lstm.onnx"
    export_onnx(lstm, path)
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((6, 4, 3)).astype(np.float32)
    y, y_h, y_c = sess.run(None, {"X": x})
    out, (h, c) = lstm(x)
    D = lstm.num_directions
    np.testing.assert_allclose(y, out, atol=1e-5)
    np.testing.assert_allclose(y_h, h[-D:], atol=1e-5)
    np.testing.assert_allclose(y_c, c[-D:], atol=1e-5)


def test_projection_is_refused():
    with pytest.raises(ValueError, match="proj_size"):
        onnx_model_bytes(nplstm.LSTM(3, 5, proj_size=2))
