"""--executor ray: fleets as Ray tasks on a local Ray instance started here (no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CFG = {"schedules": ["constant", "linear"], "optimizers": ["sgd", "adam"], "seeds": 1, "epochs": 2,
       "tune": "none", "workers": 0}


@pytest.fixture(scope="module")
def local_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as e:
        pytest.skip(f"Ray is not installed: {e} (pip install 'lrlab[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # Ray's own deprecation warnings
def test_ray_executor_stores_the_numbers_a_local_run_stores(local_ray: Any, tmp_path: Path) -> None:
    from lrlab.study.executors import ray_executor
    from lrlab.study.runner import run_study

    local = run_study({**CFG, "out": str(tmp_path / "local")}, progress=False, quiet=True, report=False)
    remote = run_study({**CFG, "out": str(tmp_path / "ray")}, progress=False, quiet=True, report=False,
                       executor=ray_executor())
    assert remote.ran == 4 and [r.key for r in remote.records] == [r.key for r in local.records]
    for a, b in zip(local.records, remote.records):  # float32 results do not depend on the fleet
        np.testing.assert_array_equal(a.curves["val_loss"], b.curves["val_loss"])
        assert a.final == b.final


def test_an_unreachable_ray_cluster_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([sys.executable, "-c", "from lrlab.cli import main; main()", "study", "--executor", "ray",
                        "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert lines[-1].startswith("lrlab: error: cannot reach the Ray cluster at 127.0.0.1:9"), p.stderr[-2000:]
