"""benchmarks/results.py, which makes the README's results tables: a row per seed and their mean."""
import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def test_seeds_give_a_row_each_and_their_mean(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results.py"), "--tables", "builtin",
                          "--num-train", "1500", "--seeds", "0,1"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=600, check=True)
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in run.stdout.splitlines()
            if line.startswith("| convnet")]
    assert [row[2] for row in rows] == ["0", "1", ""], run.stdout
    assert rows[0][1].startswith("cnnkit train's recipe: convnet width 16") and rows[1][1] == "the same"
    accuracies = [float(row[3].rstrip("%")) for row in rows]
    assert all(0 < accuracy <= 100 for accuracy in accuracies)
    assert rows[2][1] == "mean of seeds 0, 1" and accuracies[2] == pytest.approx(sum(accuracies[:2]) / 2, abs=0.006)
    assert "(500 training, 1000 validation" in run.stdout
