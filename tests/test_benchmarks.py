"""The benchmarks cannot rot: each runs as a real process in its quick mode and prints its table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_bench_study_quick_prints_the_three_way_table() -> None:
    proc = _run(str(BENCH / "bench_study.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "6 trials (2 (schedule, optimizer) cells x 3 seeds)" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and " s | " in ln]
    assert len(rows) == 3, out
    assert rows[0].startswith("| lrlab fleets") and "single-thread processes side by side" in rows[1]
    assert "one process" in rows[2]
    for row in rows:  # wall and CPU seconds are measured (positive), the ratios follow from them
        wall, cpu = (float(v) for v in re.findall(r"\| ([0-9.]+) s", row))
        assert wall > 0 and cpu > 0
    fleet_wall = float(re.findall(r"\| ([0-9.]+) s", rows[0])[0])
    peer_wall = float(re.findall(r"\| ([0-9.]+) s", rows[1])[0])
    ratio = float(re.search(r"\| ([0-9.]+)x", rows[1]).group(1))  # type: ignore[union-attr]
    assert ratio == pytest.approx(peer_wall / fleet_wall, rel=0.05, abs=0.02)


def test_bench_study_rejects_bad_arguments() -> None:
    proc = _run(str(BENCH / "bench_study.py"), "--repeats", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench_study: --repeats must be >= 1, got 0"
