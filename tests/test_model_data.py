"""Embedding/Linear/CharModel gradients, TBPTT carry, data loading and checkpoints."""
import numpy as np
import pytest

from nplstm import checkpoint as ckpt
from nplstm.data import DataError, LineBatches, StreamBatches, Vocab, load_corpus, read_text
from nplstm.gradcheck import gradcheck
from nplstm.layers import Embedding, Linear
from nplstm.losses import softmax_cross_entropy
from nplstm.model import CharModel, ModelConfig, sample


def test_embedding_and_linear_gradcheck():
    rng = np.random.default_rng(0)
    emb = Embedding(7, 3, dtype="float64", seed=0)
    lin = Linear(3, 5, dtype="float64", seed=1)
    idx = rng.integers(0, 7, (4, 6))
    idx[0, :3] = 2                                        # repeated ids must accumulate
    G = rng.standard_normal((4, 6, 5))

    def loss():
        return float(np.sum(G * lin.forward(emb.forward(idx)[0])[0]))

    e, ec = emb.forward(idx)
    y, lc = lin.forward(e)
    de, g_lin = lin.backward(G, lc)
    g_emb = emb.backward(de, ec)
    report = gradcheck(loss, {"emb": emb.params["weight"], "W": lin.params["weight"], "b": lin.params["bias"]},
                       {"emb": g_emb["weight"], "W": g_lin["weight"], "b": g_lin["bias"]})
    assert report.ok, report


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_char_model_gradcheck_with_lengths(cell):
    model = CharModel(ModelConfig(vocab_size=6, embed=3, hidden=4, layers=2, dtype="float64", cell=cell), seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 6, (5, 3)), rng.integers(0, 6, (5, 3))
    lengths = np.array([5, 2, 4])
    mask = np.arange(5)[:, None] < lengths
    loss = lambda: softmax_cross_entropy(model.forward(x, lengths=lengths)[0], y, mask)[0]
    logits, _, cache = model.forward(x, lengths=lengths, train=True)
    grads = model.backward(softmax_cross_entropy(logits, y, mask)[1], cache)
    assert set(grads) == set(model.params)
    report = gradcheck(loss, model.params, grads)
    assert report.ok, report


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_tbptt_state_carries_across_chunks(cell):
    """Two chunks with the carried state give the logits of one long unrolled sequence."""
    model = CharModel(ModelConfig(vocab_size=5, embed=3, hidden=4, layers=2, dtype="float64", cell=cell), seed=0)
    ids = np.random.default_rng(2).integers(0, 5, 2 * 2 * 7 + 1)
    batches = StreamBatches(ids, batch_size=2, seq_len=7)
    (x0, y0), (x1, _) = batches.get(0), batches.get(1)
    np.testing.assert_array_equal(x1[0], y0[-1])          # chunk 1 continues chunk 0, row by row
    long_logits, _, _ = model.forward(np.concatenate([x0, x1]))
    l0, state, _ = model.forward(x0)
    l1, _, _ = model.forward(x1, state)
    np.testing.assert_allclose(np.concatenate([l0, l1]), long_logits, atol=1e-13)
    assert batches.chunk_index(2) == 0                    # a new pass starts afterwards


def test_line_batches_are_deterministic_and_masked():
    vocab = Vocab.from_text("abc\nxyz\n")
    lines = ["ab", "c", "abc", "ba", "cab"]
    batches = LineBatches(lines, vocab, batch_size=2, seed=3)
    x, y, lengths, mask = batches.get(4)
    x2, *_ = LineBatches(lines, vocab, batch_size=2, seed=3).get(4)
    np.testing.assert_array_equal(x, x2)
    for b, n in enumerate(lengths):
        assert vocab.decode(x[:n, b])[0] == "\n" and vocab.decode(y[:n, b])[-1] == "\n"
        assert vocab.decode(x[1:n, b]) == vocab.decode(y[:n - 1, b])
    assert mask.sum() == lengths.sum()


def test_vocab_is_sorted_and_round_trips():
    v = Vocab.from_text("hello world\n")
    assert list(v.chars) == sorted(set("hello world\n"))
    assert v.decode(v.encode("world")) == "world"
    with pytest.raises(DataError, match="not in the vocabulary: 'iqtu'"):
        v.encode("quiet")


def test_bundled_corpora():
    assert load_corpus("dinos").splitlines()[0] == "Aachenosaurus"
    assert len(load_corpus("shakespeare")) > 1_000_000
    with pytest.raises(DataError, match="dinos, shakespeare"):
        load_corpus("wiki")


def test_bad_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("first line\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"0xe9 at offset 14 \(line 2, column 4\)"):
        read_text(tmp_path / "latin1.txt")
    with pytest.raises(DataError, match="too short for one batch: 50 characters, need at least 257"):
        StreamBatches(np.zeros(50, int), batch_size=4, seq_len=64)


def test_sampling_is_deterministic_and_stops_at_newline():
    vocab = Vocab.from_text("abcdef\n")
    model = CharModel(ModelConfig(vocab_size=len(vocab), embed=3, hidden=8), seed=0)
    a = sample(model, vocab, "ab", 50, seed=5, stop_at=None)
    assert a == sample(model, vocab, "ab", 50, seed=5, stop_at=None) and len(a) == 50
    assert a != sample(model, vocab, "ab", 50, seed=6, stop_at=None)
    assert "\n" not in sample(model, vocab, "\n", 200, seed=1, stop_at="\n")
    greedy = sample(model, vocab, "a", 20, top_k=1, seed=1, stop_at=None)
    assert greedy == sample(model, vocab, "a", 20, top_k=1, seed=99, stop_at=None)


def test_checkpoint_round_trip_and_damage(tmp_path):
    pytest.importorskip("safetensors")
    arrays = {"model.w": np.arange(6, dtype=np.float32).reshape(2, 3), "optim.m": np.ones(3)}
    path = tmp_path / ckpt.FILENAME
    ckpt.save(path, arrays, {"step": 7})
    loaded, meta = ckpt.load(tmp_path)                    # a folder means its checkpoint
    assert meta["step"] == 7 and meta["format_version"] == ckpt.FORMAT_VERSION
    np.testing.assert_array_equal(loaded["model.w"], arrays["model.w"])
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF                                       # flip a bit in the last array
    (tmp_path / "flipped.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="checksum"):
        ckpt.load(tmp_path / "flipped.safetensors")
    (tmp_path / "torn.safetensors").write_bytes(path.read_bytes()[:40])
    with pytest.raises(ckpt.CheckpointError, match="not a readable"):
        ckpt.load(tmp_path / "torn.safetensors")
    ckpt.save(tmp_path / "v0.safetensors", arrays, {})
    raw = (tmp_path / "v0.safetensors").read_bytes().replace(b'\\"format_version\\": 1', b'\\"format_version\\": 9')
    (tmp_path / "v9.safetensors").write_bytes(raw)
    with pytest.raises(ckpt.CheckpointError, match="format version 9"):
        ckpt.load(tmp_path / "v9.safetensors")
    with pytest.raises(ckpt.CheckpointError, match="never unpickles"):
        ckpt.load(tmp_path / "model.pt")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.load(tmp_path / "nothing.safetensors")
    assert not list(tmp_path.glob(".*tmp"))               # no temp files left behind
