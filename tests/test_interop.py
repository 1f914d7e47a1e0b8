"""Interop: PyTorch safetensors files, Keras weight lists, ONNX export and import, round trips."""
import numpy as np
import pytest

import nplstm
from nplstm import interop
from nplstm.interop import InteropError
from nplstm.model import CharModel, ModelConfig

pytest.importorskip("safetensors")


def randomized(lstm, seed=0):
    for k, v in lstm.params.items():                      # non-zero, distinct biases on both sides
        v[...] = np.random.default_rng([seed, len(k), v.size]).uniform(-0.7, 0.7, v.shape)
    return lstm


def keras_lstm_forward(x, kernel, recurrent_kernel, bias, reverse=False):
    """Keras' LSTM equations (recurrent_activation=sigmoid), time-major x (T, B, in), zero initial state."""
    U = recurrent_kernel.shape[0]
    sig = lambda z: 1 / (1 + np.exp(-z))
    h, c, out = np.zeros((x.shape[1], U)), np.zeros((x.shape[1], U)), [None] * len(x)
    for t in (reversed(range(len(x))) if reverse else range(len(x))):
        z = x[t] @ kernel + h @ recurrent_kernel + bias
        i, f, cc, o = sig(z[:, :U]), sig(z[:, U:2 * U]), np.tanh(z[:, 2 * U:3 * U]), sig(z[:, 3 * U:])
        c = f * c + i * cc
        h = o * np.tanh(c)
        out[t] = h
    return np.stack(out)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_weights_against_keras_equations_and_round_trip(bidirectional):
    lstm = randomized(nplstm.LSTM(3, 5, num_layers=2, bidirectional=bidirectional, dtype="float64"))
    weights = interop.to_keras_weights(lstm)
    D = 2 if bidirectional else 1
    assert len(weights) == 6 * D and weights[0].shape == (3, 20) and weights[1].shape == (5, 20)
    x = np.random.default_rng(1).standard_normal((6, 4, 3))
    inp = x
    for layer in range(2):
        outs = [keras_lstm_forward(inp, *weights[3 * (layer * D + d):3 * (layer * D + d) + 3], reverse=d == 1)
                for d in range(D)]
        inp = np.concatenate(outs, axis=2)
    np.testing.assert_allclose(lstm(x)[0], inp, atol=1e-12)
    back = interop.from_keras_weights(weights, bidirectional=bidirectional, dtype="float64")
    np.testing.assert_allclose(back(x)[0], lstm(x)[0], atol=1e-12)
    assert all(np.all(v == 0) for k, v in back.params.items() if k.startswith("bias_hh"))
    for a, b in zip(interop.to_keras_weights(back), weights):   # exact: nplstm -> Keras -> nplstm -> Keras
        np.testing.assert_array_equal(a, b)


def test_keras_bad_weights():
    w = interop.to_keras_weights(nplstm.LSTM(3, 5))
    with pytest.raises(InteropError, match=r"weights\[1\] \(recurrent_kernel\).*\(5, 20\).*\(4, 20\)"):
        interop.from_keras_weights([w[0], w[1][:4], w[2]])
    with pytest.raises(InteropError, match="3 arrays"):
        interop.from_keras_weights(w[:2])
    with pytest.raises(InteropError, match="proj_size"):
        interop.to_keras_weights(nplstm.LSTM(3, 5, proj_size=2))


def test_torch_files_both_ways(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file
    module = torch.nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2).double()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    save_file(module.state_dict(), tmp_path / "torch.safetensors")             # what a torch user has
    ours = interop.lstm_from_state_dict(interop.load_torch_state_dict(tmp_path / "torch.safetensors"), dtype="float64")
    x = np.random.default_rng(0).standard_normal((6, 4, 3))
    want, _ = module(torch.tensor(x))
    np.testing.assert_allclose(ours(x)[0], want.detach().numpy(), atol=1e-12)
    interop.save_torch_state_dict(ours, tmp_path / "ours.safetensors")         # and back into torch, exactly
    module2 = torch.nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2).double()
    module2.load_state_dict(load_file(tmp_path / "ours.safetensors"))
    for k, v in module.state_dict().items():
        assert torch.equal(module2.state_dict()[k], v), k


def test_char_model_under_torch_names(tmp_path):
    model = CharModel(ModelConfig(vocab_size=7, embed=3, hidden=5, layers=2), seed=0)
    interop.save_torch_state_dict(model, tmp_path / "char.safetensors")
    sd = interop.load_torch_state_dict(tmp_path / "char.safetensors")
    assert {"embedding.weight", "lstm.weight_ih_l1", "head.weight", "head.bias"} <= set(sd)
    other = CharModel(ModelConfig(vocab_size=7, embed=3, hidden=5, layers=2), seed=9)
    other.load_params(sd)
    x = np.random.default_rng(0).integers(0, 7, (5, 2))
    np.testing.assert_array_equal(other.forward(x)[0], model.forward(x)[0])
    torch = pytest.importorskip("torch")

    class TorchChar(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding, self.lstm, self.head = torch.nn.Embedding(7, 3), torch.nn.LSTM(3, 5, 2), torch.nn.Linear(5, 7)

        def forward(self, x):
            return self.head(self.lstm(self.embedding(x))[0])

    from safetensors.torch import load_file
    tm = TorchChar()
    tm.load_state_dict(load_file(tmp_path / "char.safetensors"))
    np.testing.assert_allclose(tm(torch.tensor(x)).detach().numpy(), model.forward(x)[0], atol=1e-5)


def test_torch_files_refused_or_broken(tmp_path):
    with pytest.raises(InteropError, match="never unpickles"):
        interop.load_torch_state_dict(tmp_path / "model.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(InteropError, match="not a readable safetensors"):
        interop.load_torch_state_dict(tmp_path / "junk.safetensors")
    sd = nplstm.LSTM(3, 5).state_dict()
    sd["weight_hh_l0"] = sd["weight_hh_l0"][:, :4]
    with pytest.raises(ValueError, match=r"'weight_hh_l0' has shape \(20, 4\), expected \(20, 5\)"):
        interop.lstm_from_state_dict(sd)


onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ONNX_CASES = [dict(), dict(num_layers=2), dict(bidirectional=True), dict(num_layers=2, bidirectional=True),
              dict(bias=False, num_layers=3), dict(batch_first=True, bidirectional=True)]


@pytest.mark.parametrize("config", ONNX_CASES, ids=[str(c) for c in ONNX_CASES])
@pytest.mark.parametrize("lengths,state", [(False, False), (True, True)], ids=["plain", "lengths+state"])
def test_onnx_export_matches_onnxruntime_and_imports_back(config, lengths, state, tmp_path):
    lstm = randomized(nplstm.LSTM(3, 5, seed=1, **config))
    path = tmp_path / "lstm.onnx"
    interop.export_onnx(lstm, path, lengths=lengths, state=state)
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    T, B = 6, 4
    x = rng.standard_normal((B, T, 3) if lstm.batch_first else (T, B, 3)).astype(np.float32)
    L = lstm.num_layers * lstm.num_directions
    feed, kw = {"X": x}, {}
    if lengths:
        feed["sequence_lens"] = kw["lengths"] = np.array([6, 2, 5, 1], np.int32)
    if state:
        hx = (rng.standard_normal((L, B, 5)).astype(np.float32), rng.standard_normal((L, B, 5)).astype(np.float32))
        feed["h0"], feed["c0"], kw["hx"] = hx[0], hx[1], hx
    y, y_h, y_c = sess.run(None, feed)
    out, (h, c) = lstm(x, **kw)
    np.testing.assert_allclose(y, out, atol=1e-5)
    np.testing.assert_allclose(y_h, h, atol=1e-5)
    np.testing.assert_allclose(y_c, c, atol=1e-5)
    back = interop.import_onnx(path, batch_first=lstm.batch_first)             # nplstm -> ONNX -> nplstm, exact
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)


@pytest.mark.parametrize("opset,ir", [(14, 7), (17, 8)])
def test_onnx_export_declares_the_oldest_ir_version_its_opset_allows(opset, ir):
    """IR versions per opset from ONNX's Versioning.md. The installed onnx writes its own newest IR
    by default (14 for onnx 1.23), which older runtimes refuse: ONNX Runtime 1.23, the last for
    Python 3.10, loads IR 11 at most."""
    data = interop.onnx_model_bytes(randomized(nplstm.LSTM(3, 5, seed=1)), opset=opset)
    assert onnx.load_from_string(data).ir_version == ir
    x = np.random.default_rng(0).standard_normal((6, 4, 3)).astype(np.float32)
    y, _, _ = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    assert y.shape == (6, 4, 5)


def test_float64_export_keeps_its_dtype_and_imports_back(tmp_path):
    """ONNX Runtime's LSTM kernel refuses double, so the oracle here is the ONNX graph itself: its
    declared types, then the weights and numbers after importing it back."""
    lstm = randomized(nplstm.LSTM(3, 5, num_layers=2, bidirectional=True, dtype="float64", seed=1))
    path = tmp_path / "lstm64.onnx"
    interop.export_onnx(lstm, path, lengths=True, state=True)
    model = onnx.load(str(path))
    declared = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
    assert {k: v for k, v in declared.items() if k != "sequence_lens"} == \
        dict.fromkeys(["X", "h0", "c0", "Y", "Y_h", "Y_c"], onnx.TensorProto.DOUBLE)
    assert {t.data_type for t in model.graph.initializer if t.name.startswith(("W", "R", "B"))} == \
        {onnx.TensorProto.DOUBLE}
    back = interop.import_onnx(path)
    assert back.dtype == np.float64
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)


def test_char_model_onnx_graph(tmp_path):
    model = CharModel(ModelConfig(vocab_size=7, embed=3, hidden=5, layers=2), seed=0)
    interop.export_onnx(model, tmp_path / "char.onnx")
    sess = ort.InferenceSession(str(tmp_path / "char.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 7, (5, 2))
    (logits,) = sess.run(None, {"tokens": x})
    np.testing.assert_allclose(logits, model.forward(x)[0], atol=1e-5)


def _lstm_graph(tmp_path, **attrs):
    from onnx import TensorProto, helper, numpy_helper
    H, I = 3, 2
    W = numpy_helper.from_array(np.ones((1, 4 * H, I), np.float32), "W")
    R = numpy_helper.from_array(np.ones((1, 4 * H, H), np.float32), "R")
    inputs = ["X", "W", "R"] + (["", "", "", "", "P"] if attrs.pop("peephole", False) else [])
    inits = [W, R] + ([numpy_helper.from_array(np.ones((1, 3 * H), np.float32), "P")] if "P" in inputs else [])
    node = helper.make_node("LSTM", inputs, ["Y"], hidden_size=H, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, I])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "g.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("attrs,word", [
    (dict(peephole=True), "peephole"), (dict(input_forget=1), "input_forget"), (dict(clip=3.0), "clip"),
    (dict(activations=["Sigmoid", "Relu", "Tanh"]), "activations"), (dict(direction="reverse"), "reverse"),
])
def test_onnx_import_refuses_what_it_cannot_represent(attrs, word, tmp_path):
    with pytest.raises(InteropError, match=word):
        interop.import_onnx(_lstm_graph(tmp_path, **attrs))


def test_onnx_import_plain_graph_and_bad_files(tmp_path):
    lstm = interop.import_onnx(_lstm_graph(tmp_path))
    assert (lstm.input_size, lstm.hidden_size) == (2, 3) and np.all(lstm.params["bias_ih_l0"] == 0)
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(InteropError, match="not a readable ONNX"):
        interop.import_onnx(tmp_path / "junk.onnx")
    with pytest.raises(InteropError, match="no file"):
        interop.import_onnx(tmp_path / "missing.onnx")


def test_import_foreign_bidirectional_graph_matches_onnxruntime(tmp_path):
    """A graph nplstm did not write: random W, R, B, bidirectional, sequence_lens fed at run time."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)
    H, I, D = 4, 3, 2
    inits = [numpy_helper.from_array(rng.uniform(-0.7, 0.7, s).astype(np.float32), n)
             for n, s in (("W", (D, 4 * H, I)), ("R", (D, 4 * H, H)), ("B", (D, 8 * H)))]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "lens"], ["Y", "Y_h", "Y_c"], hidden_size=H,
                            direction="bidirectional")
    graph = helper.make_graph(
        [node], "foreign",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I]),
         helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h", "Y_c")], inits)
    path = tmp_path / "foreign.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 7                                  # opset 14's, which every ONNX Runtime since 1.8 loads
    path.write_bytes(model.SerializeToString())
    x = rng.standard_normal((5, 3, I)).astype(np.float32)
    lens = np.array([5, 2, 4], np.int32)
    y, y_h, y_c = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"X": x, "lens": lens})
    lstm = interop.import_onnx(path)
    out, (h, c) = lstm(x, lengths=lens)
    np.testing.assert_allclose(out, y.transpose(0, 2, 1, 3).reshape(5, 3, D * H), atol=1e-5)
    np.testing.assert_allclose(h, y_h, atol=1e-5)
    np.testing.assert_allclose(c, y_c, atol=1e-5)
