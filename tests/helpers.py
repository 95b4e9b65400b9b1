"""Shared test helpers, imported as a module (`from helpers import ...`): the tolerance each dtype
allows, where the checkout and the real data are, and Python in a process of its own."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

ROOT = Path(__file__).resolve().parents[1]
"""The checkout: the folder holding tests/ and README.md."""

DATA_DIR = Path(os.environ.get("CNNKIT_DATA_DIR") or ROOT.parent / "shared" / "data")
"""The real datasets (mnist/, cifar-10-subset/, ...): $CNNKIT_DATA_DIR, else ../shared/data beside the checkout."""


def run_python(code, *args, env=None, check=True):
    """`python -c code args` in an empty folder, so that it imports the installed cnnkit, not the
    checkout's source tree (which has no compiled kernels under CI's non-editable install)."""
    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                              check=check, cwd=folder)
