"""Moving LSTM weights between nplstm, PyTorch, Keras and ONNX, exactly.

nplstm uses PyTorch's layout, so it is the hub. The three ways the systems differ::

    gate order    PyTorch / nplstm [i | f | g | o]   Keras [i | f | c | o]   ONNX [i | o | f | c]
    orientation   PyTorch (4H, in)                   Keras kernel (in, 4U)   ONNX W (D, 4H, in)
    biases        PyTorch b_ih and b_hh              Keras one bias          ONNX B (D, 8H) = [Wb | Rb]

(c in Keras and ONNX is PyTorch's g, the candidate.) PyTorch files are safetensors files with
PyTorch's names; nothing here unpickles, and torch is not needed. Keras weights are plain
NumPy lists. ONNX needs the optional ``onnx`` package (``pip install "nplstm[onnx]"``).
"""
import copy
from pathlib import Path

import numpy as np

from ._io import atomic_write
from .layers import LSTM
from .recurrent import suffix

__all__ = ["save_torch_state_dict", "load_torch_state_dict", "lstm_from_state_dict", "to_keras_weights",
           "from_keras_weights", "export_onnx", "import_onnx", "onnx_model_bytes", "InteropError"]


class InteropError(ValueError):
    """A file or weight list that cannot be converted; the message names the tensor and the expected shape."""


def _gate_rows(H, order):
    """Row indices taking PyTorch's [i f g o] to ``order`` ("ifgo" Keras or "iofg" ONNX)."""
    block = {"i": 0, "f": 1, "g": 2, "o": 3}
    return np.concatenate([np.arange(block[k] * H, (block[k] + 1) * H) for k in order])


def _on_host(module):
    """``module`` itself on the CPU; a CPU copy of it when its weights live on a GPU (exports are host files)."""
    return module if getattr(module, "device", "cpu") == "cpu" else copy.deepcopy(module).to("cpu")


def _state_dict_of(module):
    """PyTorch names -> arrays for an LSTM or a CharModel (anything with ``params``)."""
    module = _on_host(module)
    if isinstance(module, LSTM):
        return module.state_dict()
    if hasattr(module, "params"):
        return {k: np.array(v) for k, v in module.params.items()}
    raise TypeError(f"module must be an nplstm.LSTM or a model with .params, got {type(module).__name__}")


# ---------------------------------------------------------------------------- PyTorch
def save_torch_state_dict(module, path):
    """Write the module's weights under PyTorch names to a safetensors file, atomically.

    ``torch.nn.LSTM.load_state_dict(safetensors.torch.load_file(path))`` reads it back.
    """
    from safetensors import numpy as st
    atomic_write(path, st.save({k: np.ascontiguousarray(v) for k, v in _state_dict_of(module).items()}))


def load_torch_state_dict(path):
    """Read a safetensors file written with ``safetensors.torch.save_file(m.state_dict(), path)``."""
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".pkl", ".bin"):
        raise InteropError(f"{path}: nplstm never unpickles. In PyTorch, convert once with "
                           "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')")
    if not path.is_file():
        raise InteropError(f"no file at {path}")
    from safetensors import numpy as st
    try:
        return dict(st.load(path.read_bytes()))
    except Exception as err:                              # any parser failure: a damaged or foreign file
        raise InteropError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err})") from None


def lstm_from_state_dict(state_dict, prefix="", batch_first=False, dtype="float32"):
    """Build an ``nplstm.LSTM`` whose sizes are read off a PyTorch LSTM state dict, and load it."""
    sd = {k[len(prefix):]: np.asarray(v) for k, v in state_dict.items() if k.startswith(prefix)}
    if "weight_ih_l0" not in sd:
        raise InteropError(f"no {prefix}weight_ih_l0 in the state dict; keys: {', '.join(sorted(state_dict))[:200]}")
    four_h, input_size = sd["weight_ih_l0"].shape
    if four_h % 4:
        raise InteropError(f"{prefix}weight_ih_l0 has {four_h} rows; expected 4 * hidden_size")
    layers = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in sd if "_l" in k)
    lstm = LSTM(input_size, four_h // 4, layers, bias="bias_ih_l0" in sd, batch_first=batch_first,
                bidirectional="weight_ih_l0_reverse" in sd,
                proj_size=sd["weight_hr_l0"].shape[0] if "weight_hr_l0" in sd else 0, dtype=dtype)
    lstm.load_state_dict(sd)
    return lstm


# ---------------------------------------------------------------------------- Keras
def to_keras_weights(lstm):
    """``[kernel (in, 4U), recurrent_kernel (U, 4U), bias (4U)]`` per layer and direction, in that order.

    The two PyTorch biases are summed (Keras has one). Gate order is the same ([i f c o]).
    """
    lstm = _on_host(lstm)
    if lstm.proj_size:
        raise InteropError("Keras LSTM has no projection (proj_size); export a model with proj_size=0")
    weights = []
    for layer in range(lstm.num_layers):
        for d in range(lstm.num_directions):
            sfx = suffix(layer, d)
            p = lstm.params
            bias = p["bias_ih" + sfx] + p["bias_hh" + sfx] if lstm.bias else np.zeros(4 * lstm.hidden_size, lstm.dtype)
            weights += [p["weight_ih" + sfx].T.copy(), p["weight_hh" + sfx].T.copy(), bias]
    return weights


def from_keras_weights(weights, bidirectional=False, batch_first=False, dtype="float32"):
    """An ``nplstm.LSTM`` from Keras LSTM weights (as ``to_keras_weights`` lists them); ``bias_hh`` is zero."""
    D = 2 if bidirectional else 1
    if len(weights) == 0 or len(weights) % (3 * D):
        raise InteropError(f"expected 3 arrays (kernel, recurrent_kernel, bias) per layer and direction "
                           f"({3 * D} per layer), got {len(weights)}")
    kernel = np.asarray(weights[0])
    if kernel.ndim != 2 or kernel.shape[1] % 4:
        raise InteropError(f"weights[0] (kernel) must be (in, 4U), got shape {kernel.shape}")
    I, U = kernel.shape[0], kernel.shape[1] // 4
    lstm = LSTM(I, U, len(weights) // (3 * D), bidirectional=bidirectional, batch_first=batch_first, dtype=dtype)
    sd = {}
    for n in range(len(weights) // 3):
        layer, d = divmod(n, D)
        sfx = suffix(layer, d)
        k, rk, b = (np.asarray(w) for w in weights[3 * n:3 * n + 3])
        in_size = I if layer == 0 else D * U
        for name, arr, shape in ((f"weights[{3 * n}] (kernel)", k, (in_size, 4 * U)),
                                 (f"weights[{3 * n + 1}] (recurrent_kernel)", rk, (U, 4 * U)),
                                 (f"weights[{3 * n + 2}] (bias)", b, (4 * U,))):
            if arr.shape != shape:
                raise InteropError(f"{name} of layer {layer}{' reverse' if d else ''} must have shape {shape}, "
                                   f"got {arr.shape}")
        sd.update({"weight_ih" + sfx: k.T, "weight_hh" + sfx: rk.T, "bias_ih" + sfx: b,
                   "bias_hh" + sfx: np.zeros_like(b)})
    lstm.load_state_dict(sd)
    return lstm


# ---------------------------------------------------------------------------- ONNX export
def onnx_model_bytes(module, opset=14, lengths=False, state=False):
    """The ONNX model of an ``nplstm.LSTM`` (or a char model) as bytes.

    LSTM graph: input ``X`` (T, B, I), or (B, T, I) with batch_first; with ``lengths``, an int32
    input ``sequence_lens`` (B,); with ``state``, inputs ``h0``/``c0`` (L*D, B, H). Outputs ``Y``
    (shaped like nplstm's output), ``Y_h`` and ``Y_c`` (L*D, B, H) like h_n and c_n. Layers are
    chained ``LSTM`` nodes. Char model graph: int64 ``tokens`` (T, B) -> ``logits`` (T, B, V).
    The graph keeps the layer's dtype (float64: DOUBLE); ONNX Runtime's CPU LSTM kernel runs
    float32 only.
    """
    module = _on_host(module)
    import onnx
    from onnx import helper
    g = _Graph()
    if isinstance(module, LSTM):
        elem = _elem(module.dtype)
        x = g.input("X", elem, ["B", "T", module.input_size] if module.batch_first else ["T", "B", module.input_size])
        if module.batch_first:
            x = g.node("Transpose", [x], perm=[1, 0, 2])
        y, y_h, y_c = _lstm_nodes(g, module, x, lengths, state)
        if module.batch_first:
            y = g.node("Transpose", [y], perm=[1, 0, 2])
        D, H = module.num_directions, module.hidden_size
        g.output(y, "Y", elem, ["B", "T", D * H] if module.batch_first else ["T", "B", D * H])
        g.output(y_h, "Y_h", elem, [module.num_layers * D, "B", H])
        g.output(y_c, "Y_c", elem, [module.num_layers * D, "B", H])
    elif hasattr(module, "recurrent") and hasattr(module, "embedding") and hasattr(module, "head"):
        lstm = module.recurrent
        if not isinstance(lstm, LSTM):
            raise InteropError(f"ONNX export of a char model supports cell=lstm, not {type(lstm).__name__}")
        elem = _elem(lstm.dtype)
        tokens = g.input("tokens", onnx.TensorProto.INT64, ["T", "B"])
        emb = g.node("Gather", [g.const("embedding.weight", module.embedding.params["weight"]), tokens], axis=0)
        y, _, _ = _lstm_nodes(g, lstm, emb, False, False)
        logits = g.node("MatMul", [y, g.const("head.weight_t", module.head.params["weight"].T.copy())])
        if "bias" in module.head.params:
            logits = g.node("Add", [logits, g.const("head.bias", module.head.params["bias"])])
        g.output(logits, "logits", elem, ["T", "B", module.head.params["weight"].shape[0]])
    else:
        raise TypeError(f"module must be an nplstm.LSTM or a char model, got {type(module).__name__}")
    model = helper.make_model(helper.make_graph(g.nodes, "nplstm", g.inputs, g.outputs, g.inits),
                              opset_imports=[helper.make_opsetid("", opset)], producer_name="nplstm")
    # the oldest IR version the opset allows, not the installed onnx's newest: onnx 1.23 writes IR 14
    # by default, which ONNX Runtime 1.23 (the last for Python 3.10) refuses ("max supported IR version: 11")
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(module, path, opset=14, lengths=False, state=False):
    """Write ``onnx_model_bytes(module, ...)`` to ``path`` atomically."""
    atomic_write(path, onnx_model_bytes(module, opset, lengths, state))


def _elem(dtype):
    from onnx import TensorProto
    return TensorProto.FLOAT if np.dtype(dtype) == np.float32 else TensorProto.DOUBLE


class _Graph:
    """A tiny builder: unique names, initializers, nodes, inputs and outputs."""

    def __init__(self):
        self.nodes, self.inits, self.inputs, self.outputs, self.count = [], [], [], [], 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, name, array):
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, outputs=1, **attrs):
        from onnx import helper
        names = [self.name(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, **attrs))
        return names[0] if outputs == 1 else names

    def input(self, name, elem, shape):
        from onnx import helper
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, source, name, elem, shape):
        from onnx import helper
        self.nodes.append(helper.make_node("Identity", [source], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))


def _lstm_nodes(g, lstm, x, lengths, state):
    """Chain one ONNX LSTM node per layer; returns (Y (T, B, D*H), Y_h, Y_c (L*D, B, H)) names."""
    from onnx import TensorProto
    if lstm.proj_size:
        raise InteropError("proj_size has no equivalent in the ONNX LSTM operator; export a model with proj_size=0")
    H, D, L = lstm.hidden_size, lstm.num_directions, lstm.num_layers
    rows = _gate_rows(H, "iofg")
    seq = g.input("sequence_lens", TensorProto.INT32, ["B"]) if lengths else ""
    h0 = g.input("h0", _elem(lstm.dtype), [L * D, "B", H]) if state else None
    c0 = g.input("c0", _elem(lstm.dtype), [L * D, "B", H]) if state else None
    hs, cs = [], []
    for layer in range(L):
        W, R, B = [], [], []
        for d in range(D):
            sfx = suffix(layer, d)
            p, zero = lstm.params, np.zeros(4 * H, lstm.dtype)
            W.append(p["weight_ih" + sfx][rows])
            R.append(p["weight_hh" + sfx][rows])
            B.append(np.concatenate([p.get("bias_ih" + sfx, zero)[rows], p.get("bias_hh" + sfx, zero)[rows]]))
        inputs = [x, g.const(f"W{layer}", np.stack(W)), g.const(f"R{layer}", np.stack(R)),
                  g.const(f"B{layer}", np.stack(B)), seq]
        if state:
            span = [g.const(f"span{layer}_{k}", np.array([v], np.int64)) for k, v in
                    (("start", layer * D), ("end", (layer + 1) * D), ("axis", 0))]
            inputs += [g.node("Slice", [h0, *span]), g.node("Slice", [c0, *span])]
        y, y_h, y_c = g.node("LSTM", inputs, outputs=3, hidden_size=H,
                             direction="bidirectional" if D == 2 else "forward")
        hs.append(y_h)
        cs.append(y_c)
        y = g.node("Transpose", [y], perm=[0, 2, 1, 3])                       # (T, B, D, H)
        x = g.node("Reshape", [y, g.const(f"flat{layer}", np.array([0, 0, -1], np.int64))])   # (T, B, D*H)
    cat = (lambda items: items[0]) if L == 1 else (lambda items: g.node("Concat", items, axis=0))
    return x, cat(hs), cat(cs)


# ---------------------------------------------------------------------------- ONNX import
_DEFAULT_ACTIVATIONS = ["Sigmoid", "Tanh", "Tanh"]


def import_onnx(path, batch_first=False):
    """Load a single-layer or stacked ONNX ``LSTM`` graph (W, R, B initializers) into an ``nplstm.LSTM``.

    Refused, naming the attribute: peepholes (input P), ``input_forget``, ``clip``, non-default
    ``activations``, ``layout=1``, and direction "reverse" alone (no PyTorch equivalent).
    """
    import onnx
    from onnx import numpy_helper
    try:
        model = onnx.load_from_string(Path(path).read_bytes())
    except FileNotFoundError:
        raise InteropError(f"no file at {path}") from None
    except Exception as err:
        raise InteropError(f"{path} is not a readable ONNX model ({type(err).__name__})") from None
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type == "LSTM"]
    if not nodes:
        raise InteropError(f"{path} holds no LSTM node")
    sd, H, D, I = {}, None, None, None
    for layer, node in enumerate(nodes):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        _refuse(node, attrs)
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction == "reverse":
            raise InteropError(f"LSTM node {node.name or layer}: direction 'reverse' alone has no PyTorch/nplstm "
                               "equivalent (only forward or bidirectional)")
        names = list(node.input) + [""] * 8
        for role, idx in (("W", 1), ("R", 2)):
            if names[idx] not in inits:
                raise InteropError(f"LSTM node {node.name or layer}: input {role} ({names[idx]!r}) must be an initializer")
        W, R = inits[names[1]], inits[names[2]]
        H, D = int(attrs.get("hidden_size", R.shape[-1])), W.shape[0]
        if layer == 0:
            I = W.shape[2]
        if W.shape[1] != 4 * H or R.shape != (D, 4 * H, H):
            raise InteropError(f"LSTM node {layer}: W {W.shape} / R {R.shape} do not match hidden_size={H} "
                               f"(expected W (D, {4 * H}, in), R (D, {4 * H}, {H}))")
        B = inits[names[3]] if names[3] else np.zeros((D, 8 * H), W.dtype)
        to_torch = np.argsort(_gate_rows(H, "iofg"))
        for d in range(D):
            sfx = suffix(layer, d)
            sd.update({"weight_ih" + sfx: W[d][to_torch], "weight_hh" + sfx: R[d][to_torch],
                       "bias_ih" + sfx: B[d, :4 * H][to_torch], "bias_hh" + sfx: B[d, 4 * H:][to_torch]})
    lstm = LSTM(I, H, len(nodes), bidirectional=D == 2, batch_first=batch_first,
                dtype="float64" if W.dtype == np.float64 else "float32")
    lstm.load_state_dict(sd)
    return lstm


def _refuse(node, attrs):
    where = f"LSTM node {node.name or '(unnamed)'}"
    if len(node.input) > 7 and node.input[7]:
        raise InteropError(f"{where}: peephole weights (input P) are not supported")
    if attrs.get("input_forget", 0):
        raise InteropError(f"{where}: attribute input_forget=1 is not supported")
    if "clip" in attrs:
        raise InteropError(f"{where}: attribute clip is not supported")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if acts and acts[:3] != _DEFAULT_ACTIVATIONS or any(a != b for a, b in zip(acts[3:], _DEFAULT_ACTIVATIONS)):
        raise InteropError(f"{where}: attribute activations={acts} is not supported (only Sigmoid, Tanh, Tanh)")
    for name in ("activation_alpha", "activation_beta"):
        if name in attrs:
            raise InteropError(f"{where}: attribute {name} is not supported")
    if attrs.get("layout", 0):
        raise InteropError(f"{where}: attribute layout=1 is not supported (use layout=0, time-major)")
