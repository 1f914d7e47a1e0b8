"""Softmax cross-entropy over time, with its backward.

Layout: time-major, as nplstm.LSTM: logits (T, B, V), targets (T, B) of class indices.
"""
from . import _checks, _xp

__all__ = ["softmax_cross_entropy", "log_softmax"]


def log_softmax(logits):
    """Stable log-softmax over the last axis (no overflow for any finite input)."""
    xp = _xp.array_module(logits)
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean cross-entropy per counted token, and its gradient.

    Arguments:
        logits -- (T, B, V) float32/float64
        targets -- (T, B) integer class indices in [0, V)
        mask -- optional (T, B) of 0/1 (bool or numeric): padded steps get 0 and count for nothing

    Returns:
        loss -- Python float, nats per token: sum(mask * -log p[target]) / sum(mask)
        dlogits -- (T, B, V), the gradient of that loss, in the logits' dtype
    """
    logits = _checks.float_array("logits", logits, ndim=3)
    T, B, V = logits.shape
    xp, device = _xp.array_module(logits), _xp.device_of(logits)
    targets = _xp.as_array(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    _checks.same_device("targets", targets, device)
    _checks.check_shape("targets", targets, (T, B), " = (T, B) to match logits")
    if targets.size and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must lie in [0, {V}), got values from {targets.min()} to {targets.max()}")
    if mask is None:
        weight = xp.ones((T, B), logits.dtype)
    else:
        weight = _xp.as_array(mask)
        _checks.same_device("mask", weight, device)
        _checks.check_shape("mask", weight, (T, B), " = (T, B) to match logits")
        weight = weight.astype(logits.dtype)
    count = weight.sum()
    if count <= 0:
        raise ValueError("mask selects no token: the loss would be 0/0")
    logp = log_softmax(logits)
    t_idx, b_idx = xp.indices((T, B))
    loss = -float((logp[t_idx, b_idx, targets] * weight).sum() / count)   # one read back from the device
    dlogits = xp.exp(logp)                                # backprop through log-softmax: p - onehot
    dlogits[t_idx, b_idx, targets] -= 1
    dlogits *= (weight / count)[:, :, None]
    return loss, dlogits
