# xweg: `make demo` runs the OWL federation, `make test` runs the test suite.
# Both create .venv when it is missing; nothing else needs to be installed first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/xweg demo --data demo-data

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The side-by-side benchmark (docs/performance.md); QUICK=1 for the one-minute run.
bench: $(STAMP)
	bench/install-tools
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(if $(DATABASE_URL),--database-url $(DATABASE_URL))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core trust
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) demo-data build *.egg-info
