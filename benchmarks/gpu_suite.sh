#!/usr/bin/env bash
# Benchmarks for a lent GPU machine: each entry runs under its own time limit (the limits add up
# to about 8 minutes, sized for one H100/H200 (not yet timed there with the per-process harness); the side-by-side entries start no new round of
# processes past their --max_seconds), writes JSON rows, and the suite ends by printing one table.
#
#   bash benchmarks/gpu_suite.sh            # OUT=<dir> keeps the logs, JSON and RESULTS.md there
#   SUITE=smoke bash benchmarks/gpu_suite.sh   # tiny sizes: checks the set-up and every entry runs
#
# Python: $PY if set; else .venv/bin/python if it exists (and OFFLINE is unset); else the machine's
# own ${SYSTEM_PY:-python3} (a stock image with CUDA jax/flax/optax/orbax and torch but no network)
# plus the wheels in ${GPU_WHEELS:-.gpu_wheels} (made where pip works by `make gpu-wheels`, i.e.
# benchmarks/prepare_gpu_wheels.sh; carry that folder): those whose distribution the machine lacks
# are installed offline (pip --no-index --no-deps --target ${GPU_SITE:-/tmp/ecorep_gpu_site}) and
# PYTHONPATH=<site>:<repo> makes them and the project importable; nothing is downloaded.
#
# To add a benchmark, append a `bench` line in the SUITE section:
#   bench <name> <time limit s> <command ...>
# The command is called with --summary_json=<file> appended and must write a JSON list of rows
# {"name": str, "metric": str, "value": number|null, "unit": str} (optional "lo"/"hi": the min–max
# over rounds). Its stdout/stderr go to <OUT>/<name>.log. A failure or timeout becomes a FAILED row;
# the suite carries on.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
OUT=${OUT:-$(mktemp -d -t gpu_suite.XXXX)}
SUITE=${SUITE:-full}
WHEELS=${GPU_WHEELS:-.gpu_wheels}
mkdir -p "$OUT"
SUITE_START=$(date +%s)

offline_setup() {
  local base=${SYSTEM_PY:-python3} site=${GPU_SITE:-/tmp/ecorep_gpu_site}
  PY=$base
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "no $WHEELS/*.whl: only what $base already has is used (make gpu-wheels where pip works," \
      "then carry $WHEELS)" >&2
  else
    # Only the wheels whose distribution this Python lacks: the image's own versions stay in use.
    local missing
    missing=$("$base" - "$WHEELS" <<'EOF'
import glob, importlib.metadata as md, os, re, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.whl"))):
  name = re.sub(r"[-_.]+", "-", os.path.basename(path).split("-")[0]).lower()
  try:
    md.version(name)
  except md.PackageNotFoundError:
    print(path)
EOF
)
    if [ -n "$missing" ]; then
      echo "installing offline into $site: $(echo "$missing" | xargs -n1 basename | tr '\n' ' ')" >&2
      # shellcheck disable=SC2086
      "$base" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" $missing >&2 || echo "offline wheel install FAILED" >&2
    else
      echo "every wheel in $WHEELS is already installed in $base" >&2
    fi
  fi
  export PYTHONPATH="$site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
}

if [ -n "${PY:-}" ]; then
  :
elif [ -x .venv/bin/python ] && [ -z "${OFFLINE:-}" ]; then
  PY=.venv/bin/python
else
  offline_setup
fi
echo "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))" >&2

# Every dependency in pyproject.toml, as this Python sees it (a missing one is named, not fatal).
"$PY" - <<'EOF' >&2
import importlib.metadata as md, re
try:
  import tomllib
  deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
except Exception as e:  # noqa: BLE001
  deps = []
  print(f"pyproject.toml unreadable: {e}")
found, missing = [], []
for d in deps:
  name = re.match(r"[A-Za-z0-9_.-]+", d).group(0)
  try:
    found.append(f"{name} {md.version(name)}")
  except md.PackageNotFoundError:
    missing.append(d)
print("dependencies: " + ", ".join(found))
if missing:
  print("MISSING dependencies: " + ", ".join(missing))
EOF
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" >&2
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')" \
  >&2 2>/dev/null || echo "torch: not importable (the side-by-side entries time JAX only)" >&2

bench() {
  local name=$1 limit=$2
  shift 2
  local start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" --summary_json="$OUT/$name.json" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $(($(date +%s) - start)) s" >&2
  if [ $rc -ne 0 ]; then
    printf '[{"name": "%s", "metric": "FAILED (exit %s%s, see %s.log)", "value": null, "unit": ""}]\n' \
      "$name" "$rc" "$([ $rc -eq 124 ] && echo ': time limit')" "$name" >"$OUT/$name.json"
  fi
}

# ---- SUITE: append entries below --------------------------------------------------------------
# The side-by-side entries run every framework in its own processes (benchmarks/harness.py):
# --rounds alternating rounds, each process compiling before it times --reps steps.
if [ "$SUITE" = smoke ]; then
  bench sinr_train 240 "$PY" benchmarks/sinr_train_throughput.py --species=500 --batch=64 --rounds=1 --reps=1 --block_sizes=256 --no_record
  bench sinr_train_jax_only 120 "$PY" benchmarks/sinr_train_throughput.py --jax_only --species=500 --batch=64 --reps=1 --block_sizes=0
  bench ssl_step 300 "$PY" benchmarks/ssl_throughput.py --batch=2 --size=32 --rounds=1 --reps=1 --workers=0 --pipeline_seconds=1 --no_record
  bench sinr_eval_scorer 240 "$PY" benchmarks/sinr_eval_throughput.py --parts=scorer --scorer_species=64 --cells=20000 --reps=1 --no_record
else
  bench sinr_train 120 "$PY" benchmarks/sinr_train_throughput.py --rounds=3 --reps=5 --block_sizes=0,1024 --max_seconds=90
  bench ssl_step 180 "$PY" benchmarks/ssl_throughput.py --batch=128 --rounds=2 --reps=3 --workers=0 --pipeline_seconds=3 --dtype=bfloat16 --max_seconds=120
  bench sinr_eval_iucn 100 "$PY" benchmarks/sinr_eval_throughput.py --parts=iucn
  bench sinr_eval_scorer 40 "$PY" benchmarks/sinr_eval_throughput.py --parts=scorer --scorer_species=2048
  bench sinr_eval_full 50 "$PY" benchmarks/sinr_eval_throughput.py --parts=full
fi
# ---- end of SUITE -----------------------------------------------------------------------------

cp -f benchmarks/RESULTS.md "$OUT/" 2>/dev/null
"$PY" - "$OUT" "$(($(date +%s) - SUITE_START))" <<'EOF'
import glob, json, os, sys
out, seconds = sys.argv[1], sys.argv[2]
rows = []
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
  try:
    rows += json.load(open(path))
  except (OSError, ValueError) as e:
    rows.append({"name": os.path.basename(path), "metric": f"unreadable ({e})", "value": None,
                 "unit": ""})
def fmt(v):
  return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
w = max([len(r["name"]) for r in rows] + [9])
m = max([len(r["metric"]) for r in rows] + [6])
print(f"\n{'benchmark':{w}}  {'metric':{m}}  value")
for r in rows:
  spread = f" ({fmt(r['lo'])}–{fmt(r['hi'])})" if r.get("n", 0) > 1 else ""
  print(f"{r['name']:{w}}  {r['metric']:{m}}  {fmt(r['value'])}{spread} {r['unit']}")
print(f"\nsuite: {seconds} s; logs, JSON and RESULTS.md in {out}")
EOF
