# make study: run every numbered notebook at PRESET (default cpu) through papermill.
#             RETRAIN=1 also trains the models that models/study/ ships.
# make test:  run the test suite (unit tests and every notebook at the smoke preset).
# Each target creates .venv first when it is missing.

PYTHON ?= python3
VENV   ?= .venv
PRESET ?= cpu
# RETRAIN=1: train every model, also those shipped in models/study/
RETRAIN ?= 0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: study test venv clean-cache

venv: $(STAMP)

# torch first, pinned, so that pip takes the CPU wheel instead of resolving a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

study: $(STAMP)
	XTAL_RETRAIN=$(RETRAIN) $(BIN)/xtal-study --preset $(PRESET)

test: $(STAMP)
	$(BIN)/python -m pytest

clean-cache:
	rm -rf data/cache
