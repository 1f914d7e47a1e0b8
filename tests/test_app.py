"""The nplstm app through its real command line (subprocesses): train, sample, errors, kill and resume."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("safetensors")
from nplstm import checkpoint as ckpt  # noqa: E402


def nplstm(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nplstm.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "quickly"]
    text = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(300)) + "\n"
    path = tmp_path_factory.mktemp("data") / "words.txt"
    path.write_text(text, encoding="utf-8")
    return path


SMALL = ["--hidden", 16, "--embed", 8, "--seq-len", 16, "--batch-size", 4, "--quiet"]


def test_train_writes_checkpoint_that_sample_reads(tmp_path, text_file):
    run = tmp_path / "run"
    r = nplstm("train", "--data", text_file, "--out", run, "--steps", 30, "--eval-every", 10, *SMALL)
    assert r.returncode == 0, r.stderr
    assert "val" in r.stdout and "sample:" in r.stdout
    assert (run / ckpt.FILENAME).is_file()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,train_loss,val_loss") and len(rows) == 31
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s1 = nplstm("sample", "--checkpoint", run, "--length", 40, "--seed", 1, "--prime", "the ")
    s2 = nplstm("sample", "--checkpoint", run / ckpt.FILENAME, "--length", 40, "--seed", 1, "--prime", "the ")
    s3 = nplstm("sample", "--checkpoint", run, "--length", 40, "--seed", 2, "--prime", "the ")
    assert s1.returncode == 0, s1.stderr
    assert s1.stdout == s2.stdout != s3.stdout
    assert s1.stdout.startswith("the ") and len(s1.stdout.rstrip("\n")) == 44


def test_default_corpus_line_mode_samples_names(tmp_path):
    run = tmp_path / "dinos"
    r = nplstm("train", "--preset", "tiny", "--out", run, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "vocab 27" in r.stdout and "lines mode" in r.stdout
    s = nplstm("sample", "--checkpoint", run, "--num", 3, "--seed", 4)
    names = s.stdout.splitlines()
    assert len(names) == 3 and all(n and n == n.lower() for n in names)


@pytest.mark.parametrize("args,words", [
    (("train", "--data", "/nonexistent/words.txt"), ["not found"]),
    (("train", "--preset", "tiny", "--seq-len", 500, "--corpus", "shakespeare", "--batch-size", 5000), ["too short"]),
    (("sample", "--checkpoint", "/nonexistent"), ["no checkpoint"]),
    (("sample", "--checkpoint", "model.pth"), ["never unpickles"]),
])
def test_cli_errors_are_messages_not_tracebacks(args, words, tmp_path):
    r = nplstm(*args, "--out", tmp_path / "x") if args[0] == "train" else nplstm(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr


def test_corrupted_checkpoint_is_refused(tmp_path, text_file):
    run = tmp_path / "run"
    assert nplstm("train", "--data", text_file, "--out", run, "--steps", 5, *SMALL).returncode == 0
    raw = bytearray((run / ckpt.FILENAME).read_bytes())
    raw[-3] ^= 0x40
    (run / ckpt.FILENAME).write_bytes(bytes(raw))
    r = nplstm("sample", "--checkpoint", run)
    assert r.returncode == 1 and "corrupt" in r.stderr and "Traceback" not in r.stderr


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, text_file):
    """Stream mode with carried state, 2 layers and dropout: everything a resume must restore."""
    common = ["train", "--data", text_file, "--layers", 2, "--dropout", 0.2, "--steps", 150,
              "--checkpoint-every", 3, "--eval-every", 50, "--sample-every", 1000, "--seed", 3, *SMALL]
    full = tmp_path / "full"
    assert nplstm(*common, "--out", full).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nplstm.cli", *map(str, common), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / ckpt.FILENAME).exists() and ckpt.load(killed)[1]["step"] >= 12:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    step_at_kill = ckpt.load(killed)[1]["step"]
    assert 12 <= step_at_kill < 150

    r = nplstm("train", "--out", killed, "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    a, meta_a = ckpt.load(full)
    b, meta_b = ckpt.load(killed)
    assert meta_a["step"] == meta_b["step"] == 150
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert [h["train_loss"] for h in meta_a["history"]] == [h["train_loss"] for h in meta_b["history"]]


def test_divergence_stops_with_a_message(tmp_path):
    r = nplstm("train", "--preset", "tiny", "--out", tmp_path / "boom", "--optimizer", "sgd", "--lr", 1e5,
               "--clip", 0, "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert any(w in r.stderr for w in ("exploded", "NaN", "nan", "inf")), r.stderr


def test_export_command(tmp_path):
    pytest.importorskip("onnxruntime")
    run = tmp_path / "run"
    assert nplstm("train", "--preset", "tiny", "--steps", 3, "--out", run, "--quiet").returncode == 0
    for target in ("m.onnx", "m.safetensors"):
        r = nplstm("export", "--checkpoint", run, "--to", tmp_path / target)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / target).stat().st_size > 1000
    r = nplstm("export", "--checkpoint", run, "--to", tmp_path / "m.pt")
    assert r.returncode == 2 and ".onnx or .safetensors" in r.stderr


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_train_and_sample(cell, tmp_path, text_file):
    run = tmp_path / cell
    r = nplstm("train", "--data", text_file, "--out", run, "--steps", 12, "--cell", cell, *SMALL)
    assert r.returncode == 0, r.stderr
    assert any(k.startswith(f"model.{cell}.weight_hh_l0") for k in ckpt.load(run)[0])
    s = nplstm("sample", "--checkpoint", run, "--length", 20, "--prime", "the ")
    assert s.returncode == 0 and len(s.stdout.rstrip("\n")) == 24
    r = nplstm("train", "--out", run, "--resume", "--steps", 15, "--quiet")
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stderr
