# Two commands set everything up on a fresh clone (only Python 3.11 needed):
#   make demo   - create .venv, install recforge, train DeepFM on the bundled UCI Adult data
#   make test   - create .venv, install recforge with dev extras, run the default test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test test-slow test-benchmark test-distributed test-torchrec gpu-check lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/adult_deepfm
	$(VENV)/bin/recforge train configs/adult_deepfm.yaml

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-benchmark: $(STAMP)
	$(PY) -m pytest -q -m benchmark

test-distributed: $(STAMP)
	$(PY) -m pytest -q -m distributed

# TorchRec (CPU build) in its own venv, then its interop and sharded-training tests (2 gloo ranks)
TORCHREC_PY = benchmarks/.venvs/torchrec/bin/python
test-torchrec:
	$(PYTHON) benchmarks/peers.py torchrec
	$(TORCHREC_PY) -m pip install --quiet pytest -e .
	PYTHONPATH=src $(TORCHREC_PY) -m pytest -q -p no:cacheprovider -m "distributed or not distributed" \
		tests/test_torchrec_interop.py tests/test_torchrec_sharding.py

# The CUDA paths (AMP, sparse optimizers, fast paths, DeepFM throughput, one NCCL DDP step) in a
# few minutes, one table; fails (exit 2) on a machine without a GPU instead of passing silently.
gpu-check: $(STAMP)
	PYTHONPATH=src $(PY) benchmarks/gpu_check.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
