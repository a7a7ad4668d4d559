# lrlab: every target builds its own environment in .venv (nothing installed by hand is assumed).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
export KERAS_BACKEND ?= torch
export MPLBACKEND ?= Agg

.PHONY: venv demo readme-results test test-fast lint typecheck docs docs-screenshots browser-check bench bench-figures gallery clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	# torch first, from its pin: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## The main job: the default study on MNIST-1D (report in runs/demo/report.html).
demo: $(STAMP)
	$(BIN)/lrlab study --out runs/demo

## The README's study table and lr-sensitivity figure (docs/study/), from the default study.
readme-results: $(STAMP)
	$(BIN)/lrlab study --out runs/readme --no-progress
	$(BIN)/lrlab study report --out runs/readme --docs docs/study --readme README.md

## The whole suite (lint, types, tests): what CI runs.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest -n 2 -q src tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow" src tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

## The documentation site into site/ (open site/index.html; offline): guides and the API reference.
## --strict turns every warning (a broken link, a docstring that does not parse) into an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

## docs/assets/study-interactive.png and study-compare.png: a small real study rendered by headless
## Chromium (apt-get install -y chromium).
docs-screenshots: $(STAMP)
	LRLAB_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/study/test_interactive.py -k screenshots

## The interactive report and the comparison page in a real headless Chromium: every figure
## rendered, no console error (skips with a printed reason when chromium is absent).
browser-check: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests/study/test_interactive.py -k chromium

## Benchmarks: ratios against baselines measured in the same run.
bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

## The scaling figure (docs/perf/scaling.png, shown in docs/performance.md and the README's
## Benchmarks section) and the fleet's phase profile: fleet throughput against fleet size and width,
## and a fleet step's fixed and per-trial costs.
bench-figures: $(STAMP)
	$(BIN)/python benchmarks/scaling.py --out docs/perf/scaling.png
	$(BIN)/python benchmarks/profile_fleet.py
	$(BIN)/python benchmarks/profile_fleet.py --sweep 4 9 18 36 --epochs 2

## One plot per registered schedule, into docs/gallery/ (shown in the README).
gallery: $(STAMP)
	$(BIN)/lrlab gallery docs/gallery

clean:
	rm -rf $(VENV) runs site .pytest_cache .mypy_cache .ruff_cache
