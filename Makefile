# The two commands: `make demo` (the whole flow on a local network) and `make test`.
# Both install what they need first: a .venv with the package and its dev extras, the pinned npm
# tools (anvil, solcjs) in node/node_modules, and Kubo built from the Go module proxy into node/bin.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_HOME ?= $(CURDIR)/.provanchor-demo
DEMO_WORK ?= $(CURDIR)/.provanchor-demo-work

.PHONY: setup kubo demo test lint compile bench fuzz clean

setup: $(VENV)/.installed node/node_modules/.installed kubo

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "provanchor needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

node/node_modules/.installed: node/package.json node/package-lock.json
	cd node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Kubo: built once from node/kubo/go.mod (+ go.sum); the script skips the build when node/bin/ipfs is that version.
kubo:
	@scripts/build-kubo

demo: setup
	PROVANCHOR_HOME=$(DEMO_HOME) PROVANCHOR_DEMO_WORK=$(DEMO_WORK) PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash scripts/demo

test: setup
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check provanchor tests benchmarks scripts
	$(VENV)/bin/mypy --strict provanchor

compile: setup
	scripts/compile

bench: setup
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	$(PY) benchmarks/anchor.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/agent_overhead.py
	$(PY) benchmarks/replay.py
	$(PY) benchmarks/verify.py
	$(PY) benchmarks/ml.py

# 1,000,000 coverage-guided executions of each decoder of untrusted bytes (about 30 minutes on 2 cores).
fuzz: setup
	$(VENV)/bin/pip install --quiet -e '.[dev,fuzz]'
	$(PY) benchmarks/fuzz.py

clean:
	-PROVANCHOR_HOME=$(DEMO_HOME) $(VENV)/bin/provanchor node down
	rm -rf $(DEMO_HOME) $(DEMO_WORK)
