"""The seed notebook's LSTM API, in its layout, with correct backpropagation through time.

Code written against the course notebook runs unchanged: same names, positional
signatures, shapes, parameter keys, return values and cache tuples.

Layout (the seed's, examples on axis 1, time on axis 2)::

    x    (n_x, m, T_x)      inputs            n_x: input size, m: batch, T_x: steps
    a, c (n_a, m, T_x)      hidden and cell   n_a: hidden size
    y    (n_y, m, T_x)      softmax outputs   n_y: output classes

Parameters, a dict; every W acts on the stacked column [a_prev; x_t] of size n_a + n_x::

    Wf, Wi, Wc, Wo   (n_a, n_a + n_x)   forget, update (input), candidate, output gates
    bf, bi, bc, bo   (n_a, 1)           (the seed's docstring wrongly gives bc as (n_a, n_a + n_x))
    Wy (n_y, n_a), by (n_y, 1)          the softmax output layer

Equations of one step::

    ft  = sigmoid(Wf [a_prev; xt] + bf)       it = sigmoid(Wi [a_prev; xt] + bi)
    cct = tanh(Wc [a_prev; xt] + bc)          ot = sigmoid(Wo [a_prev; xt] + bo)
    c_next = ft * c_prev + it * cct           a_next = ot * tanh(c_next)
    yt_pred = softmax(Wy a_next + by)

All arrays of one call share a dtype, float32 or float64; it is kept throughout.
"""
from collections.abc import Mapping

import numpy as np

from . import _checks
from .reference_rnn import (initialize_rnn_parameters, rnn_backward, rnn_cell_backward, rnn_cell_forward,  # noqa: F401
                            rnn_forward)
from .rnn_utils import sigmoid, softmax

__all__ = ["lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward",
           "softmax_cross_entropy", "update_parameters", "initialize_parameters",
           "rnn_cell_forward", "rnn_forward", "rnn_cell_backward", "rnn_backward", "initialize_rnn_parameters"]

GATE_KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")
OUTPUT_KEYS = ("Wy", "by")


# ---------------------------------------------------------------------------- checks
def _check_parameters(parameters, n_x, keys=GATE_KEYS + OUTPUT_KEYS):
    """Validate the parameter dict; return (n_a, n_y or None, dtype)."""
    arrays = _checks.parameter_arrays(parameters, keys)
    n_a = arrays["parameters['Wf']"].shape[0]
    cols = "" if n_x is None else f" with n_x={n_x}"
    for k in ("Wf", "Wi", "Wc", "Wo"):
        if k in keys:
            _checks.check_shape(f"parameters[{k!r}]", arrays[f"parameters[{k!r}]"],
                                (n_a, None if n_x is None else n_a + n_x),
                                f" = (n_a, n_a + n_x) for n_a={n_a} (from Wf){cols}")
    for k in ("bf", "bi", "bc", "bo"):
        if k in keys:
            _checks.check_shape(f"parameters[{k!r}]", arrays[f"parameters[{k!r}]"], (n_a, 1), f" = (n_a, 1) for n_a={n_a}")
    n_y = None
    if "Wy" in keys:
        _checks.check_shape("parameters['Wy']", arrays["parameters['Wy']"], (None, n_a), f" = (n_y, n_a) for n_a={n_a}")
        n_y = arrays["parameters['Wy']"].shape[0]
        _checks.check_shape("parameters['by']", arrays["parameters['by']"], (n_y, 1), f" = (n_y, 1) for n_y={n_y}")
    return n_a, n_y, _checks.same_dtype(arrays)


def _state(name, value, n_a, m):
    arr = _checks.float_array(name, value, ndim=2)
    _checks.check_shape(name, arr, (n_a, m), f" = (n_a, m) for n_a={n_a}, m={m}")
    return arr


def _input(name, value, ndim, axes):
    arr = _checks.float_array(name, value, ndim=ndim)
    _checks.check_nonempty(name, arr, axes)
    return arr


# ---------------------------------------------------------------------------- forward
def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """One LSTM step.

    Arguments:
        xt -- input at step t, (n_x, m)
        a_prev, c_prev -- hidden and cell state from step t-1, (n_a, m) each
        parameters -- dict of Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by (see the module docstring)

    Returns:
        a_next, c_next -- (n_a, m) each
        yt_pred -- softmax prediction at step t, (n_y, m)
        cache -- (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters), for the backward
    """
    xt = _input("xt", xt, 2, ("n_x", "m"))
    n_x, m = xt.shape
    n_a, _, dtype = _check_parameters(parameters, n_x)
    a_prev, c_prev = _state("a_prev", a_prev, n_a, m), _state("c_prev", c_prev, n_a, m)
    _checks.same_dtype({"xt": xt, "a_prev": a_prev, "c_prev": c_prev, "parameters['Wf']": parameters["Wf"]})
    return _cell_forward(xt, a_prev, c_prev, parameters)


def _cell_forward(xt, a_prev, c_prev, p):
    concat = np.concatenate((a_prev, xt), axis=0)   # (n_a + n_x, m)
    ft = sigmoid(p["Wf"] @ concat + p["bf"])         # forget gate
    it = sigmoid(p["Wi"] @ concat + p["bi"])         # update gate
    cct = np.tanh(p["Wc"] @ concat + p["bc"])        # candidate cell value
    ot = sigmoid(p["Wo"] @ concat + p["bo"])         # output gate
    c_next = ft * c_prev + it * cct
    a_next = ot * np.tanh(c_next)
    yt_pred = softmax(p["Wy"] @ a_next + p["by"])    # (n_y, m)
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, p)
    return a_next, c_next, yt_pred, cache


def lstm_forward(x, a0, parameters, *, c0=None):
    """Run the LSTM over all T_x steps.

    Arguments:
        x -- inputs, (n_x, m, T_x)
        a0 -- initial hidden state, (n_a, m)
        parameters -- dict of Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by
        c0 -- keyword only: initial cell state (n_a, m); zeros by default, as in the seed.
              Pass the previous chunk's ``c[:, :, -1]`` to carry state in truncated BPTT.

    Returns:
        a, c -- hidden and cell states of every step, (n_a, m, T_x) each
        y -- softmax predictions of every step, (n_y, m, T_x)
        caches -- (list of the T_x step caches, x)
    """
    x = _input("x", x, 3, ("n_x", "m", "T_x"))
    n_x, m, T_x = x.shape
    n_a, n_y, dtype = _check_parameters(parameters, n_x)
    a0 = _state("a0", a0, n_a, m)
    c0 = np.zeros((n_a, m), dtype) if c0 is None else _state("c0", c0, n_a, m)
    _checks.same_dtype({"x": x, "a0": a0, "c0": c0, "parameters['Wf']": parameters["Wf"]})

    a = np.zeros((n_a, m, T_x), dtype)
    c = np.zeros((n_a, m, T_x), dtype)
    y = np.zeros((n_y, m, T_x), dtype)
    step_caches = []
    a_next, c_next = a0, c0
    for t in range(T_x):
        a_next, c_next, yt_pred, cache = _cell_forward(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t], c[:, :, t], y[:, :, t] = a_next, c_next, yt_pred
        step_caches.append(cache)
    return a, y, c, (step_caches, x)


# ---------------------------------------------------------------------------- backward
def lstm_cell_backward(da_next, dc_next, cache):
    """Backward pass of one LSTM step.

    Arguments:
        da_next -- gradient of the loss w.r.t. a_next, (n_a, m): this step's own output
                   gradient plus whatever step t+1 sends back
        dc_next -- gradient w.r.t. c_next, (n_a, m), as sent back by step t+1
        cache -- the step's cache from lstm_cell_forward

    Returns a dict:
        dxt (n_x, m); da_prev, dc_prev (n_a, m) -- what to send to step t-1
                      (the seed's docstring wrongly gives dc_prev as (n_a, m, T_x))
        dWf, dWi, dWc, dWo (n_a, n_a + n_x); dbf, dbi, dbc, dbo (n_a, 1)
    """
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = _check_cache(cache)
    n_a, m = a_next.shape
    da_next = _state("da_next", da_next, n_a, m)
    dc_next = _state("dc_next", dc_next, n_a, m)
    _checks.same_dtype({"da_next": da_next, "dc_next": dc_next, "cache a_next": a_next})
    return _cell_backward(da_next, dc_next, cache)


def _cell_backward(da_next, dc_next, cache):
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, p = cache
    n_a = a_next.shape[0]
    tanh_c = np.tanh(c_next)
    dot = da_next * tanh_c * ot * (1 - ot)                 # backprop through a = o * tanh(c), then sigmoid
    dc = dc_next + da_next * ot * (1 - tanh_c ** 2)        # backprop through tanh(c): both paths into c_next
    dcct = dc * it * (1 - cct ** 2)                        # backprop through c = f*c_prev + i*cct, then tanh
    dit = dc * cct * it * (1 - it)                         # ... then sigmoid
    dft = dc * c_prev * ft * (1 - ft)                      # ... then sigmoid
    concat = np.concatenate((a_prev, xt), axis=0)          # (n_a + n_x, m)
    grads = {}
    for name, dz in (("f", dft), ("i", dit), ("c", dcct), ("o", dot)):
        grads["dW" + name] = dz @ concat.T                 # backprop through W [a_prev; xt]
        grads["db" + name] = dz.sum(axis=1, keepdims=True)
    dconcat = p["Wf"].T @ dft + p["Wi"].T @ dit + p["Wc"].T @ dcct + p["Wo"].T @ dot   # (n_a + n_x, m)
    return {"dxt": dconcat[n_a:], "da_prev": dconcat[:n_a], "dc_prev": dc * ft, **_ordered(grads)}


def _ordered(grads):
    return {k: grads[k] for k in ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo")}


def _check_cache(cache):
    if not isinstance(cache, tuple) or len(cache) != 10:
        raise TypeError("cache must be the 10-tuple (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, "
                        f"parameters) returned by lstm_cell_forward, got {type(cache).__name__}"
                        + (f" of length {len(cache)}" if isinstance(cache, (tuple, list)) else ""))
    return cache


def lstm_backward(da, caches, *, dc_final=None, return_dc0=False):
    """Backpropagation through time over the whole sequence.

    The gradient reaching the hidden state of step t is ``da[:, :, t]`` (from that step's
    output) plus the ``da_prev`` sent back by step t+1; the cell-state gradient flows back
    through the forget gate as ``dc_prev``. (The seed dropped both carries.)

    Arguments:
        da -- gradient of the loss w.r.t. each step's hidden state a, (n_a, m, T_x),
              e.g. the ``da`` of ``softmax_cross_entropy``
        caches -- the ``caches`` returned by lstm_forward
        dc_final -- keyword only: gradient w.r.t. the last cell state c[:, :, -1], (n_a, m);
                    zero by default. For a gradient on the last hidden state from outside,
                    add it to ``da[:, :, -1]``.
        return_dc0 -- keyword only: also return "dc0", the gradient w.r.t. the initial cell state

    Returns a dict:
        dx (n_x, m, T_x); da0 (n_a, m)
        dWf, dWi, dWc, dWo (n_a, n_a + n_x); dbf, dbi, dbc, dbo (n_a, 1)
        dc0 (n_a, m), only with return_dc0=True
    """
    step_caches, x, da = _checks.sequence_caches(caches, da, "lstm_forward")
    (n_a, m, T_x), n_x = da.shape, x.shape[0]
    dc_next = np.zeros((n_a, m), da.dtype) if dc_final is None else _state("dc_final", dc_final, n_a, m)
    _checks.same_dtype({"da": da, "dc_final": dc_next, "caches x": x})

    dx = np.zeros((n_x, m, T_x), da.dtype)
    da_prev = np.zeros((n_a, m), da.dtype)
    totals = None
    for t in reversed(range(T_x)):
        g = _cell_backward(da[:, :, t] + da_prev, dc_next, step_caches[t])   # the carry the seed forgot
        da_prev, dc_next = g["da_prev"], g["dc_prev"]
        dx[:, :, t] = g["dxt"]
        step = {k: v for k, v in g.items() if k[:2] in ("dW", "db")}
        totals = step if totals is None else {k: totals[k] + step[k] for k in totals}
    gradients = {"dx": dx, "da0": da_prev, **totals}
    if return_dc0:
        gradients["dc0"] = dc_next
    return gradients


# ---------------------------------------------------------------------------- output layer and training
def softmax_cross_entropy(a, Y, parameters, mask=None):
    """Loss of the seed's output layer y = softmax(Wy a + by), and its backward.

    The loss is the cross-entropy summed over time and averaged over the batch m:
    ``L = -(1/m) * sum_{b,t} mask[b, t] * log y[Y[b, t], b, t]``.

    Arguments:
        a -- hidden states from lstm_forward, (n_a, m, T_x)
        Y -- targets: integer class indices (m, T_x), or one-hot / probability targets (n_y, m, T_x)
        parameters -- dict holding Wy (n_y, n_a) and by (n_y, 1)
        mask -- optional (m, T_x) of 0/1 (or weights); padded steps get 0 and add nothing

    Returns:
        loss -- a Python float
        gradients -- dict of "da" (n_a, m, T_x), the input of lstm_backward, and "dWy", "dby"
    """
    a = _input("a", a, 3, ("n_a", "m", "T_x"))
    n_a, m, T_x = a.shape
    Wy, by = _output_layer(parameters, n_a)
    n_y = Wy.shape[0]
    _checks.same_dtype({"a": a, "parameters['Wy']": Wy, "parameters['by']": by})
    target = _targets(Y, n_y, m, T_x, a.dtype)                  # (n_y, m, T_x)
    weight = np.ones((m, T_x), a.dtype) if mask is None else _mask(mask, m, T_x, a.dtype)

    z = np.einsum("ya,amt->ymt", Wy, a) + by[:, :, None]        # logits (n_y, m, T_x)
    z -= z.max(axis=0, keepdims=True)                           # stable log-softmax
    log_y = z - np.log(np.exp(z).sum(axis=0, keepdims=True))
    loss = -float(np.sum(weight * np.sum(target * log_y, axis=0))) / m

    dz = (np.exp(log_y) * target.sum(axis=0) - target) * (weight / m)   # backprop through softmax + log
    gradients = {"da": np.einsum("ya,ymt->amt", Wy, dz),        # backprop through Wy a + by
                 "dWy": np.einsum("ymt,amt->ya", dz, a),
                 "dby": dz.sum(axis=(1, 2))[:, None]}
    return loss, gradients


def _output_layer(parameters, n_a):
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict, got {type(parameters).__name__}")
    for key in OUTPUT_KEYS:
        if key not in parameters:
            raise ValueError(f"parameters is missing key {key!r}; the output layer needs Wy and by")
    Wy = _checks.float_array("parameters['Wy']", parameters["Wy"], ndim=2)
    _checks.check_shape("parameters['Wy']", Wy, (None, n_a), f" = (n_y, n_a) for n_a={n_a} (from a)")
    by = _checks.float_array("parameters['by']", parameters["by"], ndim=2)
    _checks.check_shape("parameters['by']", by, (Wy.shape[0], 1), f" = (n_y, 1) for n_y={Wy.shape[0]}")
    return Wy, by


def _targets(Y, n_y, m, T_x, dtype):
    Y = np.asarray(Y)
    if Y.dtype.kind in "iu":
        _checks.check_shape("Y", Y, (m, T_x), f" = (m, T_x) of class indices for m={m}, T_x={T_x}")
        if Y.size and (Y.min() < 0 or Y.max() >= n_y):
            raise ValueError(f"Y holds class indices in [{Y.min()}, {Y.max()}], expected values in [0, {n_y})")
        return np.eye(n_y, dtype=dtype)[Y].transpose(2, 0, 1)  # one-hot (n_y, m, T_x)
    if Y.dtype.kind == "f":
        _checks.check_shape("Y", Y, (n_y, m, T_x), f" = (n_y, m, T_x) one-hot for n_y={n_y}, m={m}, T_x={T_x}")
        return Y.astype(dtype, copy=False)
    raise TypeError(f"Y must be integer class indices (m, T_x) or float one-hot (n_y, m, T_x), got dtype {Y.dtype}")


def _mask(mask, m, T_x, dtype):
    mask = np.asarray(mask)
    if mask.dtype.kind not in "biuf":
        raise TypeError(f"mask must be boolean or numeric (m, T_x), got dtype {mask.dtype}")
    _checks.check_shape("mask", mask, (m, T_x), f" = (m, T_x) for m={m}, T_x={T_x}")
    return mask.astype(dtype)


def update_parameters(parameters, gradients, learning_rate):
    """Plain SGD in place: ``parameters[k] -= learning_rate * gradients['d' + k]`` for every gradient given."""
    for key in parameters:
        if "d" + key in gradients:
            parameters[key] -= learning_rate * gradients["d" + key]
    return parameters


def initialize_parameters(n_x, n_a, n_y, seed=0, scale=0.1, dtype=np.float64):
    """Random parameters in the seed's layout, from ``numpy.random.default_rng(seed)``; biases are non-zero too."""
    n_x, n_a, n_y = (_checks.positive_int(k, v) for k, v in (("n_x", n_x), ("n_a", n_a), ("n_y", n_y)))
    rng = np.random.default_rng(seed)
    shapes = {"W": (n_a, n_a + n_x), "b": (n_a, 1)}
    params = {k: (scale * rng.standard_normal(shapes[k[0]])).astype(dtype) for k in GATE_KEYS}
    params["Wy"] = (scale * rng.standard_normal((n_y, n_a))).astype(dtype)
    params["by"] = (scale * rng.standard_normal((n_y, 1))).astype(dtype)
    return params
