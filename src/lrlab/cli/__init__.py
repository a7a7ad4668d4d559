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

import typer

from lrlab.cli import _find, _schedules, _study

app = typer.Typer(
    name="lrlab",
    help="Exact, portable, measurable learning-rate schedules.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, powershell
    pretty_exceptions_enable=False,
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
    every option or argument without a metavar gets its long name in capitals (flags: none).

    The evaluated annotations are written back into each function's ``__annotations__``: with
    ``from __future__ import annotations`` every evaluation of ``Annotated[..., typer.Option()]``
    builds new option objects, so typer would not see the metavars set here otherwise."""
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
