"""nplstm.LSTM against torch.nn.LSTM: outputs, states and every gradient (skipped without torch)."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nplstm

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("backend")

# (input, hidden, batch, T, layers, bidirectional, proj_size, bias, batch_first, lengths)
CASES = [
    (3, 5, 4, 6, 1, False, 0, True, False, False),
    (4, 6, 3, 7, 2, True, 0, True, True, False),
    (5, 7, 4, 5, 2, False, 3, True, False, True),
    (3, 4, 5, 6, 3, True, 2, False, True, True),
    (6, 3, 7, 4, 1, True, 0, True, False, True),
    (5, 16, 9, 6, 2, True, 0, True, False, True),         # 4H a whole panel: float32 at batch > 1 runs
    (3, 32, 13, 5, 1, False, 0, True, True, False),       # on nplstm._tilegemm where the CPU has AVX-512
]


def run_torch(module, x, h0, c0, lengths, G, G_h, G_c, batch_first):
    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    if lengths is None:
        out, (h, c) = module(xt, (h0t, c0t))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                                         enforce_sorted=False)
        out, (h, c) = module(packed, (h0t, c0t))
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    loss = (out * torch.tensor(G)).sum() + (h * torch.tensor(G_h)).sum() + (c * torch.tensor(G_c)).sum()
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    return [t.detach().numpy() for t in (out, h, c, xt.grad, h0t.grad, c0t.grad)], grads


@pytest.mark.parametrize("dtype,tol,threads", [("float64", 1e-9, None), ("float32", 1e-4, None), ("float32", 1e-4, 1)],
                         ids=["float64", "float32", "float32-1thread"])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_matches_torch(case, dtype, tol, threads):
    """float32 on one thread: oneDNN, and the engine's batch-major path where it applies."""
    check_against_torch(case, dtype, tol, threads)


def random_case(seed):
    """A configuration drawn at random: sizes up to ~70, batches that split into row blocks or not."""
    rng = np.random.default_rng(seed)
    I, H = int(rng.integers(1, 40)), int(rng.integers(2, 70))
    B, T = int(rng.choice([1, 2, 3, 5, 16, 17, 33])), int(rng.integers(1, 25))
    L, bi = int(rng.integers(1, 4)), bool(rng.integers(2))
    proj = int(rng.integers(1, H)) if rng.random() < 0.25 else 0
    bias, bf, lengths = bool(rng.random() < 0.85), bool(rng.integers(2)), bool(rng.random() < 0.4)
    dtype, threads = ("float32", "float64")[int(rng.random() < 0.3)], int(rng.integers(1, 3))
    return (I, H, B, T, L, bi, proj, bias, bf, lengths), dtype, threads


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")   # torch's, about itself
@pytest.mark.parametrize("seed", range(12))
def test_random_configurations_match_torch(seed):
    """Random configurations, at sizes and thread counts (nplstm.set_num_threads) that take the
    compiled paths: batch 1's, the batch-major loop's, row blocks'. Weights from PyTorch's own
    U(-1/sqrt(H), 1/sqrt(H)), biases included: with the small tests' U(-0.6, 0.6) at H ~ 60 and
    three layers, torch's float32 itself strays 7e-5 from float64 (ours 4e-5). Tolerances scale
    with each result's size."""
    case, dtype, threads = random_case(seed)
    before = nplstm.get_num_threads()
    nplstm.set_num_threads(threads)
    try:
        check_against_torch(case, dtype, 1e-9 if dtype == "float64" else 2e-5, threads, scaled=True, frozen=True,
                            bound=case[1] ** -0.5)
    finally:
        nplstm.set_num_threads(before)


def check_against_torch(case, dtype, tol, threads, scaled=False, frozen=False, bound=0.6):
    """Training forward and backward (and a frozen() copy's inference) against torch.nn.LSTM on the
    same weights, every parameter drawn from U(-bound, bound); tolerance tol (x10 for parameter
    gradients), times max |expected| if scaled."""
    I, H, B, T, L, bi, proj, bias, bf, use_lengths = case
    torch.manual_seed(sum(case[:6]))
    tdtype = getattr(torch, dtype)
    module = torch.nn.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bi, proj_size=proj).to(tdtype)
    with torch.no_grad():
        for p in module.parameters():                     # distinct non-zero biases on both sides
            p.uniform_(-bound, bound)
    ours = nplstm.LSTM(I, H, L, bias=bias, batch_first=bf, bidirectional=bi, proj_size=proj, dtype=dtype)
    ours.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})

    rng = np.random.default_rng(7)
    D, P = 2 if bi else 1, proj or H
    x = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(dtype)
    h0, c0 = rng.standard_normal((L * D, B, P)).astype(dtype), rng.standard_normal((L * D, B, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if use_lengths else None
    if lengths is not None:
        lengths[0] = T
    out_shape = (B, T, D * P) if bf else (T, B, D * P)
    G, G_h, G_c = (rng.standard_normal(s).astype(dtype) for s in (out_shape, h0.shape, c0.shape))
    if lengths is not None:                               # torch's padded output is 0 there; give no gradient
        for b, n in enumerate(lengths):
            (G[b, n:] if bf else G[n:, b])[...] = 0

    want, want_grads = run_torch(module, x, h0, c0, lengths, G, G_h, G_c, bf)

    def close(got, expected, name, factor=1):
        atol = tol * factor * (max(1.0, float(np.abs(expected).max())) if scaled else 1)
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=name)
    with threadpool_limits(threads):
        out, (h, c), cache = ours.forward(x, (h0, c0), lengths=lengths, train=True)
        dx, (dh0, dc0), grads = ours.backward(G, cache, (G_h, G_c))
        inferred = ours.frozen()(x, (h0, c0), lengths=lengths) if frozen else None
    for name, got, expected in zip(("output", "h_n", "c_n", "dx", "dh0", "dc0"), (out, h, c, dx, dh0, dc0), want):
        close(got, expected, name)
    assert list(grads) == list(want_grads)
    for key in want_grads:
        close(grads[key], want_grads[key], key, factor=10)
    if frozen:
        for name, got, expected in zip(("frozen output", "frozen h_n", "frozen c_n"), (inferred[0], *inferred[1]), want):
            close(got, expected, name)


def test_unbatched_and_default_init_match_torch_shapes():
    module = torch.nn.LSTM(3, 5, 2, bidirectional=True)
    ours = nplstm.LSTM(3, 5, 2, bidirectional=True)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in module.state_dict().items()}
    ours.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    out, (h, c) = ours(x)
    t_out, (t_h, t_c) = module(torch.tensor(x))
    assert out.shape == tuple(t_out.shape) and h.shape == tuple(t_h.shape)
    np.testing.assert_allclose(out, t_out.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(c, t_c.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (True, 2)])
def test_batch_of_one_matches_torch(bidirectional, layers):
    """Batch 1 in float32 runs nplstm._batchmajor's matrix-vector loop under the numba backend: same
    numbers as torch."""
    torch.manual_seed(3)
    module = torch.nn.LSTM(4, 6, layers, bidirectional=bidirectional)
    ours = nplstm.LSTM(4, 6, layers, bidirectional=bidirectional)
    ours.load_state_dict({k: v.detach().numpy() for k, v in module.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((11, 1, 4)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    out_t, (h_t, c_t) = module(xt)
    G = np.random.default_rng(1).standard_normal(out_t.shape).astype(np.float32)
    (out_t * torch.tensor(G)).sum().backward()
    np.testing.assert_allclose(ours(x)[0], out_t.detach().numpy(), atol=1e-5)   # inference
    out, (h, c), cache = ours.forward(x, train=True)
    dx, _, grads = ours.backward(G, cache)
    np.testing.assert_allclose(out, out_t.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(c, c_t.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-5)
    for k, p in module.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), atol=1e-4, err_msg=k)
