# The two commands of the README:  `make run`  and  `make test`.
# Each creates .venv and installs memdesc into it on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: install run test lint bench clean
install: $(BIN)/.installed

# every design on the bundled capture, side by side; the report in report/ (open compare.html)
run: $(BIN)/.installed
	$(BIN)/memdesc compare --html report/compare.html --json report/compare.json

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis report
