import subprocess
import sys

from nplstm.cli import main


def test_help_runs(capsys):
    assert main([]) == 0
    assert "gradcheck" in capsys.readouterr().out


def test_gradcheck_command_reports_every_tensor(capsys):
    assert main(["gradcheck", "--n-a", "4", "--T", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("Wf", "bo", "Wy", "x", "a0", "c0"):
        assert f"\n{name} " in out
    assert "ok" in out


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "nplstm.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "nplstm" in result.stdout
