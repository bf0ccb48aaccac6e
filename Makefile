# The two commands: `make demo` (the whole flow on a local network) and `make test`.
# Both install what they need first: a .venv with the package and its dev extras, the pinned npm
# tools (anvil, solcjs) in node/node_modules, and Kubo, geth and IPFS Cluster built from the Go module
# proxy into node/bin.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_HOME ?= $(CURDIR)/.provanchor-demo
DEMO_WORK ?= $(CURDIR)/.provanchor-demo-work

.PHONY: setup go-tools demo test lint compile bench fuzz clean

setup: $(VENV)/.installed node/node_modules/.installed go-tools

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "provanchor needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

node/node_modules/.installed: node/package.json node/package-lock.json
	cd node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Kubo, geth and the IPFS Cluster tools: built once each from node/{kubo,geth,ipfs-cluster}/go.mod (+ go.sum)
# into node/bin; the script skips a program when node/bin already holds its pinned version.
go-tools:
	@scripts/build-go-tools

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
