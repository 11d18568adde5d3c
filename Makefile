# downpour: the two commands. `make demo` and `make test` each create the
# virtual environment when it is missing (torch pinned to the CPU build first,
# then the package under constraints.txt), then run. The demo needs only the
# package (and TensorBoard for its logs); the tests also install the
# cross-check libraries and test tools (extra `all`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.downpour-installed
DEMO_STAMP := $(VENV)/.downpour-demo-installed
RUN    ?= runs/demo

.PHONY: demo test lint setup clean browser

demo: $(DEMO_STAMP)
	$(BIN)/downpour demo --out $(RUN)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The report test opens report.html in headless Chromium; install Debian's
# package where possible (root with apt), else that test checks the HTML only.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	      || (apt-get update -qq >/dev/null 2>&1 \
	          && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1)) \
	  || echo "chromium not installed: the report test falls back to checking the HTML"; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	@touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[tensorboard]"
	@touch $(DEMO_STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache
