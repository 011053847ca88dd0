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

.PHONY: install grid figures test bench clean

install: $(STAMP)

# CPU torch goes in first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

grid: install
	$(BIN)/landscape grid $(SPEC) --out $(OUT) --jobs $(JOBS) $(ARGS)

# LANDSCAPE=results/<task>.zarr adds the delay-prediction panel to a dynamics cube's figures.
figures: install
	$(BIN)/landscape plot $(OUT) --out figures/$(TASK) $(if $(LANDSCAPE),--landscape $(LANDSCAPE))

test: install
	$(BIN)/python -m pytest -q

# The performance table (README "Performance"): one process, a few minutes on 2 cores.
bench: install
	$(BIN)/python -m landscape.bench

clean:
	rm -rf results figures
