#!/usr/bin/env bash
# Benchmarks for a lent GPU machine: each entry runs under its own time limit (the limits add up
# to 5 minutes, sized for one H100), writes JSON rows, and the suite ends by printing one table.
#
#   bash benchmarks/gpu_suite.sh            # OUT=<dir> keeps the logs, JSON and RESULTS.md there
#
# To add a benchmark, append a `bench` line in the SUITE section:
#   bench <name> <time limit s> <command ...>
# The command is called with --summary_json=<file> appended and must write a JSON list of rows
# {"name": str, "metric": str, "value": number|null, "unit": str}. Its stdout/stderr go to
# <OUT>/<name>.log. A failure or timeout becomes a FAILED row; the suite carries on.
set -u
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d -t gpu_suite.XXXX)}
mkdir -p "$OUT"
SUITE_START=$(date +%s)

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

"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" >&2

# ---- SUITE: append entries below --------------------------------------------------------------
bench sinr_train 50 "$PY" benchmarks/sinr_train_throughput.py --reps=5 --block_sizes=0,1024
bench ssl_step 60 "$PY" benchmarks/ssl_throughput.py --batch=128 --reps=3 --workers=0 --pipeline_seconds=3 --dtype=bfloat16
bench sinr_eval_iucn 100 "$PY" benchmarks/sinr_eval_throughput.py --parts=iucn
bench sinr_eval_scorer 40 "$PY" benchmarks/sinr_eval_throughput.py --parts=scorer --scorer_species=2048
bench sinr_eval_full 50 "$PY" benchmarks/sinr_eval_throughput.py --parts=full
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
w = max([len(r["name"]) for r in rows] + [9])
m = max([len(r["metric"]) for r in rows] + [6])
print(f"\n{'benchmark':{w}}  {'metric':{m}}  value")
for r in rows:
  v = r["value"]
  v = "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
  print(f"{r['name']:{w}}  {r['metric']:{m}}  {v} {r['unit']}")
print(f"\nsuite: {seconds} s; logs, JSON and RESULTS.md in {out}")
EOF
