# Two commands take a fresh clone to a working appliance: `make run`, `make test`.
# Each does its own set-up; nothing needs installing by hand but Python >= 3.11.

PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# llama-cpp-python compiles llama.cpp on first install; pip caches the built
# wheel, so later installs reuse it. Never pass --no-cache-dir or --force-reinstall.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

DEMO_HOME := .demo
# Wheels of every dependency, for offline bundles (this platform; see
# docs/formats/bundle.md). Made from pip's cache after the first install.
WHEELHOUSE := .wheelhouse
# Extras a bundle's wheels also carry: `ort` (onnxruntime, for the shipped e5), or
# `make wheelhouse BUNDLE_EXTRAS=onnx` (or gpu) for a site's own ONNX embedding model
# (docs/formats/documents.md). Remove .wheelhouse to change.
BUNDLE_EXTRAS := ort

.PHONY: setup tools run stop demo-reset wheelhouse test lint bench fuzz clean

setup: $(STAMP) $(WHEELHOUSE)/.ready tools
	$(BIN)/appliance models prepare

# llama.cpp's own tools (llama-server, llama-perplexity, llama-imatrix), built once
# from the llama.cpp that the pinned llama-cpp-python sdist vendors and cached outside
# the checkout (~/.cache/appliance/llama.cpp/<version>-<flags>/bin); about 5 minutes
# on 2 cores the first time, nothing after.
tools: $(STAMP)
	$(BIN)/python -m appliance.engine.tools build

wheelhouse: $(WHEELHOUSE)/.ready

$(WHEELHOUSE)/.ready: $(STAMP)
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --progress-bar off --wheel-dir $(WHEELHOUSE) \
		'.$(if $(BUNDLE_EXTRAS),[$(BUNDLE_EXTRAS)])'
	rm -f $(WHEELHOUSE)/appliance-*.whl  # built fresh from the checkout for each bundle
	touch $@

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
		{ echo "make: Python 3.11 or newer is required (set PYTHON=...)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "Installing; the first install compiles llama.cpp (about 10 minutes on 2 cores)."
	$(BIN)/python -m pip install --progress-bar off -e '.[dev]'
	touch $(STAMP)

# The UI on a demonstration home (sealed default model, defense-kr, demo accounts),
# a client of `appliance serve` on that home, started in the background when none
# runs (its log: .demo/serve.log); `make stop` ends it.
run: setup
	$(BIN)/appliance demo --home $(DEMO_HOME)
	APPLIANCE_HOME=$(DEMO_HOME) $(BIN)/appliance serve --background
	APPLIANCE_HOME=$(DEMO_HOME) $(BIN)/appliance ui

stop:
	APPLIANCE_HOME=$(DEMO_HOME) $(BIN)/appliance service stop

demo-reset:
	-APPLIANCE_HOME=$(DEMO_HOME) $(BIN)/appliance service stop 2>/dev/null
	rm -rf $(DEMO_HOME)

# Test files are spread over two workers (a file's tests stay together).
TEST_WORKERS ?= 2

# The tests start the appliance as a process hundreds of times: its bytecode is
# written first (compileall writes even where PYTHONDONTWRITEBYTECODE is set), so
# no process compiles the package again (about 0.3 s a start on this code).
test: $(STAMP) $(WHEELHOUSE)/.ready tools
	$(BIN)/python -m compileall -q appliance > /dev/null
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

# Coverage-guided fuzzing (atheris) of every parser of untrusted bytes, one
# harness after another (tests/fuzz/); `make test` runs each for seconds only.
# New corpus inputs and any crash land in tests/fuzz/work/TARGET/.
FUZZ_SECONDS ?= 180
FUZZ_TARGETS ?= all

fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.run $(FUZZ_TARGETS) $(FUZZ_SECONDS)

lint: $(STAMP)
	$(BIN)/ruff check appliance tests bench
	$(BIN)/ruff format --check appliance tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

# bench/seal.py measures against the age CLI, an independent peer (Debian: age).
bench: $(STAMP)
	@command -v age >/dev/null 2>&1 || { echo "Installing age (Debian package) for bench/seal.py."; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq age >/dev/null || \
		{ $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq age >/dev/null; }; }
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/seal.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/dlp.py
	$(BIN)/python bench/signin.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/remote.py
	$(BIN)/python bench/tui.py
	$(BIN)/python bench/bundle.py
	$(BIN)/python bench/quantize.py

clean:
	rm -rf $(VENV) $(WHEELHOUSE) .pytest_cache .ruff_cache
