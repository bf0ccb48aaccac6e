# The two commands: `make demo` (the whole flow on a local network) and `make test`.
# Both install what they need first: a .venv with the package and its dev extras, the pinned npm
# tools (anvil, solcjs) in node/node_modules, and Kubo, geth and IPFS Cluster built from the Go module
# proxy into node/bin.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_HOME ?= $(CURDIR)/.provanchor-demo
DEMO_WORK ?= $(CURDIR)/.provanchor-demo-work

.PHONY: setup go-tools browser demo test lint compile bench fuzz clean

EXPLORER_VENDOR := provanchor/explorer/static/vendor

setup: $(VENV)/.installed node/node_modules/.installed $(EXPLORER_VENDOR)/cytoscape.min.js go-tools browser

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "provanchor needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

node/node_modules/.installed: node/package.json node/package-lock.json
	cd node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The explorer's lineage graph: Cytoscape.js from the pinned npm package, served by the explorer itself
# (no CDN at run time). Built here, never committed.
$(EXPLORER_VENDOR)/cytoscape.min.js: node/node_modules/.installed
	mkdir -p $(EXPLORER_VENDOR)
	cp node/node_modules/cytoscape/dist/cytoscape.min.js $@

# The explorer's browser tests drive Debian's chromium with playwright-core (never a browser download).
# Installed once as root; elsewhere those tests say chromium is missing and skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium (apt)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium is not installed (not root, or no apt): the explorer's browser tests will skip"; fi; }

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
