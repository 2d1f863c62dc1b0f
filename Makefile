# The two commands of the README. Both work on a fresh machine: they make a virtual environment in
# .venv, build fastgru into it (pip fetches Cython, numpy and scipy for the build), install the extras
# they need, and run.
#   make demo   load exported PyTorch / ONNX weights, check them against the frameworks, time them
#   make test   the test suite (CI runs this through .ci/run)
#   make dist-check   build the sdist and the wheel from HEAD, install each into a fresh venv, smoke-test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned: unpinned, pip would pull a multi-GB CUDA build.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench sanitize dist-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

demo: $(BIN)/python
	$(PIP_INSTALL) -e ".[torch,onnx]"
	$(BIN)/python examples/demo.py

test: $(BIN)/python
	$(PIP_INSTALL) -e ".[test]"
	$(BIN)/python -m pytest -q
	$(BIN)/python bench/run.py --quick --out $(VENV)/bench-smoke
	$(BIN)/python bench/scaleout.py --quick --out $(VENV)/bench-smoke

bench: $(BIN)/python
	$(PIP_INSTALL) -e ".[bench]"
	$(BIN)/python bench/run.py --int8
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/startup.py
	# docs/benchmark.md is the three reports of this run, one after the other; the plot goes beside it
	cat bench/results/bench.md bench/results/train_step.md bench/results/startup.md > docs/benchmark.md
	cp bench/results/bench.png docs/benchmark.png

sanitize: $(BIN)/python
	$(PIP_INSTALL) -e ".[test]"
	PYTHON=$(abspath $(BIN)/python) bash tools/sanitize.sh

# The release artifacts from a clean export of HEAD, each installed and run (tools/check_dist.sh).
dist-check: $(BIN)/python
	PYTHON=$(abspath $(BIN)/python) bash tools/check_dist.sh

clean:
	rm -rf build dist $(VENV) fastgru/_core.c fastgru/*.so *.egg-info
