"""The ``lrlab`` command line: one verb per job.

Each group of verbs lives in its own module and registers itself on the shared Typer app:
``_schedules`` (list, show, plot, values, gallery), ``_study`` (study, study report) and
``_find`` (find). Errors a user can fix exit with status 2 and a one-line ``lrlab: error: ...``
on stderr (:func:`main`), never a traceback.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from lrlab.cli import _find, _schedules, _study


class _PlainArgument(TyperArgument):
    """A positional argument whose help row shows its name only (typer adds ``<str>``/``<path>``
    there even when the argument has a metavar)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _plain_params(cmd: TyperCommand | TyperGroup, ctx: Any) -> None:
    """Drop the type labels typer puts on parameters lrlab does not declare itself: the flags
    ``--help``, ``--install-completion`` and ``--show-completion`` (``<bool>``) get an empty
    metavar, other options without one their name in capitals, and positional arguments lose
    their ``<str>`` column."""
    for p in cmd.get_params(ctx):
        if isinstance(p, TyperArgument) and not isinstance(p, _PlainArgument):
            p.__class__ = _PlainArgument
        elif isinstance(p, TyperOption) and p.metavar is None:
            p.metavar = "" if p.is_flag or p.count else (p.name or "value").upper()


class _PlainCommand(TyperCommand):
    """A command whose help shows no type labels (:func:`_plain_params`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_params(self, ctx)
        super().format_help(ctx, formatter)


class _PlainGroup(TyperGroup):
    """A group (``lrlab``, ``lrlab study``) whose help shows no type labels."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_params(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    name="lrlab",
    help="Exact, portable, measurable learning-rate schedules.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, powershell
    pretty_exceptions_enable=False,
    cls=_PlainGroup,
)


def _version(value: bool) -> None:
    if value:
        import lrlab

        typer.echo(f"lrlab {lrlab.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print lrlab's version and exit."),
) -> None:
    """Exact, portable, measurable learning-rate schedules."""


_schedules.register(app)
_study.register(app)
_find.register(app)


def error_line(e: BaseException) -> str:
    """The one-line reason shown for a user error (plus a spec's caret lines, when it has them)."""
    if isinstance(e, OSError):  # a path that cannot be read or written: name it, no errno noise
        what = f"{e.filename}: " if e.filename is not None else ""
        return f"lrlab: error: {what}{e.strerror or e}"
    return f"lrlab: error: {e}"


def _plain_metavars(t: typer.Typer) -> None:
    """Help shows ``--out OUT`` and ``--fresh`` instead of typer's ``<str>``/``<bool>`` type labels:
    every option or argument without a metavar gets its long name in capitals (flags: none), and
    every command and group renders its help through :class:`_PlainCommand`/:class:`_PlainGroup`
    (typer's own options and the positional arguments' type column).

    The evaluated annotations are written back into each function's ``__annotations__``: with
    ``from __future__ import annotations`` every evaluation of ``Annotated[..., typer.Option()]``
    builds new option objects, so typer would not see the metavars set here otherwise."""
    t.info.cls = _PlainGroup
    for c in t.registered_commands:
        if c.cls in (None, TyperCommand):
            c.cls = _PlainCommand
    fns = [c.callback for c in t.registered_commands]
    if t.registered_callback is not None:
        fns.append(t.registered_callback.callback)
    for fn in fns:
        if fn is None:
            continue
        hints = typing.get_type_hints(fn, include_extras=True)
        for name, p in inspect.signature(fn).parameters.items():
            hint = hints.get(name)
            is_flag = (getattr(hint, "__origin__", hint) if hasattr(hint, "__metadata__") else hint) is bool
            for info in [p.default, *getattr(hint, "__metadata__", ())]:
                if not isinstance(info, typer.models.ParameterInfo) or info.metavar is not None:
                    continue
                flags = [d for d in (getattr(info, "param_decls", None) or ()) if d.startswith("--")]
                label = flags[0][2:].split("/")[0] if flags else name
                info.metavar = "" if is_flag else label.upper().replace("-", "_")
        fn.__annotations__.update(hints)
    for g in t.registered_groups:
        if g.typer_instance is not None:
            _plain_metavars(g.typer_instance)


_plain_metavars(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lrlab`` script: user errors become one line on stderr and exit 2.

    User errors are ``ValueError`` (bad specs, configs and parameters, with their message),
    ``OSError`` (an output path that cannot be written, an input that cannot be read) and click's
    usage errors (an unknown option, a value that is not an integer, ...).
    """
    from typer.exceptions import TyperException  # the base of click's errors (typer vendors click)

    _study.ARGV = list(sys.argv[1:] if argv is None else argv)  # the exact command, for the study's report

    try:
        code = app(args=argv, standalone_mode=False)  # returns --help's 0, or None after a command
    except TyperException as e:  # click's usage errors: an unknown option, a value not an integer...
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # bare `lrlab`: the help
            print(ctx.get_help(), file=sys.stderr)
            sys.exit(2)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"lrlab: error: {e.format_message()}{hint}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except (ValueError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
