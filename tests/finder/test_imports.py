"""``import lrlab.finder`` pulls in NumPy only: torch, Keras, JAX and matplotlib load on first use."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_finder_imports_no_framework():
    code = (
        "import sys, lrlab.finder; "
        "print(sorted(m for m in ('torch', 'keras', 'jax', 'matplotlib', 'typer', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
