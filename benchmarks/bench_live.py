"""What live Optuna trials cost the study process: one fleet's storage work, live vs finish-only.

Replays one CPU fleet as the study process sees it (24 trials x 40 epochs, the default study's
fleet: an epoch record per trial and epoch, then each trial's finished record) against a fresh
SQLite storage, with live trials on (:class:`lrlab.study.storage.LiveTrials`: a writer thread,
batched transactions, the live trial completed in place) and off (``LRLAB_LIVE=0``: each trial
added when it finishes, as before), interleaved. Prints the CPU seconds of this process (the
writer thread included) and the wall seconds of the finishing saves (what the training side
waits for)::

    python benchmarks/bench_live.py             # 3 pairs, 24 trials x 40 epochs
    python benchmarks/bench_live.py --quick     # 1 pair, 4 trials x 3 epochs (a smoke test)

No training runs here, so the figures are the storage's share alone; the whole default study with
live trials on and off is ``benchmarks/bench_demo.py --live PAIRS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time

import numpy as np


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def replay(live_on: bool, trials: int, epochs: int, epoch_s: float) -> tuple[float, float]:
    """CPU seconds of this process and wall seconds of the saves for one replayed fleet."""
    from lrlab.study.fleet import EpochRecord
    from lrlab.study.storage import CURVE_FIELDS, LiveTrials, StudyStorage, TrialRecord

    os.environ["LRLAB_LIVE"] = "1" if live_on else "0"
    with tempfile.TemporaryDirectory() as d:
        st = StudyStorage(f"sqlite:///{d}/study.db", "bench")
        st.param_space(["linear"], ["sgd"], [0.1])
        skeletons = [TrialRecord(key=f"linear/sgd/s{i}@bench", trial_id=f"linear/sgd/s{i}", schedule_name="linear",
                                 schedule_text="linear", schedule_config={"kind": "linear"}, optimizer="sgd",
                                 optimizer_kwargs={"momentum": 0.9}, seed=i, peak_lr=0.1, epochs=epochs, curves={},
                                 final={}) for i in range(trials)]
        curves = {k: np.linspace(0.1, 0.9, epochs) for k in CURVE_FIELDS}
        curves["epoch"] = np.arange(epochs, dtype=np.float64)
        finals = {"val_acc": 0.9, "val_loss": 0.3, "test_acc": 0.9, "test_loss": 0.3, "best_val_acc": 0.9}
        records = [dataclasses.replace(s, curves=curves, final=finals, seconds=1.0) for s in skeletons]
        cpu0 = _cpu()
        with LiveTrials(st, {s.trial_id: s for s in skeletons}) as live:
            for e in range(epochs):
                for s in skeletons:
                    v = float(curves["val_acc"][e])
                    live.epoch(EpochRecord(s.trial_id, e, 0.1, 1.0, v, 1.0, v, float("nan"), float("nan")))
                time.sleep(epoch_s)  # the fleet trains the next epoch
            t0 = time.perf_counter()
            for r in records:
                live.save(r)
            saves = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        assert len(st.done_keys()) == trials
    os.environ.pop("LRLAB_LIVE")
    return cpu, saves


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_live", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 pair of 4 trials x 3 epochs (smoke test)")
    args = ap.parse_args(argv)
    pairs, trials, epochs, epoch_s = (1, 4, 3, 0.05) if args.quick else (3, 24, 40, 0.6)
    print(f"one fleet of {trials} trials x {epochs} epochs replayed ({epoch_s} s an epoch), SQLite, "
          f"{pairs} interleaved pairs")
    print("| run | live | CPU of this process | wall of the saves |")
    print("|---|---|---|---|")
    got: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    n = 0
    for i in range(pairs):
        for on in (True, False) if i % 2 == 0 else (False, True):
            cpu, saves = replay(on, trials, epochs, epoch_s)
            got[on].append((cpu, saves))
            n += 1
            print(f"| {n} | {'on' if on else 'off'} | {cpu:.3f} s | {saves:.3f} s |", flush=True)
    on_cpu, off_cpu = (sum(c for c, _ in got[k]) for k in (True, False))
    on_save, off_save = (sum(s for _, s in got[k]) for k in (True, False))
    print(f"live on / off: CPU {on_cpu / off_cpu:.2f}, wall of the saves {on_save / off_save:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
