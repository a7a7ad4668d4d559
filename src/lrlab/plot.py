"""Pictures of schedules: matplotlib figures, the gallery and a terminal preview.

* :func:`plot` overlays schedules on one axis, with their phase boundaries (``Schedule.boundaries``)
  as dotted lines: ``lrlab.plot.plot(["cosine(...)", my_schedule]).savefig("lr.png")``.
* :func:`gallery` writes one PNG per registered schedule (its first example) and an overview grid.
* :func:`terminal` draws schedules as text, in Unicode braille (2×4 dots per character), for the
  command line: no matplotlib needed.

matplotlib is imported inside the functions that need it (``pip install lrlab[plot]``).

Schedules may be given as :class:`~lrlab.Schedule` values or as spec strings. The horizon (the
steps drawn, ``0 .. steps-1``) is ``steps`` when given, else the longest finite duration plus 10 %
(for schedules that never end, see :func:`horizon`).

>>> from lrlab.plot import terminal
>>> print(terminal("constant(1.0, steps=4) >> constant(0.5)", steps=8, width=24, height=3))
   1 ┤⠉⠉⠉⠉⠉⠉⠉⠉⢹
0.75 ┤        ⢸
 0.5 ┤        ⢸⣀⣀⣀⣀⣀⣀⣀⣀⣀
     └┬────────┬───────┬
step  0        4       8
"""

from __future__ import annotations

import inspect
import math
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.schedules import Schedule, State, examples, registry

__all__ = ["gallery", "horizon", "overview", "plot", "terminal"]

_DENSE_LIMIT = 200_000  # up to this many steps every step is evaluated; beyond, a fine grid


def _as_list(schedules: Any) -> list[Schedule]:
    from lrlab.spec import parse

    items = [schedules] if isinstance(schedules, Schedule | str) else list(schedules)
    if not items:
        raise ValueError("schedules: give at least one schedule to draw")
    out = []
    for i, s in enumerate(items):
        s = parse(s) if isinstance(s, str) else s
        if not isinstance(s, Schedule):
            raise ValueError(f"schedules[{i}]: expected a schedule or a spec string, got {type(s).__name__}")
        if not s.is_resolved():
            raise ValueError(
                f"schedules[{i}] = {s} has durations in epochs or percent: call "
                ".resolve(total_steps=..., steps_per_epoch=...) first (on the command line: "
                "--total-steps / --steps-per-epoch)"
            )
        out.append(s)
    return out


def horizon(schedules: Schedule | str | Iterable[Schedule | str], steps: int | None = None) -> int:
    """The number of steps to draw: ``steps``, or ``ceil(1.1 · longest finite duration)``.

    When every schedule runs forever: twice the 4th phase boundary (or the last one, when there are
    fewer), so warmups and the first cycles show, or the longest finite part of the schedule + 10 %
    if that is longer; with neither, ``steps`` must be given.

    >>> horizon("constant(0.1, steps=100)")
    110
    >>> horizon("constant(0.1, steps=100) >> constant(0.01)")
    200
    """
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got steps={steps!r}")
        return int(steps)
    items = _as_list(schedules)
    durations = [s.duration for s in items if s.duration is not None]
    if durations:
        return max(2, math.ceil(max(durations) * 11 / 10))
    # infinite: twice the 4th phase boundary (or the last, when fewer), so periodic ones show
    # cycles, and at least the longest finite part (e.g. the warmup+cosine in ``s * plateau()``)
    candidates = [2 * int(b[:4][-1]) for b in (sorted(s.boundaries()) for s in items) if b]
    candidates += [math.ceil(d * 11 / 10) for s in items for node in s.walk() if (d := node.duration)]
    if candidates and max(candidates) > 1:
        return int(max(candidates))
    raise ValueError("these schedules run forever and have no phases: give the number of steps to draw (steps=N, --steps N)")


def _series(s: Schedule, n: int, state: State | None) -> tuple[np.ndarray, np.ndarray]:
    """Steps and lrs to draw: every step up to ``_DENSE_LIMIT``, else a grid plus each boundary's two sides."""
    if n <= _DENSE_LIMIT:
        x = np.arange(n, dtype=np.float64)
    else:
        b = np.asarray([v for b in s.boundaries() for v in (b - 1, b) if 0 <= v < n], dtype=np.float64)
        x = np.unique(np.concatenate([np.round(np.linspace(0, n - 1, 20_001)), b]))
    return x, s.values(x, state)


def _label(s: Schedule, limit: int = 70) -> str:
    text = str(s)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot(
    schedules: Schedule | str | Iterable[Schedule | str],
    steps: int | None = None,
    *,
    labels: Sequence[str] | None = None,
    log: bool = False,
    ax: Any = None,
    boundaries: bool = True,
    state: State | None = None,
    title: str | None = None,
) -> Any:
    """Draw one or more schedules on one axis and return the matplotlib ``Figure``.

    Args:
        schedules: a schedule, a spec string, or a list of them (overlaid).
        steps: steps to draw (``0 .. steps-1``); default: the longest finite duration + 10 %.
        labels: legend labels (default: each schedule's text, shortened).
        log: a logarithmic lr axis (non-positive values are not drawn).
        ax: an existing matplotlib ``Axes`` to draw on (default: a new figure).
        boundaries: mark where each phase begins (``Schedule.boundaries()``) with dotted lines.
        state: run-time state for metric-driven nodes (e.g. ``{"plateau": 0.5}``).
        title: the axis title.

    >>> fig = plot(["constant(0.1, steps=50) >> constant(0.01)", "constant(0.05)"], steps=100)
    >>> fig.axes[0].get_legend_handles_labels()[1]
    ['constant(value=0.1, steps=50) >> constant(value=0.01)', 'constant(value=0.05)']
    """
    items = _as_list(schedules)
    n = horizon(items, steps)
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"labels: {len(items)} schedules but {len(labels)} labels")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.0, 3.6), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    for i, s in enumerate(items):
        x, y = _series(s, n, state)
        if log:
            y = np.where(y > 0, y, np.nan)
        (line,) = ax.plot(x, y, lw=1.6, label=labels[i] if labels is not None else _label(s))
        if boundaries:
            for b in s.boundaries():
                if 0 < b < n:
                    ax.axvline(b, color=line.get_color(), ls=":", lw=0.9, alpha=0.6)
    if log:
        ax.set_yscale("log")
    elif all(np.nanmin(line.get_ydata()) >= 0 for line in ax.get_lines() if len(line.get_ydata()) > 2):
        ax.set_ylim(bottom=0)  # lrs read best against zero
    ax.set_xlim(0, n - 1)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(True, alpha=0.25)
    if title:
        ax.set_title(title)
    if len(items) > 1 or labels is not None:
        ax.legend(fontsize="small", loc="best")
    return fig


def _summary(cls: type[Schedule]) -> str:
    """The docstring's first paragraph, without reStructuredText quoting, at most 150 characters."""
    doc = " ".join((inspect.getdoc(cls) or cls.name).split("\n\n", 1)[0].split()).replace("``", "")
    return textwrap.shorten(doc, 150, placeholder="…")


def gallery(outdir: str | Path, names: Iterable[str] | None = None, *, overview_png: bool | None = None) -> list[Path]:
    """Write ``<name>.png`` for every registered schedule (its first example), and ``overview.png``.

    Each picture is titled with the name and the one-line summary, with the schedule's canonical
    text underneath. Returns the paths written.

    Args:
        outdir: the folder (created if missing).
        names: only these schedules (default: all registered ones).
        overview_png: also write ``overview.png``, a grid of the drawn schedules (default: only
            when drawing them all, so a partial run does not shrink the overview).
    """
    ex = examples()
    chosen = list(registry()) if names is None else list(names)
    for name in chosen:
        if name not in ex or not ex[name]:
            raise ValueError(f"names: {name!r} is not a registered schedule with examples")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in chosen:
        s = ex[name][0]
        fig = plot(s, steps=_gallery_steps(s))
        fig.set_size_inches(7.0, 4.0)
        fig.suptitle(textwrap.fill(f"{name}: {_summary(registry()[name])}", 80), fontsize=10, fontweight="bold")
        fig.axes[0].set_title(textwrap.fill(str(s), 95), fontsize=8, family="monospace", loc="left")
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100, metadata={"Software": None})
        written.append(path)
    if overview_png or (overview_png is None and names is None):
        written.append(overview(out / "overview.png", chosen))
    return written


def _gallery_steps(s: Schedule) -> int:
    try:
        return horizon(s)
    except ValueError:  # runs forever with no phases: a fixed window
        return 300


def overview(path: str | Path, names: Iterable[str] | None = None, *, columns: int = 5) -> Path:
    """One PNG with a small panel per schedule (first example of each), for the README."""
    from matplotlib.figure import Figure

    ex = examples()
    chosen = [n for n in (list(registry()) if names is None else list(names)) if ex.get(n)]
    if not chosen:
        raise ValueError("names: nothing to draw")
    rows = math.ceil(len(chosen) / columns)
    fig = Figure(figsize=(3.0 * columns, 2.1 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, name in zip(axes.flat, chosen):
        s = ex[name][0]
        n = _gallery_steps(s)
        x, y = _series(s, n, None)
        ax.plot(x, y, lw=1.5)
        if np.nanmin(y) >= 0:
            ax.set_ylim(bottom=0)
        for b in s.boundaries():
            if 0 < b < n:
                ax.axvline(b, color="0.6", ls=":", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.25)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.set_axis_off()
    fig.suptitle("lrlab schedules (lr against step; dotted: phase boundaries)", fontsize=12)
    path = Path(path)
    fig.savefig(path, dpi=90, metadata={"Software": None})
    return path


# ---------------------------------------------------------------------------------------------
# Terminal preview
# ---------------------------------------------------------------------------------------------
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)
_MARKERS = "•+xo*#%@"
_COLORS = (34, 31, 32, 35, 36, 33, 94, 91)  # ANSI: blue, red, green, magenta, cyan, yellow, ...


def _tick(v: float) -> str:
    return f"{v:.3g}"


def _step_tick(n: int) -> str:
    """A step number for the x axis: exact up to 7 digits, else 3 significant ones (``4.5e+15``)."""
    return str(n) if n < 10**7 else f"{n:.3g}"


def _columns(s: Schedule, n: int, cols: int, state: State | None) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the lr over the steps each of ``cols`` columns covers (joined to the neighbour)."""
    edges = np.floor(np.linspace(0, n, cols + 1)).astype(np.int64)
    edges[-1] = n
    if n <= 2_000_000:
        steps = np.arange(n, dtype=np.float64)
        starts = np.minimum(edges[:-1], n - 1)
    else:  # sample: 64 evenly spaced steps per column
        a, b = edges[:-1, None], np.maximum(edges[:-1], edges[1:] - 1)[:, None]
        steps = np.round(a + (b - a) * np.linspace(0.0, 1.0, 64)[None, :]).ravel()
        starts = np.arange(cols) * 64
    y = s.values(steps, state)
    lo = np.minimum.reduceat(y, starts)
    hi = np.maximum.reduceat(y, starts)
    first = y[starts]
    # join each column to the next one's first value, so a drop is drawn as a vertical line
    lo[:-1] = np.minimum(lo[:-1], first[1:])
    hi[:-1] = np.maximum(hi[:-1], first[1:])
    return lo, hi


def terminal(
    schedules: Schedule | str | Iterable[Schedule | str],
    steps: int | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    log: bool = False,
    labels: Sequence[str] | None = None,
    state: State | None = None,
    color: bool = False,
) -> str:
    """Schedules drawn as text: an lr axis on the left, steps below, a legend when several.

    One schedule (or several with ``color=True``, one ANSI colour each) is drawn in braille dots,
    2 × 4 per character; several without colour get one marker character each (``•``, ``+``,
    ``x``, ...) at character resolution. Each column spans a range of steps and draws every lr
    in that range, so drops and cycles narrower than a column still show.

    Args:
        schedules: a schedule, a spec string, or a list of them.
        steps: steps to draw (default: the longest finite duration + 10 %).
        width, height: size in characters (default: the terminal's width, and 16 rows).
        log: a log10 lr axis (non-positive values are not drawn).
        labels: legend labels (default: each schedule's text).
        state: run-time state for metric-driven nodes.
        color: colour each schedule with ANSI escape codes.
    """
    items = _as_list(schedules)
    n = horizon(items, steps)
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"labels: {len(items)} schedules but {len(labels)} labels")
    term = shutil.get_terminal_size((100, 24))
    width = term.columns if width is None else width
    height = 16 if height is None else height
    if width < 20 or height < 2:
        raise ValueError(f"the chart needs width >= 20 and height >= 2, got width={width}, height={height}")
    braille = len(items) == 1 or color
    sx, sy = (2, 4) if braille else (1, 1)

    # y range over everything drawn
    label_w_guess = 9
    cols = max(1, (width - label_w_guess - 2) * sx)
    ranges = [_columns(s, n, cols, state) for s in items]
    ys = np.concatenate([np.concatenate(r) for r in ranges])
    if log:
        ys = ys[ys > 0]
        if ys.size == 0:
            raise ValueError("log=True but no lr is > 0")
    lo_v, hi_v = float(np.min(ys)), float(np.max(ys))
    to_axis = (lambda v: np.log10(np.where(v > 0, v, np.nan))) if log else (lambda v: v)
    a_lo, a_hi = float(to_axis(np.float64(lo_v))), float(to_axis(np.float64(hi_v)))
    if a_hi == a_lo:
        pad = abs(a_hi) * 0.1 or 1.0
        a_lo, a_hi = a_lo - pad, a_hi + pad

    tick_rows = {0: a_hi, height - 1: a_lo}
    if height >= 3:
        tick_rows[(height - 1) // 2] = a_hi - (a_hi - a_lo) * ((height - 1) // 2) / (height - 1)
    tick_text = {r: _tick(10**v if log else v) for r, v in tick_rows.items()}
    label_w = max(len(t) for t in tick_text.values())
    plot_w = width - label_w - 2
    if plot_w * sx != cols:  # recompute with the real label width
        cols = plot_w * sx
        ranges = [_columns(s, n, cols, state) for s in items]

    dots_h = height * sy
    grid = np.zeros((height, plot_w), dtype=np.int64)  # braille bits
    owner = np.full((height, plot_w), -1, dtype=np.int64)  # which series drew a cell last
    for k, (lo, hi) in enumerate(ranges):
        with np.errstate(invalid="ignore"):
            r_top = (a_hi - to_axis(hi)) / (a_hi - a_lo) * (dots_h - 1)
            r_bot = (a_hi - to_axis(lo)) / (a_hi - a_lo) * (dots_h - 1)
        for c in range(cols):
            if not (np.isfinite(r_top[c]) and np.isfinite(r_bot[c])):
                continue
            top, bot = round(float(r_top[c])), round(float(r_bot[c]))
            for r in range(max(0, top), min(dots_h - 1, bot) + 1):
                cell_r, cell_c = r // sy, c // sx
                grid[cell_r, cell_c] |= _BRAILLE_BITS[r % 4, c % 2] if braille else 1
                owner[cell_r, cell_c] = k

    lines = []
    for r in range(height):
        label = tick_text.get(r, "").rjust(label_w)
        axis = "┤" if r in tick_text else "│"
        cells, current = [], -1  # current: the series whose colour is switched on
        for c in range(plot_w):
            k = int(owner[r, c])
            if color and k != current and (k >= 0 or current >= 0):
                cells.append(f"\x1b[{_COLORS[k % len(_COLORS)]}m" if k >= 0 else "\x1b[0m")
                current = k
            if k < 0:
                cells.append(" ")
            else:
                cells.append(chr(0x2800 + int(grid[r, c])) if braille else _MARKERS[k % len(_MARKERS)])
        text = "".join(cells).rstrip()
        lines.append(f"{label} {axis}{text}\x1b[0m" if color and current >= 0 else f"{label} {axis}{text}")

    # x axis: ticks at 0, the middle and the end
    ticks = {0: "0", plot_w // 2: _step_tick(n // 2), plot_w - 1: _step_tick(n)}
    axis_line = "".join("┬" if c in ticks else "─" for c in range(plot_w))
    lines.append(" " * label_w + " └" + axis_line)
    row = [" "] * plot_w
    spans: list[tuple[int, str]] = []  # (start, text): the two ends always, the middle only where it overlaps neither
    for c in (0, plot_w - 1, plot_w // 2):
        text = ticks[c]
        start = 0 if c == 0 else max(0, min(c - len(text) // 2, plot_w - len(text)))
        if all(start + len(text) < a or start > a + len(t) for a, t in spans):
            spans.append((start, text))
    for start, text in spans:
        row[start : start + len(text)] = list(text)
    # the axis name sits under the lr labels when they leave room for it, else after the ticks
    margin = "step".rjust(label_w) + "  " if label_w >= 4 else " " * (label_w + 2)
    ticks_text = margin + "".join(row).rstrip()
    lines.append(ticks_text + ("  step" if label_w < 4 and len(ticks_text) + 6 <= width else ""))
    if len(items) > 1 or labels is not None:
        for k, s in enumerate(items):
            mark = "⣿" if braille else _MARKERS[k % len(_MARKERS)]
            if color:
                mark = f"\x1b[{_COLORS[k % len(_COLORS)]}m{mark}\x1b[0m"
            text = labels[k] if labels is not None else _label(s, max(20, width - 4))
            lines.append(f"{mark} {text}")
    return "\n".join(lines)
