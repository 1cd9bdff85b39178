#!/usr/bin/env bash
# Checks here (no GPU needed) the path benchmarks/gpu_suite.sh takes on a GPU machine with no
# network and no .venv: a Python 3.12 that has only the stock image's packages, the wheels of
# .gpu_wheels installed offline, the project from PYTHONPATH, then the suite's entries at tiny sizes.
#
#   bash benchmarks/check_gpu_offline.sh        # SUITE=full for the real sizes (long on a CPU)
#
# 1. .gpu_wheels: made by benchmarks/prepare_gpu_wheels.sh if absent (needs pip's index).
# 2. A stand-in for the image's own packages, for this check only: CPU wheels of jax/jaxlib 0.11,
#    flax, optax, orbax-checkpoint, numpy, scipy and the ON_IMAGE set (pyarrow pandas matplotlib
#    scikit-learn scikit-image pillow) downloaded once into ${STOCK_DIR:-/tmp/ecorep_stock_wheels}
#    (never into the carried folder). No PyTorch: a CPU torch for CPython 3.12 is not on PyPI, so
#    the side-by-side entries fall back to timing JAX only (still each in its own worker process).
# 3. A fresh venv ${V312:-/tmp/v312} from ${PY312:-$(pyenv root)/versions/3.12.1/bin/python3},
#    the stand-in installed into it with pip --no-index.
# 4. OFFLINE=1 SYSTEM_PY=<that venv> SUITE=smoke bash benchmarks/gpu_suite.sh, with pip's index and
#    config off (PIP_NO_INDEX=1, PIP_CONFIG_FILE=/dev/null) and, where `unshare -n` works, in a
#    network namespace with no network at all.
# Exit status: 0 when every entry ran and no dependency was missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WHEELS=${GPU_WHEELS:-.gpu_wheels}
PY312=${PY312:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.12.1/bin/python3}
V312=${V312:-/tmp/v312}
STOCK_DIR=${STOCK_DIR:-/tmp/ecorep_stock_wheels}
STOCK_REQS=${STOCK_REQS:-"jax==0.11.* jaxlib==0.11.* flax optax orbax-checkpoint numpy scipy pyarrow pandas matplotlib scikit-learn scikit-image pillow"}
SUITE=${SUITE:-smoke}
OUT=${OUT:-$(mktemp -d -t gpu_offline_check.XXXX)}
SITE="$OUT/site"

[ -x "$PY312" ] || { echo "no Python 3.12 at $PY312 (set PY312)" >&2; exit 2; }
if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "== $WHEELS is empty: preparing it" >&2
  bash benchmarks/prepare_gpu_wheels.sh
fi
echo "== $WHEELS: $(ls "$WHEELS"/*.whl | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)" \
  "($(cat "$WHEELS"/*.whl | wc -c) bytes)"

# shellcheck disable=SC2086
if [ ! -f "$STOCK_DIR/.complete" ]; then
  echo "== downloading the stand-in for the image's packages into $STOCK_DIR (this check only)" >&2
  mkdir -p "$STOCK_DIR"
  "$PY312" -m pip download -q --only-binary=:all: -d "$STOCK_DIR" $STOCK_REQS \
    2> >(grep -v "is ignored: it is neither" >&2)
  touch "$STOCK_DIR/.complete"
fi

if [ -e "$V312" ]; then
  [ -f "$V312/pyvenv.cfg" ] || { echo "$V312 exists and is not a venv: set V312" >&2; exit 2; }
  rm -rf "$V312"
fi
"$PY312" -m venv "$V312"
export PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL
# shellcheck disable=SC2086
"$V312/bin/python" -m pip install -q --no-index --find-links "$STOCK_DIR" $STOCK_REQS
echo "== stand-in image: $("$V312/bin/python" -c 'import sys, jax, flax; print("Python", sys.version.split()[0], "jax", jax.__version__, "flax", flax.__version__)')"
"$V312/bin/python" - <<'EOF'
import importlib.util
absent = [m for m in ("grain", "h3", "ml_collections", "chex", "mlxtend", "torch")
          if importlib.util.find_spec(m) is None]
print("== not in the stand-in (as on the image):", ", ".join(absent))
EOF

NET=()
if unshare -n true 2>/dev/null; then
  NET=(unshare -n)
  echo "== running the suite with no network (unshare -n)"
else
  echo "== unshare -n unavailable: relying on PIP_NO_INDEX=1 / --no-index"
fi
set +e
"${NET[@]}" env OFFLINE=1 SYSTEM_PY="$V312/bin/python" GPU_SITE="$SITE" GPU_WHEELS="$WHEELS" \
  SUITE="$SUITE" OUT="$OUT" PYTHONPATH= bash benchmarks/gpu_suite.sh 2>&1 | tee "$OUT/suite_output.txt"
set -e
status=0
if grep -q "MISSING dependencies" "$OUT/suite_output.txt"; then
  echo "CHECK FAILED: a dependency is missing (see above)"; status=1
fi
if grep -lq '"FAILED' "$OUT"/*.json 2>/dev/null; then
  echo "CHECK FAILED: an entry failed: $(grep -l '"FAILED' "$OUT"/*.json | xargs -n1 basename | tr '\n' ' ')"
  status=1
fi
[ $status -eq 0 ] && echo "CHECK OK: offline install and every $SUITE entry ran ($OUT)"
exit $status
