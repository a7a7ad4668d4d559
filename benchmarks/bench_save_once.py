"""What first-result-wins storing costs as a study grows: ``save_once`` with many trials stored.

A work-queue claim stores each finished trial with :meth:`lrlab.study.storage.StudyStorage.save_once`
(first result wins, under the storage-wide lock). Its check used to be ``key in done_keys()``,
which loads every stored trial of the study, so each store cost time linear in the study's size;
it is now :meth:`~lrlab.study.storage.StudyStorage.is_stored`, one query for the key. This fills
a fresh SQLite storage with ``N`` finished trials (40-epoch curves, as the default study's), then
stores new trials alternately through the old check (``scan``: the code ``save_once`` had, kept
here as the baseline) and through ``save_once`` (``lookup``), and prints the median seconds per
store and the ratio, per ``N``: for the first store of a freshly opened storage (a new worker
process; the scan then loads every trial) and for later stores of one open storage (Optuna's
trial cache then holds the finished trials, the scan's best case: it still walks all of them)::

    python benchmarks/bench_save_once.py             # N = 100, 1000, 2000; 3 first + 15 later stores each way
    python benchmarks/bench_save_once.py --quick     # N = 50; 1 + 3 stores each way (a smoke test)

Every figure includes the insert itself (one committed transaction with its 40 intermediate
values, ~25-50 ms on SQLite). ``--url`` points at another storage URL holding ``{n}`` (a fresh, empty
database per ``N``; e.g. a PostgreSQL server's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np


def _record(i: int, epochs: int = 40) -> Any:
    from lrlab.study.storage import CURVE_FIELDS, TrialRecord

    curves = {k: np.linspace(0.1, 0.9, epochs) for k in CURVE_FIELDS}
    curves["epoch"] = np.arange(epochs, dtype=np.float64)
    return TrialRecord(key=f"linear/sgd/lr0.1/s{i}@bench", trial_id=f"linear/sgd/lr0.1/s{i}", schedule_name="linear",
                       schedule_text="linear(1.0, 0.0, steps=100%)", schedule_config={"kind": "linear"},
                       optimizer="sgd", optimizer_kwargs={"momentum": 0.9}, seed=i, peak_lr=0.1, epochs=epochs,
                       curves=curves, final={"val_acc": 0.9, "val_loss": 0.3, "test_acc": 0.9, "test_loss": 0.3},
                       seconds=1.0)


def fill(st: Any, n: int) -> None:
    """``n`` finished trials added in one transaction (storing them one by one would take minutes)."""
    from optuna.storages._rdb import models

    from lrlab.study.storage import _rdb_backend

    backend = _rdb_backend(st)
    session = backend.scoped_session()
    try:
        models.StudyModel.find_or_raise_by_id(st.study._study_id, session, for_update=True)
        for i in range(n):
            backend._get_prepared_new_trial(st.study._study_id, st.frozen(_record(i)), session)
        session.commit()
    finally:
        session.close()


def scan_save_once(st: Any, record: Any) -> bool:
    """``save_once`` as it was: the key checked against every stored trial (:meth:`done_keys`)."""
    with st._store_lock(record.key):
        if record.key in st.done_keys():
            return False
        st.save(record)
        return True


def _store(st: Any, way: str, record: Any) -> float:
    t0 = time.perf_counter()
    ok = scan_save_once(st, record) if way == "scan" else st.save_once(record)
    took = time.perf_counter() - t0
    assert ok
    return took


def measure(url: str, n: int, cold: int, warm: int) -> dict[str, tuple[float, float]]:
    """Median seconds per store with ``n`` trials stored, ``{"first": (scan, lookup), "later":
    (scan, lookup)}``: the first store of a freshly opened storage (a new worker process: Optuna's
    trial cache is empty), ``cold`` times each way, and later stores of one open storage (its cache
    warm: the scan's best case), ``warm`` times each way; interleaved."""
    from lrlab.study.storage import StudyStorage

    st = StudyStorage(url, "bench")
    st.param_space(["linear"], ["sgd"], [0.1])
    fill(st, n)
    nxt = iter(range(n, 10**9))
    first: dict[str, list[float]] = {"scan": [], "lookup": []}
    for i in range(cold):
        for way in ("scan", "lookup") if i % 2 == 0 else ("lookup", "scan"):
            first[way].append(_store(StudyStorage(url, "bench"), way, _record(next(nxt))))
    st = StudyStorage(url, "bench")
    assert len(st.done_keys()) == n + 2 * cold  # every trial read once: its cache is warm
    later: dict[str, list[float]] = {"scan": [], "lookup": []}
    for i in range(warm):
        for way in ("scan", "lookup") if i % 2 == 0 else ("lookup", "scan"):
            later[way].append(_store(st, way, _record(next(nxt))))
    again = _record(n)  # a key stored meanwhile: both refuse it
    assert not scan_save_once(st, again) and not st.save_once(again)
    return {k: (statistics.median(v["scan"]), statistics.median(v["lookup"])) for k, v in
            (("first", first), ("later", later))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_save_once", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 50, 1 + 3 stores each way (smoke test)")
    ap.add_argument("--url", help="a storage URL holding {n}: a fresh empty database per N (default: SQLite files)")
    args = ap.parse_args(argv)
    if args.url is not None and "{n}" not in args.url:
        print(f"bench_save_once: --url must hold {{n}}, got {args.url!r}", file=sys.stderr)
        return 2
    sizes, cold, warm = ([50], 1, 3) if args.quick else ([100, 1000, 2000], 3, 15)
    print(f"save_once with N trials stored: median seconds per store, scan (the old check) vs lookup "
          f"(save_once now); first store of a freshly opened storage ({cold} each way) and later stores "
          f"of an open one ({warm} each way), interleaved")
    print("| N stored | first: scan | first: lookup | first: scan / lookup | later: scan | later: lookup "
          "| later: scan / lookup |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            url = args.url.format(n=n) if args.url else f"sqlite:///{d}/study_{n}.db"
            got = measure(url, n, cold, warm)
            cells = [f"{a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {a / b:.2f}x" for a, b in (got["first"], got["later"])]
            print(f"| {n} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
