"""Optimizers against hand-computed updates, exact clipping, schedules, and the loss."""
import math

import numpy as np
import pytest

from nplstm.gradcheck import gradcheck
from nplstm.losses import softmax_cross_entropy
from nplstm.optim import SGD, Adam, clip_grad_norm, global_norm, lr_schedule


def test_sgd_momentum_matches_hand_computation():
    p = {"w": np.array([1.0, -2.0])}
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(p, {"w": g1.copy()})
    np.testing.assert_allclose(p["w"], [1 - 0.05, -2 - 0.1], rtol=1e-15)
    opt.step(p, {"w": g2.copy()})
    v2 = 0.9 * g1 + g2                                     # [-0.55, 2.9]
    np.testing.assert_allclose(p["w"], [0.95 + 0.055, -2.1 - 0.29], rtol=1e-15)
    np.testing.assert_allclose(v2, [-0.55, 2.9])


def test_adam_matches_hand_computation():
    p = {"w": np.array([0.3])}
    opt = Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    grads = [0.2, -0.5]
    m = v = 0.0
    w = 0.3
    for t, g in enumerate(grads, start=1):
        opt.step(p, {"w": np.array([g])})
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= 0.01 * (m / (1 - 0.9 ** t)) / (math.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        assert p["w"][0] == pytest.approx(w, rel=1e-13)
    # first step of Adam moves by exactly lr (bias-corrected m/sqrt(v) = sign(g)), whatever |g|
    q = {"w": np.array([0.3])}
    Adam(lr=0.01).step(q, {"w": np.array([123.0])})
    assert q["w"][0] == pytest.approx(0.29, rel=1e-9)


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    p = {"w": w0.copy()}
    tw = torch.tensor(w0.copy(), requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.01)
    opt = Adam(lr=0.01)
    for g in grads:
        opt.step(p, {"w": g.copy()})
        tw.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(p["w"], tw.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_clipping_is_exact_and_keeps_direction():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}      # global norm 5
    before = {k: v.copy() for k, v in g.items()}
    assert clip_grad_norm(g, 2.0) == 5.0
    assert global_norm(g) == pytest.approx(2.0, rel=1e-15)
    np.testing.assert_allclose(g["a"], before["a"] * 0.4, rtol=1e-15)
    np.testing.assert_allclose(g["b"], before["b"] * 0.4, rtol=1e-15)
    small = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(small, 2.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(small["a"], [0.3, 0.4])   # below the bound: untouched


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_clipping_refuses_non_finite_norm(bad):
    g = {"a": np.array([1.0, bad])}
    with pytest.raises(FloatingPointError, match="gradient norm"):
        clip_grad_norm(g, 1.0)
    assert g["a"][0] == 1.0


def test_schedules():
    assert lr_schedule(0, 1.0, 100, warmup=10) == pytest.approx(0.1)
    assert lr_schedule(9, 1.0, 100, warmup=10) == pytest.approx(1.0)
    assert lr_schedule(10, 1.0, 100, warmup=10, kind="cosine") == pytest.approx(1.0)
    assert lr_schedule(100, 1.0, 100, warmup=10, kind="cosine", min_ratio=0.1) == pytest.approx(0.1)
    mid = lr_schedule(55, 1.0, 100, warmup=10, kind="cosine", min_ratio=0.0)
    assert mid == pytest.approx(0.5)
    assert lr_schedule(50, 1.0, 100, kind="constant") == 1.0
    steps = [lr_schedule(s, 1.0, 100, kind="step", min_ratio=0.0) for s in (0, 30, 60, 99)]
    assert steps == pytest.approx([1.0, 0.3, 0.09, 0.027])
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(0, 1.0, 10, kind="linear")


def test_loss_value_and_gradcheck():
    rng = np.random.default_rng(0)
    T, B, V = 3, 4, 5
    logits = rng.standard_normal((T, B, V)) * 3
    y = rng.integers(0, V, (T, B))
    mask = rng.random((T, B)) > 0.3
    loss, d = softmax_cross_entropy(logits, y, mask)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    want = -np.mean([np.log(p[t, b, y[t, b]]) for t in range(T) for b in range(B) if mask[t, b]])
    assert loss == pytest.approx(want, rel=1e-13)
    report = gradcheck(lambda: softmax_cross_entropy(logits, y, mask)[0], {"logits": logits}, {"logits": d})
    assert report.ok, report
    assert np.all(d[~mask] == 0)


@pytest.mark.parametrize("args,exc,word", [
    ((np.zeros((2, 3, 4)), np.zeros((3, 2), int)), ValueError, "targets"),
    ((np.zeros((2, 3, 4)), np.full((2, 3), 4)), ValueError, "[0, 4)"),
    ((np.zeros((2, 3, 4)), np.zeros((2, 3))), TypeError, "integer"),
    ((np.zeros((2, 3, 4)), np.zeros((2, 3), int), np.zeros((2, 3))), ValueError, "no token"),
    ((np.zeros((2, 3)), np.zeros((2,), int)), ValueError, "logits"),
])
def test_loss_bad_input(args, exc, word):
    with pytest.raises(exc, match=word.replace("[", r"\[").replace(")", r"\)")):
        softmax_cross_entropy(*args)
