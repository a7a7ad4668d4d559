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


@pytest.mark.slow
def test_bench_study_without_the_one_process_baseline_prints_two_rows() -> None:
    proc = _run(str(BENCH / "bench_study.py"), "--quick", "--no-one-process")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and " s | " in ln]
    assert len(rows) == 2 and rows[0].startswith("| lrlab fleets"), proc.stdout
    assert "single-thread processes side by side" in rows[1] and "one process" not in proc.stdout


def test_bench_study_rejects_bad_arguments() -> None:
    proc = _run(str(BENCH / "bench_study.py"), "--repeats", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench_study: --repeats must be >= 1, got 0"


@pytest.mark.slow
def test_profile_fleet_prints_the_phase_table() -> None:
    proc = _run(str(BENCH / "profile_fleet.py"), "--k", "2", "--epochs", "1", "--repeats", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {ln.split(" | ")[0].strip("| *"): ln for ln in proc.stdout.splitlines() if ln.startswith("| ")}
    for phase in ("backward", "forward", "lr application", "inter-process traffic (epoch records through a pipe)",
                  "fleet total"):
        assert phase in rows, proc.stdout
    shares = [float(m) for m in re.findall(r"\| ([0-9.]+) % \|", proc.stdout)]
    assert sum(shares[:-1]) == pytest.approx(100, abs=1.0)  # the phases add up to the total


@pytest.mark.slow
def test_profile_fleet_sweep_fits_fixed_and_per_trial_costs() -> None:
    proc = _run(str(BENCH / "profile_fleet.py"), "--sweep", "1", "3", "--epochs", "1", "--repeats", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if re.match(r"\| \d+ \|", ln)]
    assert [int(r.split("|")[1]) for r in rows] == [1, 3]
    per_trial = [float(r.split("|")[2]) for r in rows]
    k = [1, 3]
    fit = re.search(r"a fleet step costs (-?[0-9]+) us \+ (-?[0-9]+) us per trial", proc.stdout)
    assert fit is not None, proc.stdout
    fixed, marginal = float(fit.group(1)), float(fit.group(2))
    for kk, p in zip(k, per_trial):  # two sizes: the line goes through both points (printed rounded)
        assert (fixed + kk * marginal) / kk == pytest.approx(p, abs=2.0)
    shares = [float(s) for s in re.findall(r"\| ([0-9]+) % \|", proc.stdout)]
    assert len(shares) == 2 and all(0 < s < 100 for s in shares)


def test_profile_fleet_sweep_rejects_one_size() -> None:
    proc = _run(str(BENCH / "profile_fleet.py"), "--sweep", "4", "4")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "profile_fleet: --sweep needs at least two different fleet sizes"


@pytest.mark.slow
def test_scaling_writes_the_figure(tmp_path: Path) -> None:
    out = tmp_path / "scaling.png"
    proc = _run(str(BENCH / "scaling.py"), "--ks", "1", "2", "--widths", "8", "--width-k", "2", "--epochs", "1",
                "--repeats", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 2 |" in proc.stdout and "| 8 |" in proc.stdout


@pytest.mark.slow
def test_bench_demo_quick_times_the_default_study_against_its_budget() -> None:
    proc = _run(str(BENCH / "bench_demo.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "default study (quick): 120 tuning + 72 final trials, 192 trained, 0 reused" in proc.stdout
    (row,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("| lrlab study")]
    wall, cpu = (float(v) for v in re.findall(r"\| ([0-9.]+) s", row))
    share = float(re.search(r"\| ([0-9.]+) of 300 s", row).group(1))  # type: ignore[union-attr]
    assert wall > 0 and cpu > 0 and share == pytest.approx(wall / 300, abs=0.01)


@pytest.mark.slow
def test_bench_fleet_vmap_quick_prints_both_models() -> None:
    proc = _run(str(BENCH / "bench_fleet_vmap.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 Adam trials, 1 epoch of 4 steps (batch 100), MNIST-1D subset 400" in proc.stdout
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and " s | " in ln]
    assert [r.split(" | ")[0] for r in rows] == ["| plain CNN", "| CNN + BatchNorm + dropout"], proc.stdout
    assert "| fleet: vmap, up to 24" in rows[0]
    assert "| fleet: vmap (per-trial BatchNorm statistics, per-trial dropout streams), up to 24" in rows[1]
    for row in rows:  # the speed-up is the ratio of the two measured times
        fleet, alone = (float(v) for v in re.findall(r"\| ([0-9.]+) s", row))
        ratio = float(re.search(r"\| ([0-9.]+)x", row).group(1))  # type: ignore[union-attr]
        # the times are printed to 0.01 s (quick runs take a few hundredths), the ratio from the raw times
        assert fleet > 0 and alone > 0
        assert (alone - 0.005) / (fleet + 0.005) - 0.005 <= ratio <= (alone + 0.005) / (fleet - 0.005) + 0.005


def test_bench_fleet_vmap_rejects_bad_arguments() -> None:
    proc = _run(str(BENCH / "bench_fleet_vmap.py"), "--trials", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench_fleet_vmap: --trials must be >= 1, got 0"


@pytest.mark.slow
def test_bench_checkpoint_quick_prints_the_cost_table() -> None:
    proc = _run(str(BENCH / "bench_checkpoint.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "fleet of 4 MNIST-1D CNN trials (adam), 2 epochs" in out
    cost, share = re.search(r"\| checkpoint phase \(4 files\) \| ([0-9.]+) ms = ([0-9.]+) % of an epoch \|", out).groups()  # type: ignore[union-attr]
    epoch = float(re.search(r"\| epoch without checkpoints \| ([0-9.]+) ms \|", out).group(1))  # type: ignore[union-attr]
    assert float(cost) > 0 and float(share) == pytest.approx(100 * float(cost) / epoch, rel=0.05, abs=0.02)
    assert re.search(r"\| one trial's checkpoint file \| [0-9.]+ KiB \|", out), out


def test_bench_checkpoint_rejects_bad_arguments() -> None:
    proc = _run(str(BENCH / "bench_checkpoint.py"), "--epochs", "1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench_checkpoint: --epochs must be >= 2 (the last epoch saves nothing), got 1"


@pytest.mark.slow
def test_bench_demo_live_compares_live_trials_on_and_off() -> None:
    proc = _run(str(BENCH / "bench_demo.py"), "--quick", "--live", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if re.match(r"\| [12] \|", ln)]
    assert [r.split("|")[2].strip() for r in rows] == ["on", "off"], proc.stdout
    walls = [float(r.split("|")[3].strip().removesuffix(" s")) for r in rows]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("live on / off over 1 pairs")]
    ratio = float(re.search(r"wall ([0-9.]+),", line).group(1))  # type: ignore[union-attr]
    # the walls are printed to 0.01 s and the ratio to 0.001: allow exactly that rounding
    slack = 0.005 * (1 / walls[1] + walls[0] / walls[1] ** 2) + 0.0005
    assert ratio == pytest.approx(walls[0] / walls[1], abs=slack)


def test_bench_live_quick_replays_a_fleet_live_and_finish_only() -> None:
    proc = _run(str(BENCH / "bench_live.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln.split("|") for ln in proc.stdout.splitlines() if re.match(r"\| [12] \|", ln)]
    assert [r[2].strip() for r in rows] == ["on", "off"], proc.stdout
    cpu = [float(r[3].strip().removesuffix(" s")) for r in rows]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("live on / off: CPU ")]
    assert float(line.split()[5].rstrip(",")) == pytest.approx(cpu[0] / cpu[1], abs=0.1)


@pytest.mark.slow
def test_bench_pool_quick_times_fresh_pools_against_a_kept_one() -> None:
    proc = _run(str(BENCH / "bench_pool.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in proc.stdout.splitlines() if ln.startswith("| ")}
    fresh = [float(v) for v in re.findall(r"\| ([0-9.]+) s", rows["a fresh pool per call"])]
    kept = [float(v) for v in re.findall(r"\| ([0-9.]+) s", rows["one pool kept (keep_workers)"])]
    assert len(fresh) == len(kept) == 2 and min(fresh + kept) > 0
    ratios = [float(v) for v in re.findall(r"\| ([0-9.]+)x", rows["kept pool faster by"])]
    assert ratios[0] == pytest.approx(fresh[0] / kept[0], rel=0.05, abs=0.02)
    assert ratios[1] == pytest.approx(fresh[1] / kept[1], rel=0.05, abs=0.02)


def test_bench_pool_rejects_bad_arguments() -> None:
    proc = _run(str(BENCH / "bench_pool.py"), "--calls", "0")
    assert proc.returncode == 2 and proc.stderr.strip() == "bench_pool: --calls must be >= 1, got 0"


def test_bench_save_once_quick_prints_scan_and_lookup() -> None:
    proc = _run(str(BENCH / "bench_save_once.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln.split("|")[1:-1] for ln in proc.stdout.splitlines() if re.match(r"\| 50 \|", ln)]
    assert len(rows) == 1, proc.stdout
    cells = [c.strip() for c in rows[0]]
    for scan, look, ratio in (cells[1:4], cells[4:7]):  # measured, and the ratio follows from them
        a, b = float(scan.removesuffix(" ms")), float(look.removesuffix(" ms"))
        assert a > 0 and b > 0
        assert float(ratio.removesuffix("x")) == pytest.approx(a / b, rel=0.05, abs=0.02)


def test_bench_save_once_rejects_a_url_without_n() -> None:
    proc = _run(str(BENCH / "bench_save_once.py"), "--url", "sqlite:///x.db")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench_save_once: --url must hold {n}, got 'sqlite:///x.db'"


@pytest.mark.slow
def test_bench_ray_live_quick_times_relayed_against_not_relayed() -> None:
    pytest.importorskip("ray")
    proc = _run(str(BENCH / "bench_ray_live.py"), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| reports not") or ln.startswith("| each epoch")]
    assert len(rows) == 2 and "(8 reports)" in rows[1], proc.stdout  # 4 trials x 2 epochs, all relayed
    (off, r_off), (on, r_on) = ((float(a), float(b)) for a, b in
                                (re.findall(r"\| ([0-9.]+) s \| ([0-9.]+) \|", r)[0] for r in rows))
    assert r_off == 1.0 and min(off, on) > 0 and r_on == pytest.approx(on / off, rel=0.05, abs=0.01)
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("queue calls alone, per report:")]
    assert len(re.findall(r"[0-9.]+ µs", line)) == 3, line


def test_bench_ray_live_rejects_bad_arguments() -> None:
    proc = _run(str(BENCH / "bench_ray_live.py"), "--pairs", "0")
    assert proc.returncode == 2 and "--pairs must be >= 1, got 0" in proc.stderr
