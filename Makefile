# Two commands do all the set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
## `make install TORCH=cpu`: PyTorch's CPU-only wheels of the versions the default install resolves to (no CUDA
## libraries: about 3.9 GB of venv instead of 9.9 GB, computed from measured parts in docs/index.md); the default takes PyPI's.
TORCH  ?= default
TORCH_VERSION       := 2.10.0
TORCHVISION_VERSION := 0.25.0
TORCH_CPU_INDEX     := https://download.pytorch.org/whl/cpu

.PHONY: install train test test-fast bench bench-kill lint docs clean

install: $(STAMP)

# Reinstall whenever the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(TORCH),cpu)
	$(PY) -m pip install --quiet --extra-index-url $(TORCH_CPU_INDEX) \
		'torch==$(TORCH_VERSION)+cpu' 'torchvision==$(TORCHVISION_VERSION)+cpu'
else ifneq ($(TORCH),default)
	$(error TORCH=$(TORCH): expected TORCH=cpu, or nothing for PyPI's default wheels)
endif
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## The embedded default: scripted robosuite Lift demos -> LeRobot dataset -> ACT -> rollouts.
train: install
	$(PY) train.py experiment=quickstart $(ARGS)

## The whole suite, a test file per core (pytest-xdist), the longest files first (tests/conftest.py).
## Tests marked `alone` (a control loop's deadlines and wall-time bounds) run with no other test beside them.
## `make test ARGS="-n 0"` runs one test at a time.
XDIST = -n auto --dist loadfile --no-loadscope-reorder
test: install
	$(PY) -m pytest $(XDIST) $(ARGS)

## The suite without the simulator and multi-process tests.
test-fast: install
	$(PY) -m pytest $(XDIST) -m "not slow" $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

## SIGKILL a training run 20 times (some inside checkpoint saves), resume each time, compare the weights.
bench-kill: install
	$(PY) -m bench kill_resume

lint: install
	$(PY) -m ruff check src tests bench train.py
	$(PY) -m ruff format --check src tests bench train.py

## The documentation site (MkDocs + Material, docs/ and mkdocs.yml) into site/; a warning fails the build.
## The configuration reference page is generated from the config schemas on every build (docs/hooks.py).
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf outputs multirun site .pytest_cache .ruff_cache src/*.egg-info
