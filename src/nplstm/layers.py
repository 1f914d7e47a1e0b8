"""``nplstm.LSTM``: torch.nn.LSTM's interface and weights, on the NumPy engine, with an explicit backward.

Shape legend (PyTorch's)::

    T  sequence length      B  batch size          I  input_size
    H  hidden_size          P  proj_size or H      D  2 if bidirectional else 1
    L  num_layers

    x       (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched
    h0, h_n (L*D, B, P)     c0, c_n (L*D, B, H)
    output  (T, B, D*P)     (B, T, D*P) with batch_first

Weights, exactly ``torch.nn.LSTM.state_dict()``, gate rows in PyTorch's order [i | f | g | o]::

    weight_ih_l{k}{sfx} (4H, I for k=0 else D*P)   weight_hh_l{k}{sfx} (4H, P)
    bias_ih_l{k}{sfx}, bias_hh_l{k}{sfx} (4H,)      weight_hr_l{k}{sfx} (P, H), only with proj_size
    where sfx is "" for the forward direction and "_reverse" for the backward one.
"""
import numbers

import numpy as np

from . import _checks, engine

__all__ = ["LSTM", "Embedding", "Linear"]


class LSTM:
    """A multi-layer LSTM, PyTorch-compatible, with explicit caches instead of autograd.

    Usage::

        lstm = LSTM(10, 20, num_layers=2, seed=0)
        output, (h_n, c_n) = lstm(x)                                    # inference
        output, (h_n, c_n), cache = lstm.forward(x, train=True)         # training
        dx, (dh0, dc0), grads = lstm.backward(d_output, cache)          # grads: state_dict keys

    Extra options beyond torch: ``dtype`` ("float32" or "float64"), ``seed`` for the
    initialization and dropout generator, and ``forget_bias``: when set, the forget-gate rows
    of ``bias_ih`` start at that value and those of ``bias_hh`` at 0 (Keras' unit_forget_bias
    is ``forget_bias=1.0``).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype="float32", seed=None, forget_bias=None):
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.proj_size = _checks.positive_int("proj_size", proj_size, minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dtype = _layer_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.params = self._init_params(forget_bias)

    # ------------------------------------------------------------------ weights
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """P: the size of h (proj_size if set, else hidden_size)."""
        return self.proj_size or self.hidden_size

    def _layer_keys(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        keys = ["weight_ih" + sfx, "weight_hh" + sfx]
        if self.bias:
            keys += ["bias_ih" + sfx, "bias_hh" + sfx]
        if self.proj_size:
            keys.append("weight_hr" + sfx)
        return keys

    def param_shapes(self):
        """Every state_dict key and its shape, in torch's order."""
        H, P, D = self.hidden_size, self.output_size, self.num_directions
        shapes = {}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * P
            for d in range(D):
                for key in self._layer_keys(layer, d):
                    kind = key.split("_l")[0]
                    shapes[key] = {"weight_ih": (4 * H, in_size), "weight_hh": (4 * H, P), "bias_ih": (4 * H,),
                                   "bias_hh": (4 * H,), "weight_hr": (P, H)}[kind]
        return shapes

    def _init_params(self, forget_bias):
        bound = 1 / np.sqrt(self.hidden_size)             # PyTorch: U(-1/sqrt(H), 1/sqrt(H)) for every tensor
        params = {k: self.rng.uniform(-bound, bound, shape).astype(self.dtype) for k, shape in self.param_shapes().items()}
        if forget_bias is not None and self.bias:
            H = self.hidden_size
            for key in params:
                if key.startswith(("bias_ih", "bias_hh")):
                    params[key][H:2 * H] = forget_bias if key.startswith("bias_ih") else 0
        return params

    def state_dict(self):
        """A copy of the weights: {name: ndarray}, torch.nn.LSTM's keys, shapes and gate order."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load weights (e.g. a torch state_dict converted with ``.numpy()``); checked before anything changes."""
        expected = self.param_shapes()
        problems = [f"missing key {k!r} (expected shape {expected[k]})" for k in expected if k not in state_dict]
        problems += [f"unexpected key {k!r}" for k in state_dict if k not in expected]
        loaded = {}
        for key in expected:
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.dtype.kind not in "f":
                problems.append(f"{key!r} must be a float array, got dtype {value.dtype}")
            elif value.shape != expected[key]:
                problems.append(f"{key!r} has shape {value.shape}, expected {expected[key]}")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{key!r} contains NaN or Inf")
            else:
                loaded[key] = value.astype(self.dtype, copy=True)
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        self.params = loaded

    def _packed(self, layer, direction):
        keys = self._layer_keys(layer, direction)
        p = {k.split("_l")[0]: self.params[k] for k in keys}
        return engine.pack(p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"), p.get("weight_hr"))

    # ------------------------------------------------------------------ forward / backward
    def __call__(self, x, hx=None, lengths=None):
        """Inference: ``output, (h_n, c_n)``. No cache is kept and no dropout is applied."""
        output, state, _ = self.forward(x, hx, lengths, train=False)
        return output, state

    def forward(self, x, hx=None, lengths=None, train=False):
        """Returns ``output, (h_n, c_n), cache``; ``cache`` is None unless ``train`` (then pass it to backward)."""
        x, batched = self._input(x)                      # (T, B, I) time-major, layer dtype
        T, B, _ = x.shape
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.output_size
        h0, c0 = self._initial_state(hx, B, batched)
        order, batch_sizes = self._lengths(lengths, T, B)
        if order is not None:                             # sort by decreasing length (packed-sequence order)
            x, h0, c0 = x[:, order], h0[:, order], c0[:, order]
        h_n, c_n = np.empty((L * D, B, P), self.dtype), np.empty((L * D, B, H), self.dtype)
        layer_caches, masks = [], []
        inp = x
        for layer in range(L):
            out = np.empty((T, B, D * P), self.dtype)
            caches = []
            for d in range(D):
                k = layer * D + d
                out_d, h_n[k], c_n[k], cache = engine.forward(inp, h0[k], c0[k], self._packed(layer, d),
                                                              batch_sizes, reverse=d == 1, train=train)
                out[:, :, d * P:(d + 1) * P] = out_d
                caches.append(cache)
            if batch_sizes is not None:
                for t in range(T):                        # outputs past each length are zero
                    out[t, batch_sizes[t]:] = 0
            layer_caches.append(caches)
            if train and self.dropout > 0 and layer < L - 1:
                mask = (self.rng.random(out.shape) >= self.dropout).astype(self.dtype) / (1 - self.dropout)
                masks.append(mask)
                out = out * mask
            inp = out
        output = inp
        if order is not None:
            inverse = np.argsort(order)
            output, h_n, c_n = output[:, inverse], h_n[:, inverse], c_n[:, inverse]
        cache = dict(layers=layer_caches, masks=masks, order=order, batch_sizes=batch_sizes,
                     batched=batched, shape=(T, B)) if train else None
        return self._out(output, batched), (self._state_out(h_n, batched), self._state_out(c_n, batched)), cache

    def backward(self, d_output, cache, d_state=None):
        """Backward of ``forward(..., train=True)``.

        Arguments:
            d_output -- gradient w.r.t. output, same shape as output (padded steps are ignored)
            cache -- from forward
            d_state -- None, or (dh_n, dc_n), each None or shaped like h_n / c_n

        Returns:
            dx (shaped like x), (dh0, dc0) (shaped like h0, c0), grads ({state_dict key: gradient})
        """
        if not isinstance(cache, dict) or "layers" not in cache:
            raise TypeError("cache must be the cache returned by LSTM.forward(..., train=True), "
                            f"got {type(cache).__name__}")
        T, B = cache["shape"]
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.output_size
        batched, order, batch_sizes = cache["batched"], cache["order"], cache["batch_sizes"]
        dout = self._grad_in("d_output", d_output, (T, B, D * P), batched, time_axis=True)
        dh_n, dc_n = d_state if d_state is not None else (None, None)
        dh_n = None if dh_n is None else self._grad_in("dh_n", dh_n, (L * D, B, P), batched)
        dc_n = None if dc_n is None else self._grad_in("dc_n", dc_n, (L * D, B, H), batched)
        if order is not None:
            dout = dout[:, order]
            dh_n = None if dh_n is None else dh_n[:, order]
            dc_n = None if dc_n is None else dc_n[:, order]
        dh0, dc0 = np.empty((L * D, B, P), self.dtype), np.empty((L * D, B, H), self.dtype)
        grads = {}
        for layer in reversed(range(L)):
            if layer < L - 1 and cache["masks"]:
                dout = dout * cache["masks"][layer]       # backprop through dropout
            dx = None
            for d in range(D):
                k = layer * D + d
                dx_d, dh0[k], dc0[k], g = engine.backward(
                    dout[:, :, d * P:(d + 1) * P], None if dh_n is None else dh_n[k],
                    None if dc_n is None else dc_n[k], cache["layers"][layer][d])
                dx = dx_d if dx is None else dx + dx_d
                self._name_grads(grads, layer, d, g)
            dout = dx
        if order is not None:
            inverse = np.argsort(order)
            dout, dh0, dc0 = dout[:, inverse], dh0[:, inverse], dc0[:, inverse]
        grads = {k: grads[k] for k in self.params}        # torch's key order
        return self._out(dout, batched), (self._state_out(dh0, batched), self._state_out(dc0, batched)), grads

    def _name_grads(self, grads, layer, direction, g):
        for key in self._layer_keys(layer, direction):
            kind = key.split("_l")[0]
            grads[key] = {"weight_ih": g["w_ih"], "weight_hh": g["w_hh"], "bias_ih": g["b"],
                          "bias_hh": g["b"].copy() if kind == "bias_hh" else None, "weight_hr": g["w_hr"]}[kind]

    # ------------------------------------------------------------------ argument handling
    def _cast(self, name, value):
        arr = _checks.float_array(name, value)
        return arr.astype(self.dtype, copy=False)         # the other float dtype: cast once, here

    def _input(self, x):
        x = self._cast("x", x)
        given = x.shape
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D {'(B, T, I)' if self.batch_first else '(T, B, I)'} or 2-D (T, I) "
                             f"unbatched, got {x.ndim}-D array of shape {x.shape}")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[2] != self.input_size:
            raise ValueError(f"x must have {self.input_size} features (input_size) on its last axis, "
                             f"got shape {given}")
        _checks.check_nonempty("x", x, ("T", "B", None))
        return np.ascontiguousarray(x), batched

    def _initial_state(self, hx, B, batched):
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.output_size
        if hx is None:
            return np.zeros((L * D, B, P), self.dtype), np.zeros((L * D, B, H), self.dtype)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx must be a tuple (h0, c0), got {type(hx).__name__}")
        return (self._grad_in("h0", hx[0], (L * D, B, P), batched),
                self._grad_in("c0", hx[1], (L * D, B, H), batched))

    def _grad_in(self, name, value, shape, batched, time_axis=False):
        """Check an array shaped like output / h_n / c_n and bring it to the internal (.., B, ..) layout."""
        arr = self._cast(name, value)
        if not batched:
            want = (shape[0], shape[2])
            _checks.check_shape(name, arr, want, " (unbatched)")
            return arr[:, None]
        if time_axis and self.batch_first:
            _checks.check_shape(name, arr, (shape[1], shape[0], shape[2]), " (batch_first)")
            return arr.transpose(1, 0, 2)
        _checks.check_shape(name, arr, shape)
        return arr

    def _lengths(self, lengths, T, B):
        """Validate lengths; return (sorting order or None, batch_sizes or None)."""
        if lengths is None:
            return None, None
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
        _checks.check_shape("lengths", arr, (B,), " (one per batch row)")
        if arr.min() < 1 or arr.max() > T:
            raise ValueError(f"lengths must lie in [1, T={T}], got values from {arr.min()} to {arr.max()}")
        if np.all(arr == T):
            return None, None                             # nothing is padded
        order = np.argsort(-arr, kind="stable")
        batch_sizes = (arr[None, :] > np.arange(T)[:, None]).sum(axis=1)   # (T,) rows active at each step
        return order, batch_sizes

    def _out(self, y, batched):
        if not batched:
            return y[:, 0]
        return y.transpose(1, 0, 2) if self.batch_first else y

    @staticmethod
    def _state_out(s, batched):
        return s if batched else s[:, 0]

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in (("num_layers", self.num_layers), ("bias", self.bias),
                        ("batch_first", self.batch_first), ("dropout", self.dropout),
                        ("bidirectional", self.bidirectional), ("proj_size", self.proj_size))
                        if v != {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                                 "bidirectional": False, "proj_size": 0}[k])
        return f"LSTM({self.input_size}, {self.hidden_size}{extra}, dtype='{self.dtype}')"


def _layer_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from err
    if dt not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


class Embedding:
    """Lookup table (V, E), torch.nn.Embedding's init N(0, 1). ``forward(idx)`` -> (*idx.shape, E)."""

    def __init__(self, num_embeddings, embedding_dim, dtype="float32", seed=None):
        V = _checks.positive_int("num_embeddings", num_embeddings)
        E = _checks.positive_int("embedding_dim", embedding_dim)
        self.dtype = _layer_dtype(dtype)
        self.params = {"weight": np.random.default_rng(seed).standard_normal((V, E)).astype(self.dtype)}

    def forward(self, idx):
        """Returns ``out, cache``; the cache is the index array."""
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx must be integer token ids, got dtype {idx.dtype}")
        V = self.params["weight"].shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= V):
            raise ValueError(f"idx must lie in [0, {V}), got values from {idx.min()} to {idx.max()}")
        return self.params["weight"][idx], idx

    def backward(self, d_out, cache):
        """Returns ``grads`` ({"weight"}): rows of d_out summed into the rows they were read from."""
        W = self.params["weight"]
        dW = np.zeros_like(W)
        np.add.at(dW, cache.ravel(), np.asarray(d_out, W.dtype).reshape(-1, W.shape[1]))
        return {"weight": dW}


class Linear:
    """y = x W^T + b over the last axis; torch.nn.Linear's init U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features, out_features, bias=True, dtype="float32", seed=None):
        n_in = _checks.positive_int("in_features", in_features)
        n_out = _checks.positive_int("out_features", out_features)
        self.dtype = _layer_dtype(dtype)
        rng, bound = np.random.default_rng(seed), 1 / np.sqrt(n_in)
        self.params = {"weight": rng.uniform(-bound, bound, (n_out, n_in)).astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-bound, bound, n_out).astype(self.dtype)

    def forward(self, x):
        """Returns ``y, cache`` for x of shape (..., in_features)."""
        W = self.params["weight"]
        x = _checks.float_array("x", x).astype(self.dtype, copy=False)
        if x.ndim < 1 or x.shape[-1] != W.shape[1]:
            raise ValueError(f"x must have {W.shape[1]} features on its last axis, got shape {x.shape}")
        y = x @ W.T
        if "bias" in self.params:
            y += self.params["bias"]
        return y, x

    def backward(self, d_out, cache):
        """Returns ``dx, grads``."""
        x, W = cache, self.params["weight"]
        d2 = np.asarray(d_out, W.dtype).reshape(-1, W.shape[0])    # (N, out)
        grads = {"weight": d2.T @ x.reshape(-1, W.shape[1])}        # (out, in)
        if "bias" in self.params:
            grads["bias"] = d2.sum(axis=0)
        return (d2 @ W).reshape(x.shape), grads
