"""Test helpers for devices: a strict fake accelerator, and one seeded run of a layer (``run_layer``).

A fake accelerator for the CPU test suite: NumPy arithmetic, CuPy's refusal to mix devices.

Its arrays (``Strict``) are a NumPy subclass; any ufunc, NumPy function or indexing that mixes
one with a plain ``numpy.ndarray`` raises TypeError, as CuPy does with host arrays. Its module
(``STRICT``) creates only Strict arrays; ``asarray``/``array`` are the one way in (the
"host-to-device copy") and ``asnumpy`` the one way out. Registered as the device "strict"
(``nplstm._xp.register``), it lets a machine without a GPU check that nothing in the engine,
the layers, the loss, the optimizers or the training loop quietly works on host arrays.
"""
import numpy as np

import nplstm
from nplstm import _xp


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, Strict) else a


def _wrap(result):
    if isinstance(result, np.ndarray) and not isinstance(result, Strict):
        return result.view(Strict)
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    return result


def _flat(values):
    for v in values:
        if isinstance(v, (tuple, list)):
            yield from _flat(v)
        else:
            yield v


def _refuse_host(what, values):
    for v in _flat(values):
        if type(v) is np.ndarray:
            raise TypeError(f"{what}: a host numpy array {v.shape} mixed with 'strict' device arrays")


def _unwrap(values):
    return [_unwrap(v) if isinstance(v, (tuple, list)) else _plain(v) for v in values]


class Strict(np.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_host(f"{ufunc.__name__}.{method}", list(inputs) + list(out or ()))
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        _refuse_host(func.__name__, list(args) + list(kwargs.values()))
        return _wrap(func(*_unwrap(args), **dict(zip(kwargs, _unwrap(kwargs.values())))))

    def __getitem__(self, key):
        _refuse_host("indexing", key if isinstance(key, tuple) else (key,))
        return super().__getitem__(key)


class _StrictModule:
    """``xp`` for the strict device: NumPy's functions, taking and returning Strict arrays only."""
    __name__ = "strict"
    TRANSFERS = {"asarray", "array"}                      # host arrays may come in through these

    def __getattr__(self, name):
        attr = np.array if name == "asarray" else getattr(np, name)   # a transfer copies, as on a GPU
        if isinstance(attr, np.ufunc) or not callable(attr) or isinstance(attr, type):
            return attr                                   # ufuncs check through Strict.__array_ufunc__

        def call(*args, **kwargs):
            if name not in self.TRANSFERS:
                _refuse_host(name, list(args) + list(kwargs.values()))
            return _wrap(attr(*_unwrap(args), **dict(zip(kwargs, _unwrap(kwargs.values())))))
        return call

    @staticmethod
    def asnumpy(a):
        return np.array(_plain(a))


STRICT = _StrictModule()


# Layer configurations a device must match the CPU on: layers, directions, projection, dropout, no bias.
LAYERS = [
    (nplstm.LSTM, dict()),
    (nplstm.LSTM, dict(num_layers=2, bidirectional=True, batch_first=True)),
    (nplstm.LSTM, dict(bidirectional=True, proj_size=2)),
    (nplstm.LSTM, dict(num_layers=2, dropout=0.3, bias=False)),
    (nplstm.GRU, dict(num_layers=2, bidirectional=True)),
    (nplstm.RNN, dict(nonlinearity="relu", dropout=0.2, num_layers=2)),
    (nplstm.RNN, dict(nonlinearity="tanh")),
]


def run_layer(layer, on, x, lengths):
    """A layer's training forward + backward and an inference forward, everything moved in by ``on``.

    Seeded states, dropout masks and incoming gradients, so two devices see the same numbers.
    Returns every result by name (out, h, c, infer, dx, dh0, dc0, grad.<key>), on the device.
    """
    rng = np.random.default_rng(7)
    B = x.shape[0] if layer.batch_first else x.shape[1]
    lstm = isinstance(layer, nplstm.LSTM)
    D, P = layer.num_directions, layer.output_size
    h0 = rng.standard_normal((layer.num_layers * D, B, P)).astype(layer.dtype)
    c0 = rng.standard_normal((layer.num_layers * D, B, layer.hidden_size)).astype(layer.dtype)
    layer.rng = np.random.default_rng(11)
    if lstm:
        out, (h, c), cache = layer.forward(on(x), (on(h0), on(c0)), lengths=lengths, train=True)
    else:
        out, h, cache = layer.forward(on(x), on(h0), lengths=lengths, train=True)
    g_out, g_h, g_c = (rng.standard_normal(a.shape).astype(layer.dtype) for a in (out, h, c0))
    res = {"out": out, "h": h}
    if lstm:
        dx, (dh0, dc0), grads = layer.backward(on(g_out), cache, (on(g_h), on(g_c)))
        res.update(c=c, dc0=dc0, infer=layer(on(x), (on(h0), on(c0)), lengths)[0])
    else:
        dx, dh0, grads = layer.backward(on(g_out), cache, on(g_h))
        res["infer"] = layer(on(x), on(h0), lengths)[0]
    res.update(dx=dx, dh0=dh0, **{"grad." + k: v for k, v in grads.items()})
    return res


def register():
    if "strict" not in _xp.DEVICES:
        _xp.register("strict", lambda: STRICT, Strict)
