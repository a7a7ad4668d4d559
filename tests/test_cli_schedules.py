"""The schedule verbs of the ``lrlab`` command line, through ``lrlab.cli.main`` and a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrlab import registry
from lrlab.cli import main
from lrlab.schedules import constant, examples
from lrlab.spec import dump

SPEC = "constant(0.1, steps=3) >> constant(0.01)"


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_values_csv_are_exact(capsys):
    code, out, err = run(capsys, "values", SPEC, "--steps", "5")
    assert code == 0 and err == ""
    assert out == "step,lr\n0,0.1\n1,0.1\n2,0.1\n3,0.01\n4,0.01\n"


def test_values_json_every_and_resolution(capsys):
    code, out, _ = run(capsys, "values", "warmup(constant(1.0, steps=50%), steps=1ep)", "--total-steps", "8",
                       "--steps-per-epoch", "4", "--format", "json", "--every", "2")  # fmt: skip
    assert code == 0
    assert json.loads(out) == {
        "schedule": "warmup(schedule=constant(value=1.0, steps=4), steps=4)",
        "step": [0, 2, 4, 6],
        "lr": [0.0, 0.5, 1.0, 1.0],
    }


def test_values_default_horizon_is_the_duration_plus_ten_percent(capsys):
    _, out, _ = run(capsys, "values", "constant(0.5, steps=10)")
    assert out.splitlines()[-1] == "10,0.5" and len(out.splitlines()) == 12


def test_values_from_a_config_file(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    dump(constant(0.1, steps=3) >> constant(0.01), path)
    _, out, _ = run(capsys, "values", f"@{path}", "--steps", "4")
    assert out == "step,lr\n0,0.1\n1,0.1\n2,0.1\n3,0.01\n"


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["values", "constant(0.1, steps=3) >> constant(0.01", "--steps", "5"],
         "lrlab: error: expected ',' or ')' at column 40, found the end of the text"),
        (["plot", "cosin(0.1)"], "lrlab: error: unknown schedule 'cosin' at column 1; did you mean cosine?"),
        (["values", "constant(0.1, steps=10%)"],
         "lrlab: error: constant: steps='10%' is a fraction of training: give total_steps to resolve it "
         "(on the command line: --total-steps N, --steps-per-epoch N)"),
        (["values", "constant(0.1)"], "lrlab: error: these schedules run forever and have no phases: "),
        (["values", "@missing.yaml"], "lrlab: error: missing.yaml: cannot read it"),
        (["show", "warmpu"], "lrlab: error: unknown schedule 'warmpu'; did you mean warmup?"),
        (["values", SPEC, "--format", "xml"], "lrlab: error: --format must be csv or json, got 'xml'"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_error_line(capsys, args, first_line):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.splitlines()[0].startswith(first_line)
    assert all(not line.startswith("Traceback") for line in err.splitlines())


def test_a_spec_error_shows_the_caret_under_the_mistake(capsys):
    _, _, err = run(capsys, "plot", "constant(0.1) >> constnt(0.01)")
    assert err.splitlines()[1:] == ["  constant(0.1) >> constnt(0.01)", "                   ^"]


def test_list_shows_every_registered_schedule(capsys):
    code, out, _ = run(capsys, "list", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == list(registry())
    warm = next(r for r in rows if r["name"] == "warmup")
    assert warm["summary"].startswith("Warmup from `start`")
    assert {p["name"]: p["default"] for p in warm["parameters"]}["shape"] == "linear"
    _, table, _ = run(capsys, "list")
    assert "warmup" in table and "shape=linear" in table.replace("\n", " ").replace("│", " ")


def test_show_prints_formula_parameters_and_an_example(capsys):
    code, out, _ = run(capsys, "show", "warmup")
    assert code == 0
    assert "a + (η₀ − a) p, if linear" in out  # the formula from the docstring, as Unicode text
    assert "required" not in out and "linear" in out
    assert f"example: {examples()['warmup'][0]}" in out
    _, out, _ = run(capsys, "show", "constant", "--format", "json")
    info = json.loads(out)
    assert info["parameters"] == [
        {"name": "value", "type": "float", "default": "0.0", "duration": False},
        {"name": "steps", "type": "int | str | None", "default": "none", "duration": True},
    ]


def test_spec_prints_canonical_text_and_configs(capsys):
    _, out, _ = run(capsys, "spec", "constant(0.1,3)>>constant(1e-2)")
    assert out == "constant(value=0.1, steps=3) >> constant(value=0.01)\n"
    _, out, _ = run(capsys, "spec", SPEC, "--format", "json")
    assert json.loads(out)["name"] == "sequence"


def test_plot_to_a_png_and_to_the_terminal(capsys, tmp_path):
    from matplotlib.image import imread

    png = tmp_path / "lr.png"
    code, out, _ = run(capsys, "plot", SPEC, "constant(0.05)", "-o", str(png), "--steps", "10", "--log")
    assert code == 0 and out == f"wrote {png}\n"
    assert imread(png).shape == (432, 840, 4)
    code, out, _ = run(capsys, "plot", SPEC, "--steps", "8", "--width", "24", "--height", "3")
    assert out.splitlines() == [  # no colour when the output is not a terminal
        "  0.1 ┤⠉⠉⠉⠉⠉⠉⡇",
        "0.055 ┤      ⡇",
        " 0.01 ┤      ⣇⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀",
        "      └┬───────┬───────┬",
        " step  0       4       8",
    ]


def test_gallery_verb(capsys, tmp_path):
    code, out, _ = run(capsys, "gallery", str(tmp_path), "--name", "constant")
    assert code == 0 and out == f"wrote 1 picture to {tmp_path}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["constant.png"]  # no partial overview


def _script() -> Path:
    return Path(sys.executable).with_name("lrlab")


@pytest.mark.skipif(not _script().exists(), reason="the lrlab script is installed with the package")
def test_the_installed_script_in_a_real_process():
    env = {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "80"}
    ok = subprocess.run([_script(), "values", SPEC, "--steps", "4"], capture_output=True, text=True, env=env, timeout=60)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "step,lr\n0,0.1\n1,0.1\n2,0.1\n3,0.01\n", "")
    bad = subprocess.run([_script(), "plot", "constant(0.1) >> 0.5"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "lrlab: error: expected a schedule on each side of >> at column 18, got the number 0.5; "
        "a constant rate is constant(0.5)",
        "  constant(0.1) >> 0.5",
        "                   ^",
    ]


# ---- the examples the README shows (keep in step with the README's "Schedules as text" part) ----
README_SPEC = "warmup(cosine(0.1, 1e-5, steps=90%), steps=10%)"
README_WSD = "wsd(0.1, warmup=10%, stable=70%, decay=20%, decay_shape='1-sqrt')"


def test_readme_values_example(capsys):
    import math

    _, out, _ = run(capsys, "values", README_SPEC, "--total-steps", "10000", "--every", "1000")
    rows = [line.split(",") for line in out.splitlines()]
    assert rows[0] == ["step", "lr"] and [int(r[0]) for r in rows[1:]] == list(range(0, 10000, 1000))

    def expected(t):  # linear warmup 0 -> 0.1 over 1000 steps, then cosine 0.1 -> 1e-5 over 9000
        if t < 1000:
            return 0.1 * t / 1000
        return 1e-5 + (0.1 - 1e-5) * 0.5 * (1 + math.cos(math.pi * (t - 1000) / 9000))

    for step, lr in rows[1:]:
        assert float(lr) == pytest.approx(expected(int(step)), rel=1e-14, abs=1e-18)


def test_readme_plot_and_spec_examples(capsys, tmp_path):
    png = tmp_path / "lr.png"
    code, _, _ = run(capsys, "plot", README_SPEC, README_WSD, "--total-steps", "10000", "-o", str(png))
    assert code == 0 and png.stat().st_size > 10_000
    yaml_path = tmp_path / "schedule.yaml"
    yaml_path.write_text(f'schedule: "{README_WSD}"\n')
    _, out, _ = run(capsys, "spec", f"@{yaml_path}")
    assert out == "wsd(peak=0.1, warmup=10%, stable=70%, decay=20%, end=0.0, decay_shape='1-sqrt')\n"


def test_readme_python_example(tmp_path):
    import lrlab
    import lrlab.plot
    import lrlab.spec

    s = lrlab.parse("linear(0.0, 0.1, steps=500) >> cosine(0.1, 1e-5, steps=9500)")
    assert str(s) == "linear(start=0.0, end=0.1, steps=500) >> cosine(peak=0.1, end=1e-05, steps=9500)"
    lrlab.spec.dump(s, tmp_path / "schedule.yaml")
    assert lrlab.spec.load(tmp_path / "schedule.yaml") == s
    lrlab.plot.plot(s).savefig(tmp_path / "lr.png")
    print(lrlab.plot.terminal(s, width=60, height=8))
