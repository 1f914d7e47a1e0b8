"""Moving LSTM weights to other systems. For now: export to the standard ONNX ``LSTM`` operator.

Gate orders differ between systems; nplstm uses PyTorch's [i | f | g | o], ONNX uses
[i | o | f | c] (c is PyTorch's g). ONNX stores per direction W (4H, I), R (4H, H) and
B (8H,) = [W_b; R_b], stacked over directions on a leading axis.

Requires the optional ``onnx`` package (``pip install "nplstm[onnx]"``).
"""
import numpy as np

__all__ = ["onnx_model_bytes", "export_onnx", "torch_to_onnx_gates"]


def torch_to_onnx_gates(H):
    """Row indices taking PyTorch's [i | f | g | o] to ONNX's [i | o | f | c]."""
    return np.r_[0:H, 3 * H:4 * H, H:2 * H, 2 * H:3 * H]


def onnx_model_bytes(lstm, opset=14):
    """The ONNX model of an ``nplstm.LSTM`` as bytes: input X (T, B, I) -> output Y (T, B, D*H), Y_h, Y_c.

    Layers are chained ``LSTM`` nodes; between them the (T, D, B, H) output is transposed and
    reshaped to (T, B, D*H). Projections (proj_size) have no ONNX equivalent and are refused.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    if lstm.proj_size:
        raise ValueError("proj_size has no equivalent in the ONNX LSTM operator; export a model with proj_size=0")
    if lstm.batch_first:
        raise ValueError("export a time-major model (batch_first=False); ONNX LSTM takes X as (T, B, I)")
    H, D, L = lstm.hidden_size, lstm.num_directions, lstm.num_layers
    elem = TensorProto.FLOAT if lstm.dtype == np.float32 else TensorProto.DOUBLE
    perm = torch_to_onnx_gates(H)
    nodes, inits, inp = [], [], "X"
    for layer in range(L):
        W, R, B = [], [], []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p = lstm.params
            W.append(p["weight_ih" + sfx][perm])
            R.append(p["weight_hh" + sfx][perm])
            zero = np.zeros(4 * H, lstm.dtype)
            B.append(np.concatenate([p.get("bias_ih" + sfx, zero)[perm], p.get("bias_hh" + sfx, zero)[perm]]))
        for name, arr in ((f"W{layer}", W), (f"R{layer}", R), (f"B{layer}", B)):
            inits.append(numpy_helper.from_array(np.stack(arr).astype(lstm.dtype), name))
        y, yh, yc = f"Y{layer}", ("Y_h" if layer == L - 1 else f"Y_h{layer}"), ("Y_c" if layer == L - 1 else f"Y_c{layer}")
        nodes.append(helper.make_node("LSTM", [inp, f"W{layer}", f"R{layer}", f"B{layer}"], [y, yh, yc],
                                      hidden_size=H, direction="bidirectional" if D == 2 else "forward"))
        nodes.append(helper.make_node("Transpose", [y], [y + "_t"], perm=[0, 2, 1, 3]))   # (T, B, D, H)
        out = "Y" if layer == L - 1 else f"X{layer + 1}"
        nodes.append(helper.make_node("Reshape", [y + "_t", "flat_shape"], [out]))         # (T, B, D*H)
        inp = out
    inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "flat_shape"))
    graph = helper.make_graph(
        nodes, "nplstm_lstm", [helper.make_tensor_value_info("X", elem, ["T", "B", lstm.input_size])],
        [helper.make_tensor_value_info("Y", elem, ["T", "B", D * H]),
         helper.make_tensor_value_info("Y_h", elem, [D, "B", H]),
         helper.make_tensor_value_info("Y_c", elem, [D, "B", H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="nplstm")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(lstm, path, opset=14):
    """Write ``onnx_model_bytes(lstm)`` to ``path`` atomically (temp file, fsync, rename)."""
    from ._io import atomic_write
    atomic_write(path, onnx_model_bytes(lstm, opset))
