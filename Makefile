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

# the suite runs in a few pytest processes, one per group of test files: numba's compiled code and
# the captures' arrays stay resident for the life of a process, and one process over the whole
# suite grew past 20 GiB; each group starts afresh (the kernels come from numba's disk cache)
TEST_GROUPS = 'tests/test_[a-c]*.py' 'tests/test_[d-l]*.py' 'tests/test_[m-q]*.py' \
              'tests/test_r*.py' 'tests/test_[s-u]*.py' 'tests/test_[v-z]*.py'

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	@fail=0; for g in $(TEST_GROUPS); do echo "== pytest $$g"; $(BIN)/pytest $$g || fail=1; done; exit $$fail

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis report
