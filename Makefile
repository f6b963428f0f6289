# Two entry points (README): `make demo` runs the main job end to end, `make test` runs the test suite.
# Both create .venv/ inside the repository on first use and install the pinned stack into it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/synthetic
DEMO_STAYS ?= 5000

.PHONY: demo test check lint format install clean lineage

install: $(STAMP)

# torch first: pip takes this machine's local CPU build of 2.13.0; any later request is then satisfied.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sepsis-fusion demo --stays $(DEMO_STAYS) --out $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest --durations=10

# the inner loop: ruff and the tests that need no dbt build, Spark, server or install (docs/TESTING.md)
check: lint
	$(BIN)/python -m pytest -m "not build" --durations=5

# docs/LINEAGE.md and docs/figures/lineage.png from dbt's manifest (`dbt parse`: no raw data needed)
lineage: $(STAMP)
	$(BIN)/python dbt_project/scripts/generate_lineage.py

# keeps data/README.md, the one tracked file there
clean:
	rm -rf $(VENV)
	find data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
