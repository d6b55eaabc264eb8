# sarheight: `make test` installs and runs the tests, `make demo` runs the built-in example.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of PyTorch; any other torch specification pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: test demo install install-test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installing also compiles the kernels (cached beside their sources), so that the demo
# and the first real run start at once.
$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[ml]'
	$(BIN)/sarheight compile
	touch $@

# The test data: the bigearthnet-common wheel holds real BigEarthNet Sentinel-1/-2 patches
# (tests/conftest.py finds it in $(VENV)/test-data).
$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[ml,test]'
	$(BIN)/python -m pip download --quiet --no-deps bigearthnet-common==2.8.0 -d $(VENV)/test-data
	$(BIN)/sarheight compile
	touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-test: $(STAMP_TEST)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

# The tests run on one worker process a core (pytest-xdist), each test file on one worker
# (its fixtures made once), the files in the order tests/conftest.py collects them (the
# longest first; xdist would otherwise start the files with the most tests first, and one
# worker would run a long file of few tests alone at the end); TEST_WORKERS=0 runs them in
# this process.
TEST_WORKERS ?= auto

test: install-test lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

demo: install
	$(BIN)/sarheight demo --out demo-output

bench: install
	$(BIN)/python benchmarks/geocode.py --out benchmarks/results/geocode.json
	$(BIN)/python benchmarks/reconstruct.py --out benchmarks/results/reconstruct.json
	$(BIN)/python benchmarks/scale_out.py --out benchmarks/results/scale_out.json

clean:
	rm -rf demo-output benchmarks/results .pytest_cache .ruff_cache .mypy_cache
	find kernels sarheight -name '*.nbi' -o -name '*.nbc' | xargs rm -f
