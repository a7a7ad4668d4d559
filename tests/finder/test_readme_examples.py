"""The finder examples of the README, run as written (MNIST-1D, default settings)."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from lrlab.cli import app


def test_cli_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        app, ["find", "--optimizer", "adam", "-o", "find-adam.png"]
    )  # lrlab find --optimizer adam -o find-adam.png
    assert res.exit_code == 0, res.output
    for text in (
        "steepest",
        "valley",
        "minimum *",
        "recommended peak lr:",
        "verdict:",
        "plot: find-adam.png",
    ):
        assert text in res.output
    assert (tmp_path / "find-adam.png").stat().st_size > 1000


def test_python_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --- README ---
    import torch.nn.functional as F

    from lrlab.finder import find
    from lrlab.study.tasks import load_task

    task = load_task("mnist1d")
    torch.manual_seed(0)
    model = task.model_fn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    result = find(model, F.cross_entropy, (task.x_train, task.y_train), opt, batch_size=100)
    print(result)  # three suggestions, their spread over seeds 0, 1, 2, and the verdict
    result.plot("find.png")
    peak_lr = result.lr  # minimum/10, the median over the seeds
    # --- end ---
    assert 1e-7 < peak_lr < 10 and (tmp_path / "find.png").is_file()
    assert opt.param_groups[0]["lr"] == 0.05 and not opt.state  # the optimizer is as it was
