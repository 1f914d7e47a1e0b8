"""The basic RNN of the course notebook's first half, in its layout, with correct BPTT.

Re-exported by ``nplstm.reference``. Layout as for the LSTM: x (n_x, m, T_x), a (n_a, m, T_x).
Parameters, a dict::

    Wax (n_a, n_x)   Waa (n_a, n_a)   ba (n_a, 1)   Wya (n_y, n_a)   by (n_y, 1)

One step::

    a_next = tanh(Wax xt + Waa a_prev + ba)      yt_pred = softmax(Wya a_next + by)
"""
import numpy as np

from . import _checks
from .rnn_utils import softmax

__all__ = ["rnn_cell_forward", "rnn_forward", "rnn_cell_backward", "rnn_backward", "initialize_rnn_parameters"]

RNN_KEYS = ("Wax", "Waa", "ba", "Wya", "by")


def _check_rnn_parameters(parameters, n_x, keys=RNN_KEYS):
    arrays = _checks.parameter_arrays(parameters, keys)
    n_a = arrays["parameters['Waa']"].shape[0]
    shapes = {"Wax": (n_a, n_x), "Waa": (n_a, n_a), "ba": (n_a, 1), "Wya": (None, n_a)}
    for k, shape in shapes.items():
        if k in keys:
            _checks.check_shape(f"parameters[{k!r}]", arrays[f"parameters[{k!r}]"], shape,
                                f" for n_a={n_a} (from Waa)" + (f", n_x={n_x}" if k == "Wax" else ""))
    if "by" in keys:
        n_y = arrays["parameters['Wya']"].shape[0]
        _checks.check_shape("parameters['by']", arrays["parameters['by']"], (n_y, 1), f" = (n_y, 1) for n_y={n_y}")
    return n_a, _checks.same_dtype(arrays)


def _state(name, value, n_a, m):
    arr = _checks.float_array(name, value, ndim=2)
    _checks.check_shape(name, arr, (n_a, m), f" = (n_a, m) for n_a={n_a}, m={m}")
    return arr


def rnn_cell_forward(xt, a_prev, parameters):
    """One RNN step: xt (n_x, m), a_prev (n_a, m) -> a_next, yt_pred (n_y, m), cache (a_next, a_prev, xt, parameters)."""
    xt = _checks.float_array("xt", xt, ndim=2)
    _checks.check_nonempty("xt", xt, ("n_x", "m"))
    n_a, dtype = _check_rnn_parameters(parameters, xt.shape[0])
    a_prev = _state("a_prev", a_prev, n_a, xt.shape[1])
    _checks.same_dtype({"xt": xt, "a_prev": a_prev, "parameters['Waa']": parameters["Waa"]})
    return _cell_forward(xt, a_prev, parameters)


def _cell_forward(xt, a_prev, p):
    a_next = np.tanh(p["Wax"] @ xt + p["Waa"] @ a_prev + p["ba"])
    yt_pred = softmax(p["Wya"] @ a_next + p["by"])
    return a_next, yt_pred, (a_next, a_prev, xt, p)


def rnn_forward(x, a0, parameters):
    """The RNN over T_x steps: x (n_x, m, T_x), a0 (n_a, m) -> a (n_a, m, T_x), y_pred (n_y, m, T_x), caches.

    ``caches`` is (list of the step caches, x), as in the notebook.
    """
    x = _checks.float_array("x", x, ndim=3)
    _checks.check_nonempty("x", x, ("n_x", "m", "T_x"))
    n_x, m, T_x = x.shape
    n_a, dtype = _check_rnn_parameters(parameters, n_x)
    a0 = _state("a0", a0, n_a, m)
    _checks.same_dtype({"x": x, "a0": a0, "parameters['Waa']": parameters["Waa"]})
    n_y = parameters["Wya"].shape[0]
    a, y_pred, caches = np.zeros((n_a, m, T_x), dtype), np.zeros((n_y, m, T_x), dtype), []
    a_next = a0
    for t in range(T_x):
        a_next, y_pred[:, :, t], cache = _cell_forward(x[:, :, t], a_next, parameters)
        a[:, :, t] = a_next
        caches.append(cache)
    return a, y_pred, (caches, x)


def rnn_cell_backward(da_next, cache):
    """Backward of one step. ``da_next`` (n_a, m) is the total gradient reaching a_next.

    Returns a dict: dxt (n_x, m), da_prev (n_a, m), dWax (n_a, n_x), dWaa (n_a, n_a), dba (n_a, 1).
    """
    if not isinstance(cache, tuple) or len(cache) != 4:
        raise TypeError("cache must be the 4-tuple (a_next, a_prev, xt, parameters) returned by rnn_cell_forward")
    a_next = cache[0]
    da_next = _state("da_next", da_next, *a_next.shape)
    _checks.same_dtype({"da_next": da_next, "cache a_next": a_next})
    return _cell_backward(da_next, cache)


def _cell_backward(da_next, cache):
    a_next, a_prev, xt, p = cache
    dz = da_next * (1 - a_next ** 2)                      # backprop through tanh
    return {"dxt": p["Wax"].T @ dz, "da_prev": p["Waa"].T @ dz,   # backprop through Wax xt + Waa a_prev + ba
            "dWax": dz @ xt.T, "dWaa": dz @ a_prev.T, "dba": dz.sum(axis=1, keepdims=True)}


def rnn_backward(da, caches):
    """BPTT: ``da`` (n_a, m, T_x) is the gradient from each step's output; step t also receives
    what step t+1 sends back through a. Returns dx, da0, dWax, dWaa, dba."""
    step_caches, x, da = _checks.sequence_caches(caches, da, "rnn_forward")
    (n_a, m, T_x), n_x = da.shape, x.shape[0]
    _checks.same_dtype({"da": da, "caches x": x})
    p = step_caches[0][3]
    dx = np.zeros((n_x, m, T_x), da.dtype)
    grads = {"dWax": np.zeros_like(p["Wax"]), "dWaa": np.zeros_like(p["Waa"]), "dba": np.zeros_like(p["ba"])}
    da_prev = np.zeros((n_a, m), da.dtype)
    for t in reversed(range(T_x)):
        g = _cell_backward(da[:, :, t] + da_prev, step_caches[t])   # own output plus what step t+1 sent
        dx[:, :, t], da_prev = g["dxt"], g["da_prev"]
        for k in grads:
            grads[k] += g[k]
    return {"dx": dx, "da0": da_prev, **grads}


def initialize_rnn_parameters(n_x, n_a, n_y, seed=0, scale=0.1, dtype=np.float64):
    """Random RNN parameters in the notebook's layout; biases are non-zero too."""
    n_x, n_a, n_y = (_checks.positive_int(k, v) for k, v in (("n_x", n_x), ("n_a", n_a), ("n_y", n_y)))
    rng = np.random.default_rng(seed)
    shapes = {"Wax": (n_a, n_x), "Waa": (n_a, n_a), "ba": (n_a, 1), "Wya": (n_y, n_a), "by": (n_y, 1)}
    return {k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}
