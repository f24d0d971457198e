# coconut-lm: set-up, demo and tests on a fresh CPU machine.
#   make demo   creates .venv, installs CPU torch and the package, runs the end-to-end demo
#   make test   creates .venv, installs CPU torch and the package with dev extras, runs lint and pytest
#   make pins   refreshes constraints.txt: the newest releases in a scratch venv, rewritten only if the tests pass
# Every install goes through constraints.txt (exact versions, the build tools included), so a release upstream
# cannot change what a fresh clone installs; pyproject.toml keeps the wide ranges that users install from.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
PINS   ?= constraints.txt
# pytest-xdist: one worker per core; idle workers take tests queued for busy ones (worksteal), so the long
# script tests of one file do not all land on one worker. `make test PYTEST_WORKERS=` runs in one process;
# PYTEST_XDIST_AUTO_NUM_WORKERS=N caps `-n auto` (e.g. in a container limited to fewer cores than the host's).
PYTEST_WORKERS ?= -n auto --dist worksteal

.PHONY: venv demo test lint clean pins

# install VENV CONSTRAINT-FLAGS: pip and the build tools, then the CPU torch build first (so that no dependency
# pulls a multi-GB CUDA wheel), then the package with dev extras, built without an unpinned isolated build env.
define install
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet $(2) --upgrade pip setuptools wheel
	$(1)/bin/pip install --quiet $(2) "$(TORCH)"
	$(1)/bin/pip install --quiet $(2) --no-build-isolation -e ".[dev]"
endef

$(BIN)/.installed: pyproject.toml $(PINS)
	rm -rf $(VENV)
	$(call install,$(VENV),-c $(PINS))
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/coconut-lm demo

lint: venv
	$(BIN)/ruff check src tests

test: venv lint
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_WORKERS)

pins:
	rm -rf .venv-pins
	$(call install,.venv-pins,)
	{ sed -n '/^#/p' $(PINS); .venv-pins/bin/pip freeze --all --exclude-editable | grep -v '^coconut' \
	  | sed 's/+cpu$$//'; } > $(PINS).new
	.venv-pins/bin/ruff check src tests && .venv-pins/bin/python -m pytest -q $(PYTEST_WORKERS)
	mv $(PINS).new $(PINS)
	rm -rf .venv-pins
	@echo "constraints.txt refreshed; commit it with the test result"

clean:
	rm -rf $(VENV) .venv-pins build src/*.egg-info
