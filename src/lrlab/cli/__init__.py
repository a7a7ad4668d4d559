"""The ``lrlab`` command line: one verb per job.

Each group of verbs lives in its own module and registers itself on the shared Typer app:
``_schedules`` (list, show, plot, values, gallery), ``_study`` (study, study report) and
``_find`` (find). Errors a user can fix exit non-zero with a one-line reason (:class:`CliError`).
"""

from __future__ import annotations

import sys

import typer

from lrlab.cli import _find, _schedules, _study

app = typer.Typer(
    name="lrlab",
    help="Exact, portable, measurable learning-rate schedules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_schedules.register(app)
_study.register(app)
_find.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lrlab`` script: user errors become one line on stderr and exit 2."""
    _study.ARGV = list(sys.argv[1:] if argv is None else argv)  # the exact command, for the study's report
    try:
        app(args=argv, standalone_mode=True)
    except ValueError as e:  # bad specs, configs and parameters raise ValueError with a message
        print(f"lrlab: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
