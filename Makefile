# The README's two commands are `make demo` and `make test`; both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-install whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# PyTorch is a benchmark extra only. The CPU wheel is pinned so a CPU box does not pull a CUDA build;
# on a GPU machine use `make bench TORCH=torch`.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo demo-vision test bench gpu-wheels spml-table sinr-table clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	rm -f $(VENV)/.installed-*
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m sinr_jax.demo --workdir=runs/demo

demo-vision: $(STAMP)
	$(PY) -m vision_jax.demo --workdir=runs/demo_vision

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Side-by-side entries run JAX and PyTorch in separate, alternating processes (benchmarks/harness.py).
bench: $(STAMP)
	$(PY) -m pip install -q '$(TORCH)'
	$(PY) benchmarks/sinr_train_throughput.py
	$(PY) benchmarks/sinr_eval_throughput.py
	$(PY) benchmarks/ssl_throughput.py
	$(PY) benchmarks/cpu_kernels.py

# Wheels (CPython 3.12, manylinux x86-64) that benchmarks/gpu_suite.sh installs offline on a GPU
# machine without network or .venv; carry .gpu_wheels/ there. Rehearse: bash benchmarks/check_gpu_offline.sh
gpu-wheels: | $(PY)
	bash benchmarks/prepare_gpu_wheels.sh

# Table reproductions (minutes each on a 2-core CPU; results go to benchmarks/RESULTS.md).
sinr-table: $(STAMP)
	$(PY) benchmarks/sinr_table.py

spml-table: $(STAMP)
	$(PY) benchmarks/spml_table.py

clean:
	rm -rf runs .pytest_cache
