# coconut-lm: set-up, demo and tests on a fresh CPU machine.
#   make demo   creates .venv, installs CPU torch and the package, runs the end-to-end demo
#   make test   creates .venv, installs CPU torch and the package with dev extras, runs lint and pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: venv demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Pin the CPU build first so that no dependency pulls a multi-GB CUDA wheel.
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/coconut-lm demo

lint: venv
	$(BIN)/ruff check src tests

test: venv lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
