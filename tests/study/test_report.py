"""The study report: terminal table, offline HTML, PNG, CSV and JSON from synthetic trial records."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
from rich.console import Console

import lrlab
from lrlab.study.report import (
    README_BEGIN,
    README_END,
    edge_lines,
    effect_lines,
    plot_lr_sensitivity,
    readme_block,
    results_document,
    results_table,
    table_rows,
    table_text,
    write_readme_results,
    write_report,
)
from lrlab.study.stats import optimizer_effects, select_lr, summarize
from lrlab.study.storage import CURVE_FIELDS, TrialRecord

SPECS = {
    "constant": "constant(1.0)",
    "linear": "linear(1.0, 0.0, steps=100%)",
    "plateau": "constant(1.0) * plateau(factor=0.5, patience=1)",
}
FINAL = {  # final test accuracy per (schedule, optimizer) and seed
    ("constant", "sgd"): [0.80, 0.82, 0.81],
    ("linear", "sgd"): [0.85, 0.87, 0.86],  # +5 points on every seed: significant
    ("plateau", "sgd"): [0.81, 0.80, math.nan],  # seed 2 diverged
    ("constant", "adam"): [0.90, 0.91, 0.89],
    ("linear", "adam"): [0.905, 0.905, 0.90],
    ("plateau", "adam"): [0.90, 0.91, 0.89],
}
EPOCHS, SPE = 4, 5


def records():
    """Final runs of every cell at the lr its tuning chose (:func:`selections`)."""
    out = []
    chosen = selections()
    for (s, o), accs in FINAL.items():
        peak = chosen[(s, o)].chosen
        sched = (peak * lrlab.parse(SPECS[s])).resolve(total_steps=EPOCHS * SPE, steps_per_epoch=SPE)
        for seed, acc in enumerate(accs):
            diverged = math.isnan(acc)
            n = 2 if diverged else EPOCHS
            curves = {
                "epoch": np.arange(n, dtype=float),
                "lr": np.array([peak * (0.5 if (s == "plateau" and e >= 2) else 1.0) for e in range(n)]),
                "train_loss": np.linspace(2.0, 0.5, n), "train_acc": np.linspace(0.3, 0.95, n),
                "val_loss": np.linspace(2.1, 0.6, n),
                "val_acc": np.linspace(0.3, 0.5, n) if diverged else np.linspace(0.3, acc - 0.01, n),
                "test_loss": np.full(n, math.nan), "test_acc": np.full(n, math.nan),
            }
            if diverged:
                curves["val_loss"][-1] = math.nan
            else:
                curves["test_loss"][-1], curves["test_acc"][-1] = 0.6, acc
            final = {"test_acc": acc, "test_loss": math.nan if diverged else 0.6,
                     "val_acc": math.nan if diverged else acc - 0.01,
                     "train_acc": math.nan if diverged else 0.95, "train_loss": math.nan if diverged else 0.5}
            out.append(TrialRecord(
                key=f"{s}/{o}/s{seed}@h", trial_id=f"{s}/{o}/s{seed}", schedule_name=s, schedule_text=SPECS[s],
                schedule_config=sched.to_config(), optimizer=o, optimizer_kwargs={}, seed=seed, peak_lr=peak,
                epochs=EPOCHS, curves=curves, final=final, diverged=diverged, diverged_epoch=1 if diverged else None,
                seconds=0.5,
            ))
    return out


def selections():
    """Tuning of every cell on a 3-point grid: sgd/linear picks the largest lr (edge), adam/plateau
    diverged everywhere except the smallest lr, the rest pick the middle."""
    out = {}
    for (s, o) in FINAL:
        peak = 0.1 if o == "sgd" else 0.01
        grid = [peak / 2, peak, peak * 2]
        vals = {grid[0]: 0.7, grid[1]: 0.8, grid[2]: 0.75}
        if (s, o) == ("linear", "sgd"):
            vals[grid[2]] = 0.9
        runs = {lr: [(v, False)] for lr, v in vals.items()}
        if (s, o) == ("plateau", "adam"):
            runs[grid[1]] = runs[grid[2]] = [(math.nan, True)]
        out[(s, o)] = select_lr(s, o, runs)
    return out


@pytest.fixture(scope="module")
def study():
    recs = records()
    summaries = summarize(recs, list(SPECS), ["sgd", "adam"], selections=selections())
    return recs, summaries, optimizer_effects(recs, summaries)


def test_table_rows(study):
    _, summaries, _ = study
    rows = {(r["optimizer"], r["schedule"]): r for r in table_rows(summaries)}
    assert rows[("sgd", "constant")]["delta"] == "baseline"
    assert rows[("sgd", "constant")]["test_acc"] == "81.0±1.0"
    assert rows[("sgd", "constant")]["val_acc"] == "80.0"
    lin = rows[("sgd", "linear")]
    assert lin["delta"].startswith("+5.0±0.0") and lin["sig"] == "*" and lin["p"] == "0.000"
    assert lin["p_holm"] == "0.000"
    assert lin["lr"] == "0.2!"  # the largest grid point: marked as the edge
    assert rows[("sgd", "constant")]["lr"] == "0.1"
    assert rows[("sgd", "plateau")]["note"].startswith("1/3 diverged")
    assert rows[("adam", "linear")]["sig"] == ""
    # target: 99 % of constant's final val (0.80 -> 0.792); linear's mean val curve is
    # 0.30, 0.483, 0.667, 0.85: reached in the 4th epoch; plateau's diverged seed stops after 2
    # epochs, so epochs 3-4 average the two others: (0.80 + 0.79) / 2 = 0.795 >= 0.792
    assert rows[("sgd", "constant")]["target"] == "4" and rows[("sgd", "linear")]["target"] == "4"
    assert rows[("sgd", "plateau")]["target"] == "4"
    assert rows[("sgd", "constant")]["best_val"] == "80.0@4"


def test_unresolved_cells_say_how_many_seeds_would_resolve_them(study):
    _, summaries, _ = study
    rows = {(r["optimizer"], r["schedule"]): r for r in table_rows(summaries)}
    cell = next(c for c in summaries if (c.schedule, c.optimizer) == ("linear", "adam"))
    need = cell.vs_baseline.seeds_needed()
    assert need is not None and need > 3
    assert rows[("adam", "linear")]["note"] == f"~{need} seeds"


def test_edge_warning_says_widen_the_grid(study):
    _, summaries, _ = study
    lines = edge_lines(summaries)
    assert len(lines) == 2
    assert lines[0].startswith("! sgd: the best lr is at the edge of the grid for linear (largest)")
    assert "widen the grid" in lines[0]
    assert "plateau (smallest)" in lines[1]  # adam/plateau: only the smallest lr survived


def test_terminal_table_and_effects(study):
    _, summaries, effects = study
    con = Console(record=True, width=100)
    con.print(results_table(summaries, title="t"))
    text = con.export_text()
    assert "baseline" in text and "1/3 diverged" in text
    assert re.search(r"linear\s+0\.2!\s+86\.0±1\.0", text)
    assert re.search(r"0\.000\s+0\.000 \*", text)  # p, then p_holm with the significance mark
    lines = effect_lines(effects)
    assert lines[0].startswith("sgd: constant 81.0 ± 1.0 %; best schedule linear +5.0")
    assert lines[-1].startswith("Do schedules help SGD more than adaptive optimizers?")


def test_write_report_files(study, tmp_path):
    recs, summaries, effects = study
    cfg = {"task": "mnist1d", "schedules": SPECS, "seeds": [0, 1, 2], "note": "<b>escaped</b>"}
    paths = write_report(tmp_path, recs, summaries, effects, config=cfg, schedules=list(SPECS),
                         steps_per_epoch=SPE, meta={"trials": len(recs)})
    for name in ("report.html", "lr_curves.png", "final_acc.png", "curves_sgd.png", "curves_adam.png",
                 "lr_sensitivity.png", "summary.csv", "trials.csv", "curves.csv", "results.json"):
        assert paths[name].is_file(), name
    for png in ("lr_curves.png", "final_acc.png", "curves_sgd.png", "lr_sensitivity.png"):
        assert paths[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["report.html"].read_text()
    assert "<script" not in page and "<link" not in page  # nothing to fetch: opens offline
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert page.count('src="data:image/png;base64,') == 5
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page and "<b>escaped</b>" not in page
    assert "1/3 diverged" in page and "Do schedules help SGD more" in page
    with paths["trials.csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(recs)
    div = [r for r in rows if r["status"] == "diverged"]
    assert len(div) == 1 and div[0]["trial_id"] == "plateau/sgd/s2" and div[0]["test_acc"] == ""
    with paths["curves.csv"].open() as f:
        curve_rows = list(csv.DictReader(f))
    assert len(curve_rows) == sum(len(r.curves["epoch"]) for r in recs)
    assert set(CURVE_FIELDS) <= set(curve_rows[0])

    def no_nan(x):
        raise AssertionError(f"non-standard JSON constant {x}")

    data = json.loads(paths["results.json"].read_text(), parse_constant=no_nan)
    assert data["config"]["note"] == "<b>escaped</b>"
    assert len(data["trials"]) == len(recs) and len(data["cells"]) == 6
    lin = next(c for c in data["cells"] if c["schedule"] == "linear" and c["optimizer"] == "sgd")
    assert lin["significant"] is True and lin["delta_vs_constant"] == pytest.approx(0.05)
    assert data["claim"].startswith("Do schedules help SGD more")


def test_results_document_cells(study):
    _, summaries, effects = study
    info = {"task": "mnist1d", "epochs": EPOCHS, "config": {"seeds": [1000, 1001, 1002]},
            "versions": {"lrlab": lrlab.__version__, "torch": "x"}, "command": "lrlab study --format json"}
    doc = results_document(summaries, effects, info)
    json.dumps(doc)  # plain data
    assert doc["versions"]["lrlab"] == lrlab.__version__ and doc["command"] == "lrlab study --format json"
    assert doc["config"] == {"seeds": [1000, 1001, 1002]}
    cells = {(c["optimizer"], c["schedule"]): c for c in doc["cells"]}
    lin = cells[("sgd", "linear")]
    assert set(lin) >= {"optimizer", "schedule", "peak_lr", "lr_grid", "val_acc", "test_acc", "p", "p_holm",
                        "epochs_to_target", "n_seeds"}
    assert lin["peak_lr"] == pytest.approx(0.2) and lin["lr_grid"] == pytest.approx([0.05, 0.1, 0.2])
    assert lin["lr_at_edge"] is True
    assert lin["test_acc"]["mean"] == pytest.approx(0.86) and lin["test_acc"]["sd"] == pytest.approx(0.01)
    assert lin["val_acc"]["mean"] == pytest.approx(0.85)
    assert lin["p_holm"] >= lin["p"] and lin["n_seeds"] == 3 and lin["epochs_to_target"] == 4
    base = cells[("sgd", "constant")]
    assert base["p"] is None and base["p_holm"] is None and base["epochs_to_target"] == 4
    assert cells[("sgd", "plateau")]["diverged"] == 1
    assert doc["warnings"] == edge_lines(summaries)


def test_sensitivity_plot_and_readme_block(study, tmp_path):
    _, summaries, effects = study
    png = plot_lr_sensitivity(selections(), list(SPECS), ["sgd", "adam"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = table_text(summaries, effects, title="t [bold]x[/bold]", n_seeds=3)
    assert "t [bold]x[/bold]" in text  # user text is not read as markup
    assert "baseline" in text and "p_holm" in text and "widen the grid" in text and "\x1b" not in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\noutro\n")
    paths = write_readme_results(text, png, tmp_path / "docs", readme)
    assert paths["table.txt"].read_text() == text and paths["lr_sensitivity.png"].read_bytes() == png
    assert readme.read_text() == f"intro\n{readme_block(text)}\noutro\n"
    bare = tmp_path / "BARE.md"
    bare.write_text("no block\n")
    with pytest.raises(ValueError, match="no study-table block"):
        write_readme_results(text, png, tmp_path / "docs", bare)


def test_readme_shows_the_generated_table_and_figure():
    """`make readme-results` writes docs/study/table.txt and copies it into the README: they cannot drift."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    table = (repo / "docs" / "study" / "table.txt").read_text(encoding="utf-8")
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert readme_block(table) in readme
    assert "lrlab study: " not in table and "baseline" in table and "p_holm" in table
    assert "](docs/study/lr_sensitivity.png)" in readme
    assert (repo / "docs" / "study" / "lr_sensitivity.png").read_bytes()[:4] == b"\x89PNG"
