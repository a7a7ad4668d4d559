"""CLI polish: --version, shell completion, help without type labels, --seeds lists, plain progress
lines when the output is not a terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lrlab
from lrlab.cli import app, main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "lrlab"


def _lrlab() -> list[str]:
    return [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-c", "from lrlab.cli import main; main()"]


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"lrlab {lrlab.__version__}\n"


def test_shell_completion_completes_verbs_and_options():
    env = {**os.environ, "_LRLAB_COMPLETE": "complete_bash", "COMP_WORDS": "lrlab stu", "COMP_CWORD": "1"}
    out = subprocess.run(_lrlab(), capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["study"], out
    env.update(COMP_WORDS="lrlab study --tune-", COMP_CWORD="2")
    out = subprocess.run(_lrlab(), capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["--tune-seeds"], out
    script = subprocess.run([*_lrlab(), "--show-completion", "bash"], capture_output=True, text=True,
                            env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}, timeout=120)
    assert script.returncode == 0 and "_LRLAB_COMPLETE=complete_bash" in script.stdout


@pytest.mark.parametrize("verb", [["study"], ["values"], ["find"], ["plot"], ["study", "report"]])
def test_help_has_no_type_labels_on_our_options(verb):
    res = CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for line in res.output.splitlines():
        if re.search(r"--(?!help\b)[a-z-]+", line) and "--help" not in line:
            assert not re.search(r"<(str|int|float|bool|path|int range|float range)>", line), line
    if verb == ["study"]:
        assert re.search(r"--out\s+OUT\s", res.output) and re.search(r"--fresh\s+Ignore", res.output)


def test_seeds_as_a_list_and_as_a_count(tmp_path, capsys):
    from lrlab.study.storage import StudyStorage

    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["study", "--out", str(out), "--epochs", "1", "--seeds", "3,7", "--tune", "none", "--workers", "0",
              "--schedules", "constant", "--optimizers", "adam", "--no-progress", "--format", "json"])
    assert e.value.code == 0
    seeds = {t.params["seed"] for t in StudyStorage(str(out / "study.db"), "lrlab").study.get_trials()}
    assert seeds == {3, 7}
    capsys.readouterr()


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "0,x"], "--seeds: expected a count or distinct seeds >= 0 like 0,1,2, got '0,x'"),
    (["--seeds", "1,1"], "--seeds: expected a count or distinct seeds >= 0"),
    (["--seeds", "-1,2"], "--seeds: expected a count or distinct seeds >= 0"),
    (["--seeds", "0,1", "--tune-seeds", "0,1"], "are both tuning and final seeds"),  # final seeds must stay disjoint from tuning seeds
    (["--tune-seeds", "a"], "--tune-seeds: expected a count or distinct seeds"),
])
def test_bad_seeds(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["study", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("lrlab: error: ") and message in err and err.count("\n") == 1, err


def test_plain_progress_lines_when_not_a_terminal(tmp_path):
    """A log file gets one line per 10% of the trials while the study runs (rich draws nothing)."""
    out = tmp_path / "o"
    args = [*_lrlab(), "study", "--out", str(out), "--epochs", "1", "--seeds", "0,1,2,3,4", "--tune", "none",
            "--workers", "0", "--schedules", "constant,linear", "--optimizers", "adam", "--config", "tiny.yaml"]
    (tmp_path / "tiny.yaml").write_text("task_kwargs: {subset: 100}\n")
    res = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if re.match(r"training: \d+/10 trials", ln)]
    assert [ln.split(" trials")[0] for ln in lines] == [f"training: {k}/10" for k in range(1, 11)], res.stdout
    assert lines[-1].startswith("training: 10/10 trials (100%), ")


def test_lr_range_test_before_a_study_shows_progress(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text("task_kwargs: {subset: 100}\n")
    with pytest.raises(SystemExit) as e:
        main(["study", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "o"), "--epochs", "1",
              "--seeds", "1", "--tune", "none", "--workers", "0", "--schedules", "constant", "--optimizers", "adam",
              "--peak-lr", "find", "--no-progress"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    lines = [ln.strip() for ln in text.splitlines() if "LR range test for adam:" in ln]
    assert lines == [f"LR range test for adam: {k}/3 seeds" for k in (1, 2, 3)], text
    assert text.index("3/3 seeds") < text.index("peak lr for adam:")


def test_show_prints_formulas_as_unicode_not_latex():
    from lrlab.schedules import registry

    runner = CliRunner()
    for name in registry():
        res = runner.invoke(app, ["show", name], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        for raw in ("\\eta", "\\text", "\\frac", ".. math::", ":math:`", "``", ":class:`"):
            assert raw not in res.output, (name, raw)
    cosine = runner.invoke(app, ["show", "cosine"], env={"COLUMNS": "200"}).output
    # the fraction is cos's whole argument: cos((π t)/T), never cos(π t)/T (cos divided by T)
    assert "η(t) = end + (peak − end)[½(1 + cos((π min(t, T))/T))]^(exponent)" in cosine
    shown = {name: runner.invoke(app, ["show", name], env={"COLUMNS": "200"}).output
             for name in ("step_decay", "snapshot", "inverse_sqrt", "interpolate", "cyclic")}
    assert "η(t) = peak · factor^(⌊ (t + offset)/every ⌋)" in shown["step_decay"]
    # a fraction multiplied by a parenthesis, and a fraction under a cosine
    assert "η(t) = (peak/2)(cos((π mod(τ, P))/P) + 1)" in shown["snapshot"]
    # the square root covers the whole fraction; peak multiplies both cases
    assert "η(t) = peak · {t/max(1, W), if t < W; 1/√((t + τ − W)/τ), if t ≥ W}" in shown["inverse_sqrt"]
    assert "η(t) = b + ((a − b)/2)(cos π p + 1) (cos)" in shown["interpolate"]
    # the definition of s ends before ", η(t) = ..." starts
    assert "s = {x/r, if x ≤ r; (x − 1)/(r − 1), if x > r}, η(t) = base" in shown["cyclic"]
    # --format json keeps the documentation as written (data for the docs site)
    doc = json.loads(runner.invoke(app, ["show", "cosine", "--format", "json"]).output)["doc"]
    assert ".. math::" in doc and "\\eta" in doc


@pytest.mark.parametrize(
    "latex, text",
    [
        (r"\cos\frac{\pi t}{T}", "cos((π t)/T)"),
        (r"\exp\frac{t}{T}", "exp(t/T)"),
        (r"2^\frac{t}{T}", "2^(t/T)"),
        (r"2^{\frac{t - 1}{T}}", "2^((t − 1)/T)"),
        (r"\sqrt{\frac{a}{b}} + \sqrt{t}", "√(a/b) + √t"),
        (r"\lfloor \frac{t}{N} \rfloor", "⌊ t/N ⌋"),
        (r"\frac{a}{2} + \tfrac12(1 + c)", "a/2 + ½(1 + c)"),
        (r"\eta_\text{last}", "η_last"),
    ],
)
def test_readable_fractions_keep_their_extent(latex, text):
    from lrlab.cli._readable import readable

    assert readable(f":math:`{latex}`") == text


def test_study_report_format_json(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text("task_kwargs: {subset: 100}\n")
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["study", "--config", str(tmp_path / "tiny.yaml"), "--out", str(out), "--epochs", "1", "--seeds", "2",
              "--tune", "none", "--workers", "0", "--schedules", "constant,linear", "--optimizers", "adam",
              "--no-progress", "--format", "json"])
    assert e.value.code == 0
    ran = json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit) as e:
        main(["study", "report", "--out", str(out), "--format", "json"])
    assert e.value.code == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is one JSON document, the table went to stderr
    assert doc == ran and "baseline" in captured.err
    assert {c["schedule"] for c in doc["cells"]} == {"constant", "linear"}


def _command_paths(cmd, path=()):
    """Every command and group of the CLI as its argument path (``()`` is ``lrlab`` itself)."""
    yield path
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


_TYPE_LABEL = re.compile(r"<(?:str|text|int|integer|float|bool|boolean|path|file|choice|list\[[^\]]*\]|"
                         r"[a-z]+ range|datetime|uuid)>|\b(?:TEXT|INTEGER|FLOAT|BOOLEAN|PATH)\b")


def test_every_help_screen_is_free_of_type_labels():
    """typer's own --help/--install-completion/--show-completion and positional arguments too,
    in every command's help (walked from the click tree, so a new command is covered)."""
    import typer.main

    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("study", "compare") in paths and ("show",) in paths and len(paths) >= 12
    for path in paths:
        res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (path, res.output)
        labels = [line for line in res.output.splitlines() if _TYPE_LABEL.search(line)]
        assert not labels, (path, labels)
        if path == ():  # the flags show no metavar at all
            assert re.search(r"--install-completion\s{2,}Install completion", res.output), res.output
        if path == ("show",):  # an argument's row: the name, then its help
            assert re.search(r"NAME\s{2,}A registered schedule name", res.output), res.output
