# Everything a user runs. `make grid TASK=mnist` and `make test` set up .venv on first use.
PYTHON  ?= python3
VENV    ?= .venv
TASK    ?= mnist
SPEC    ?= grids/$(TASK).toml
OUT     ?= results/$(TASK).zarr
JOBS    ?= 0
ARGS    ?=
# torch build: auto (CUDA where nvidia-smi works, else CPU), cpu or cuda; TORCH_INDEX serves the CPU build.
TORCH   ?= auto
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# A task with heavy dependencies declares them as the optional extra named like the task
# (pyproject.toml); `make grid` installs it on first use. The task is read from the spec.
SPEC_TASK   := $(shell sed -n 's/^task *= *"\([^"]*\)".*/\1/p' $(SPEC) 2>/dev/null)
TASK_EXTRA  := $(shell grep -qs '^$(SPEC_TASK) *= *\[' pyproject.toml && echo $(SPEC_TASK))
# Extras the test suite needs: their tests skip without them, CI runs them.
TEST_EXTRAS := qm9 pyg peers h5

.PHONY: install grid figures test bench gpu-check clean

install: $(STAMP)

# torch goes in first, so that the package's bare `torch` requirement is already met by the chosen
# build. setuptools warns about every editable install of a flat layout; nothing here acts on it.
$(STAMP): pyproject.toml scripts/install-torch.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	sh scripts/install-torch.sh $(BIN)/python 2.13.0 $(TORCH) $(TORCH_INDEX)
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# One stamp per extra: installed once, again when pyproject.toml changes.
$(VENV)/.extra-%: $(STAMP)
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e '.[$*]'
	touch $@

grid: install $(TASK_EXTRA:%=$(VENV)/.extra-%)
	$(BIN)/landscape grid $(SPEC) --out $(OUT) --jobs $(JOBS) $(ARGS)

# LANDSCAPE=results/<task>.zarr adds the delay-prediction panel to a dynamics cube's figures.
figures: install
	$(BIN)/landscape plot $(OUT) --out figures/$(TASK) $(if $(LANDSCAPE),--landscape $(LANDSCAPE))

test: install $(TEST_EXTRAS:%=$(VENV)/.extra-%)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The performance table (README "Performance"): one process, about 8 minutes on 2 cores.
bench: install
	$(BIN)/python -m benchmarks.bench

# On a machine with CUDA: CUDA against CPU cubes of the quick specs, cell-batch sizes, the MNIST
# grid's wall time (under 8 minutes on one data-centre GPU). Runs the Python that has CUDA torch
# (PYTHON=...; default python3); scripts/gpu-wheels.sh fetches the packages a bare GPU image lacks.
gpu-check:
	bash scripts/gpu-check.sh

clean:
	rm -rf results figures
