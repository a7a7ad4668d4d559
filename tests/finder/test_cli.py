"""``lrlab find`` on a tiny task and on MNIST-1D: JSON and table output, the plot, user errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lrlab.cli import app, main

runner = CliRunner()
TINY = ["find", "--task", "finder_tasks:tiny_task", "--num-steps", "40", "--seeds", "0,1"]


def test_json_output_and_plot(tmp_path):
    plot = tmp_path / "find.png"
    res = runner.invoke(app, [*TINY, "--optimizer", "adam", "--format", "json", "-o", str(plot)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data["suggestions"]) == {"steepest", "valley", "minimum"}
    assert data["recommended"] == "minimum" and data["lr"] == data["suggestions"]["minimum"]["lr"]
    assert isinstance(data["confident"], bool) and isinstance(data["notes"], list)
    s = data["settings"]
    assert (s["task"], s["optimizer"], s["num_steps"], s["seeds"], s["batch_size"]) == (
        "tiny",
        "adam",
        40,
        [0, 1],
        32,
    )
    assert [r["seed"] for r in data["repeats"]] == [0, 1] and "curves" not in data
    assert data["plot"] == str(plot) and plot.stat().st_size > 1000


def test_json_with_curves_and_options():
    res = runner.invoke(
        app,
        [*TINY, "--format", "json", "--curves", "--mode", "linear", "--start-lr", "1e-4", "--end-lr", "1", "--recommend", "valley",
         "--optimizer-kwargs", '{"momentum": 0.5}', "--max-spread", "1.5"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["recommended"] == "valley" and data["max_spread"] == 1.5
    assert (
        data["settings"]["optimizer_kwargs"] == {"momentum": 0.5}
        and data["settings"]["mode"] == "linear"
    )
    lrs = data["curves"][0]["lrs"]
    assert lrs[0] == 1e-4 and lrs[1] - lrs[0] == pytest.approx((1 - 1e-4) / 39)


def test_table_output():
    res = runner.invoke(app, TINY)
    assert res.exit_code == 0, res.output
    for text in (
        "suggestion",
        "steepest",
        "minimum *",
        "minimum",
        "spread (decades)",
        "recommended peak lr:",
    ):
        assert text in res.output
    assert ("confident" in res.output) or ("LOW CONFIDENCE" in res.output)


def test_default_task_is_mnist1d():
    res = runner.invoke(app, ["find", "--num-steps", "20", "--seeds", "0,1", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["settings"]["task"] == "mnist1d" and data["settings"]["optimizer"] == "sgd"
    assert data["settings"]["batch_size"] == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["--seeds", "a,b"], "--seeds must be comma-separated integers"),
        (["--format", "yaml"], "--format must be table or json"),
        (["--optimizer-kwargs", "momentum=0.5"], "--optimizer-kwargs must be a JSON object"),
        (["--optimizer-kwargs", '{"lr": 0.1}'], "lr comes from the schedule"),
        (["--start-lr", "0"], "start_lr must be"),
        (["--mode", "cubic"], "mode must be one of"),
        (["--task", "no_such_module_xyz:task"], "cannot import module"),
        (
            ["--task", "mnist1d", "--data", "/no/such/dir"],
            "CIFAR-10 directory '/no/such/dir' does not exist",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["find", "--task", "finder_tasks:tiny_task", "--num-steps", "10", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab: error: ") and message in err
