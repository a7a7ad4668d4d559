"""``lrlab find``: the LR range test on a study task, with labelled suggestions and their spread.

Defaults: the MNIST-1D task (benchmark CNN), SGD with momentum 0.9, lr from 1e-7 to 10 over 100
updates, 3 seeds. It prints each suggestion's median over the seeds, every seed's value and the
spread in decades, then the recommended peak lr and whether the result is confident (with the
reasons if not). The exit status is 0 either way; ``--format json`` prints the same as data.

    lrlab find
    lrlab find --optimizer adam -o adam.png
    lrlab find --task mypkg.tasks:my_task --optimizer sgd --optimizer-kwargs '{"momentum": 0.5}'
    lrlab find --task my_task_file:make --task-kwargs n=500,noise=0.1
    lrlab find --data ~/data/cifar-10-batches-py --num-steps 200
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

_FORMATS = ("table", "json")


def _parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(
            f"--seeds must be comma-separated integers such as 0,1,2, got {text!r}"
        ) from None
    if not seeds:
        raise ValueError(f"--seeds must name at least one seed, got {text!r}")
    return seeds


def _parse_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"--optimizer-kwargs must be a JSON object such as '{{\"momentum\": 0.5}}', got {text!r} ({e})"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"--optimizer-kwargs must be a JSON object, got {text!r}")
    return value


def _table(result: Any) -> Any:
    from rich.table import Table

    s = result.settings
    title = (
        f"LR range test: task {s.get('task')}, {s.get('optimizer')}"
        + (f" {s['optimizer_kwargs']}" if s.get("optimizer_kwargs") else "")
        + f", lr {s['start_lr']:g} -> {s['end_lr']:g} over {s['num_steps']} steps ({s['mode']}), seeds {s['seeds']}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("suggestion", style="bold")
    table.add_column("lr (median)", justify="right")
    table.add_column("per seed", justify="left")
    table.add_column("spread (decades)", justify="right")
    for method, m in result.suggestions.items():
        mark = " *" if method == result.recommended else ""
        spread = f"{m.spread:.2f}"
        if method == result.recommended and m.spread > result.max_spread:
            spread = f"[red]{spread}[/red]"
        table.add_row(method + mark, f"{m.lr:.3g}", ", ".join(f"{v:.3g}" for v in m.lrs), spread)
    return table


def cmd_find(
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="mnist1d, mnist1d_mlp, cifar10 or package.module:function returning a Task "
            "(the current directory is on the path).",
        ),
    ] = "mnist1d",
    task_kwargs_opt: Annotated[
        list[str] | None,
        typer.Option(
            "--task-kwargs",
            help="key=value arguments of the task builder (repeatable or comma-separated; YAML scalars).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Dataset directory (CIFAR-10 python batches; implies --task cifar10 unless --task is given).",
        ),
    ] = None,
    optimizer: Annotated[
        str,
        typer.Option("--optimizer", help="sgd (momentum 0.9), adam, rmsprop, adagrad or adadelta."),
    ] = "sgd",
    optimizer_kwargs: Annotated[
        str | None,
        typer.Option(
            "--optimizer-kwargs",
            help="Overrides of the optimizer defaults, as JSON: '{\"momentum\": 0.5}'.",
        ),
    ] = None,
    start_lr: Annotated[float, typer.Option("--start-lr", help="lr of the first update.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="lr of the last update.")] = 10.0,
    num_steps: Annotated[
        int,
        typer.Option(
            "--num-steps", help="Updates per repeat (the sweep stops early if the loss diverges)."
        ),
    ] = 100,
    mode: Annotated[
        str, typer.Option("--mode", help="exp (evenly spaced in log lr) or linear.")
    ] = "exp",
    seeds: Annotated[
        str,
        typer.Option(
            "--seeds", help="Comma-separated seeds, one repeat each (model init and data order)."
        ),
    ] = "0,1,2",
    recommend: Annotated[
        str,
        typer.Option(
            "--recommend",
            help="Suggestion behind the recommended lr: minimum (min/10), valley or steepest.",
        ),
    ] = "minimum",
    max_spread: Annotated[
        float,
        typer.Option(
            "--max-spread",
            help="Spread (decades) above which the result is flagged low-confidence.",
        ),
    ] = 0.5,
    beta: Annotated[float, typer.Option("--beta", help="Loss smoothing factor in [0, 1).")] = 0.98,
    diverge_factor: Annotated[
        float,
        typer.Option(
            "--diverge-factor",
            help="Stop when the smoothed loss exceeds this multiple of its best.",
        ),
    ] = 4.0,
    device: Annotated[str, typer.Option("--device", help="torch device (cpu, cuda).")] = "cpu",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Save the plot here (.png, .svg, .pdf).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    curves: Annotated[
        bool,
        typer.Option("--curves", help="With --format json: include every repeat's lrs and losses."),
    ] = False,
) -> None:
    """LR range test: sweep the lr, suggest a peak lr (steepest, valley, minimum/10) with its spread over seeds."""
    if fmt not in _FORMATS:
        raise ValueError(f"--format must be table or json, got {fmt!r}")
    seed_tuple = _parse_seeds(seeds)
    kwargs = _parse_kwargs(optimizer_kwargs)
    from lrlab.finder import find_for_task
    from lrlab.study.optimizers import OPTIMIZERS
    from lrlab.study.tasks import load_task

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    from lrlab.study.config import parse_task_kwargs

    task_kwargs: dict[str, Any] = parse_task_kwargs(task_kwargs_opt or [])
    if data is not None:
        task_kwargs["data_dir"] = data
        if task in ("mnist1d", "mnist1d_mlp"):
            task = "cifar10"
    the_task = load_task(task, **task_kwargs)
    result = find_for_task(
        the_task,
        optimizer,
        kwargs,
        seeds=seed_tuple,
        num_steps=num_steps,
        start_lr=start_lr,
        end_lr=end_lr,
        mode=mode,
        beta=beta,
        diverge_factor=diverge_factor,
        recommend=recommend,
        max_spread=max_spread,
        device=device,
    )
    if output is not None:
        result.plot(output)
    if fmt == "json":
        payload = result.to_dict(curves=curves)
        if output is not None:
            payload["plot"] = output
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    console.print(_table(result))
    verdict = "[green]confident[/green]" if result.confident else "[red]LOW CONFIDENCE[/red]"
    console.print(
        f"recommended peak lr: [bold]{result.lr:.3g}[/bold] ({result.recommended}, spread "
        f"{result.spread:.2f} decades over {len(result.suggestions[result.recommended].lrs)} seeds; "
        f"threshold {result.max_spread:g})",
        soft_wrap=True,
    )
    console.print(f"verdict: {verdict}", soft_wrap=True)
    for note in result.notes:
        console.print(f"  - {note}", soft_wrap=True)
    if output is not None:
        from rich.markup import escape

        console.print(f"plot: {escape(str(output))}")  # a path such as runs/a[/b] is not markup


def register(app: typer.Typer) -> None:
    """Add ``find`` to the ``lrlab`` app."""
    app.command("find")(cmd_find)
