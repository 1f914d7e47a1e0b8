"""Optimizers on parameter/gradient dicts, gradient clipping and learning-rate schedules.

An optimizer updates ``params`` (a dict of arrays, changed in place) from ``grads`` (a dict
with the same keys). Its state is a dict of arrays plus a step count, so a checkpoint can
hold it and a resumed run continues bit for bit.
"""
import math

import numpy as np

from . import _xp

__all__ = ["SGD", "Adam", "clip_grad_norm", "global_norm", "lr_schedule", "SCHEDULES", "OPTIMIZERS"]


class SGD:
    """SGD with optional momentum (PyTorch's form): v = mu * v + g;  p -= lr * v."""

    def __init__(self, lr=0.1, momentum=0.0):
        self.lr, self.momentum = float(lr), float(momentum)
        self.state, self.t = {}, 0

    def step(self, params, grads, lr=None):
        lr = self.lr if lr is None else lr
        self.t += 1
        for k, g in grads.items():
            if self.momentum:
                v = self.state.setdefault(k, _xp.array_module(g).zeros_like(g))
                v *= self.momentum
                v += g
                g = v
            params[k] -= lr * g


class Adam:
    """Adam (Kingma & Ba), with bias correction, as torch.optim.Adam with weight_decay=0."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.betas, self.eps = float(lr), tuple(betas), float(eps)
        self.state, self.t = {}, 0

    def step(self, params, grads, lr=None):
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for k, g in grads.items():
            xp = _xp.array_module(g)
            m = self.state.setdefault("m." + k, xp.zeros_like(g))
            v = self.state.setdefault("v." + k, xp.zeros_like(g))
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            params[k] -= (lr / c1) * m / (xp.sqrt(v / c2) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def global_norm(grads):
    """The L2 norm of all gradients together, accumulated in float64."""
    def sq(g):
        g64 = g.ravel().astype(np.float64)
        return _xp.array_module(g).dot(g64, g64)
    return math.sqrt(float(sum(sq(g) for g in grads.values())))   # one read back from the device


def clip_grad_norm(grads, max_norm):
    """Scale every gradient in place so their global norm is at most ``max_norm``; return the norm before.

    A non-finite norm raises ``FloatingPointError`` instead of scaling by NaN.
    """
    norm = global_norm(grads)
    if not math.isfinite(norm):
        raise FloatingPointError(f"gradient norm is {norm}: the loss or the model has diverged")
    if max_norm is not None and max_norm > 0 and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


def _cosine(progress):
    return 0.5 * (1 + math.cos(math.pi * progress))


def _step_decay(progress, drops=3, factor=0.3):
    return factor ** min(int(progress * (drops + 1)), drops)


SCHEDULES = {"constant": lambda progress: 1.0, "cosine": _cosine, "step": _step_decay}


def lr_schedule(step, base_lr, total_steps, warmup=0, kind="cosine", min_ratio=0.1):
    """Learning rate at ``step`` (0-based): linear warm-up, then the named decay down to min_ratio * base_lr."""
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {kind!r}")
    if warmup and step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total_steps - warmup, 1), 1.0)
    return base_lr * (min_ratio + (1 - min_ratio) * SCHEDULES[kind](progress))
