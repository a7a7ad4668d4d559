"""Statistics of a study against hand-computed values (t distribution with 2 df in closed form,
Holm on a known p vector, G*Power's sample sizes, time to target on a hand-made curve)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrlab.study.stats import (
    claim_verdict,
    curve_band,
    epochs_to_target,
    holm,
    optimizer_effects,
    paired_comparison,
    seeds_to_resolve,
    select_lr,
    summarize,
)
from lrlab.study.storage import CURVE_FIELDS, TrialRecord


def rec(schedule, opt, seed, acc, loss=0.5, *, diverged=False, curve_acc=None, epochs=3, val=None,
        role="final", peak_lr=0.1):
    """A record whose validation curve is ``curve_acc`` (default: acc - 0.02, acc + 0.01, acc),
    final validation accuracy ``val`` (default: the curve's last value) and test accuracy ``acc``."""
    curve_acc = list(curve_acc) if curve_acc is not None else [acc - 0.02, acc + 0.01, acc][:epochs]
    n = len(curve_acc)
    curves = {k: np.full(n, math.nan) for k in CURVE_FIELDS}
    curves["epoch"] = np.arange(n, dtype=float)  # 0-based, as the engine writes them
    curves["val_acc"] = np.array(curve_acc, dtype=float)
    curves["val_loss"] = np.full(n, loss)
    curves["test_acc"][-1], curves["test_loss"][-1] = acc, loss
    val = curve_acc[-1] if val is None else val
    final = {"test_acc": math.nan if diverged else acc, "test_loss": math.nan if diverged else loss,
             "val_acc": math.nan if diverged else val}
    return TrialRecord(
        key=f"{schedule}/{opt}/s{seed}@x", trial_id=f"{schedule}/{opt}/s{seed}", schedule_name=schedule,
        schedule_text="constant(1.0)", schedule_config={"name": "constant", "value": 0.1, "steps": None},
        optimizer=opt, optimizer_kwargs={}, seed=seed, peak_lr=peak_lr, epochs=epochs, curves=curves, final=final,
        diverged=diverged, diverged_epoch=n if diverged else None, role=role,
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
    assert c.best_val_acc_mean == pytest.approx(100 * np.mean([0.94, 0.945, 0.93]))  # acc + 0.01 at epoch 2
    assert c.best_epoch_mean == 2.0  # 1-based: the second epoch
    assert c.val_acc_mean == pytest.approx(c.acc_mean)  # rec() makes the final val equal to test
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
    assert v is not None and v.startswith("Do schedules help SGD more than adaptive optimizers?")
    assert f"{eff['sgd'].average_mean:+.1f} points with sgd" in v


def test_claim_verdict_directions_and_when_it_is_printed():
    from lrlab.study.stats import OptimizerEffect

    def eff(o, m, se):
        return OptimizerEffect(o, 90.0, 0.5, "linear", None, m, se, 3.0)

    assert "Yes, in this study" in claim_verdict([eff("sgd", 3.0, 0.3), eff("adam", 0.5, 0.3)])
    assert "No, the opposite" in claim_verdict([eff("sgd", 0.0, 0.3), eff("adam", 2.0, 0.3)])
    assert "within seed noise" in claim_verdict([eff("sgd", 1.0, 0.6), eff("adam", 0.5, 0.6)])
    assert "needs at least 2 seeds" in claim_verdict([eff("sgd", 1.0, math.nan), eff("adam", 0.5, 0.6)])
    # only when an SGD-family and an adaptive optimizer are both in the study
    assert claim_verdict([eff("sgd", 1.0, 0.1)]) is None
    assert claim_verdict([eff("adam", 1.0, 0.1), eff("rmsprop", 0.0, 0.1)]) is None
    v = claim_verdict([eff("rmsprop", 0.1, 0.1), eff("sgd_schedulefree", 3.0, 0.1)])
    assert v is not None and "with sgd_schedulefree and +0.1 with rmsprop" in v


def test_holm_on_a_hand_computed_vector():
    # m = 5 finite p-values, sorted 0.001 0.01 0.02 0.04 0.3:
    # x5 = 0.005, x4 = 0.04, x3 = 0.06, x2 = 0.08, x1 = 0.3 (each the running max)
    assert holm([0.04, 0.001, math.nan, 0.3, 0.02, 0.01]) == pytest.approx(
        [0.08, 0.005, math.nan, 0.3, 0.06, 0.04], nan_ok=True)
    # monotone step-down: a later smaller product does not lower the running max; capped at 1
    assert holm([0.01, 0.011, 0.6]) == pytest.approx([0.03, 0.03, 0.6])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []


def test_summarize_applies_holm_across_every_comparison():
    cells = summarize(_grid(), ["constant", "linear", "bad"], ["sgd", "adam"])
    comps = [c.vs_baseline for c in cells if c.vs_baseline is not None]
    assert len(comps) == 4
    raw = [c.p_t for c in comps]
    assert [c.p_holm for c in comps] == pytest.approx(holm(raw))
    assert all(c.p_holm >= c.p_t for c in comps)
    # significance uses the adjusted p: a comparison with raw p < 0.05 but p_holm >= 0.05 is unmarked
    from lrlab.study.stats import Comparison

    c = Comparison(3, 1.0, 0.1, (0.5, 1.5), 10.0, 0.03, 0.25, 0.09)
    assert c.p_t < 0.05 and not c.significant()


def test_seeds_to_resolve_matches_gpower():
    # G*Power, one-sample/paired t, two-tailed, alpha 0.05, power 0.80: d = 1 -> n = 10, d = 0.5 -> n = 34
    assert seeds_to_resolve(1.0, 1.0) == 10
    assert seeds_to_resolve(-2.5, 5.0) == 34  # only |mean| / sd matters
    assert seeds_to_resolve(0.0, 1.0) is None and seeds_to_resolve(1.0, math.nan) is None
    assert seeds_to_resolve(0.01, 10.0, max_n=50) == 51  # "more than 50"
    comp = paired_comparison([0.91, 0.89, 0.92], [0.90, 0.90, 0.90])  # d = 1, -1, 2 points
    assert comp.seeds_needed() == seeds_to_resolve(2 / 3, math.sqrt(7 / 3)) == 44  # delta = 0.436
    assert seeds_to_resolve(5.0, 1.0) == 3 and seeds_to_resolve(5.0, 1.0, min_n=4) == 4  # more than it has
    assert paired_comparison([0.90, 0.92, 0.91], [0.88, 0.905, 0.895]).seeds_needed() is None  # resolved


def test_epochs_to_target_and_the_never_case():
    ep = np.arange(5.0)
    assert epochs_to_target(ep, np.array([0.1, 0.5, 0.89, 0.9, 0.95]), 0.9) == 4
    assert epochs_to_target(ep, np.array([0.95, 0.5, 0.2, 0.1, 0.1]), 0.9) == 1
    assert epochs_to_target(ep, np.array([0.1, math.nan, 0.2, 0.3, 0.4]), 0.9) is None
    assert epochs_to_target(ep, np.ones(5), math.nan) is None


def test_time_to_target_column_uses_validation_against_constant():
    recs = []
    for s in range(2):
        recs.append(rec("constant", "sgd", s, 0.9, curve_acc=[0.5, 0.8, 0.9, 0.9]))  # final val 0.9: target 0.891
        recs.append(rec("fast", "sgd", s, 0.5, curve_acc=[0.7, 0.9, 0.92, 0.93]))  # test acc low: irrelevant
        recs.append(rec("slow", "sgd", s, 0.95, curve_acc=[0.1, 0.2, 0.3, 0.85 + 0.05 * s]))  # mean 0.875: never
    cells = {c.schedule: c for c in summarize(recs, ["constant", "fast", "slow"], ["sgd"])}
    assert cells["constant"].target == pytest.approx(99 * 0.9)
    assert cells["constant"].epochs_to_target == 3
    assert cells["fast"].epochs_to_target == 2
    assert cells["slow"].epochs_to_target is None


def test_select_lr_by_validation_with_ties_divergence_and_edges():
    sel = select_lr("linear", "sgd", {
        0.1: [(0.80, False), (0.82, False)],
        0.2: [(0.90, False), (0.86, False)],  # mean 0.88: best
        0.4: [(0.99, False), (0.0, True)],  # a diverged seed counts 0: mean 0.495
    })
    assert sel.chosen == 0.2 and not sel.at_edge and sel.grid == (0.1, 0.2, 0.4)
    assert sel.scores == pytest.approx((0.81, 0.88, 0.495)) and sel.diverged == (0, 0, 1) and sel.runs == (2, 2, 2)
    tie = select_lr("c", "adam", {0.4: [(0.9, False)], 0.2: [(0.9, False)], 0.1: [(0.5, False)]})
    assert tie.chosen == 0.2  # equal means: the smaller lr
    edge = select_lr("c", "adam", {0.4: [(0.95, False)], 0.2: [(0.9, False)]})
    assert edge.chosen == 0.4 and edge.at_edge
    dead = select_lr("c", "adam", {0.4: [(math.nan, True)], 0.2: [(math.nan, True)]})
    assert dead.chosen is None and dead.all_diverged and not dead.at_edge
    assert select_lr("c", "adam", {0.3: [(0.5, False)]}).at_edge is False  # one point has no edge to widen


def test_summarize_lists_cells_whose_tuning_all_diverged():
    recs = [rec("constant", "sgd", s, 0.9) for s in range(3)]
    recs += [rec("linear", "sgd", 0, 0.9, role="tune")]  # tuning records are ignored by the statistics
    dead = select_lr("wild", "sgd", {1.0: [(math.nan, True)]})
    cells = summarize(recs, ["constant", "wild"], ["sgd"], selections={("wild", "sgd"): dead})
    assert [c.schedule for c in cells] == ["constant", "wild"]
    assert cells[1].n == 0 and cells[1].peak_lr is None and cells[1].selection is dead
    assert cells[0].n == 3


def test_curve_band_handles_short_diverged_runs():
    a = rec("x", "sgd", 0, 0.9, curve_acc=[0.5, 0.7, 0.9])
    b = rec("x", "sgd", 1, 0.9, curve_acc=[0.3, 0.5, 0.7])
    c = rec("x", "sgd", 2, 0.9, curve_acc=[0.4], diverged=True)
    ep, mean, sd = curve_band([a, b, c], "val_acc")
    assert ep.tolist() == [0.0, 1.0, 2.0]
    assert mean == pytest.approx([0.4, 0.6, 0.8])
    assert sd[0] == pytest.approx(0.1) and sd[1] == pytest.approx(math.sqrt(0.02))
    _, _, sd1 = curve_band([a], "val_acc")
    assert sd1.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        curve_band([], "val_acc")
