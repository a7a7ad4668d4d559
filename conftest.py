"""Shared test setup (tests and doctests in src/): Keras needs its backend chosen before import; plots must not need a screen."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("MPLBACKEND", "Agg")
