"""Plots: the figure's data are the schedule's exact values; gallery files; the terminal chart."""

from __future__ import annotations

import numpy as np
import pytest

from lrlab.plot import gallery, horizon, overview, plot, terminal
from lrlab.schedules import constant, take, warmup
from lrlab.spec import parse

STEP = constant(1.0, steps=2) >> constant(0.0)
WARM = warmup(take(constant(0.1), steps=60) >> constant(0.01), steps=20)


def _curves(fig):
    ax = fig.axes[0]
    return [line for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")]


def _vlines(fig):
    return sorted({float(line.get_xdata()[0]) for line in fig.axes[0].get_lines() if line.get_label().startswith("_")})


def test_plot_draws_the_exact_values_of_every_step():
    fig = plot([WARM, "constant(0.05)"], steps=150)
    first, second = _curves(fig)
    np.testing.assert_array_equal(first.get_xdata(), np.arange(150.0))
    np.testing.assert_array_equal(first.get_ydata(), WARM.values(150))
    np.testing.assert_array_equal(second.get_ydata(), np.full(150, 0.05))
    assert first.get_label() == str(WARM)[:69] + "…"  # long texts are shortened to 70 characters
    assert second.get_label() == "constant(value=0.05)"
    assert fig.axes[0].get_legend() is not None
    assert _vlines(fig) == [20.0, 80.0]  # warmup end and the take boundary, as WARM.boundaries()
    assert WARM.boundaries() == [20, 80]


def test_plot_default_horizon_and_options():
    fig = plot("constant(1.0, steps=100)", labels=["flat"], log=True, boundaries=False, title="t")
    (line,) = _curves(fig)
    assert len(line.get_xdata()) == 110 and line.get_label() == "flat"
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_title() == "t" and _vlines(fig) == []
    # a log axis hides non-positive lrs instead of failing
    (line,) = _curves(plot(STEP, steps=4, log=True))
    assert np.isnan(line.get_ydata()[2:]).all() and list(line.get_ydata()[:2]) == [1.0, 1.0]


def test_plot_on_an_existing_axis_with_state():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    s = parse("constant(0.1) * plateau()")
    assert plot(s, steps=5, ax=ax, state={"plateau": 0.5}) is fig
    np.testing.assert_allclose(_curves(fig)[0].get_ydata(), np.full(5, 0.05), rtol=0, atol=1e-17)


def test_long_horizons_keep_both_sides_of_every_boundary():
    s = constant(1.0, steps=333_333) >> constant(0.5, steps=1) >> constant(0.25)
    (line,) = _curves(plot(s, steps=1_000_000))
    x, y = line.get_xdata(), line.get_ydata()
    assert len(x) < 25_000
    for b in (333_332, 333_333, 333_334):
        (i,) = np.flatnonzero(x == b)
        assert y[i] == s(b)
    np.testing.assert_array_equal(y, s.values(x))


def test_horizon_rules():
    assert horizon("constant(0.1, steps=100)") == 110
    assert horizon([WARM, "constant(0.1, steps=100)"]) == 110
    assert horizon(WARM) == 160  # runs forever: twice the last boundary (80)
    assert horizon("cyclic(0.01, 0.1, up=25)") == 200  # twice the 4th boundary (100)
    assert horizon("warmup(constant(0.1, steps=180), steps=20) * plateau()") == 220  # its finite part
    assert horizon(WARM, 7) == 7
    with pytest.raises(ValueError, match=r"give the number of steps to draw \(steps=N, --steps N\)"):
        horizon("constant(0.1)")
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got steps=0"):
        horizon(WARM, 0)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("constant(0.1, steps=10%)",), {}, r"schedules\[0\] = constant\(value=0.1, steps=10%\) has durations in epochs or percent"),
        ((["constant(0.1)", "constant(0.2)"],), {"steps": 5, "labels": ["a"]}, "labels: 2 schedules but 1 labels"),
        (([],), {}, "give at least one schedule"),
        (([3],), {}, r"schedules\[0\]: expected a schedule or a spec string, got int"),
    ],
)
def test_plot_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot(*args, **kwargs)
    with pytest.raises(ValueError, match=message):
        terminal(*args, **kwargs)


def test_gallery_writes_one_png_per_name_and_an_overview(tmp_path):
    from matplotlib.image import imread

    paths = gallery(tmp_path / "g", names=["constant", "warmup"], overview_png=True)
    assert [p.name for p in paths] == ["constant.png", "warmup.png", "overview.png"]
    assert imread(paths[1]).shape == (400, 700, 4)
    assert imread(paths[2]).shape[:2] == (189, 1350)  # 1 row x 5 columns at 90 dpi
    with pytest.raises(ValueError, match="'nope' is not a registered schedule"):
        gallery(tmp_path, names=["nope"])
    with pytest.raises(ValueError, match="nothing to draw"):
        overview(tmp_path / "o.png", names=[])


def test_terminal_chart_by_hand():
    # 2 rows x 18 columns of braille = 36 x 8 dots over 4 steps: 9 dot columns per step.
    # lr 1.0 -> top dot row, 0.0 -> bottom; the drop between steps 1 and 2 is drawn in the last
    # dot column of step 1 (dot column 17 = the right half of character 8).
    assert terminal(STEP, steps=4, width=20, height=2).split("\n") == [
        "1 ┤⠉⠉⠉⠉⠉⠉⠉⠉⡇",
        "0 ┤        ⣇⣀⣀⣀⣀⣀⣀⣀⣀",
        "  └┬───────┬───────┬",
        "   0       2       4",  # no room for the axis name
    ]


def test_terminal_several_schedules_get_markers_or_colours():
    text = terminal([STEP, constant(0.5)], steps=4, width=20, height=3)
    assert text.split("\n") == [
        "  1 ┤••••••••",
        "0.5 ┤+++++++++++++++",
        "  0 ┤       ••••••••",
        "    └┬──────┬──────┬",
        "     0      2      4",
        "• constant(value=1.0,…",
        "+ constant(value=0.5)",
    ]
    coloured = terminal([STEP, constant(0.5)], steps=4, width=20, height=3, color=True)
    assert "\x1b[34m" in coloured and "\x1b[31m" in coloured and "\x1b[0m" in coloured
    assert "\x1b" not in text


def test_terminal_shows_features_narrower_than_a_column():
    spike = constant(0.0, steps=50_000) >> constant(1.0, steps=1) >> constant(0.0)
    rows = terminal(spike, steps=100_000, width=40, height=4).split("\n")
    assert rows[0].startswith("    1 ┤") and rows[0].strip().endswith("⣿")
    assert rows[-1].split() == ["step", "0", "50000", "100000"]


def test_terminal_log_axis_and_sizes():
    s = parse("constant(1.0, steps=10) >> constant(0.01, steps=10) >> constant(0.0001)")
    rows = terminal(s, steps=30, width=30, height=5, log=True).split("\n")
    assert [r[: r.index("┤")].strip() if "┤" in r else "" for r in rows[:5]] == ["1", "", "0.01", "", "0.0001"]
    assert all(len(r) <= 30 for r in rows)
    with pytest.raises(ValueError, match="width >= 20 and height >= 2, got width=10, height=5"):
        terminal(s, steps=30, width=10, height=5)
    with pytest.raises(ValueError, match="log=True but no lr is > 0"):
        terminal("constant(0.0)", steps=3, log=True)


def test_terminal_step_labels_stay_readable_for_huge_horizons():
    """Steps past 10**7 are written with 3 digits, and a middle label that would run into the end
    label is left out rather than printed over it."""
    text = terminal("cosine(0.1, steps=1000000000000000)", steps=2**53, width=40, height=4)
    assert text.splitlines()[-1].split() == ["step", "0", "4.5e+15", "9.01e+15"]
    narrow = terminal("constant(1.0, steps=4) >> constant(0.5)", steps=12345, width=20, height=3)
    assert narrow.splitlines()[-1].split() == ["step", "0", "12345"]
