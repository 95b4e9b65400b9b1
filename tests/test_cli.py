import shutil
import subprocess

import pytest

from cnnkit.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    assert "backend active:" in capsys.readouterr().out


def test_console_script_installed(tmp_path):
    out = subprocess.run([shutil.which("cnnkit"), "info"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "openmp:             yes" in out.stdout


def test_unknown_command_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err
