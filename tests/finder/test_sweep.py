"""The sweep's lr sequence, the bias-corrected smoothing and the stop rules, against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrlab.finder import Curve, run_sweep, smooth, sweep_lrs
from lrlab.finder._sweep import check_seeds


@pytest.mark.parametrize(
    ("a", "b", "n"), [(1e-7, 10.0, 100), (1e-5, 1.0, 2), (3e-4, 0.7, 37), (0.01, 0.011, 5)]
)
def test_exponential_sweep_exact_endpoints_and_formula(a, b, n):
    lrs = sweep_lrs(a, b, n)
    assert len(lrs) == n and lrs.dtype == np.float64
    assert lrs[0] == a and lrs[-1] == b  # exactly, not approximately
    i = np.arange(n)
    np.testing.assert_allclose(lrs, a * (b / a) ** (i / (n - 1)), rtol=1e-13)
    np.testing.assert_allclose(np.diff(np.log(lrs)), math.log(b / a) / (n - 1), rtol=1e-9)


def test_exponential_sweep_hand_table():
    np.testing.assert_allclose(sweep_lrs(1e-3, 10.0, 5), [1e-3, 1e-2, 1e-1, 1.0, 10.0], rtol=1e-14)
    np.testing.assert_allclose(sweep_lrs(1.0, 8.0, 4), [1.0, 2.0, 4.0, 8.0], rtol=1e-14)


@pytest.mark.parametrize(("a", "b", "n"), [(1e-3, 1.0, 11), (0.5, 2.0, 2), (1e-7, 10.0, 100)])
def test_linear_sweep_exact_endpoints_and_formula(a, b, n):
    lrs = sweep_lrs(a, b, n, mode="linear")
    assert lrs[0] == a and lrs[-1] == b
    np.testing.assert_allclose(lrs, a + (b - a) * np.arange(n) / (n - 1), rtol=1e-13)
    np.testing.assert_allclose(
        sweep_lrs(0.1, 0.5, 5, mode="linear"), [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-14
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"start_lr": 0.0, "end_lr": 1.0, "num_steps": 10}, "start_lr"),
        ({"start_lr": -1e-3, "end_lr": 1.0, "num_steps": 10}, "start_lr"),
        ({"start_lr": float("nan"), "end_lr": 1.0, "num_steps": 10}, "start_lr"),
        ({"start_lr": 1.0, "end_lr": 1.0, "num_steps": 10}, "end_lr"),
        ({"start_lr": 1e-3, "end_lr": float("inf"), "num_steps": 10}, "end_lr"),
        ({"start_lr": 1e-3, "end_lr": 1.0, "num_steps": 1}, "num_steps"),
        ({"start_lr": 1e-3, "end_lr": 1.0, "num_steps": 2.5}, "num_steps"),
        ({"start_lr": 1e-3, "end_lr": 1.0, "num_steps": True}, "num_steps"),
        ({"start_lr": 1e-3, "end_lr": 1.0, "num_steps": 10, "mode": "log"}, "mode"),
    ],
)
def test_sweep_rejects_bad_arguments_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sweep_lrs(**kwargs)


def test_smoothing_matches_hand_computation():
    # beta = 0.98, losses 2, 1, 4:
    # m0 = 0.02*2 = 0.04              s0 = 0.04 / 0.02 = 2
    # m1 = 0.98*0.04 + 0.02 = 0.0592  s1 = 0.0592 / (1 - 0.98**2) = 0.0592 / 0.0396 = 148/99
    # m2 = 0.98*0.0592 + 0.08 = 0.138016  s2 = 0.138016 / (1 - 0.98**3) = 0.138016 / 0.058808 = 17252/7351
    np.testing.assert_allclose(smooth([2.0, 1.0, 4.0]), [2.0, 148 / 99, 17252 / 7351], rtol=1e-12)
    # beta = 0.5: s = [1, (0.25 + 0.5*0)/0.75 ...] for losses 1, 0
    np.testing.assert_allclose(smooth([1.0, 0.0], beta=0.5), [1.0, 1 / 3], rtol=1e-15)


def test_smoothing_is_a_weighted_mean_so_constants_stay_constant():
    np.testing.assert_allclose(smooth(np.full(300, 3.25)), 3.25, rtol=1e-12)
    x = np.random.default_rng(0).uniform(1, 2, size=50)
    assert np.array_equal(smooth(x, beta=0.0), x)
    s = smooth(x)
    assert np.all(s >= x.min() - 1e-12) and np.all(s <= x.max() + 1e-12)


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5])
def test_smoothing_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        smooth([1.0], beta=beta)


def test_run_sweep_feeds_each_lr_once_and_records_losses():
    seen: list[float] = []

    def step(lr: float) -> float:
        seen.append(lr)
        return 2.0 - 0.1 * len(seen)

    lrs = sweep_lrs(1e-4, 1e-1, 10)
    c = run_sweep(step, lrs, seed=7)
    assert isinstance(c, Curve) and c.stop == "completed" and c.seed == 7 and c.num_steps == 10
    assert seen == lrs.tolist() and np.array_equal(c.lrs, lrs)
    np.testing.assert_allclose(c.losses, 2.0 - 0.1 * np.arange(1, 11))
    np.testing.assert_allclose(c.smoothed, smooth(c.losses), rtol=1e-15)


def test_divergence_stop_records_the_diverging_update():
    losses = iter([1.0, 1.0, 0.5, 1.9, 2.1, 9.0, 9.0])
    c = run_sweep(lambda lr: next(losses), np.arange(1.0, 8.0), beta=0.0, diverge_factor=4.0)
    # best 0.5; 2.1 > 4 * 0.5 -> stop at the 5th update, which is recorded
    assert (
        c.stop == "diverged"
        and c.losses.tolist() == [1.0, 1.0, 0.5, 1.9, 2.1]
        and c.lrs.tolist() == [1, 2, 3, 4, 5]
    )
    assert c.num_steps == 7


def test_divergence_uses_the_smoothed_loss():
    # beta=0.5: s = [1, 1, (hand) ...]; losses 1, 1, 13 -> m = .5, .75, 6.875; s2 = 6.875/0.875 = 7.857 > 4
    losses = iter([1.0, 1.0, 13.0, 1.0])
    c = run_sweep(lambda lr: next(losses), np.arange(1.0, 5.0), beta=0.5)
    assert c.stop == "diverged" and len(c.losses) == 3
    assert c.smoothed[-1] == pytest.approx(6.875 / 0.875)
    # after 20 losses of 1, beta=0.9 smooths the spike away: s20 = (0.9 (1 - 0.9**20) + 1.3) / (1 - 0.9**21) = 2.35
    losses = iter([1.0] * 20 + [13.0, 1.0])
    c = run_sweep(lambda lr: next(losses), np.arange(1.0, 23.0), beta=0.9)
    assert c.stop == "completed" and c.smoothed[20] == pytest.approx(
        (0.9 * (1 - 0.9**20) + 1.3) / (1 - 0.9**21)
    )


def test_divergence_can_be_disabled_and_ignores_non_positive_best():
    up = iter(np.arange(1.0, 11.0) ** 3)
    assert (
        run_sweep(lambda lr: next(up), np.arange(1.0, 11.0), beta=0.0, diverge_factor=None).stop
        == "completed"
    )
    neg = iter([-1.0, -2.0, 5.0, 6.0])
    assert run_sweep(lambda lr: next(neg), np.arange(1.0, 5.0), beta=0.0).stop == "completed"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_stops_without_being_recorded(bad):
    losses = iter([1.0, 0.9, bad, 0.5])
    c = run_sweep(lambda lr: next(losses), np.arange(1.0, 5.0), diverge_factor=None)
    assert (
        c.stop == "non-finite"
        and c.losses.tolist() == [1.0, 0.9]
        and len(c.smoothed) == 2
        and len(c.lrs) == 2
    )


@pytest.mark.parametrize("factor", [1.0, 0.5, "4"])
def test_run_sweep_rejects_bad_diverge_factor(factor):
    with pytest.raises(ValueError, match="diverge_factor"):
        run_sweep(lambda lr: 1.0, np.arange(1.0, 3.0), diverge_factor=factor)


def test_check_seeds():
    assert check_seeds([0, 1, 2]) == (0, 1, 2)
    for bad in ([], [0, 0], [0.5], [True]):
        with pytest.raises(ValueError, match="seeds"):
            check_seeds(bad)


def test_curve_to_dict_is_plain_json():
    import json

    c = run_sweep(lambda lr: 2.0, np.array([0.1, 0.2]), beta=0.5, seed=3)
    d = json.loads(json.dumps(c.to_dict()))
    assert d == {
        "seed": 3,
        "stop": "completed",
        "num_steps": 2,
        "lrs": [0.1, 0.2],
        "losses": [2.0, 2.0],
        "smoothed": [2.0, 2.0],
    }
