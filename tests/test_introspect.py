"""Gate introspection: accessors against a hand-stepped cell, a planted interpretable cell, the pictures."""
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nplstm
from nplstm import introspect
from nplstm.data import Vocab
from nplstm.model import CharModel, ModelConfig

I, H, B, T = 3, 5, 4, 6


def sig(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_activations_equal_a_hand_stepped_cell(dtype):
    """float32 on one thread takes the engine's batch-major path where oneDNN is installed (its
    cache is laid out the other way round), float64 the generic loop."""
    lstm = nplstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype=dtype, seed=0)
    for v in lstm.params.values():
        v[...] = np.random.default_rng(v.size).uniform(-0.8, 0.8, v.shape)
    x = np.random.default_rng(1).standard_normal((T, B, I))
    lengths = np.array([6, 3, 1, 5])
    with threadpool_limits(1):
        _, _, cache = lstm.forward(x, lengths=lengths, train=True)
    acts = introspect.activations(lstm, cache)
    atol = 1e-13 if dtype == "float64" else 2e-6
    assert set(acts) == {"l0", "l0_reverse", "l1", "l1_reverse"}
    p = lstm.params
    for key, steps in (("l0", range(T)), ("l0_reverse", None)):
        sfx = "_" + key
        W, U, b = p["weight_ih" + sfx], p["weight_hh" + sfx], p["bias_ih" + sfx] + p["bias_hh" + sfx]
        for row, n in enumerate(lengths):
            h, c = np.zeros(H), np.zeros(H)
            for t in (range(n) if steps is not None else range(n - 1, -1, -1)):
                z = W @ x[t, row] + U @ h + b
                i, f, g, o = sig(z[:H]), sig(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sig(z[3 * H:])
                c = f * c + i * g
                h = o * np.tanh(c)
                for name, want in zip("ifgoch", (i, f, g, o, c, h)):
                    np.testing.assert_allclose(acts[key][name][t, row], want, atol=atol, err_msg=f"{key} {name}")
            assert np.all(acts[key]["c"][n:, row] == 0)   # past the length: zero


def planted_quote_model(text):
    """A char model whose cell 2 flips at every '"': its state is + inside quotes, - outside."""
    vocab = Vocab.from_text(text)
    V, Hd = len(vocab), 4
    model = CharModel(ModelConfig(vocab_size=V, embed=V, hidden=Hd, dtype="float64"), seed=0)
    model.embedding.params["weight"][...] = np.eye(V)    # one-hot embeddings
    q, u = vocab.chars.index('"'), 2
    p = model.recurrent.params
    for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        p[k][...] = np.random.default_rng(len(k)).uniform(-0.3, 0.3, p[k].shape)
    rows = {g: k * Hd + u for k, g in enumerate("ifgo")}  # torch's rows [i f g o] of unit u
    for g in "ifgo":
        p["weight_ih_l0"][rows[g]] = 0
        p["weight_hh_l0"][rows[g]] = 0
        p["bias_hh_l0"][rows[g]] = 0
    p["weight_ih_l0"][rows["i"], q], p["bias_ih_l0"][rows["i"]] = 20, -10     # write only at a quote
    p["weight_ih_l0"][rows["f"], q], p["bias_ih_l0"][rows["f"]] = -20, 10     # and forget only there
    p["weight_ih_l0"][rows["g"], q], p["weight_hh_l0"][rows["g"], u] = 2, -6  # new value: against the old one
    p["bias_ih_l0"][rows["o"]] = 10
    return model, vocab, u


def test_rank_cells_finds_a_planted_quote_cell():
    text = 'he said "go away" and then "come back now" but "no" was all she said to him'
    model, vocab, unit = planted_quote_model(text)
    _, _, (_, cache, _) = model.forward(vocab.encode(text)[:, None], train=True)
    acts = introspect.activations(model.recurrent, cache)
    ranking = introspect.rank_cells(acts, text)
    key, best, corr = ranking["inside quotes"][0]
    assert (key, best) == ("l0", unit) and corr > 0.9, ranking["inside quotes"]
    assert "inside brackets" not in ranking                # a feature the text never varies is left out


def test_saturation_counts():
    acts = {"l0": {g: np.array([[[0.05, 0.5, 0.95, 0.99]]]) for g in "ifo"}}
    assert introspect.saturation(acts)["l0"]["f"] == (0.25, 0.5)


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.options, self.external, self.stack = 0, [], []

    def handle_starttag(self, tag, attrs):
        self.options += tag == "option"
        self.external += [v for k, v in attrs if k in ("src", "href") and v and "://" in v]
        if tag not in ("meta", "br", "img", "input", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


def test_inspect_command_writes_png_and_html(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    text = tmp_path / "t.txt"
    text.write_text('he said "go (away)" and then\n"come back"\n' * 40)
    r = subprocess.run([sys.executable, "-m", "nplstm", "train", "--data", text, "--out", run, "--steps", "5",
                        "--hidden", "8", "--embed", "4", "--seq-len", "16", "--batch-size", "4", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "nplstm", "inspect", "--checkpoint", run, "--text",
                        'he said "go (away)"\nand', "--out", tmp_path / "insp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "inside quotes:" in r.stdout and "saturation" in r.stdout
    assert (tmp_path / "insp" / "inspect.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checker = _Checker()
    checker.feed((tmp_path / "insp" / "inspect.html").read_text(encoding="utf-8"))
    checker.close()
    assert checker.options == 8 and not checker.external and checker.stack == []
