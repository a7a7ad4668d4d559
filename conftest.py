"""Shared test setup (tests and doctests in src/): Keras needs its backend chosen before import; plots must not need a screen."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("MPLBACKEND", "Agg")
# pytest -n 2 runs two workers on two cores: more than one BLAS/OpenMP thread each oversubscribes
# the machine (80 tiny Adam steps went from 0.15 s to 12.5 s). Tests check results, not speed.
os.environ.setdefault("OMP_NUM_THREADS", "1")
