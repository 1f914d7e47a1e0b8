"""Gradient checking by central finite differences, in float64, shipped with the library.

Usage, for any code with an explicit backward::

    tensors = {"W": W, "x": x}                  # the float64 arrays the loss reads
    loss = lambda: float(np.sum(G * f(x, W)))   # reads tensors in place
    report = gradcheck(loss, tensors, {"W": dW, "x": dx})
    assert report.ok, report

The relative error of a tensor is ``max|analytic - numeric| / max(max|analytic|, max|numeric|)``:
the worst element's error measured against the tensor's own scale, so a tiny gradient
entry cannot blow it up through rounding, while a transposed axis or a missing term
still shows as an O(1) error.

A whole tensor can be tiny, though: a weight that barely reaches the loss, say, its gradient
1e-6 of the others' (of order 1). The finite differences carry rounding at the loss's scale
(~1e-11 at eps = 1e-5 on a loss of order 1), and on the tensor's own scale that reads as an
error of ~1e-5. ``gradcheck(..., floor=1e-3)`` measures such a tensor against 1e-3 of the
largest gradient among the tensors instead, where that rounding is ~1e-8, while a 30% error in
it still reads as ~3e-4.
"""
import numbers
from dataclasses import dataclass, field

import numpy as np

from . import _checks
from . import reference
from ._xp import to_device, to_host

__all__ = ["gradcheck", "numerical_gradient", "relative_error", "GradcheckReport", "check_lstm_reference",
           "check_layer"]


def numerical_gradient(loss_fn, x, eps=1e-5):
    """d loss_fn() / d x by central differences; ``x`` is perturbed in place and always restored."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        try:
            x[idx] = old + eps
            up = loss_fn()
            x[idx] = old - eps
            down = loss_fn()
        finally:
            x[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def relative_error(analytic, numeric, least_scale=0.0):
    """Worst element error relative to the tensor's scale, max|analytic| or max|numeric|, or
    ``least_scale`` where that is larger (0.0 when the scale is zero)."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"analytic gradient has shape {analytic.shape}, numeric has {numeric.shape}")
    if analytic.size == 0:
        return 0.0
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), least_scale)
    return 0.0 if scale == 0 else float(np.abs(analytic - numeric).max() / scale)


@dataclass
class GradcheckReport:
    """Worst relative error per tensor, and whether every one is within ``tol``."""
    errors: dict = field(default_factory=dict)
    tol: float = 1e-7

    @property
    def max_error(self):
        return max(self.errors.values(), default=0.0)

    @property
    def ok(self):
        return self.max_error <= self.tol

    def __str__(self):
        width = max((len(k) for k in self.errors), default=6)
        rows = [f"{'tensor':<{width}}  rel. error", *(
            f"{k:<{width}}  {v:.2e}{'' if v <= self.tol else '  FAIL'}" for k, v in self.errors.items())]
        rows.append(f"worst {self.max_error:.2e} (tolerance {self.tol:.0e}): {'ok' if self.ok else 'FAILED'}")
        return "\n".join(rows)


def gradcheck(loss_fn, tensors, grads, *, eps=1e-5, tol=1e-7, floor=0.0):
    """Compare analytic ``grads`` with central differences of ``loss_fn()`` for each named tensor.

    Arguments:
        loss_fn -- callable of no arguments returning the scalar loss; it must read the
                   arrays in ``tensors`` (they are perturbed in place, then restored)
        tensors -- dict name -> float64 ndarray
        grads -- dict name -> analytic gradient of the same shape, for every name in tensors
        floor -- in [0, 1): a tensor's scale is at least ``floor`` times the largest among the
                 tensors (module note); 0, the default: each tensor on its own scale
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if isinstance(floor, bool) or not isinstance(floor, numbers.Real):
        raise TypeError(f"floor must be a float in [0, 1), got {type(floor).__name__}")
    if not 0 <= floor < 1:
        raise ValueError(f"floor must be in [0, 1), got {floor}")
    numeric = {}
    for name, x in tensors.items():
        x = _checks.float_array(f"tensors[{name!r}]", x)
        if x.dtype != np.float64:
            raise TypeError(f"tensors[{name!r}] must be float64 for finite differences, got {x.dtype}")
        if name not in grads:
            raise ValueError(f"grads is missing {name!r}; expected one gradient per tensor")
        numeric[name] = numerical_gradient(loss_fn, x, eps)
    largest = max((np.abs(np.asarray(a, np.float64)).max(initial=0) for a in
                   (*(grads[k] for k in numeric), *numeric.values())), default=0.0) if floor else 0.0
    report = GradcheckReport(tol=tol)
    for name, n in numeric.items():
        report.errors[name] = relative_error(grads[name], n, float(floor * largest))
    return report


def check_lstm_reference(n_x=3, n_a=5, n_y=2, m=4, T_x=6, *, seed=0, eps=1e-5, tol=1e-7):
    """Gradient-check the whole reference model: every parameter, x, a0 and c0.

    The loss is the softmax cross-entropy of random targets plus a random linear function
    of the last cell state, so that lstm_backward's ``dc_final`` and ``dc0`` are checked too.
    Sizes default to distinct values so that a transposed axis cannot pass.
    """
    rng = np.random.default_rng(seed)
    params = reference.initialize_parameters(n_x, n_a, n_y, seed=seed, scale=0.5)
    x = rng.standard_normal((n_x, m, T_x))
    a0, c0 = rng.standard_normal((n_a, m)), rng.standard_normal((n_a, m))
    Y = rng.integers(0, n_y, size=(m, T_x))
    G_c = rng.standard_normal((n_a, m))

    def loss():
        a, _, c, _ = reference.lstm_forward(x, a0, params, c0=c0)
        return reference.softmax_cross_entropy(a, Y, params)[0] + float(np.sum(G_c * c[:, :, -1]))

    a, _, c, caches = reference.lstm_forward(x, a0, params, c0=c0)
    _, out_grads = reference.softmax_cross_entropy(a, Y, params)
    grads = reference.lstm_backward(out_grads["da"], caches, dc_final=G_c, return_dc0=True)
    analytic = {k: grads["d" + k] for k in reference.GATE_KEYS}
    analytic.update(Wy=out_grads["dWy"], by=out_grads["dby"], x=grads["dx"], a0=grads["da0"], c0=grads["dc0"])
    return gradcheck(loss, {**params, "x": x, "a0": a0, "c0": c0}, analytic, eps=eps, tol=tol)


def check_layer(layer, x, hx=None, lengths=None, *, seed=0, eps=1e-5, tol=1e-7):
    """Gradient-check a float64 recurrent layer (e.g. ``nplstm.LSTM``): every weight, x, h0 and c0.

    The loss is a random linear function of output, h_n and c_n, so that every path of the
    backward, the final-state gradients included, is exercised. Forward runs in training mode;
    the layer's generator is reset before each one, so dropout draws the same mask every time.
    A layer on a GPU is checked too: the differences are taken on host copies of its weights,
    which are copied to the device for every forward.
    """
    if np.dtype(layer.dtype) != np.float64:
        raise TypeError(f"check_layer needs a float64 layer for finite differences, got {layer.dtype}")
    dev = layer.device

    def on(a):                                            # to the layer's device (a no-op on the CPU)
        return to_device(a, dev)

    params = layer.params if dev == "cpu" else {k: to_host(v).copy() for k, v in layer.params.items()}
    rng = np.random.default_rng(seed)
    x = np.array(to_host(x), dtype=np.float64)
    if hx is None:
        _, (h, c), _ = layer.forward(on(x), lengths=lengths)
        hx = (rng.standard_normal(h.shape), rng.standard_normal(c.shape))
    h0, c0 = (np.array(to_host(s), dtype=np.float64) for s in hx)

    def run():
        layer.rng = np.random.default_rng(seed + 1)
        if dev != "cpu":
            layer.params = {k: on(v) for k, v in params.items()}
        out, (h_n, c_n), cache = layer.forward(on(x), (on(h0), on(c0)), lengths=lengths, train=True)
        return to_host(out), (to_host(h_n), to_host(c_n)), cache

    out, (h_n, c_n), _ = run()
    G, G_h, G_c = (rng.standard_normal(a.shape) for a in (out, h_n, c_n))

    def loss():
        out, (h_n, c_n), _ = run()
        return float(np.sum(G * out) + np.sum(G_h * h_n) + np.sum(G_c * c_n))

    _, _, cache = run()
    dx, (dh0, dc0), grads = layer.backward(on(G), cache, (on(G_h), on(G_c)))
    analytic = {k: to_host(v) for k, v in {**grads, "x": dx, "h0": dh0, "c0": dc0}.items()}
    return gradcheck(loss, {**params, "x": x, "h0": h0, "c0": c0}, analytic, eps=eps, tol=tol)
