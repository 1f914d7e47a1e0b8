"""Recurrent layers with torch's interface and weights, on the NumPy engine, with explicit backwards.

``LSTM``, ``GRU`` and ``RNN`` share one implementation (``_Recurrent``); they differ in the
engine's cell kind and in the state they carry: (h, c) for the LSTM, h alone for the others.

Shape legend (PyTorch's)::

    T  sequence length      B  batch size          I  input_size
    H  hidden_size          P  proj_size or H      D  2 if bidirectional else 1
    L  num_layers           G  gates: LSTM 4, GRU 3, RNN 1

    x       (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched
    h0, h_n (L*D, B, P)     c0, c_n (L*D, B, H)  (LSTM only)
    output  (T, B, D*P)     (B, T, D*P) with batch_first

Weights, exactly torch's ``state_dict()``::

    weight_ih_l{k}{sfx} (G*H, I for k=0 else D*P)   weight_hh_l{k}{sfx} (G*H, P)
    bias_ih_l{k}{sfx}, bias_hh_l{k}{sfx} (G*H,)      weight_hr_l{k}{sfx} (P, H), LSTM with proj_size only
    where sfx is "" for the forward direction and "_reverse" for the backward one.

``params`` holds these arrays (a float32 LSTM's weight_ih and weight_hh column-major:
``_Recurrent._held``); ``state_dict()`` hands out row-major copies.

Gate rows in torch's order: LSTM [i | f | g | o], GRU [r | z | n] (with b_hn inside
r * (W_hn h + b_hn), as torch places it), RNN a single block.
"""
import copy
import numbers
import types

import numpy as np

from . import _aligned, _checks, _rowblocks, _xp, engine
from ._checks import layer_dtype as _layer_dtype

__all__ = ["LSTM", "GRU", "RNN", "suffix"]


def suffix(layer, direction):
    """The state_dict key suffix of one layer and direction: "_l0", "_l0_reverse", "_l1", ..."""
    return f"_l{layer}" + ("_reverse" if direction else "")


class _Recurrent(_xp.OnDevice):
    """What LSTM, GRU and RNN share: weights, argument checks, layers, directions, lengths, dropout.

    Subclasses set ``mode`` (a key of ``engine.KINDS``) and wrap ``_forward``/``_backward`` in
    their public API (the state is (h, c) for the LSTM, h alone for GRU and RNN, as in torch).
    """
    mode = None
    _kept = None                                          # frozen copies: {(layer, direction): engine.Packed}

    def _setup(self, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
               dtype, seed, device):
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
        self.params = self._init_params()                 # drawn on the host: the same seed, the same weights
        self.to(device)

    @property
    def gates(self):
        return engine.KINDS[self.mode].gates

    @property
    def has_c(self):
        return engine.KINDS[self.mode].has_c

    # ------------------------------------------------------------------ weights
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """P: the size of h (proj_size if set, else hidden_size)."""
        return self.proj_size or self.hidden_size

    def _layer_keys(self, layer, direction):
        sfx = suffix(layer, direction)
        keys = ["weight_ih" + sfx, "weight_hh" + sfx]
        if self.bias:
            keys += ["bias_ih" + sfx, "bias_hh" + sfx]
        if self.proj_size:
            keys.append("weight_hr" + sfx)
        return keys

    def param_shapes(self):
        """Every state_dict key and its shape, in torch's order."""
        H, P, D = self.hidden_size, self.output_size, self.num_directions
        G = self.gates
        shapes = {}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * P
            for d in range(D):
                for key in self._layer_keys(layer, d):
                    kind = key.split("_l")[0]
                    shapes[key] = {"weight_ih": (G * H, in_size), "weight_hh": (G * H, P), "bias_ih": (G * H,),
                                   "bias_hh": (G * H,), "weight_hr": (P, H)}[kind]
        return shapes

    def _init_params(self):
        bound = 1 / np.sqrt(self.hidden_size)             # PyTorch: U(-1/sqrt(H), 1/sqrt(H)) for every tensor
        return {k: self._held(k, self.rng.uniform(-bound, bound, shape).astype(self.dtype))
                for k, shape in self.param_shapes().items()}

    def _held(self, key, value, copy=False):
        """How ``params`` holds a weight (a copy of it with ``copy``): as it is, except a float32
        LSTM's weight_ih and weight_hh (no projection) on the CPU, held column-major and 64-byte
        aligned: still (4H, I) and (4H, P) as torch's, but views of W_ih^T (I, 4H) and W_hh^T
        (P, 4H) row-major, the operands the compiled loops multiply by, with no transpose or copy
        at each call: at batch 1 W_hh^T in the loop (``_batchmajor._packed``) and a small W_ih^T
        read in place by the input product (``_batchmajor._input_side``); oneDNN's packings start
        from them (``_aligned``: why aligned). A weight put into ``params`` otherwise costs a copy
        per call."""
        if (self.mode == "lstm" and not self.proj_size and key.startswith(("weight_ih", "weight_hh"))
                and type(value) is np.ndarray and value.dtype == np.float32):
            fit = value.flags.f_contiguous and _aligned.is_aligned(value)
            return value if fit and not copy else _aligned.copy(value, order="F")
        return value.copy(order="K") if copy else value

    def state_dict(self):
        """A copy of the weights: {name: array on the layer's device}, torch's keys, shapes and gate order."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load weights (e.g. a torch state_dict converted with ``.numpy()``); checked before anything changes."""
        self._refuse_if_frozen("load_state_dict")
        expected = self.param_shapes()
        problems = [f"missing key {k!r} (expected shape {expected[k]})" for k in expected if k not in state_dict]
        problems += [f"unexpected key {k!r}" for k in state_dict if k not in expected]
        loaded = {}
        for key in expected:
            if key not in state_dict:
                continue
            value = _xp.to_host(state_dict[key])
            if value.dtype.kind not in "f":
                problems.append(f"{key!r} must be a float array, got dtype {value.dtype}")
            elif value.shape != expected[key]:
                problems.append(f"{key!r} has shape {value.shape}, expected {expected[key]}")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{key!r} contains NaN or Inf")
            else:
                loaded[key] = self._held(key, _xp.to_device(value.astype(self.dtype, copy=True), self.device))
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        self.params = loaded

    def _packed(self, layer, direction):
        """The engine's ``Packed`` weights of one layer-direction: made per call, so that they follow
        any change to ``params``; a frozen copy makes them once and keeps them."""
        if self._kept is not None and (layer, direction) in self._kept:
            return self._kept[layer, direction]
        sfx, get = suffix(layer, direction), self.params.get   # biases and weight_hr: None where absent
        w = engine.pack(get("weight_ih" + sfx), get("weight_hh" + sfx), get("bias_ih" + sfx), get("bias_hh" + sfx),
                        get("weight_hr" + sfx), kind=self.mode, kept=self._kept is not None)
        if self._kept is not None:
            self._kept[layer, direction] = w
        return w

    # ------------------------------------------------------------------ frozen copies
    def frozen(self):
        """An inference-only copy for many calls on fixed weights (serving, evaluation, sampling).

        Its weights are a read-only snapshot of this layer's, so what the engine prepares from
        them at the first call (PyTorch's gate rows reordered and halved, W_hh packed for
        oneDNN's GEMM at each batch size, W_ih packed for the input product, shared by row blocks) is
        kept for every later call instead of being redone at each, as an ONNX Runtime session
        prepacks its weights once. Later changes to this layer do not reach the copy: freeze
        again after training. The copy refuses ``forward(..., train=True)``, ``load_state_dict``
        and ``to``; results equal this layer's to float32 rounding (its input product may run on
        another GEMM kernel; float64 exactly).
        """
        twin = copy.copy(self)
        params = {k: self._held(k, v, copy=True) for k, v in self.params.items()}
        for v in params.values():
            if isinstance(v, np.ndarray):                 # (CuPy arrays have no read-only flag)
                v.flags.writeable = False
        twin.params = types.MappingProxyType(params)      # no entry replaced either
        twin._kept = {}
        return twin

    def _refuse_if_frozen(self, what):
        if self._kept is not None:
            raise ValueError(f"{what}: this {type(self).__name__} is a frozen() copy, for inference on fixed "
                             f"weights; call it on the layer it was made from, then freeze that again")

    def to(self, device):
        """Move the weights to ``device`` ("cpu", or "cuda" with CuPy) and return the layer (see
        ``nplstm._xp.OnDevice.to``); refused on a frozen copy."""
        self._refuse_if_frozen("to")
        super().to(device)
        self.params = {k: self._held(k, v) for k, v in self.params.items()}
        return self

    # ------------------------------------------------------------------ forward / backward
    def _forward(self, x, hx, lengths, train, checkpoint_every=None):
        """Returns ``output, h_n, c_n (None unless LSTM), cache``; hx is (h0, c0) or None."""
        if train:
            self._refuse_if_frozen("forward(..., train=True)")
        if checkpoint_every is not None:
            _checks.positive_int("checkpoint_every", checkpoint_every)
        x, batched = self._input(x)                      # (T, B, I) time-major, layer dtype
        T, B, _ = x.shape
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.output_size
        h0, c0 = self._initial_state(hx, B, batched)
        order, batch_sizes = self._lengths(lengths, T, B)
        xp = self.xp
        if order is not None:                             # sort by decreasing length (packed-sequence order)
            order = xp.asarray(order)
            x, h0, c0 = x[:, order], h0[:, order], (None if c0 is None else c0[:, order])
        h_n = xp.empty((L * D, B, P), self.dtype)
        c_n = xp.empty((L * D, B, H), self.dtype) if self.has_c else None
        layer_caches, masks, together = [], [], []       # together: each layer's directions ran at once
        inp = x
        for layer in range(L):
            out, caches, ws = None, [], [self._packed(layer, d) for d in range(D)]
            calls = [(inp, h0[layer * D + d], None if c0 is None else c0[layer * D + d], ws[d], batch_sizes, d == 1)
                     for d in range(D)]                   # one per direction
            together.append(D == 2 and engine.directions_at_once(ws[0], inp))
            every = checkpoint_every if train else None   # bounded memory: recompute in the backward
            for d, (out_d, h_k, c_k, cache) in enumerate(engine.forward_each(calls, train, together[-1], every)):
                k = layer * D + d
                h_n[k] = h_k
                if c_n is not None:
                    c_n[k] = c_k
                if D == 1 and not train and out_d.flags.c_contiguous:
                    out = out_d                           # inference: the engine's own buffer, no copy
                else:
                    out = xp.empty((T, B, D * P), self.dtype) if out is None else out
                    out[:, :, d * P:(d + 1) * P] = out_d
                caches.append(cache)
            if batch_sizes is not None:
                for t in range(T):                        # outputs past each length are zero
                    out[t, batch_sizes[t]:] = 0
            layer_caches.append(caches)
            if train and self.dropout > 0 and layer < L - 1:
                mask = (self.rng.random(out.shape) >= self.dropout).astype(self.dtype) / (1 - self.dropout)
                mask = xp.asarray(mask)                   # drawn on the host, as on the CPU: one copy per layer
                masks.append(mask)
                out = out * mask
            inp = out
        output = inp
        if order is not None:
            inverse = xp.argsort(order)
            output, h_n = output[:, inverse], h_n[:, inverse]
            c_n = None if c_n is None else c_n[:, inverse]
        cache = dict(layers=layer_caches, masks=masks, together=together, order=order, batch_sizes=batch_sizes,
                     batched=batched, shape=(T, B), mode=self.mode) if train else None
        return (self._out(output, batched), self._state_out(h_n, batched),
                None if c_n is None else self._state_out(c_n, batched), cache)

    def _backward(self, d_output, cache, dh_n, dc_n):
        """Returns ``dx, dh0, dc0 (None unless LSTM), grads``."""
        if not isinstance(cache, dict) or cache.get("mode") != self.mode:
            raise TypeError(f"cache must be the cache returned by {type(self).__name__}.forward(..., train=True), "
                            f"got {type(cache).__name__}")
        if cache.get("used"):
            raise ValueError("cache was already used by a backward, which writes the gradients over the gates it "
                             "holds; run forward(..., train=True) again for another backward")
        cache["used"] = True
        T, B = cache["shape"]
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.output_size
        batched, order, xp = cache["batched"], cache["order"], self.xp
        dout = (xp.zeros((T, B, D * P), self.dtype) if d_output is None   # a loss on the final state alone
                else self._grad_in("d_output", d_output, (T, B, D * P), batched, time_axis=True))
        dh_n = None if dh_n is None else self._grad_in("dh_n", dh_n, (L * D, B, P), batched)
        dc_n = None if dc_n is None else self._grad_in("dc_n", dc_n, (L * D, B, H), batched)
        if order is not None:
            dout = dout[:, order]
            dh_n = None if dh_n is None else dh_n[:, order]
            dc_n = None if dc_n is None else dc_n[:, order]
        dh0 = xp.empty((L * D, B, P), self.dtype)
        dc0 = xp.empty((L * D, B, H), self.dtype) if self.has_c else None
        grads = {}
        for layer in reversed(range(L)):
            if layer < L - 1 and cache["masks"]:
                dout = dout * cache["masks"][layer]       # backprop through dropout
            dx = None

            def run(d):                                   # one direction of this layer
                k = layer * D + d
                return engine.backward(dout[:, :, d * P:(d + 1) * P], None if dh_n is None else dh_n[k],
                                       None if dc_n is None else dc_n[k], cache["layers"][layer][d])
            for d, (dx_d, dh_k, dc_k, g) in enumerate(_rowblocks.each_if(cache["together"][layer], run, D)):
                k = layer * D + d
                dh0[k] = dh_k
                if dc0 is not None:
                    dc0[k] = dc_k
                dx = dx_d if dx is None else dx + dx_d
                self._name_grads(grads, layer, d, g)
            dout = dx
        if order is not None:
            inverse = xp.argsort(order)
            dout, dh0 = dout[:, inverse], dh0[:, inverse]
            dc0 = None if dc0 is None else dc0[:, inverse]
        grads = {k: grads[k] for k in self.params}        # torch's key order
        return (self._out(dout, batched), self._state_out(dh0, batched),
                None if dc0 is None else self._state_out(dc0, batched), grads)

    def _name_grads(self, grads, layer, direction, g):
        for key in self._layer_keys(layer, direction):
            kind = key.split("_l")[0]
            grads[key] = {"weight_ih": g["w_ih"], "weight_hh": g["w_hh"], "bias_ih": g["b_ih"],
                          "bias_hh": g["b_hh"], "weight_hr": g["w_hr"]}[kind]

    # ------------------------------------------------------------------ argument handling
    def _cast(self, name, value):
        return _checks.float_array_on(name, value, self.device, self.dtype)

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
        return self.xp.ascontiguousarray(x), batched

    def _initial_state(self, hx, B, batched):
        """hx: None or (h0, c0) (c0 None unless LSTM) -> (h0, c0) internal, zeros where not given."""
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self.output_size
        h0, c0 = (None, None) if hx is None else hx
        h0 = self.xp.zeros((L * D, B, P), self.dtype) if h0 is None else self._grad_in("h0", h0, (L * D, B, P), batched)
        if not self.has_c:
            return h0, None
        c0 = self.xp.zeros((L * D, B, H), self.dtype) if c0 is None else self._grad_in("c0", c0, (L * D, B, H), batched)
        return h0, c0

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
        arr = _xp.to_host(lengths)                        # lengths steer the loop from the host
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
                        ("bidirectional", self.bidirectional), ("proj_size", self.proj_size),
                                                 ("device", self.device))
                        if v != {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                                 "bidirectional": False, "proj_size": 0, "device": "cpu"}[k])
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, dtype='{self.dtype}')"


class LSTM(_Recurrent):
    """A multi-layer LSTM, PyTorch-compatible, with explicit caches instead of autograd.

    Usage::

        lstm = LSTM(10, 20, num_layers=2, seed=0)
        output, (h_n, c_n) = lstm(x)                                    # inference
        output, (h_n, c_n), cache = lstm.forward(x, train=True)         # training
        dx, (dh0, dc0), grads = lstm.backward(d_output, cache)          # grads: state_dict keys

    Extra options beyond torch: ``dtype`` ("float32" or "float64"), ``seed`` for the
    initialization and dropout generator, ``device`` ("cpu", or "cuda" through CuPy; see ``to``),
    and ``forget_bias``: when set, the forget-gate rows
    of ``bias_ih`` start at that value and those of ``bias_hh`` at 0 (Keras' unit_forget_bias
    is ``forget_bias=1.0``).
    """
    mode = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype="float32", seed=None, forget_bias=None, device="cpu"):
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
                    dtype, seed, device)
        if forget_bias is not None and self.bias:
            H = self.hidden_size
            for key, value in self.params.items():
                if key.startswith(("bias_ih", "bias_hh")):
                    value[H:2 * H] = forget_bias if key.startswith("bias_ih") else 0

    def __call__(self, x, hx=None, lengths=None):
        """Inference: ``output, (h_n, c_n)``. No cache is kept and no dropout is applied."""
        output, state, _ = self.forward(x, hx, lengths, train=False)
        return output, state

    def forward(self, x, hx=None, lengths=None, train=False, checkpoint_every=None):
        """Returns ``output, (h_n, c_n), cache``; ``cache`` is None unless ``train`` (then pass it to backward).

        ``checkpoint_every=k`` (training only) bounds memory on long sequences: only every k-th
        state is kept, and backward recomputes one k-step segment at a time (one extra forward).
        """
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"hx must be a tuple (h0, c0), got {type(hx).__name__}")
        output, h_n, c_n, cache = self._forward(x, hx, lengths, train, checkpoint_every)
        return output, (h_n, c_n), cache

    def backward(self, d_output, cache, d_state=None):
        """Backward of ``forward(..., train=True)``.

        Arguments:
            d_output -- gradient w.r.t. output, same shape as output (padded steps are ignored),
                        or None: zero (a loss on the final state alone, such as a classifier on h_n)
            cache -- from forward
            d_state -- None, or (dh_n, dc_n), each None or shaped like h_n / c_n

        Returns:
            dx (shaped like x), (dh0, dc0) (shaped like h0, c0), grads ({state_dict key: gradient})
        """
        dh_n, dc_n = d_state if d_state is not None else (None, None)
        dx, dh0, dc0, grads = self._backward(d_output, cache, dh_n, dc_n)
        return dx, (dh0, dc0), grads


class _HiddenOnly(_Recurrent):
    """GRU and RNN: the state is h alone, ``output, h_n = layer(x, h0)``."""

    def __call__(self, x, h0=None, lengths=None):
        """Inference: ``output, h_n``. No cache is kept and no dropout is applied."""
        output, h_n, _ = self.forward(x, h0, lengths, train=False)
        return output, h_n

    def forward(self, x, h0=None, lengths=None, train=False, checkpoint_every=None):
        """Returns ``output, h_n, cache``; ``cache`` is None unless ``train``. See LSTM.forward for
        ``checkpoint_every``."""
        if isinstance(h0, (tuple, list)):
            raise TypeError(f"h0 must be an array (the state of {type(self).__name__} is h alone), got a tuple")
        output, h_n, _, cache = self._forward(x, None if h0 is None else (h0, None), lengths, train,
                                              checkpoint_every)
        return output, h_n, cache

    def backward(self, d_output, cache, d_h_n=None):
        """Backward of ``forward(..., train=True)``: returns ``dx, dh0, grads``; ``d_output`` and
        ``d_h_n`` as LSTM.backward's (None: zero)."""
        dx, dh0, _, grads = self._backward(d_output, cache, d_h_n, None)
        return dx, dh0, grads


class GRU(_HiddenOnly):
    """A multi-layer GRU, torch.nn.GRU-compatible: gates [r | z | n], b_hn inside r * (W_hn h + b_hn)."""
    mode = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype="float32", seed=None, device="cpu"):
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, dtype, seed,
                    device)


class RNN(_HiddenOnly):
    """A multi-layer Elman RNN, torch.nn.RNN-compatible: h_t = act(W_ih x + b_ih + W_hh h + b_hh)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", seed=None, device="cpu"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity, self.mode = nonlinearity, f"rnn_{nonlinearity}"
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, dtype, seed,
                    device)
