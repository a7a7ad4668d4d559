"""The fleet engine against the one-at-a-time reference (real torch.optim + LRLabScheduler).

Parity is checked in float64 (in float32 batched and sequential runs drift apart chaotically
after a few hundred Adam steps; see /work/shared/reference/benchmarks.md section 4b), after 100
optimizer steps, on the final weights of every trial, with different schedules, seeds and
optimizer options in one call.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.schedules import constant, plateau, warmup
from lrlab.study.fleet import (
    EpochRecord,
    TrialResult,
    TrialsFailed,
    TrialSpec,
    epoch_order,
    fleet_path,
    keep_workers,
    plan_fleets,
    run_trials,
    train_fleet,
    train_one,
)
from lrlab.study.tasks import load_task

F64 = torch.float64
PEAK = {"sgd": 0.05, "adam": 1e-2, "rmsprop": 1e-3, "adagrad": 5e-2, "adadelta": 1.0}
# lr-coupled options of each optimizer, so the scaled unit-lr update is exercised on all of them
OPTIONS = {
    "sgd": [{}, {"nesterov": True, "weight_decay": 1e-3}, {"momentum": 0.5}],
    "adam": [{}, {"weight_decay": 1e-2, "decoupled_weight_decay": True}, {"amsgrad": True}],
    "rmsprop": [{}, {"centered": True, "momentum": 0.5}, {}],
    "adagrad": [{}, {"lr_decay": 1e-2}, {}],
    "adadelta": [{}, {"weight_decay": 1e-3}, {}],
}


def _schedules(peak: float):
    return [
        constant(peak),
        warmup(constant(peak), steps=30),
        constant(peak, steps=40) >> constant(peak / 10),
    ]


def _trials(optimizers=tuple(PEAK), with_options: bool = False) -> list[TrialSpec]:
    out = []
    for opt in optimizers:
        for i, sched in enumerate(_schedules(PEAK[opt])):
            kw = OPTIONS[opt][i] if with_options else {}
            out.append(TrialSpec(f"{opt}/{i}", sched, opt, kw, seed=[3, 0, 7][i]))
    return out


def _max_weight_diff(a: TrialResult, b: TrialResult) -> float:
    assert a.weights is not None and b.weights is not None and a.weights.keys() == b.weights.keys()
    return max(float((a.weights[k] - b.weights[k]).abs().max()) for k in a.weights)


def _assert_parity(task, trials, epochs: int, tol: float = 1e-10) -> list[TrialResult]:
    fleet = train_fleet(task, trials, epochs=epochs, dtype=F64, keep_weights=True)
    assert [r.trial_id for r in fleet] == [t.trial_id for t in trials]
    for t, r in zip(trials, fleet):
        ref = train_one(task, t, epochs=epochs, dtype=F64, keep_weights=True)
        assert r.diverged == ref.diverged and r.diverged_epoch == ref.diverged_epoch, t.trial_id
        assert r.final["steps"] == ref.final["steps"] >= 100 or r.diverged
        assert _max_weight_diff(r, ref) < tol, (t.trial_id, _max_weight_diff(r, ref))
        assert len(r.curves) == len(ref.curves)
        for c, cref in zip(r.curves, ref.curves):
            assert c.epoch == cref.epoch and c.trial_id == cref.trial_id
            assert c.lr == pytest.approx(cref.lr, rel=1e-12)
            for k in ("train_loss", "val_loss", "test_loss"):
                assert getattr(c, k) == pytest.approx(getattr(cref, k), rel=1e-9, nan_ok=True), k
            for k in ("train_acc", "val_acc", "test_acc"):
                assert getattr(c, k) == pytest.approx(getattr(cref, k), rel=0, abs=0, nan_ok=True), k
        for k, v in r.final.items():
            assert v == pytest.approx(ref.final[k], rel=1e-9, nan_ok=True), (t.trial_id, k)
    return fleet


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: results do not depend on it, and on a shared 2-core machine several
    threads per process stall each other (OpenMP barriers under oversubscription)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- parity ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_task():
    return load_task("mnist1d", subset=100, batch_size=10)  # 10 steps per epoch


@pytest.fixture(scope="module")
def mlp_task():
    return load_task("mnist1d_mlp", subset=100, batch_size=10)


def test_cnn_fleet_matches_one_at_a_time_for_every_optimizer(cnn_task):
    trials = _trials(with_options=True)
    assert fleet_path(cnn_task, trials[0]) == "mnist1d_cnn"
    results = _assert_parity(cnn_task, trials, epochs=10)
    assert len({round(r.final["test_loss"], 6) for r in results}) == len(results)  # trials really differ


def test_cnn_fleet_on_the_cuda_branches_matches_one_at_a_time(cnn_task, monkeypatch):
    """The formulation's non-CPU branches (plain buffers: what a CUDA device runs), exercised on
    the CPU: float64 parity with one-at-a-time training, as for the CPU's aligned layout."""
    import lrlab.study._batched as batched

    calls = []
    monkeypatch.setattr(batched, "_aligns", lambda t: calls.append(t.device.type) or False)
    _assert_parity(cnn_task, _trials(("sgd", "adam"), with_options=True), epochs=10)
    assert len(calls) > 100  # every product and buffer went through the patched test


def test_mlp_fleet_matches_one_at_a_time_for_every_optimizer(mlp_task):
    assert fleet_path(mlp_task, _trials()[0]) == "mnist1d_mlp"
    _assert_parity(mlp_task, _trials(with_options=True), epochs=10)


class TinyNet(nn.Module):
    """A model with no hand-batched formulation: the generic vmap path."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(40, 12)
        self.l2 = nn.Linear(12, 10)
        self.register_buffer("shift", torch.linspace(-0.1, 0.1, 40))  # a constant buffer is fine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x + self.shift)))


class DropNet(TinyNet):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.drop(torch.tanh(self.l1(x))))


class BNNet(nn.Module):
    """BatchNorm1d after a bias-free Linear, as BatchNorm models are written: a bias right before
    BatchNorm has a gradient that is exactly 0 in exact arithmetic and rounding noise in floating
    point, which Adam and Adagrad normalise into lr-sized steps, so that bias's value depends on
    the summation order of every implementation (measured: 1e-10 for Adam, 5e-8 for Adagrad
    apart after 30 steps, every other weight within 1e-15)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(40, 12, bias=False)
        self.bn = nn.BatchNorm1d(12)
        self.l2 = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.bn(self.l1(x))))


class ConvBNDropNet(nn.Module):
    """Conv2d + BatchNorm2d + Dropout2d (per channel) + Dropout (element-wise), the input seen
    as a 5 x 8 image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.drop2d = nn.Dropout2d(0.25)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(160, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop2d(torch.relu(self.bn(self.conv(x.view(-1, 1, 5, 8)))))
        return self.fc(self.drop(h.flatten(1)))


class InlineDropNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # random numbers from torch's global stream
        return self.l2(F.dropout(torch.tanh(self.l1(x)), 0.2, self.training))


class BranchNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l1(x)
        if h.sum() > 0:  # data-dependent control flow: vmap refuses it
            h = -h
        return self.l2(h)


def tiny_task(model: str = "tiny", subset: int = 100, batch_size: int = 10, crash_after: int | None = None):
    """A user task (``package.module:function`` style) for the generic path and crash tests."""
    classes = {"tiny": TinyNet, "drop": DropNet, "bn": BNNet, "convbn": ConvBNDropNet, "branch": BranchNet,
               "inline": InlineDropNet}
    made = {"n": 0}

    def model_fn() -> nn.Module:
        made["n"] += 1
        if crash_after is not None and made["n"] > crash_after:
            os._exit(3)  # a hard crash of the worker process (no Python exception)
        return classes[model]()

    base = load_task("mnist1d", subset=subset, batch_size=batch_size)
    return base.replace(name=f"mnist1d_{model}", model_fn=model_fn, fleet_model=None)


def test_generic_vmap_fleet_matches_one_at_a_time_for_every_optimizer():
    task = tiny_task()
    trials = _trials(with_options=True)
    assert fleet_path(task, trials[0]) == "vmap"
    _assert_parity(task, trials, epochs=10)


@pytest.mark.parametrize("model", ["drop", "bn", "convbn"])
def test_batchnorm_and_dropout_fleets_match_one_at_a_time_for_every_optimizer(model):
    """BatchNorm running statistics stacked and updated per trial (compared too: ``weights``
    holds the buffers), dropout masks from each trial's own generator: float64 parity with
    training each trial alone, curves (val_* come from the running statistics) and weights."""
    task = tiny_task(model)
    trials = _trials(with_options=True)
    assert fleet_path(task, trials[0]) == "vmap"
    results = _assert_parity(task, trials, epochs=10)
    if model != "drop":
        stats = [r.weights["bn.running_var"] for r in results]  # type: ignore[index]
        assert results[0].weights["bn.num_batches_tracked"].item() == 100  # type: ignore[index]
        assert all(not torch.equal(stats[0], s) for s in stats[1:])  # each trial its own statistics


def test_a_batchnorm_dropout_trial_does_not_depend_on_its_fleet_mates():
    """Its masks come from its own generator and its statistics are its own: alone, in a fleet
    of 6 or in another fleet of 3 (another row), the same trial trains the same (float64; the
    generic vmap path leaves its products to torch, so agreement to rounding, not bit for bit)."""
    task = tiny_task("convbn")
    trials = [TrialSpec(f"t{s}", warmup(constant(1e-2), steps=10), "adam", {}, seed=s) for s in range(6)]
    fleet = train_fleet(task, trials, epochs=3, dtype=F64, keep_weights=True)
    assert len({round(r.final["val_loss"], 9) for r in fleet}) == 6
    others = train_fleet(task, [trials[5], trials[1], trials[3]], epochs=3, dtype=F64, keep_weights=True)
    alone = train_fleet(task, [trials[3]], epochs=3, dtype=F64, keep_weights=True)[0]
    for r in (others[2], alone):
        assert _max_weight_diff(r, fleet[3]) < 1e-12
        assert [c.val_loss for c in r.curves] == pytest.approx([c.val_loss for c in fleet[3].curves], rel=1e-12)


def test_dropout_comes_from_each_trials_generator_not_the_global_stream():
    """Same command, same numbers, whatever torch's global random state; a different seed gets
    different masks; ``_Fleet.rng`` holds one generator per trial for a checkpoint to save."""
    from lrlab.study.fleet import _Fleet

    task = tiny_task("drop")
    trials = [TrialSpec(f"t{s}", constant(0.05), "sgd", {}, seed=s) for s in (0, 1)]
    torch.manual_seed(123)
    a = train_fleet(task, trials, epochs=2, keep_weights=True)
    torch.manual_seed(456)
    b = train_fleet(task, trials, epochs=2, keep_weights=True)
    assert all(_same_bits(x, y) for x, y in zip(a, b))
    # the same model and data order (seed 0) but the dropout stream of seed 1: another result
    fl = _Fleet(task.with_validation(), trials[:1], 2, "cpu", torch.float32, None, lambda r: None, True)
    assert [g.initial_seed() for g in fl.rng] == [(1 << 62) + 0]
    fl.rng[0].manual_seed((1 << 62) + 1)
    got: list[TrialResult] = []
    fl.done = got.append
    fl.run()
    assert _max_weight_diff(got[0], a[0]) > 1e-3
    no_dropout = _Fleet(tiny_task("bn").with_validation(), trials, 1, "cpu", torch.float32, None, lambda r: None, False)
    assert no_dropout.rng == [] and len(no_dropout.buffers) == 3


def test_trial_dropout_draws_from_its_generator_and_is_the_identity_in_eval():
    from lrlab.study._batched import draw_mask, dropout_generator, use_trial_dropout

    model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.4), nn.Sequential(nn.Dropout1d(0.5)))
    assert use_trial_dropout(TinyNet()) is None
    source = use_trial_dropout(model, dropout_generator(7))
    assert source is not None and "TrialDropout" in repr(model)
    x = torch.randn(3, 6)
    g = dropout_generator(7)
    h = model[0](x) * draw_mask(g, (3, 5), 0.4, torch.float32, "cpu")
    want = h * draw_mask(g, (3, 1), 0.5, torch.float32, "cpu")  # Dropout1d on (C, L): one mask per channel
    rng = torch.get_rng_state()
    got = model(x)
    assert torch.equal(got, want) and torch.equal(rng, torch.get_rng_state())  # the global stream untouched
    assert set(torch.unique(draw_mask(g, (1000,), 0.4, torch.float64, "cpu")).tolist()) == {0.0, 1 / 0.6}
    assert torch.equal(model.eval()(x), model[0](x))


def test_a_diverging_trial_leaves_its_batchnorm_dropout_fleet_mates_unaffected():
    """The step a trial diverges in is redone by the others from their statistics and masks
    before it (not updating the running statistics twice, not drawing new masks)."""
    task = tiny_task("convbn")
    trials = [TrialSpec("ok/0", constant(0.05), "sgd", {}, seed=0),
              TrialSpec("boom", constant(0.05, steps=15) >> constant(1e300), "sgd", {}, seed=1),
              TrialSpec("ok/2", constant(0.05), "sgd", {}, seed=2)]
    fleet = train_fleet(task, trials, epochs=4, dtype=F64, keep_weights=True)
    assert fleet[1].diverged and fleet[1].diverged_epoch == 1 and fleet[1].final["steps"] == 16  # mid-epoch
    assert train_one(task, trials[1], epochs=4, dtype=F64).final["steps"] == 16
    for i in (0, 2):
        one = train_one(task, trials[i], epochs=4, dtype=F64, keep_weights=True)
        assert not fleet[i].diverged and _max_weight_diff(fleet[i], one) < 1e-10


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input:UserWarning")
def test_dropout_modules_on_an_input_rank_they_treat_specially_fall_back():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3, padding=1)
            self.drop = nn.Dropout2d(0.2)  # on a 3-d input torch does 1-d channel dropout (with a warning)
            self.fc = nn.Linear(80, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.drop(self.conv(x.unsqueeze(1))).flatten(1))

    task = tiny_task().replace(model_fn=Odd)
    path = fleet_path(task, _trials(("sgd",))[0])
    assert path == ("one-at-a-time: its nn.Dropout2d on a 3-d input draws from torch's global random stream "
                    "(an input rank lrlab's per-trial dropout does not handle)")
    from lrlab.study._batched import dropout_generator, use_trial_dropout

    model = Odd()
    source = use_trial_dropout(model, dropout_generator(0))
    x = torch.randn(4, 40)
    torch.manual_seed(5)
    first = model(x)
    torch.manual_seed(5)
    assert torch.equal(model(x), first)  # torch's own dropout2d: the global stream decides
    model(x)
    assert source is not None and source.fallbacks == ["nn.Dropout2d on a 3-d input"]  # said once, not per step


@pytest.mark.parametrize(("model", "why"), [("inline", "random numbers outside nn.Dropout"),
                                            ("branch", "vmap cannot batch")])
def test_models_vmap_cannot_batch_fall_back_to_one_at_a_time(model, why):
    task = tiny_task(model)
    trials = _trials(("adam",))[:2]
    path = fleet_path(task, trials[0])
    assert path.startswith("one-at-a-time") and why in path
    fleet = train_fleet(task, trials, epochs=2, keep_weights=True)
    for t, r in zip(trials, fleet):
        ref = train_one(task, t, epochs=2, keep_weights=True)
        assert _max_weight_diff(r, ref) == 0.0  # the same code path, bit for bit


def test_named_formulation_that_does_not_match_the_model_is_an_error():
    task = tiny_task().replace(fleet_model="mnist1d_cnn")
    with pytest.raises(ValueError, match=r"needs lrlab\.study\.tasks\.ConvBase, got TinyNet"):
        train_fleet(task, _trials(("sgd",))[:1], epochs=1)
    with pytest.raises(ValueError, match="unknown fleet_model 'resnet'"):
        train_fleet(tiny_task().replace(fleet_model="resnet"), _trials(("sgd",))[:1], epochs=1)


# ---- plateau, divergence, records ------------------------------------------------------------------


def _replay_plateau_lrs(sched, curves, metric: str, spe: int) -> list[float]:
    """The lr of each epoch's last update if ``metric``'s curve had been fed to the plateau nodes."""
    from lrlab.schedules._plateau import ScheduleState

    st, lrs = ScheduleState(sched), []
    for c in curves:
        lrs.append(float(sched.values([st.step + spe - 1], st.state)[0]))
        st.advance(spe)
        st.observe(getattr(c, metric))
    return lrs


def test_plateau_nodes_are_fed_each_epoch_like_the_reference(cnn_task):
    sched = constant(0.02) * plateau(patience=0, factor=0.5)
    trials = [TrialSpec("p/train", sched, "sgd", {}, seed=1, plateau_metric="train_acc"),
              TrialSpec("p/val", sched, "sgd", {}, seed=2, plateau_metric="val_loss"),
              TrialSpec("p/default", sched, "sgd", {}, seed=2),
              TrialSpec("c", constant(0.02), "sgd", {}, seed=1)]
    fleet = _assert_parity(cnn_task, trials, epochs=10)
    lrs = [c.lr for c in fleet[0].curves]
    assert min(lrs) < 0.02 and lrs[0] == 0.02  # reduced at least once (train_acc 'min' mode: reduces)
    assert {c.lr for c in fleet[3].curves} == {0.02}
    assert trials[2].plateau_metric == "val_loss" and [c.lr for c in fleet[2].curves] == [c.lr for c in fleet[1].curves]
    # the val_loss trial's lrs are exactly those the validation curve gives, and not those the
    # training curve would give: the plateau saw the validation metric (and never the test set)
    spe = cnn_task.steps_per_epoch
    got = [c.lr for c in fleet[1].curves]
    assert got == _replay_plateau_lrs(sched, fleet[1].curves, "val_loss", spe)
    assert got != _replay_plateau_lrs(sched, fleet[1].curves, "train_loss", spe)
    assert min(got) < 0.02


def test_train_metrics_are_running_means_and_test_is_evaluated_once(cnn_task):
    """train_*: the mean over the epoch's minibatches (before each update); val_* every epoch;
    test_* only after the last epoch, and asking for it every epoch changes nothing else."""
    from lrlab.study.fleet import _evaluate_one

    trial = TrialSpec("a", constant(0.02), "sgd", {}, seed=3)
    for train in (train_one, lambda task, t, **kw: train_fleet(task, [t], **kw)[0]):
        r = train(cnn_task, trial, epochs=3, dtype=F64, keep_weights=True)
        full = train(cnn_task, trial, epochs=3, dtype=F64, keep_weights=True, test_every_epoch=True)
        assert [math.isnan(c.test_loss) for c in r.curves] == [True, True, False]
        assert [math.isnan(c.test_acc) for c in r.curves] == [True, True, False]
        assert all(math.isfinite(c.test_loss) and math.isfinite(c.val_loss) for c in full.curves)
        assert _max_weight_diff(r, full) == 0.0
        for c, cf in zip(r.curves, full.curves):
            assert (c.lr, c.train_loss, c.train_acc, c.val_loss, c.val_acc) == \
                (cf.lr, cf.train_loss, cf.train_acc, cf.val_loss, cf.val_acc)
        assert (r.curves[-1].test_loss, r.curves[-1].test_acc) == (full.curves[-1].test_loss, full.curves[-1].test_acc)
        # the final model's test metrics are the recorded ones
        model = cnn_task.model_fn().double()
        model.load_state_dict(r.weights)
        loss, acc = _evaluate_one(model, cnn_task.x_test.double(), cnn_task.y_test)
        assert r.final["test_loss"] == pytest.approx(loss, rel=1e-12) and r.final["test_acc"] == acc
        # one epoch by hand: the running mean of the minibatch losses and accuracies, before each update
        one = train_one(cnn_task, trial, epochs=1, dtype=F64)
        torch.manual_seed(trial.seed)
        m = cnn_task.model_fn().double()
        opt = torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9)
        order = epoch_order(trial.seed, 0, 100)
        losses, correct = [], 0
        for i in range(0, 100, 10):
            out = m(cnn_task.x_train.double()[order[i:i + 10]])
            loss = torch.nn.functional.cross_entropy(out, cnn_task.y_train[order[i:i + 10]])
            losses.append(float(loss.detach()))
            correct += int((out.argmax(-1) == cnn_task.y_train[order[i:i + 10]]).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert one.curves[0].train_loss == pytest.approx(sum(losses) / 10, rel=1e-12)
        assert one.curves[0].train_acc == correct / 100
    assert set(r.final) == {"val_acc", "val_loss", "best_val_acc", "best_epoch", "test_acc", "test_loss",
                            "train_loss", "train_acc", "epochs", "steps"}
    best = max(range(3), key=lambda e: (r.curves[e].val_acc, -e))
    assert r.final["best_epoch"] == best and r.final["best_val_acc"] == r.curves[best].val_acc
    assert r.final["val_acc"] == r.curves[-1].val_acc and r.final["train_loss"] == r.curves[-1].train_loss


def test_a_diverging_trial_is_dropped_and_the_others_are_unaffected(cnn_task):
    trials = [TrialSpec("ok/0", constant(0.05), "sgd", {}, seed=0),
              TrialSpec("boom", constant(0.05, steps=25) >> constant(1e12), "sgd", {}, seed=1),
              TrialSpec("ok/2", warmup(constant(0.05), steps=20), "sgd", {}, seed=2)]
    records: list[EpochRecord] = []
    done: list[str] = []
    fleet = train_fleet(cnn_task, trials, epochs=10, dtype=F64, keep_weights=True,
                        on_epoch=records.append, on_trial_done=lambda r: done.append(r.trial_id))
    assert done[0] == "boom"  # delivered as soon as it diverged, before its fleet finished
    boom = fleet[1]
    ref = train_one(cnn_task, trials[1], epochs=10, dtype=F64)
    assert boom.diverged and ref.diverged and boom.diverged_epoch == ref.diverged_epoch in (2, 3)
    assert len(boom.curves) == boom.diverged_epoch and boom.final["steps"] == ref.final["steps"]
    assert math.isnan(boom.final["test_acc"]) and math.isnan(boom.final["val_acc"])  # no final metrics
    assert boom.final["best_val_acc"] == max(c.val_acc for c in boom.curves)
    assert all(math.isnan(c.test_acc) for c in boom.curves)  # it never reached the last epoch
    for i in (0, 2):
        one = train_one(cnn_task, trials[i], epochs=10, dtype=F64, keep_weights=True)
        assert not fleet[i].diverged and _max_weight_diff(fleet[i], one) < 1e-10
    assert sum(r.trial_id == "ok/0" for r in records) == 10


def test_records_and_validation(cnn_task):
    with pytest.raises(ValueError, match="trial ids must be unique, repeated: a"):
        train_fleet(cnn_task, [TrialSpec("a", constant(0.1), "sgd"), TrialSpec("a", constant(0.1), "adam")], epochs=1)
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got epochs=0"):
        train_one(cnn_task, TrialSpec("a", constant(0.1), "sgd"), epochs=0)
    with pytest.raises(ValueError, match="has durations in epochs or percent"):
        TrialSpec("a", warmup(constant(0.1), steps="10%"), "sgd")
    with pytest.raises(ValueError, match="plateau_metric must be one of"):
        TrialSpec("a", constant(0.1), "sgd", plateau_metric="test_loss")  # the test set chooses nothing
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        TrialSpec("a", constant(0.1), "lamb")
    spec = TrialSpec("x/1", warmup(constant(0.1), steps=5), "adam", {"amsgrad": True}, seed=4)
    assert TrialSpec.from_dict(spec.to_dict()) == spec
    r = train_one(cnn_task, spec, epochs=2)
    assert TrialResult.from_dict(r.to_dict()) == r
    assert [c.epoch for c in r.curves] == [0, 1] and r.final["epochs"] == 2.0 and r.final["steps"] == 20.0
    assert r.curves[0].lr == pytest.approx(spec.schedule(9))
    assert epoch_order(4, 1, 100).sort().values.tolist() == list(range(100))


def test_plan_fleets_groups_by_optimizer_and_balances_workers():
    ts = [TrialSpec(f"{o}{s}", constant(0.1), o, kw, s) for o, kw in (("sgd", {}), ("adam", {}), ("adam", {"amsgrad": True}))
          for s in range(5)]
    fleets = plan_fleets(ts, workers=4, max_fleet=36)
    assert sorted(len(f) for f in fleets) == [2, 3, 5, 5]
    for f in fleets:
        assert len({(t.optimizer, repr(sorted(t.optimizer_kwargs.items()))) for t in f}) == 1
    assert sorted(t.trial_id for f in fleets for t in f) == sorted(t.trial_id for t in ts)


# ---- reproducibility: a trial's float32 numbers do not depend on its fleet ----------------------------


def _fleet_of_24(opt: str, *, diverging: bool = False) -> list[TrialSpec]:
    """24 trials of one optimizer with mixed schedules, seeds and plateau metrics."""
    p = PEAK[opt]
    scheds = [constant(p), warmup(constant(p), steps=7), constant(p, steps=13) >> constant(p / 10),
              constant(p) * plateau(patience=0, factor=0.5)]
    trials = [TrialSpec(f"{opt}/{i}", scheds[i % 4], opt, {}, seed=(5 * i) % 11,
                        plateau_metric=("val_loss", "train_acc")[i % 2]) for i in range(24)]
    if diverging:  # a trial that blows up mid-run: the fleet shrinks from 24 to 23 rows
        trials[11] = TrialSpec(f"{opt}/boom", constant(p, steps=15) >> constant(1e12), opt, {}, seed=3)
    return trials


def _same_bits(a: TrialResult, b: TrialResult) -> bool:
    """Weights, curves and finals identical to the last bit (NaNs where the other has NaNs)."""
    import json

    if a.weights is None or b.weights is None:  # a diverged trial keeps no weights
        same_w = a.weights is b.weights is None and a.diverged
    else:
        same_w = all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    da, db = a.to_dict(), b.to_dict()
    for timing in ("seconds", "started", "finished"):
        da.pop(timing), db.pop(timing)
    return same_w and json.dumps(da) == json.dumps(db)


@pytest.mark.parametrize("opt", list(PEAK))
def test_a_trial_alone_and_inside_a_fleet_of_24_agree_bit_for_bit(cnn_task, opt):
    """float32: the batched products are row-independent (aligned), evaluation chunks do not
    depend on the fleet size, the optimizers' foreach kernels are element-wise."""
    trials = _fleet_of_24(opt, diverging=opt == "sgd")
    fleet = train_fleet(cnn_task, trials, epochs=3, keep_weights=True, test_every_epoch=True)
    if opt == "sgd":
        assert fleet[11].diverged and fleet[11].diverged_epoch == 1  # the fleet lost a row mid-run
    assert len({r.final["val_loss"] for r in fleet if not r.diverged}) > 20  # the trials really differ
    for j in (0, 5, 13, 23):
        alone = train_fleet(cnn_task, [trials[j]], epochs=3, keep_weights=True, test_every_epoch=True)[0]
        assert _same_bits(alone, fleet[j]), (opt, j)
    part = train_fleet(cnn_task, trials[9:16][::-1], epochs=3, keep_weights=True, test_every_epoch=True)
    assert all(_same_bits(r, fleet[9 + 6 - i]) for i, r in enumerate(part))


def test_mlp_trial_alone_and_inside_a_fleet_agree_bit_for_bit(mlp_task):
    trials = _fleet_of_24("adam")
    fleet = train_fleet(mlp_task, trials, epochs=2, keep_weights=True)
    for j in (3, 22):
        assert _same_bits(train_fleet(mlp_task, [trials[j]], epochs=2, keep_weights=True)[0], fleet[j])


def test_aligned_products_are_what_a_lone_item_computes():
    """The kernel-level cause, pinned: each batch item's product equals the item's product alone,
    bit for bit, for the CNN's weight-gradient shape (raw torch.bmm into a contiguous output does
    not guarantee this on MKL)."""
    from lrlab.study._batched import _bmm, aligned, aligned_empty

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(24, 25, 950, generator=g), torch.randn(24, 5, 950, generator=g)
    full = _bmm(a, b.transpose(1, 2))
    for j in range(24):
        assert torch.equal(full[j], _bmm(a[j:j + 1].clone(), b[j:j + 1].clone().transpose(1, 2))[0]), j
    t = aligned_empty(5, 3, 7, like=a)
    assert [t[i].data_ptr() % 64 for i in range(5)] == [0] * 5 and t[0].is_contiguous()
    assert aligned(t) is t and aligned(a[1:]).data_ptr() % 64 == 0 and torch.equal(aligned(a[1:]), a[1:])


@pytest.mark.parametrize(("length", "k", "stride", "pad", "out_split"),
                         [(19, 3, 2, 1, 1), (40, 5, 2, 1, 2), (10, 3, 2, 1, 3), (17, 4, 3, 2, 2), (12, 3, 1, 0, 2),
                          (9, 5, 3, 0, 1), (6, 3, 2, 4, 2), (19, 3, 2, 1, 2), (23, 5, 2, 3, 4), (11, 2, 3, 0, 2)])
@pytest.mark.parametrize("layout", ["aligned", "plain"])
def test_residue_major_convs_are_conv1d_relu_forward_and_backward(length, k, stride, pad, out_split, layout,
                                                                   monkeypatch):
    """The CNN's conv pieces against F.conv1d + relu in float64, values and all three gradients:
    _ConvReLU writing its output positions residue-major (out_split), and _TapConvReLU reading
    its input that way and writing its output residue-major too (one product per tap and output
    residue, blocks overlapping, or reaching no input position). ``plain``: the branches a CUDA
    device takes (no aligned buffers), run here on the CPU."""
    import lrlab.study._batched as batched
    from lrlab.study._batched import _ConvReLU, _residue_blocks, _TapConvReLU

    if layout == "plain":
        monkeypatch.setattr(batched, "_aligns", lambda t: False)

    g = torch.Generator().manual_seed(length * 100 + k)
    kk, c, cout, b = 3, 4, 5, 6
    x = torch.randn(kk, c, length, b, dtype=F64, generator=g)
    w = torch.randn(kk, cout, c, k, dtype=F64, generator=g)
    bias = torch.randn(kk, cout, dtype=F64, generator=g) * 0.1
    out_len = (length + 2 * pad - k) // stride + 1
    up = torch.randn(kk, cout, out_len, b, dtype=F64, generator=g)

    def reference(x, w, bias):  # (K, C, L, B) -> (K, Cout, Lout, B), torch's own conv per model
        return torch.stack([torch.nn.functional.conv1d(x[i].permute(2, 0, 1), w[i], bias[i], stride, pad).relu()
                            .permute(1, 2, 0) for i in range(kk)])

    def order(n, split):  # natural position of each stored position
        return [r + split * i for r, _, count in _residue_blocks(n, split) for i in range(count)]

    leaves = [t.clone().requires_grad_() for t in (x, w, bias)]
    ref = reference(*leaves)
    ref_grads = torch.autograd.grad((ref * up).sum(), leaves)
    # _ConvReLU, output positions stored residue-major by out_split
    o = order(out_len, out_split)
    leaves = [t.clone().requires_grad_() for t in (x, w, bias)]
    out = _ConvReLU.apply(*leaves, stride, pad, out_split)
    assert torch.allclose(out, ref[:, :, o], rtol=1e-12, atol=1e-12)
    for got, want in zip(torch.autograd.grad((out * up[:, :, o]).sum(), leaves), ref_grads):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    # _TapConvReLU: input positions stored residue-major by stride * out_split, output by out_split
    i = order(length, stride * out_split)
    leaves = [t.clone().requires_grad_() for t in (x[:, :, i].contiguous(), w, bias)]
    out = _TapConvReLU.apply(*leaves, stride, pad, out_split)
    assert torch.allclose(out, ref[:, :, o], rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad((out * up[:, :, o]).sum(), leaves)
    assert torch.allclose(got[0], ref_grads[0][:, :, i], rtol=1e-12, atol=1e-12)
    assert torch.allclose(got[1], ref_grads[1], rtol=1e-12, atol=1e-12)
    assert torch.allclose(got[2], ref_grads[2], rtol=1e-12, atol=1e-12)


def test_run_trials_numbers_do_not_depend_on_workers_fleet_size_or_resume(cnn_task):
    """Same trials -> same stored numbers, bit for bit: in this process (whatever the caller's
    thread count) or in 2 worker processes, in fleets of 24 or of 3, all at once or as an
    'interrupted' subset followed by the rest in another grouping."""
    trials = _fleet_of_24("adam")[:12]
    kw = {"subset": 100, "batch_size": 10}

    def stored(results):
        return {r.trial_id: (r.final, [c.__dict__ for c in r.curves]) for r in results}

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # run_trials trains with one thread whatever the caller uses
    try:
        whole = stored(run_trials("mnist1d", kw, trials, epochs=2, workers=0))
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    split = stored(run_trials("mnist1d", kw, trials, epochs=2, workers=2, max_fleet=3))
    first = stored(run_trials("mnist1d", kw, trials[2:7], epochs=2, workers=0, max_fleet=2))
    rest = stored(run_trials("mnist1d", kw, trials[:2] + trials[7:], epochs=2, workers=0, max_fleet=5))
    assert whole.keys() == split.keys() == {**first, **rest}.keys()
    for k in whole:
        assert repr(whole[k]) == repr(split[k]) == repr({**first, **rest}[k]), k
    with pytest.raises(ValueError, match="threads_per_worker must be an int >= 1"):
        run_trials("mnist1d", kw, trials, epochs=1, workers=0, threads_per_worker=0)


# ---- run_trials: processes ---------------------------------------------------------------------------


def test_run_trials_in_workers_gives_the_in_process_results_with_callbacks_in_the_parent(cnn_task):
    trials = [TrialSpec(f"{o}/{s}", warmup(constant(PEAK[o]), steps=10), o, {}, seed=s)
              for o in ("sgd", "adam") for s in (0, 1)]
    pid = os.getpid()
    seen: list[tuple[int, str]] = []
    done: list[tuple[int, str]] = []
    res = run_trials("mnist1d", {"subset": 100, "batch_size": 10}, trials, epochs=2, workers=2,
                     on_epoch=lambda r: seen.append((os.getpid(), r.trial_id)),
                     on_trial_done=lambda r: done.append((os.getpid(), r.trial_id)))
    assert {p for p, _ in seen + done} == {pid}
    assert sorted(i for _, i in done) == sorted(t.trial_id for t in trials) and len(seen) == 8
    local = train_fleet(cnn_task, trials, epochs=2)
    for a, b in zip(res, local):
        assert a.trial_id == b.trial_id
        assert a.final["test_loss"] == pytest.approx(b.final["test_loss"], rel=1e-4)


def test_a_crashed_worker_surfaces_as_an_error_and_completed_trials_are_delivered(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    trials = [TrialSpec(f"{o}/{s}", constant(PEAK[o]), o, {}, seed=s) for o in ("sgd", "adam") for s in (0, 1)]
    done: list[str] = []
    # one worker: fleet 1 (sgd: 1 vmap probe + 2 models) completes, fleet 2 (adam) dies building its probe.
    # Whether its 'start' message got out before os._exit is a race: both messages name the death.
    with pytest.raises(TrialsFailed, match=r"2 of 4 trials failed \(adam/0, adam/1\): .*died before finishing it \(exit codes? 3\)") as exc:
        run_trials("test_fleet:tiny_task", {"crash_after": 3}, trials, epochs=1, workers=1,
                   on_trial_done=lambda r: done.append(r.trial_id))
    assert sorted(done) == ["sgd/0", "sgd/1"] == sorted(r.trial_id for r in exc.value.results)
    assert set(exc.value.failed) == {"adam/0", "adam/1"}


def test_a_worker_that_cannot_start_raises_its_own_error(monkeypatch):
    """The first worker starts, the second's start fails: run_trials stops the first and raises
    the start's error (joining the never-started one used to raise AssertionError instead)."""
    import multiprocessing.context as mpc

    start = mpc.SpawnProcess.start

    def failing_start(self):
        if self.name.endswith("-1"):
            raise OSError("no more processes")
        start(self)

    monkeypatch.setattr(mpc.SpawnProcess, "start", failing_start)
    trials = [TrialSpec(f"w{o}{s}", constant(0.01), o, {}, seed=s) for o in ("sgd", "adam") for s in (0, 1)]
    with pytest.raises(OSError, match="no more processes"):
        run_trials("mnist1d", {"subset": 40, "batch_size": 20}, trials, epochs=1, workers=2)


def test_an_exception_in_a_worker_names_the_trials_and_the_cause():
    trials = [TrialSpec("a", constant(0.1), "sgd", {}, 0)]
    with pytest.raises(TrialsFailed, match="1 of 1 trials failed \\(a\\): ValueError: unknown task 'nope'"):
        run_trials("nope", {}, trials, epochs=1, workers=1)


def _pool_pids():
    import lrlab.study.fleet as fleet_mod

    pool = (fleet_mod._KEPT or {}).get("pool")
    return None if pool is None else [p.pid for p in pool.procs]


def test_keep_workers_serves_several_calls_with_one_pool_and_the_same_numbers(monkeypatch):
    """Inside keep_workers(), successive run_trials calls (another task's kwargs, other settings
    per call) train in the same worker processes, with the numbers of fresh workers; the
    processes end with the block."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    trials = [TrialSpec(f"{o}/{s}", constant(PEAK[o]), o, {}, seed=s) for o in ("sgd", "adam") for s in (0, 1)]
    calls = [("mnist1d", {"subset": 100, "batch_size": 10}, 2), ("mnist1d", {"subset": 60, "batch_size": 20}, 1),
             ("test_fleet:tiny_task", {"subset": 60}, 1)]

    def stored(results):
        return repr({r.trial_id: (r.final, [c.__dict__ for c in r.curves]) for r in results})

    fresh = [stored(run_trials(ref, kw, trials, epochs=e, workers=2)) for ref, kw, e in calls]
    assert _pool_pids() is None
    kept, pids = [], []
    with keep_workers():
        for ref, kw, e in calls:
            kept.append(stored(run_trials(ref, kw, trials, epochs=e, workers=2)))
            pids.append(_pool_pids())
        procs = [Path(f"/proc/{p}") for p in pids[0]]
        assert all(p.exists() for p in procs)
        with keep_workers():  # an inner block (run_study opens one) joins the outer block's pool
            run_trials(*calls[1][:2], trials, epochs=1, workers=2)
            assert _pool_pids() == pids[0]
        assert _pool_pids() == pids[0]  # and leaves it running
        ref, kw, e = calls[1]
        assert stored(run_trials(ref, kw, trials, epochs=e, workers=1)) == fresh[1]  # another size: a new pool
        one = _pool_pids()
        assert len(one) == 1 and not set(one) & set(pids[0])
    assert kept == fresh
    assert pids[0] == pids[1] == pids[2] and len(pids[0]) == 2
    assert _pool_pids() is None
    deadline = time.time() + 10
    while time.time() < deadline and any(p.exists() for p in procs):
        time.sleep(0.05)
    assert not any(p.exists() for p in procs)  # the workers exited (and were reaped) with the block


def test_keep_workers_replaces_a_pool_whose_worker_died(monkeypatch):
    """A worker dead between calls, or dying during one (its fleet's trials fail, the others are
    delivered): the next call of the block gets a fresh pool and trains normally."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    trials = [TrialSpec(f"{o}/{s}", constant(PEAK[o]), o, {}, seed=s) for o in ("sgd", "adam") for s in (0, 1)]
    kw = {"subset": 60, "batch_size": 20}
    with keep_workers():
        run_trials("mnist1d", kw, trials, epochs=1, workers=2)
        first = _pool_pids()
        os.kill(first[0], signal.SIGKILL)
        deadline = time.time() + 10
        while time.time() < deadline and Path(f"/proc/{first[0]}/stat").exists() \
                and Path(f"/proc/{first[0]}/stat").read_text().split()[2] != "Z":
            time.sleep(0.05)
        res = run_trials("mnist1d", kw, trials, epochs=1, workers=2)
        assert sorted(r.trial_id for r in res) == sorted(t.trial_id for t in trials)
        second = _pool_pids()
        assert second is not None and not set(second) & set(first)
        with pytest.raises(TrialsFailed, match=r"2 of 4 trials failed \(adam/0, adam/1\)"):
            run_trials("test_fleet:tiny_task", {"crash_after": 3}, trials, epochs=1, workers=1)
        assert _pool_pids() is None  # the broken pool was closed, not kept
        res = run_trials("mnist1d", kw, trials, epochs=1, workers=2)
        assert len(res) == 4 and not set(_pool_pids()) & set(second)


@pytest.mark.slow
def test_ctrl_c_terminates_the_workers(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import sys
        from lrlab.schedules import constant
        from lrlab.study.fleet import TrialSpec, run_trials
        if __name__ == "__main__":
            trials = [TrialSpec(f"t{s}", constant(0.01), "adam", {}, s) for s in range(4)]
            run_trials("mnist1d", {"subset": 400}, trials, epochs=10_000, workers=2,
                       on_epoch=lambda r: print("EPOCH", flush=True))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "EPOCH"  # workers are training
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) >= 2
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the whole group
        proc.wait(timeout=60)
        assert "KeyboardInterrupt" in proc.stderr.read()
        deadline = time.time() + 10
        while time.time() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.1)
        assert not any(Path(f"/proc/{c}").exists() and "Z" not in Path(f"/proc/{c}/stat").read_text().split()[2]
                       for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()


# ---- profiling ----------------------------------------------------------------------------------


def test_phase_timer_sees_every_phase_and_changes_nothing(cnn_task, monkeypatch):
    import lrlab.study.fleet as fleet_mod

    trials = [TrialSpec(f"p{s}", constant(0.01), "adam", {}, seed=s) for s in (0, 1)]
    plain = train_fleet(cnn_task, trials, epochs=2, keep_weights=True)
    t0 = time.perf_counter()
    timer = fleet_mod.PhaseTimer()
    monkeypatch.setattr(fleet_mod, "PROFILE", timer)
    profiled = train_fleet(cnn_task, trials, epochs=2, keep_weights=True)
    elapsed = time.perf_counter() - t0
    for a, b in zip(plain, profiled):
        assert [c.val_loss for c in a.curves] == [c.val_loss for c in b.curves]
        assert all(torch.equal(a.weights[n], b.weights[n]) for n in a.weights)
    for phase in ("data gathering", "forward", "backward", "optimizer (torch.optim foreach, lr=1)",
                  "lr application", "evaluation (val every epoch, test after the last)"):
        assert timer.wall[phase] > 0 and timer.cpu[phase] >= 0, phase
    assert set(timer.wall) == set(timer.cpu)
    assert 0.5 * elapsed < sum(timer.wall.values()) <= elapsed  # the phases tile the run, nothing counted twice


def test_path_description_says_which_path_and_why():
    from lrlab.study.fleet import path_description

    sgd = _trials(("sgd",))[0]
    assert path_description(tiny_task("convbn"), sgd) == (
        "vmap", "fleet: vmap (per-trial BatchNorm statistics, per-trial dropout streams), up to 24 trials per fleet")
    assert path_description(tiny_task(), sgd, max_fleet=7) == ("vmap", "fleet: vmap, up to 7 trials per fleet")
    assert path_description(load_task("mnist1d_mlp", subset=50), sgd, device="cuda") == (
        "mnist1d_mlp", "fleet: mnist1d_mlp (hand-batched), up to 512 trials per fleet")
    path, text = path_description(tiny_task("inline"), sgd)
    assert path == "one at a time" and text.startswith("one at a time: its forward draws random numbers outside")


# ---- allocator ----------------------------------------------------------------------------------

FAULTS_PROBE = """
import resource, torch
def faults():  # MB-sized buffers of varying sizes allocated and freed, as in a fleet step
    r = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(10):
        keep = []
        for s in (1 << 18, 3 << 18, 1 << 20, 5 << 18, 1 << 19, 1 << 20, 3 << 19):
            t = torch.empty(s).fill_(1.0)
            if i % 2 or s > (1 << 19):
                keep.append(t)
        del keep
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r
"""
"""``faults()``: this process's page faults over rounds of reused buffers (test_queue_ray runs it
in a Ray worker)."""

_FAULTS_SCRIPT = FAULTS_PROBE + """
import sys
from lrlab.study.fleet import keep_freed_memory
ok = keep_freed_memory() if sys.argv[1] == "keep" else None
faults()
print(ok, faults())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_stops_the_page_faults_of_reused_buffers():
    import lrlab

    env = {**os.environ, "PYTHONPATH": str(Path(lrlab.__file__).resolve().parents[1])}
    runs = {}
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True,
                             env=env, timeout=120, check=True).stdout.split()
        runs[mode] = (out[0], int(out[1]))
    assert runs["keep"][0] == "True"
    assert runs["default"][1] > 10_000  # glibc unmaps and re-faults the blocks every round
    assert runs["keep"][1] < 100
