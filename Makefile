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
# The range-map viewer's browser libraries (Leaflet, h3-js) come from the npm registry at the
# versions pinned in sinr_jax/viewer/web/package-lock.json and are copied into the ignored
# sinr_jax/viewer/static/vendor/ (rebuilt when the lock file changes).
VIEWER_WEB := sinr_jax/viewer/web
VENDOR := sinr_jax/viewer/static/vendor
VENDOR_STAMP := $(VENDOR)/.built-$(shell cksum $(VIEWER_WEB)/package-lock.json | cut -d' ' -f1)
NODE_MODULES := $(VIEWER_WEB)/node_modules
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

.PHONY: install demo demo-vision test bench gpu-wheels spml-table sinr-table clean viewer-assets \
	browser viewer-screenshot

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

test: $(STAMP) $(VENDOR_STAMP) browser
	$(PY) -m pytest -q --durations=30 $(PYTEST_ARGS)

$(VENDOR_STAMP): $(VIEWER_WEB)/package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && $(APT_INSTALL) nodejs npm)
	cd $(VIEWER_WEB) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/images
	cp $(NODE_MODULES)/leaflet/dist/leaflet.js $(NODE_MODULES)/leaflet/dist/leaflet.css $(VENDOR)/
	cp $(NODE_MODULES)/leaflet/dist/images/*.png $(VENDOR)/images/
	cp $(NODE_MODULES)/leaflet/LICENSE $(VENDOR)/LICENSE-leaflet.txt
	cp $(NODE_MODULES)/h3-js/dist/h3-js.umd.js $(VENDOR)/
	cp $(NODE_MODULES)/h3-js/LICENSE $(VENDOR)/LICENSE-h3-js.txt
	touch $@

viewer-assets: $(VENDOR_STAMP)

# Debian's Chromium and its driver for the viewer's browser test (tests/sinr/test_viewer_browser.py);
# nothing downloads a browser build of its own. Installed when missing and running as root (CI).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && $(APT_INSTALL) chromium chromium-driver; \
	  else \
	    echo "note: chromium/chromedriver missing (not root): outside CI the browser test skips;" \
	      "install them with: sudo apt-get install chromium chromium-driver"; \
	  fi; \
	fi

# Regenerates docs/viewer.png with the browser test, on the demo run (make demo first).
viewer-screenshot: $(STAMP) $(VENDOR_STAMP) browser
	VIEWER_RUN=runs/demo VIEWER_COMPARE=runs/demo/baseline_lr VIEWER_SCREENSHOT=docs/viewer.png \
	  $(PY) -m pytest -q tests/sinr/test_viewer_browser.py

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
