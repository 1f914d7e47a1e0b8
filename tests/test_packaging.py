"""What a user's ``pip install`` gets: the wheel built from this tree, as pip builds it (isolated,
with the build backend pyproject.toml asks for), then installed apart from the source tree."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import nplstm
from nplstm import data

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(path of the wheel, pip's verbose build log); built from a copy, so the tree gets no build/ folder."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tree / "dist"), str(tree)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (path,) = (tree / "dist").glob("nplstm-*.whl")
    return path, r.stdout + r.stderr


def test_the_wheel_ships_the_corpora_the_license_and_the_command(wheel):
    path, _ = wheel
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        for file in data.CORPORA.values():                # users have no ../shared: the app trains on these
            assert z.read(f"nplstm/corpora/{file}") == (ROOT / "src/nplstm/corpora" / file).read_bytes()
        info = f"nplstm-{nplstm.__version__}.dist-info"
        metadata = z.read(f"{info}/METADATA").decode()
        assert "License-Expression: MIT" in metadata.splitlines()
        assert f"{info}/licenses/LICENSE" in names
        assert "nplstm = nplstm.cli:main" in z.read(f"{info}/entry_points.txt").decode()


def test_the_build_raises_no_deprecation_warning(wheel):
    """setuptools said a license table would stop building on 2027-02-18; any such notice fails here."""
    _, log = wheel
    assert "BuildBackendWarning" not in log and "SetuptoolsDeprecationWarning" not in log, \
        [line for line in log.splitlines() if "Warning" in line or "deprecat" in line.lower()]


def test_the_installed_wheel_loads_its_corpora_away_from_the_tree(wheel, tmp_path):
    path, _ = wheel
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(path)],
                   check=True, capture_output=True, timeout=300)
    code = ("import nplstm, nplstm.data as d; print(nplstm.__file__); "
            "print(len(d.load_corpus('dinos').splitlines()), len(d.load_corpus('shakespeare')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    where, sizes = r.stdout.splitlines()
    assert Path(where).is_relative_to(site)               # the installed copy, not this tree's
    tree = ROOT / "src/nplstm/corpora"
    assert sizes == (f"{len((tree / 'dinos.txt').read_text(encoding='utf-8').splitlines())} "
                     f"{len((tree / 'tinyshakespeare.txt').read_text(encoding='utf-8'))}")
