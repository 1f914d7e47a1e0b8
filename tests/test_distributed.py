"""Data-parallel training over MPI: 2 ranks against 1 process, kill and resume, bad launches.

Skipped without mpi4py and mpiexec. Every launch is bounded by ``timeout``, so a hang fails
the test instead of stalling CI.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py")
pytest.importorskip("safetensors")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
if MPIEXEC is None:
    pytest.skip("no mpiexec", allow_module_level=True)

from nplstm import checkpoint as ckpt  # noqa: E402

pytestmark = pytest.mark.slow
RANK = [sys.executable, "-m", "mpi4py", "-m", "nplstm"]


def mpirun(n, *args, timeout=120):
    cmd = ["timeout", str(timeout), MPIEXEC, "-n", str(n), *RANK, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)


def single(*args):
    return subprocess.run([sys.executable, "-m", "nplstm", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
    path = tmp_path_factory.mktemp("data") / "words.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, 9)) for _ in range(200)), encoding="utf-8")
    return path


def assert_same_weights(a_dir, b_dir, atol):
    a, _ = ckpt.load(a_dir)
    b, _ = ckpt.load(b_dir)
    assert set(a) == set(b)
    for k in a:
        if k.startswith("model."):
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


@pytest.mark.parametrize("mode", ["lines", "stream"])
def test_two_ranks_equal_one_process(mode, tmp_path, text_file):
    data = ["--preset", "tiny"] if mode == "lines" else ["--data", text_file, "--seq-len", 12, "--hidden", 16]
    args = ["train", *data, "--batch-size", 6, "--steps", 6, "--dtype", "float64", "--quiet"]
    r2 = mpirun(2, *args, "--distributed", "--out", tmp_path / "two")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "weights bit-identical on all 2 ranks" in r2.stdout
    assert r2.stdout.count("done: step 6") == 1                     # only rank 0 logs
    r1 = single(*args, "--out", tmp_path / "one")
    assert r1.returncode == 0, r1.stderr
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-6)


def test_kill_and_resume_under_mpi(tmp_path, text_file):
    args = ["train", "--data", text_file, "--seq-len", 12, "--hidden", 16, "--layers", 2, "--dropout", 0.3,
            "--batch-size", 4, "--steps", 120, "--checkpoint-every", 3, "--eval-every", 1000,
            "--sample-every", 1000, "--quiet", "--distributed"]
    assert mpirun(2, *args, "--out", tmp_path / "full").returncode == 0
    run = tmp_path / "killed"
    proc = subprocess.Popen(["timeout", "120", MPIEXEC, "-n", "2", *RANK, *map(str, args), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / ckpt.FILENAME).exists() and ckpt.load(run)[1]["step"] >= 9:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)                  # the launcher and both ranks, at once
    proc.wait()
    assert 9 <= ckpt.load(run)[1]["step"] < 120
    r = mpirun(2, *args, "--out", run, "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_weights(tmp_path / "full", run, atol=0)
    r = single("train", "--out", run, "--resume", "--steps", 130, "--quiet")
    assert r.returncode != 0 and "same number" in r.stderr


def test_mismatched_ranks_fail_on_every_rank(tmp_path):
    base = ["train", "--preset", "tiny", "--steps", 2, "--quiet", "--distributed", "--out", tmp_path / "x"]
    cmd = ["timeout", "120", MPIEXEC, "-n", "1", *RANK, *map(str, base), "--lr", "0.01", ":",
           "-n", "1", *RANK, *map(str, base), "--lr", "0.02"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    assert r.returncode != 0
    assert r.stderr.count("MPI ranks [1] have a different configuration") == 2    # said by both ranks


def test_batch_must_divide_by_ranks(tmp_path):
    r = mpirun(2, "train", "--preset", "tiny", "--batch-size", 5, "--distributed", "--quiet", "--out", tmp_path / "x")
    assert r.returncode != 0 and "not divisible by the 2 MPI ranks" in r.stderr
