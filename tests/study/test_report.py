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
from lrlab.study.report import effect_lines, results_table, table_rows, write_report
from lrlab.study.stats import optimizer_effects, summarize
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
    out = []
    for (s, o), accs in FINAL.items():
        peak = 0.1 if o == "sgd" else 0.01
        sched = (peak * lrlab.parse(SPECS[s])).resolve(total_steps=EPOCHS * SPE, steps_per_epoch=SPE)
        for seed, acc in enumerate(accs):
            diverged = math.isnan(acc)
            n = 2 if diverged else EPOCHS
            curves = {
                "epoch": np.arange(n, dtype=float),
                "lr": np.array([peak * (0.5 if (s == "plateau" and e >= 2) else 1.0) for e in range(n)]),
                "train_loss": np.linspace(2.0, 0.5, n), "train_acc": np.linspace(0.3, 0.95, n),
                "val_loss": np.linspace(2.1, 0.6, n),
                "val_acc": np.linspace(0.3, 0.5, n) if diverged else np.linspace(0.3, acc, n),
                "test_loss": np.full(n, math.nan), "test_acc": np.full(n, math.nan),
            }
            if diverged:
                curves["val_loss"][-1] = math.nan
            else:
                curves["test_loss"][-1], curves["test_acc"][-1] = 0.6, acc
            final = {"test_acc": acc, "test_loss": math.nan if diverged else 0.6,
                     "train_acc": math.nan if diverged else 0.95, "train_loss": math.nan if diverged else 0.5}
            out.append(TrialRecord(
                key=f"{s}/{o}/s{seed}@h", trial_id=f"{s}/{o}/s{seed}", schedule_name=s, schedule_text=SPECS[s],
                schedule_config=sched.to_config(), optimizer=o, optimizer_kwargs={}, seed=seed, peak_lr=peak,
                epochs=EPOCHS, curves=curves, final=final, diverged=diverged, diverged_epoch=1 if diverged else None,
                seconds=0.5,
            ))
    return out


@pytest.fixture(scope="module")
def study():
    recs = records()
    summaries = summarize(recs, list(SPECS), ["sgd", "adam"])
    return recs, summaries, optimizer_effects(recs, summaries)


def test_table_rows(study):
    _, summaries, _ = study
    rows = {(r["optimizer"], r["schedule"]): r for r in table_rows(summaries)}
    assert rows[("sgd", "constant")]["delta"] == "baseline"
    assert rows[("sgd", "constant")]["test_acc"] == "81.0±1.0"
    lin = rows[("sgd", "linear")]
    assert lin["delta"].startswith("+5.0±0.0") and lin["sig"] == "*" and lin["p"] == "0.000"
    assert rows[("sgd", "plateau")]["note"] == "1/3 diverged"
    assert rows[("adam", "linear")]["sig"] == ""


def test_terminal_table_and_effects(study):
    _, summaries, effects = study
    con = Console(record=True, width=100)
    con.print(results_table(summaries, title="t"))
    text = con.export_text()
    assert "baseline" in text and "1/3 diverged" in text
    assert re.search(r"linear\s+86\.0±1\.0", text)
    assert re.search(r"0\.000 \*", text)  # the significance mark sits next to p
    lines = effect_lines(effects)
    assert lines[0].startswith("sgd: constant 81.0 ± 1.0 %; best schedule linear +5.0")
    assert lines[-1].startswith("Claim 'schedules help SGD more than adaptive optimizers'")


def test_write_report_files(study, tmp_path):
    recs, summaries, effects = study
    cfg = {"task": "mnist1d", "schedules": SPECS, "seeds": [0, 1, 2], "note": "<b>escaped</b>"}
    paths = write_report(tmp_path, recs, summaries, effects, config=cfg, schedules=list(SPECS),
                         steps_per_epoch=SPE, meta={"trials": len(recs)})
    for name in ("report.html", "lr_curves.png", "final_acc.png", "curves_sgd.png", "curves_adam.png",
                 "summary.csv", "trials.csv", "curves.csv", "results.json"):
        assert paths[name].is_file(), name
    for png in ("lr_curves.png", "final_acc.png", "curves_sgd.png"):
        assert paths[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["report.html"].read_text()
    assert "<script" not in page and "<link" not in page  # nothing to fetch: opens offline
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert page.count('src="data:image/png;base64,') == 4
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page and "<b>escaped</b>" not in page
    assert "1/3 diverged" in page and "Claim" in page
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
    assert len(data["trials"]) == len(recs) and len(data["summary"]) == 6
    lin = next(c for c in data["summary"] if c["schedule"] == "linear" and c["optimizer"] == "sgd")
    assert lin["significant"] is True and lin["delta_vs_constant"] == pytest.approx(5.0)
    assert data["claim"].startswith("Claim")
