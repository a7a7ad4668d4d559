"""The lr-free arms (schedule-free SGD/AdamW, Prodigy) in the study engine: they train through the
study API, one trial at a time (with the reason said), are evaluated where their authors say
(schedule-free: after ``optimizer.eval()``, BatchNorm statistics recomputed there), follow the
study's schedules, and a missing package is a one-line error naming the extra."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from lrlab.cli import main
from lrlab.schedules import constant, linear, warmup
from lrlab.study.fleet import TrialSpec, epoch_order, fleet_path, run_trials, train_fleet, train_one
from lrlab.study.optimizers import OPTIMIZERS, make_optimizer, recompute_batchnorm
from lrlab.study.runner import run_study
from lrlab.study.tasks import MNIST1D_PEAK_LR, load_task

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torch.*")

ARMS = ("sgd_schedulefree", "adamw_schedulefree", "prodigy")
TASK_KW = {"subset": 200, "batch_size": 20}  # 10 steps per epoch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class BNDropNet(nn.Module):
    """A small MNIST-1D model with BatchNorm (the schedule-free caveat) and dropout (random numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.bn, self.drop, self.l2 = nn.Linear(40, 16), nn.BatchNorm1d(16), nn.Dropout(0.1), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.drop(torch.relu(self.bn(self.l1(x)))))


class HandDropout(nn.Module):
    """Dropout as the study draws it (README, "Fleets"): masks from the trial's own generator,
    seeded ``2**62 + seed``, drawn with ``bernoulli_(1 - p)`` and scaled by ``1 / (1 - p)``."""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        self.p, self.generator = p, torch.Generator().manual_seed((1 << 62) + seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator).div_(1 - self.p)


def _with_hand_dropout(model: nn.Module, seed: int) -> nn.Module:
    if isinstance(model, BNDropNet):
        model.drop = HandDropout(model.drop.p, seed)
    return model


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train()
    return float(F.cross_entropy(out, y)), float((out.argmax(-1) == y).double().mean())


def _by_hand(task, name: str, lr: float, epochs: int, seed: int = 0, precise_bn: bool = True):
    """The study's recipe written with the packages' own API (no lrlab helper): train, and at each
    epoch end ``optimizer.eval()`` (+ the README's BatchNorm recompute), evaluate, ``optimizer.train()``.
    Returns (test metrics at the evaluation point, test metrics at the training point y)."""
    torch.manual_seed(seed)
    model = _with_hand_dropout(task.model_fn(), seed)
    opt = OPTIMIZERS[name].cls(model.parameters(), lr=lr, **OPTIMIZERS[name].defaults)
    sf = hasattr(opt, "eval")  # schedule-free
    if sf:
        opt.train()
    x, y, n = task.x_train, task.y_train, task.x_train.shape[0]
    for epoch in range(epochs):
        order = epoch_order(seed, epoch, n)
        for i in range(0, n, task.batch_size):
            idx = order[i:i + task.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        at_y = _evaluate(model, task.x_test, task.y_test)
        if sf:
            opt.eval()
            if precise_bn:
                _readme_bn_recompute(model, x, task.batch_size)
        at_eval = _evaluate(model, task.x_test, task.y_test)
        if sf:
            opt.train()
    return at_eval, at_y


def _readme_bn_recompute(model: nn.Module, x: torch.Tensor, bsz: int) -> None:
    """The schedulefree README's caveat recipe, over the whole training set with equal weights and
    only the BatchNorm layers in training mode (so dropout draws no random numbers)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in bns:
        m.train()
    with torch.no_grad():
        for i in range(0, x.shape[0], bsz):
            model(x[i:i + bsz])
    for m in bns:
        m.momentum = 0.1
    model.train()


@pytest.mark.parametrize("name", ARMS)
def test_each_arm_trains_through_the_study_api_and_is_evaluated_where_its_authors_say(name):
    peak = MNIST1D_PEAK_LR[name]
    trial = TrialSpec(f"{name}/s0", constant(peak), name, {}, seed=0)
    (res,) = run_trials("mnist1d", TASK_KW, [trial], epochs=3, workers=0)
    assert not res.diverged and res.final["steps"] == 30 and len(res.curves) == 3
    assert res.final["test_acc"] > 0.15  # it learned something in 30 steps (chance: 0.10)
    (loss, acc), (loss_y, _) = _by_hand(load_task("mnist1d", **TASK_KW), name, peak, epochs=3)
    assert res.final["test_acc"] == acc
    assert res.final["test_loss"] == pytest.approx(loss, rel=1e-5)
    if OPTIMIZERS[name].eval_mode:  # the reported numbers are x's, not those of the training point y
        assert abs(loss_y - loss) > 1e-5 * loss  # float32 rounding is ~1e-7
    else:
        assert loss_y == loss


def test_lr_free_arms_train_one_at_a_time_and_the_study_says_why(tmp_path):
    task = load_task("mnist1d", subset=100, batch_size=20)
    sf = [TrialSpec(f"sf{s}", constant(1.0), "sgd_schedulefree", {}, seed=s) for s in (0, 1)]
    path = fleet_path(task, sf[0])
    assert path.startswith("one-at-a-time: schedule-free's state (its sequence z")
    assert fleet_path(task, TrialSpec("p", constant(1.0), "prodigy", {}, 0)).startswith("one-at-a-time: Prodigy")
    assert fleet_path(task, TrialSpec("s", constant(0.1), "sgd", {}, 0)) == "mnist1d_cnn"
    fleet = train_fleet(task, sf, epochs=2)
    for t, r in zip(sf, fleet):
        ref = train_one(task, t, epochs=2)
        assert [c.val_loss for c in r.curves] == [c.val_loss for c in ref.curves]  # the same path
    con = Console(record=True, width=400)
    res = run_study({"optimizers": ["sgd", "sgd_schedulefree", "prodigy"], "schedules": ["constant"],
                     "seeds": 1, "epochs": 1, "workers": 0, "task_kwargs": {"subset": 100}, "tune": "none",
                     "out": str(tmp_path)}, progress=False, console=con, report=False)
    text = con.export_text()
    assert "sgd_schedulefree: one at a time: schedule-free's state" in text
    assert "prodigy: one at a time: Prodigy estimates its step size d" in text
    assert "sgd: fleet: mnist1d_cnn (hand-batched), up to 24 trials per fleet" in text
    assert [(p["optimizer"], p["path"]) for p in res.info["training_paths"]] == [
        ("sgd", "mnist1d_cnn"), ("sgd_schedulefree", "one at a time"), ("prodigy", "one at a time")]
    assert {r.optimizer: r.peak_lr for r in res.records} == {"sgd": 0.1, "sgd_schedulefree": 1.0, "prodigy": 1.0}


def test_schedule_free_arms_run_every_study_schedule_as_given():
    """Decision: the study runs any schedule with a schedule-free arm (constant and warmup-constant
    are the authors' arms, the others labelled variants); the lr it applies is the schedule's."""
    task = load_task("mnist1d", **TASK_KW)
    steps = 30
    scheds = {"constant": constant(1.0), "warmup_constant": warmup(constant(1.0), steps=6),
              "linear": linear(1.0, 0.0, steps=steps)}
    results = {}
    for label, sched in scheds.items():
        r = train_one(task, TrialSpec(label, sched, "sgd_schedulefree", {}, seed=0), epochs=3)
        assert [c.lr for c in r.curves] == [pytest.approx(float(sched(10 * e + 9))) for e in range(3)]
        results[label] = [c.val_loss for c in r.curves]
    assert len({tuple(v) for v in results.values()}) == 3  # the schedule changes the run
    model = nn.Linear(3, 1)
    opt = make_optimizer("sgd_schedulefree", model.parameters(), lr=0.0)
    assert opt.param_groups[0]["warmup_steps"] == 0  # the study's schedule is the only lr driver


def test_batchnorm_statistics_are_recomputed_at_the_schedule_free_average():
    task = load_task("mnist1d", **TASK_KW).replace(model_fn=BNDropNet, fleet_model=None)
    trial = TrialSpec("bn", constant(0.5), "sgd_schedulefree", {}, seed=0)
    assert fleet_path(task, trial).startswith("one-at-a-time: schedule-free")
    res = train_one(task, trial, epochs=3, keep_weights=True)
    (loss, acc), _ = _by_hand(task, "sgd_schedulefree", 0.5, epochs=3)
    assert res.final["test_acc"] == acc and res.final["test_loss"] == pytest.approx(loss, rel=1e-5)
    (stale, _), _ = _by_hand(task, "sgd_schedulefree", 0.5, epochs=3, precise_bn=False)
    assert abs(stale - loss) > 1e-5 * loss  # without the recompute: other numbers (float32 rounding ~1e-7)
    # the weights returned are the evaluated ones (x), as the authors ask for checkpoints
    torch.manual_seed(0)
    model = _with_hand_dropout(BNDropNet(), 0)
    opt = make_optimizer("sgd_schedulefree", model.parameters(), lr=0.5)
    n = task.x_train.shape[0]
    for epoch in range(3):
        order = epoch_order(0, epoch, n)
        for i in range(0, n, task.batch_size):
            idx = order[i:i + task.batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(task.x_train[idx]), task.y_train[idx]).backward()
            opt.step()
        opt.eval()
        opt.train()
    opt.eval()
    for k, v in model.named_parameters():
        torch.testing.assert_close(res.weights[k], v.detach(), rtol=0, atol=0)


def test_recompute_batchnorm_is_the_population_average_and_restores_the_model():
    torch.manual_seed(0)
    model = BNDropNet()
    model.bn.momentum = 0.3
    model.train()
    x = torch.randn(50, 40)
    seen = []
    handle = model.bn.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    rng = torch.get_rng_state()
    assert recompute_batchnorm(model, x, 20) == 1
    handle.remove()
    assert torch.equal(torch.get_rng_state(), rng)  # dropout stayed off: no random numbers drawn
    assert [h.shape[0] for h in seen] == [20, 20, 10]
    torch.testing.assert_close(model.bn.running_mean, torch.stack([h.mean(0) for h in seen]).mean(0))
    torch.testing.assert_close(model.bn.running_var, torch.stack([h.var(0) for h in seen]).mean(0))
    assert model.bn.momentum == 0.3 and all(m.training for m in model.modules())
    plain = nn.Sequential(nn.Linear(40, 3))
    assert recompute_batchnorm(plain, x, 20) == 0


def test_a_missing_package_is_a_one_line_error_naming_the_extra(monkeypatch, tmp_path, capsys):
    for module, name in (("schedulefree", "sgd_schedulefree"), ("prodigyopt", "prodigy")):
        monkeypatch.setitem(sys.modules, module, None)  # what Python does for a module that is absent
        with pytest.raises(ValueError) as e:
            make_optimizer(name, [nn.Parameter(torch.zeros(2))], lr=0.1)
        assert str(e.value) == f"optimizer {name!r} needs the {module} package: pip install 'lrlab[lrfree]'"
        with pytest.raises(ValueError, match=r"pip install 'lrlab\[lrfree\]'"):
            TrialSpec("t", constant(0.1), name, {}, 0)
    with pytest.raises(SystemExit) as ex:
        main(["study", "--optimizers", "sgd,prodigy", "--epochs", "1", "--seeds", "1", "--no-progress",
              "--out", str(tmp_path)])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err == "lrlab: error: optimizer 'prodigy' needs the prodigyopt package: pip install 'lrlab[lrfree]'\n"
