"""Statistics of a study against hand-computed values (t distribution with 2 df in closed form)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrlab.study.stats import (
    claim_verdict,
    curve_band,
    optimizer_effects,
    paired_comparison,
    summarize,
)
from lrlab.study.storage import CURVE_FIELDS, TrialRecord


def rec(schedule, opt, seed, acc, loss=0.5, *, diverged=False, curve_acc=None, epochs=3):
    curve_acc = list(curve_acc) if curve_acc is not None else [acc - 0.02, acc + 0.01, acc][:epochs]
    n = len(curve_acc)
    curves = {k: np.zeros(n) for k in CURVE_FIELDS}
    curves["epoch"] = np.arange(1, n + 1, dtype=float)
    curves["val_acc"] = np.array(curve_acc, dtype=float)  # the best epoch is chosen on validation
    curves["test_acc"] = np.full(n, math.nan)
    curves["test_acc"][-1] = acc
    curves["test_loss"] = np.full(n, loss)
    final = {"test_acc": math.nan if diverged else acc, "test_loss": math.nan if diverged else loss}
    return TrialRecord(
        key=f"{schedule}/{opt}/s{seed}@x", trial_id=f"{schedule}/{opt}/s{seed}", schedule_name=schedule,
        schedule_text="constant(1.0)", schedule_config={"name": "constant", "value": 0.1, "steps": None},
        optimizer=opt, optimizer_kwargs={}, seed=seed, peak_lr=0.1, epochs=epochs, curves=curves, final=final,
        diverged=diverged, diverged_epoch=n if diverged else None,
    )


def t2_two_sided_p(t):
    """Two-sided p of Student's t with 2 degrees of freedom: 1 - |t| / sqrt(t^2 + 2)."""
    return 1.0 - abs(t) / math.sqrt(t * t + 2.0)


def test_paired_comparison_hand_computed():
    comp = paired_comparison([0.90, 0.92, 0.91], [0.88, 0.905, 0.895])
    # differences in points: 2.0, 1.5, 1.5 -> mean 5/3, sd sqrt(1/12), se 1/6, t = 10
    assert comp.n == 3
    assert comp.mean == pytest.approx(5 / 3, abs=1e-9)
    assert comp.sd == pytest.approx(math.sqrt(1 / 12), abs=1e-9)
    assert comp.t == pytest.approx(10.0, rel=1e-6)
    assert comp.p_t == pytest.approx(t2_two_sided_p(10.0), rel=1e-6)
    q = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # t quantile with 2 df: (2p - 1) / sqrt(2p(1 - p)), p = 0.975
    assert comp.ci[0] == pytest.approx(5 / 3 - q / 6, abs=1e-6)
    assert comp.ci[1] == pytest.approx(5 / 3 + q / 6, abs=1e-6)
    assert comp.p_sign == 0.25  # only the all-plus and all-minus patterns reach |sum| = 5
    assert comp.significant()


def test_paired_comparison_mixed_signs_not_significant():
    comp = paired_comparison([0.91, 0.89, 0.92], [0.90, 0.90, 0.90])
    # d = 1, -1, 2 -> mean 2/3, sd sqrt(7/3), t = (2/3) / sqrt(7/9)
    t = (2 / 3) / math.sqrt(7 / 9)
    assert comp.t == pytest.approx(t, rel=1e-6)
    assert comp.p_t == pytest.approx(t2_two_sided_p(t), rel=1e-6)
    # sign patterns with |sum| >= 2: (+,+,+) 4, (-,-,-) -4, (+,-,+)... enumerate by hand:
    # sums: +1-1+2=2, +1+1+2=4, -1-1+2=0, -1+1+2=2, and negatives -> |.|>=2 in 6 of 8
    assert comp.p_sign == pytest.approx(6 / 8)
    assert not comp.significant()


def test_paired_comparison_drops_nan_pairs_and_degenerate_cases():
    comp = paired_comparison([0.9, math.nan, 0.95], [0.8, 0.8, math.nan])
    assert comp.n == 1 and comp.mean == pytest.approx(10.0) and math.isnan(comp.p_t)
    same = paired_comparison([0.9, 0.8, 0.7], [0.88, 0.78, 0.68])
    assert same.p_t == 0.0 and same.t == math.inf  # identical differences: no noise at all
    zero = paired_comparison([0.9, 0.8], [0.9, 0.8])
    assert zero.p_t == 1.0 and not zero.significant()
    assert paired_comparison([], []).n == 0
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([0.1], [0.1, 0.2])


def test_two_seeds_never_marked_significant():
    comp = paired_comparison([0.95, 0.96], [0.90, 0.905])
    assert comp.p_t < 0.2 and not comp.significant()  # marks need at least 3 pairs


def _grid():
    base = {"sgd": [0.90, 0.91, 0.89], "adam": [0.93, 0.92, 0.94]}
    lin = {"sgd": [0.93, 0.935, 0.92], "adam": [0.935, 0.925, 0.94]}
    recs = []
    for opt in ("sgd", "adam"):
        for s in range(3):
            recs.append(rec("constant", opt, s, base[opt][s]))
            recs.append(rec("linear", opt, s, lin[opt][s], loss=0.3))
            recs.append(rec("bad", opt, s, 0.5, diverged=(s == 0 and opt == "sgd")))
    return recs


def test_summarize_cells():
    cells = summarize(_grid(), ["constant", "linear", "bad"], ["sgd", "adam"])
    assert [(c.optimizer, c.schedule) for c in cells] == [
        ("sgd", "constant"), ("sgd", "linear"), ("sgd", "bad"),
        ("adam", "constant"), ("adam", "linear"), ("adam", "bad"),
    ]
    c = cells[1]
    assert c.acc_mean == pytest.approx(100 * (0.93 + 0.935 + 0.92) / 3)
    assert c.acc_sd == pytest.approx(100 * np.std([0.93, 0.935, 0.92], ddof=1))
    assert c.loss_mean == pytest.approx(0.3)
    assert c.best_acc_mean == pytest.approx(100 * np.mean([0.94, 0.945, 0.93]))  # acc + 0.01 at epoch 2
    assert c.vs_baseline.mean == pytest.approx(100 * np.mean([0.03, 0.025, 0.03]))
    assert cells[0].vs_baseline is None
    bad = cells[2]
    assert bad.diverged == 1 and bad.n == 3 and bad.vs_baseline.n == 2  # diverged seed dropped from the pairs
    assert bad.acc_mean == pytest.approx(50.0)


def test_optimizer_effects_and_claim():
    recs = _grid()
    cells = summarize(recs, ["constant", "linear", "bad"], ["sgd", "adam"])
    eff = {e.optimizer: e for e in optimizer_effects(recs, cells)}
    assert eff["sgd"].best_schedule == "linear"
    assert eff["sgd"].best.mean == pytest.approx(100 * np.mean([0.03, 0.025, 0.03]))
    # average over non-baseline schedules per seed (diverged seed 0 of 'bad' left out of seed 0's mean)
    per_seed = [100 * (0.93 - 0.90), 100 * np.mean([0.935 - 0.91, 0.5 - 0.91]), 100 * np.mean([0.92 - 0.89, 0.5 - 0.89])]
    assert eff["sgd"].average_mean == pytest.approx(np.mean(per_seed))
    assert eff["sgd"].average_se == pytest.approx(np.std(per_seed, ddof=1) / math.sqrt(3))
    assert eff["adam"].spread == pytest.approx(100 * (np.mean([0.935, 0.925, 0.94]) - 0.5))
    v = claim_verdict(list(eff.values()))
    assert v is not None and v.startswith("Claim") and ("not resolved" in v or "supported" in v or "contradicted" in v)


def test_claim_verdict_directions():
    from lrlab.study.stats import OptimizerEffect

    def eff(o, m, se):
        return OptimizerEffect(o, 90.0, 0.5, "linear", None, m, se, 3.0)

    assert "supported" in claim_verdict([eff("sgd", 3.0, 0.3), eff("adam", 0.5, 0.3)])
    assert "contradicted" in claim_verdict([eff("sgd", 0.0, 0.3), eff("adam", 2.0, 0.3)])
    assert "not resolved" in claim_verdict([eff("sgd", 1.0, 0.6), eff("adam", 0.5, 0.6)])
    assert "not enough seeds" in claim_verdict([eff("sgd", 1.0, math.nan), eff("adam", 0.5, 0.6)])
    assert claim_verdict([eff("sgd", 1.0, 0.1)]) is None


def test_curve_band_handles_short_diverged_runs():
    a = rec("x", "sgd", 0, 0.9, curve_acc=[0.5, 0.7, 0.9])
    b = rec("x", "sgd", 1, 0.9, curve_acc=[0.3, 0.5, 0.7])
    c = rec("x", "sgd", 2, 0.9, curve_acc=[0.4], diverged=True)
    ep, mean, sd = curve_band([a, b, c], "val_acc")
    assert ep.tolist() == [1.0, 2.0, 3.0]
    assert mean == pytest.approx([0.4, 0.6, 0.8])
    assert sd[0] == pytest.approx(0.1) and sd[1] == pytest.approx(math.sqrt(0.02))
    _, _, sd1 = curve_band([a], "val_acc")
    assert sd1.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        curve_band([], "val_acc")
