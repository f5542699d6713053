# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_BUDGET ?= 90

.PHONY: setup demo test test-fast submission clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

data/synth/synth.data/meta.json: | setup
	$(PY) -m harness.synth --out data/synth

demo: setup data/synth/synth.data/meta.json
	$(PY) -m harness run --dataset data/synth --time-budget $(DEMO_BUDGET) --out results/demo

test: setup
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

submission: setup
	$(PY) -m harness.submission --out dist/submission.zip

clean:
	rm -rf results/demo data/synth
