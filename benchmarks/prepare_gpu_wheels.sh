#!/usr/bin/env bash
# Downloads, where pip works, the wheels that benchmarks/gpu_suite.sh needs on a GPU machine that has
# no network and no .venv: CPython 3.12, manylinux x86-64, every dependency of pyproject.toml (with
# its own dependencies) that the machine's stock image lacks. The suite installs them from there
# offline (pip --no-index --no-deps). Carry the folder to the machine (the device tool copies an
# ignored folder only when it is named in `carry`; working tree + carried paths <= 64 MiB).
#
#   make gpu-wheels                          # or: bash benchmarks/prepare_gpu_wheels.sh
#
# What counts as "on the image" (not downloaded), with its whole dependency closure:
#   STOCK     jax jaxlib flax optax orbax-checkpoint torch numpy scipy (assumed on any GPU image)
#   ON_IMAGE  pyarrow pandas matplotlib scikit-learn scikit-image pillow: large (about 105 MB of
#             wheels with their dependencies, pyarrow alone 55 MB: over the 64 MiB the device tool
#             carries) and listed in this workplace's image package list (device/KINDS.md). Set
#             ON_IMAGE= (empty) for a machine that lacks them and has no carry limit; the suite names
#             any dependency it cannot find ("MISSING dependencies: ...") before it runs.
# Other knobs: GPU_WHEELS (folder, default .gpu_wheels), GPU_PYTHON_VERSION (3.12), EXTRA (more
# requirements to fetch), PIP (default: .venv/bin/python -m pip, else python3 -m pip), MAX_MB (48:
# warn above).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GPU_WHEELS:-.gpu_wheels}
PYVER=${GPU_PYTHON_VERSION:-3.12}
ABI=cp${PYVER/./}
STOCK=${STOCK-"jax jaxlib flax optax orbax-checkpoint torch numpy scipy"}
ON_IMAGE=${ON_IMAGE-"pyarrow pandas matplotlib scikit-learn scikit-image pillow"}
EXTRA=${EXTRA:-}
MAX_MB=${MAX_MB:-48}
if [ -z "${PIP:-}" ]; then
  if [ -x .venv/bin/python ]; then PIP=".venv/bin/python -m pip"; else PIP="python3 -m pip"; fi
fi
read -r -a PIPCMD <<<"$PIP"
PLATFORM=(--only-binary=:all: --python-version "$PYVER" --implementation cp --abi "$ABI"
  --abi abi3 --abi none)
for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
  manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
  PLATFORM+=(--platform "$p")
done
TMP=$(mktemp -d -t gpu_wheels.XXXX)
trap 'rm -rf "$TMP"' EXIT

# The project's dependencies, read from pyproject.toml.
mapfile -t DEPS < <("${PIPCMD[0]}" - <<'EOF'
import tomllib
for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
  print(d)
EOF
)
# shellcheck disable=SC2206
read -r -a EXTRA_REQS <<<"$EXTRA"

resolve() {  # resolve <report.json> <requirements...>: the full closure for the target, no install
  local report=$1
  shift
  "${PIPCMD[@]}" install -q --dry-run --ignore-installed --target "$TMP/target" "${PLATFORM[@]}" \
    --report "$report" "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# torch is not a project dependency (only the bench extra): leaving it out of the "stock" resolution
# changes nothing below and spares pip its multi-GB CUDA dependencies.
stock_reqs=()
for s in $STOCK; do [ "$s" = torch ] || stock_reqs+=("$s"); done
echo "resolving what the image has: ${stock_reqs[*]} (and torch); $ON_IMAGE" >&2
resolve "$TMP/stock.json" "${stock_reqs[@]}"
echo '{"install": []}' >"$TMP/on_image.json"
if [ -n "$ON_IMAGE" ]; then
  # shellcheck disable=SC2086
  resolve "$TMP/on_image.json" $ON_IMAGE
fi
echo "resolving the project's dependencies for CPython $PYVER manylinux x86-64" >&2
resolve "$TMP/full.json" "${DEPS[@]}" "${EXTRA_REQS[@]}"

# Missing = the project's closure less the closures of STOCK and ON_IMAGE; then, to a fixpoint, the
# direct requirements of what is shipped unless STOCK's closure or ON_IMAGE itself has them (an
# ON_IMAGE package's own dependencies may differ between its versions).
mapfile -t MISSING < <("${PIPCMD[0]}" - "$TMP/stock.json" "$TMP/on_image.json" "$TMP/full.json" \
  "$ON_IMAGE" <<'EOF'
import json, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
load = lambda p: {norm(i["metadata"]["name"]): i for i in json.load(open(p))["install"]}  # noqa: E731
stock, on_image, full = (load(p) for p in sys.argv[1:4])
stock_names = set(stock) | {"torch"}
on_image_names = {norm(n) for n in sys.argv[4].split()}
ship = {n for n in full if n not in stock_names and n not in on_image}
while True:
  more = set()
  for n in ship:
    for req in full[n]["metadata"].get("requires_dist", []):
      if "extra ==" in req.replace('"', "").replace("'", ""):
        continue
      dep = norm(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
      if dep in full and dep not in ship and dep not in stock_names and dep not in on_image_names:
        more.add(dep)
  if not more:
    break
  ship |= more
for n in sorted(ship):
  m = full[n]["metadata"]
  print(f"{m['name']}=={m['version']}")
EOF
)
if [ ${#MISSING[@]} -eq 0 ]; then
  echo "nothing is missing from the image: no wheels needed" >&2
  exit 0
fi
echo "downloading ${#MISSING[@]} wheels into $DEST: ${MISSING[*]}" >&2
mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # one version of each: two would stop the offline install
"${PIPCMD[@]}" download -q --no-deps "${PLATFORM[@]}" -d "$DEST" "${MISSING[@]}" \
  2> >(grep -v "is ignored: it is neither" >&2)

ls -l "$DEST"/*.whl | awk '{printf "%8.1f MiB  %s\n", $5 / 1048576, $9}' | sort -rn >&2
bytes=$(cat "$DEST"/*.whl | wc -c)
mib=$((bytes / 1048576))
echo "$DEST: $(ls "$DEST"/*.whl | wc -l) wheels, ${mib} MiB ($bytes bytes)"
if [ "$mib" -gt "$MAX_MB" ]; then
  echo "WARNING: $DEST is over ${MAX_MB} MiB: the device tool carries at most 64 MiB with the tree" >&2
fi
