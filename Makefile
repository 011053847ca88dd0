# Everything a user runs. `make grid TASK=mnist` and `make test` set up .venv on first use.
PYTHON  ?= python3
VENV    ?= .venv
TASK    ?= mnist
SPEC    ?= grids/$(TASK).toml
OUT     ?= results/$(TASK).zarr
JOBS    ?= 0
ARGS    ?=
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# A task with heavy dependencies declares them as the optional extra named like the task
# (pyproject.toml); `make grid` installs it on first use. The task is read from the spec.
SPEC_TASK   := $(shell sed -n 's/^task *= *"\([^"]*\)".*/\1/p' $(SPEC) 2>/dev/null)
TASK_EXTRA  := $(shell grep -qs '^$(SPEC_TASK) *= *\[' pyproject.toml && echo $(SPEC_TASK))
# Extras the test suite needs: their tests skip without them, CI runs them.
TEST_EXTRAS := qm9 pyg

.PHONY: install grid figures test bench clean

install: $(STAMP)

# CPU torch goes in first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# One stamp per extra: installed once, again when pyproject.toml changes.
$(VENV)/.extra-%: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[$*]'
	touch $@

grid: install $(TASK_EXTRA:%=$(VENV)/.extra-%)
	$(BIN)/landscape grid $(SPEC) --out $(OUT) --jobs $(JOBS) $(ARGS)

# LANDSCAPE=results/<task>.zarr adds the delay-prediction panel to a dynamics cube's figures.
figures: install
	$(BIN)/landscape plot $(OUT) --out figures/$(TASK) $(if $(LANDSCAPE),--landscape $(LANDSCAPE))

test: install $(TEST_EXTRAS:%=$(VENV)/.extra-%)
	$(BIN)/python -m pytest -q

# The performance table (README "Performance"): one process, a few minutes on 2 cores.
bench: install
	$(BIN)/python -m landscape.bench

clean:
	rm -rf results figures
