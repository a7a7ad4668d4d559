"""Agreement across repeats: medians, spreads in decades, the confidence rules, JSON and the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrlab.finder import FinderResult, aggregate, run_sweep, sweep_lrs


def bowl(shift: float):
    """1 + (log10 lr + 1 + shift)**2: lowest at lr = 10**-(1 + shift)."""
    return lambda lr: 1.0 + (np.log10(lr) + 1.0 + shift) ** 2


def realistic(lr: float) -> float:
    """A range-test shape: flat, a fall around 10**-2.5, a blow-up past 10**0.3."""
    x = np.log10(lr)
    return 2.3 - 1.5 / (1 + np.exp(-3 * (x + 2.5))) + 3 / (1 + np.exp(-8 * (x - 0.3)))


def test_spread_and_median_in_decades():
    lrs = sweep_lrs(
        1e-4, 1.0, 81
    )  # 0.05 decade per point: minima at x = -1, -1.1, -1.2 lie on the grid
    curves = [run_sweep(bowl(d), lrs, beta=0.0, seed=k) for k, d in enumerate((0.0, 0.1, 0.2))]
    r = aggregate(curves)
    m = r.suggestions["minimum"]
    np.testing.assert_allclose(m.lrs, [10**-2.0, 10**-2.1, 10**-2.2], rtol=1e-12)
    assert m.spread == pytest.approx(0.2, abs=1e-9)
    assert m.lr == pytest.approx(10**-2.1, rel=1e-12)  # geometric median
    assert (
        r.recommended == "minimum"
        and r.lr == r.suggestions["minimum"].lr
        and r.spread == r.suggestions["minimum"].spread
    )
    assert r.confident and r.notes == ()
    assert [s is not None for s in r.per_repeat] == [True, True, True]


def test_even_number_of_repeats_uses_the_middle_of_the_logs():
    lrs = sweep_lrs(1e-4, 1.0, 81)
    r = aggregate([run_sweep(bowl(d), lrs, beta=0.0) for d in (0.0, 0.2)])
    assert r.suggestions["minimum"].lr == pytest.approx(10**-2.1, rel=1e-12)


@pytest.mark.parametrize(("recommend", "at_least"), [("minimum", 18), ("valley", 14)])
def test_noisy_repeats_are_flagged_and_clean_ones_are_not(recommend, at_least):
    # 20 trials of 3 repeats each; with these seeds minimum is flagged 20 times and valley 16.
    # Clean repeats differ by a shift of 0.02 decade per seed (identical ones are flagged anyway).
    lrs = sweep_lrs(1e-6, 10.0, 100)
    flagged = {0.0: 0, 3.0: 0}
    for noise in flagged:
        for trial in range(20):
            curves = []
            for s in range(3):
                rng = np.random.default_rng(1000 * trial + s)
                curves.append(
                    run_sweep(
                        lambda lr, rng=rng, noise=noise, s=s: abs(
                            realistic(lr * 10 ** (0.02 * s)) + noise * rng.standard_normal()
                        ),
                        lrs,
                        seed=s,
                        diverge_factor=None,
                    )
                )
            r = aggregate(curves, recommend=recommend)
            if not r.confident:
                flagged[noise] += 1
                assert any(f"{recommend} disagrees across repeats" in n for n in r.notes)
                assert r.spread > 0.5
    assert flagged[0.0] == 0
    assert flagged[3.0] >= at_least


def test_threshold_is_configurable():
    lrs = sweep_lrs(1e-4, 1.0, 81)
    curves = [run_sweep(bowl(d), lrs, beta=0.0, seed=k) for k, d in enumerate((0.0, 0.3, 0.6))]
    wide = aggregate(curves, recommend="minimum")
    assert wide.spread == pytest.approx(0.6, abs=1e-9) and not wide.confident
    assert "max_spread=0.5" in wide.notes[0]
    assert aggregate(curves, recommend="minimum", max_spread=0.7).confident


def test_single_repeat_is_not_confident():
    r = aggregate([run_sweep(bowl(0.0), sweep_lrs(1e-4, 1.0, 81), beta=0.0, seed=0)])
    assert not r.confident and r.spread == 0.0
    assert "agreement not measured" in r.notes[0]


def test_identical_repeats_are_not_evidence_of_agreement():
    lrs = sweep_lrs(1e-4, 1.0, 81)
    r = aggregate([run_sweep(bowl(0.0), lrs, beta=0.0, seed=s) for s in (0, 1, 2)])
    assert not r.confident and r.spread == 0.0
    assert r.notes == (
        "all repeats recorded identical losses: the seeds did not change the data order or the model",
    )


def test_range_that_misses_the_rise_is_flagged():
    lrs = sweep_lrs(1e-6, 1e-3, 60)  # the bowl's minimum (0.1) is beyond end_lr
    r = aggregate([run_sweep(bowl(0.0), lrs, beta=0.0, seed=s) for s in (0, 1)])
    assert not r.confident
    assert sum("raise end_lr" in n for n in r.notes) == 2


def test_a_repeat_that_stops_too_early_is_reported_and_all_failing_raises():
    lrs = sweep_lrs(1e-4, 1.0, 81)
    early = run_sweep(lambda lr: 1.0 if lr < 2e-4 else float("nan"), lrs, seed=9)
    assert early.stop == "non-finite" and len(early.lrs) < 10
    good = [run_sweep(bowl(0.0), lrs, beta=0.0, seed=s) for s in (0, 1)]
    r = aggregate([*good, early])
    assert r.per_repeat[2] is None and not r.confident
    assert any("seed=9 (non-finite after" in n for n in r.notes)
    assert r.suggestions["valley"].lrs == tuple(s["valley"].lr for s in r.per_repeat[:2])
    with pytest.raises(ValueError, match="no repeat produced a suggestion"):
        aggregate([early])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"recommend": "steep"}, "recommend"),
        ({"methods": ("valley",)}, "recommend"),
        ({"max_spread": 0.0}, "max_spread"),
        ({"max_spread": float("inf")}, "max_spread"),
    ],
)
def test_bad_arguments(kwargs, match):
    curves = [run_sweep(bowl(0.0), sweep_lrs(1e-4, 1.0, 81))]
    with pytest.raises(ValueError, match=match):
        aggregate(curves, **kwargs)
    with pytest.raises(ValueError, match="curves"):
        aggregate([])


def test_to_dict_is_json_and_complete():
    lrs = sweep_lrs(1e-4, 1.0, 81)
    r = aggregate(
        [run_sweep(bowl(d), lrs, beta=0.0, seed=k) for k, d in enumerate((0.0, 0.1))],
        settings={"optimizer": "sgd"},
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert d["lr"] == r.lr and d["confident"] is True and d["recommended"] == "minimum"
    assert set(d["suggestions"]) == {"steepest", "valley", "minimum"}
    assert [rep["seed"] for rep in d["repeats"]] == [0, 1] and d["settings"] == {"optimizer": "sgd"}
    assert "curves" not in d
    full = json.loads(json.dumps(r.to_dict(curves=True)))
    assert full["curves"][1]["lrs"] == lrs.tolist()
    assert "recommended lr" in str(r) and "valley" in str(r)


def test_plot_marks_every_method_and_repeat(tmp_path):
    lrs = sweep_lrs(1e-6, 10.0, 100)
    r: FinderResult = aggregate([run_sweep(realistic, lrs, seed=s) for s in (0, 1, 2)])
    path = tmp_path / "finder.png"
    fig = r.plot(path, title="t")
    assert path.stat().st_size > 1000
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "t"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum(lab.startswith("seed ") for lab in labels) == 3
    assert [lab.split(":")[0] for lab in labels if not lab.startswith("seed ")] == [
        "steepest",
        "valley",
        "minimum/10",
    ]
    assert any(lab.endswith("*") and lab.startswith("minimum/10") for lab in labels)
