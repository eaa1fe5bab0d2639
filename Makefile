# Every target creates .venv if missing and installs what it needs.
# torch is pinned and installed first: here it resolves to a local CPU wheel,
# an unpinned torch would pull gigabytes of CUDA packages.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
PYTEST_WORKERS ?= 2

.PHONY: all venv browser demo results test test-all bench lint fmt clean

all: test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# constraints.txt pins every other package to the versions that produced docs/results.md,
# so a fresh clone reproduces those numbers; pyproject.toml keeps floors only.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]" "$(TORCH)"
	touch $(STAMP)

venv: $(STAMP)

# The report test renders the HTML in Debian's headless chromium; install it when we can.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "warning: chromium missing (apt-get install chromium); the browser test will be skipped"; fi; }

demo: $(STAMP)
	$(BIN)/babelscope run

# docs/results.md is generated from the demo's run directory, never typed by hand.
results: $(STAMP)
	$(BIN)/python -m babelscope.report.results_md runs/demo > docs/results.md.tmp && mv docs/results.md.tmp docs/results.md

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m ""

bench: $(STAMP)
	$(BIN)/babelscope bench

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
