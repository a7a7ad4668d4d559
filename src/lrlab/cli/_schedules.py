"""Schedule verbs: ``lrlab list``, ``show``, ``spec``, ``plot``, ``values`` and ``gallery``.

A SCHEDULE argument is a text spec (``"linear(0.0, 0.1, steps=500) >> cosine(0.1, 1e-5, steps=9500)"``)
or ``@path`` to a JSON/YAML/TOML config file. Durations in epochs (``5ep``) or percent (``10%``)
are resolved with ``--steps-per-epoch`` and ``--total-steps``. A bad spec exits with status 2 and
``lrlab: error: <reason> at column N``, followed by the spec with a caret under the mistake; an
output path that cannot be written exits 2 with ``lrlab: error: <path>: <reason>``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lrlab.schedules import Schedule, examples, registry
from lrlab.spec import _unknown_schedule, dumps, schedule_from_arg

MAX_ROWS = 10_000_000
"""The most rows ``lrlab values`` prints (``--steps`` / ``--every``); more is refused, not allocated."""

_TOTAL = typer.Option("--total-steps", min=1, help="Training length in steps: resolves durations written as '10%'.")
_PER_EPOCH = typer.Option("--steps-per-epoch", min=1, help="Optimizer steps per epoch: resolves durations written as '5ep'.")


def _load(arg: str, total_steps: int | None, steps_per_epoch: int | None) -> Schedule:
    s = schedule_from_arg(arg)
    if not s.is_resolved():
        try:
            s = s.resolve(total_steps=total_steps, steps_per_epoch=steps_per_epoch)
        except ValueError as e:
            raise ValueError(f"{e} (on the command line: --total-steps N, --steps-per-epoch N)") from None
    return s


def _summary(cls: type[Schedule]) -> str:
    """The docstring's first sentence, without reStructuredText quoting."""
    doc = (inspect.getdoc(cls) or "").split("\n\n", 1)[0]
    return " ".join(doc.split()).replace("``", "`")


def _params(cls: type[Schedule]) -> list[dict[str, Any]]:
    from lrlab.schedules._text import format_value

    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING:
            default = format_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = format_value(f.default_factory())
        else:
            default = None
        out.append({"name": f.name, "type": str(f.type), "default": default, "duration": bool(f.metadata.get("duration"))})
    return out


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def cmd_list(
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List every registered schedule: name, one-line summary, parameters."""
    rows: list[dict[str, Any]] = [{"name": name, "summary": _summary(cls), "parameters": _params(cls)} for name, cls in registry().items()]
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if fmt != "table":
        raise ValueError(f"--format must be table or json, got {fmt!r}")
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(rows)} schedules (`lrlab show NAME` for the formula)", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("summary")
    table.add_column("parameters (default)")
    for r in rows:
        params = ", ".join(p["name"] if p["default"] is None else f"{p['name']}={p['default']}" for p in r["parameters"])
        table.add_row(Text(r["name"]), Text(r["summary"]), Text(params))
    _console().print(table)


def cmd_show(
    name: Annotated[str, typer.Argument(help="A registered schedule name (see `lrlab list`).")],
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Show one schedule: its documentation (with the exact formula), parameters and an example."""
    cls = registry().get(name)
    if cls is None:
        raise ValueError(_unknown_schedule(name))
    ex = examples().get(name) or []
    info: dict[str, Any] = {
        "name": name,
        "summary": _summary(cls),
        "doc": inspect.getdoc(cls) or "",
        "parameters": _params(cls),
        "example": str(ex[0]) if ex else None,
    }
    if fmt == "json":
        typer.echo(json.dumps(info, indent=2))
        return
    if fmt != "text":
        raise ValueError(f"--format must be text or json, got {fmt!r}")
    from rich.table import Table
    from rich.text import Text

    from lrlab.cli._readable import readable

    console = _console()
    console.print(Text(name, style="bold cyan"))
    console.print(Text(readable(info["doc"])), soft_wrap=True)  # formulas as Unicode, not LaTeX/reST
    table = Table(title="parameters", title_justify="left")
    for col in ("name", "type", "default"):
        table.add_column(col)
    for p in info["parameters"]:
        kind = p["type"] + (" (duration: steps, 'Nep' or 'P%')" if p["duration"] else "")
        table.add_row(Text(p["name"]), Text(kind), Text("required" if p["default"] is None else p["default"]))
    console.print(table)
    if info["example"]:
        console.print(Text("example: ", style="bold") + Text(info["example"]))


def cmd_spec(
    schedule: Annotated[str, typer.Argument(help="A spec, or @file.json / @file.yaml.")],
    fmt: Annotated[str, typer.Option("--format", help="text (the canonical spec), json or yaml.")] = "text",
) -> None:
    """Print a schedule in canonical text form, or as a JSON/YAML config file."""
    typer.echo(dumps(schedule_from_arg(schedule), fmt), nl=False)


def cmd_plot(
    schedules: Annotated[list[str], typer.Argument(help="One or more specs (or @file.yaml), drawn together.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write a picture (.png, .svg, .pdf) instead of drawing in the terminal.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Steps to draw (default: --total-steps, else the longest finite duration + 10%).")] = None,
    log: Annotated[bool, typer.Option("--log", help="Logarithmic lr axis.")] = False,
    total_steps: Annotated[int | None, _TOTAL] = None,
    steps_per_epoch: Annotated[int | None, _PER_EPOCH] = None,
    width: Annotated[int | None, typer.Option("--width", min=20, help="Terminal chart width in characters (default: the terminal's).")] = None,
    height: Annotated[int, typer.Option("--height", min=2, help="Terminal chart height in rows.")] = 16,
) -> None:
    """Plot schedules: a PNG with -o, else a chart in the terminal."""
    from lrlab import plot as lplot

    items = [_load(a, total_steps, steps_per_epoch) for a in schedules]
    steps = steps if steps is not None else total_steps
    if output is not None:
        fig = lplot.plot(items, steps, log=log)
        fig.savefig(output, dpi=120)
        typer.echo(f"wrote {output}")
        return
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    typer.echo(lplot.terminal(items, steps, width=width, height=height, log=log, color=color))


def cmd_values(
    schedule: Annotated[str, typer.Argument(help="A spec, or @file.json / @file.yaml.")],
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Number of steps: 0 .. N-1 (default: --total-steps, else the duration + 10%).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    every: Annotated[int, typer.Option("--every", min=1, help="Print every K-th step only.")] = 1,
    total_steps: Annotated[int | None, _TOTAL] = None,
    steps_per_epoch: Annotated[int | None, _PER_EPOCH] = None,
) -> None:
    """Print the learning rate at each step (exact: shortest round-trip decimals)."""
    import numpy as np

    from lrlab.plot import horizon

    if fmt not in ("csv", "json"):
        raise ValueError(f"--format must be csv or json, got {fmt!r}")
    s = _load(schedule, total_steps, steps_per_epoch)
    n = horizon(s, steps if steps is not None else total_steps)
    rows = -(-n // every)
    if rows > MAX_ROWS:
        raise ValueError(
            f"{n:,} steps with --every {every} would print {rows:,} rows; at most {MAX_ROWS:,}: "
            f"give --every {-(-n // MAX_ROWS)} or more, or fewer --steps"
        )
    at = np.arange(0, n, every, dtype=np.int64)
    lrs = s.values(at.astype(np.float64)).tolist()
    if fmt == "json":
        typer.echo(json.dumps({"schedule": str(s), "step": at.tolist(), "lr": lrs}))
        return
    sys.stdout.write("step,lr\n" + "".join(f"{t},{v!r}\n" for t, v in zip(at.tolist(), lrs)))


def cmd_gallery(
    outdir: Annotated[Path, typer.Argument(help="Folder for the PNGs (created if missing).")],
    names: Annotated[list[str] | None, typer.Option("--name", help="Only this schedule (repeatable).")] = None,
) -> None:
    """Write one PNG per registered schedule (its first example) and overview.png (without --name)."""
    from lrlab.plot import gallery

    written = gallery(outdir, names or None)
    typer.echo(f"wrote {len(written)} picture{'' if len(written) == 1 else 's'} to {outdir}")


def register(app: typer.Typer) -> None:
    """Add the schedule verbs to the ``lrlab`` app."""
    app.command("list")(cmd_list)
    app.command("show")(cmd_show)
    app.command("spec")(cmd_spec)
    app.command("plot")(cmd_plot)
    app.command("values")(cmd_values)
    app.command("gallery")(cmd_gallery)
