"""Response time of the range-map viewer's JSON API for one species' map, at H3 res 4 and 5.

  python benchmarks/viewer_response.py [--run=runs/demo] [--species=8] [--res=4,5]

Starts `python -m sinr_jax.viewer --run=RUN --port=0` as its own process and times HTTP requests
from this one (wall clock, response fully read), per resolution:
  first     the first species at that resolution: the land cells are enumerated, their areas
            and true-range cells found and their embeddings computed (once per run and res; the
            viewer does this at start for its default --res, set to 1 here so 4 and 5 are cold)
  species   a species not asked for before (cells cached): one matvec, the F1-optimal threshold
            against the true range, JSON of the range cells; median and range over --species taxa
  threshold the same species at another threshold (its logits cached): filter + JSON
Writes the table into benchmarks/RESULTS.md ("viewer response time").
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_viewer(run: str, max_res: int) -> tuple[subprocess.Popen, str, int]:
  proc = subprocess.Popen([sys.executable, "-m", "sinr_jax.viewer", f"--run={run}", "--port=0",
                           f"--max_res={max_res}", "--res=1"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  line = proc.stdout.readline()
  if "http://" not in line:
    proc.kill()
    raise SystemExit(f"the viewer did not start (said {line!r}); is {run} a trained run and "
                     "are the viewer's assets built (make viewer-assets)?")
  host, port = line.split("http://")[1].split("/")[0].rsplit(":", 1)
  return proc, host, int(port)


def fetch(host: str, port: int, path: str) -> tuple[float, dict, int]:
  conn = http.client.HTTPConnection(host, port, timeout=600)
  t0 = time.perf_counter()
  conn.request("GET", path)
  response = conn.getresponse()
  body = response.read()
  seconds = time.perf_counter() - t0
  conn.close()
  if response.status != 200:
    raise SystemExit(f"{path}: {response.status} {body[:200]!r}")
  return seconds, json.loads(body), len(body)


def spread(xs) -> str:
  return f"{statistics.median(xs) * 1e3:.0f} ({min(xs) * 1e3:.0f}–{max(xs) * 1e3:.0f})"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", default="runs/demo")
  parser.add_argument("--species", type=int, default=8)
  parser.add_argument("--res", default="4,5")
  args = parser.parse_args()
  load = os.getloadavg()[0]
  levels = [int(r) for r in args.res.split(",")]
  proc, host, port = start_viewer(args.run, max(levels))
  try:
    _, info, _ = fetch(host, port, "/api/info")
    _, found, _ = fetch(host, port, "/api/search?q=&limit=100")
    taxa = [r["taxon_id"] for r in found["results"]]
    step = max(1, len(taxa) // (args.species + 1))
    picked = taxa[::step][:args.species + 1]
    rows = []
    for res in levels:
      first, d0, _ = fetch(host, port, f"/api/range?run=a&taxon={picked[0]}&res={res}")
      times, sizes, cells, thr_times = [], [], [], []
      for t in picked[1:]:
        s, d, n = fetch(host, port, f"/api/range?run=a&taxon={t}&res={res}")
        times.append(s)
        sizes.append(n)
        cells.append(d["num_cells"])
        s, _, _ = fetch(host, port, f"/api/range?run=a&taxon={t}&res={res}&threshold=0.3")
        thr_times.append(s)
      rows.append((res, d0["num_land_cells"], first, times, thr_times, sizes, cells))
      print(f"res {res}: first {first:.2f} s, species {spread(times)} ms, threshold "
            f"{spread(thr_times)} ms", flush=True)
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  run = info["runs"][0]
  where = os.path.relpath(run["path"], REPO) if run["path"].startswith(REPO) else run["path"]
  label = f"`{where}`"
  if os.path.isfile(os.path.join(run["path"], "baseline_lr", "model.json")):
    label += " (written by `python -m sinr_jax.demo`, as `make demo` does)"
  body = [f"Run {label}: {run['num_taxa']} taxa, step {run['step']}; {args.species} species "
          "spread over the taxon list; the viewer in its own process, requests over HTTP on "
          "loopback, timed to the last byte. Median (min–max) in ms. Load average when it "
          f"started: {load:.1f} on {os.cpu_count()} cores (other work shared the machine).",
          "",
          "| H3 res | land cells | first request (encodes all cells) | a new species | same "
          "species, new threshold | range cells (median) | response (median) |",
          "|---|---|---|---|---|---|---|"]
  for res, m, first, times, thr, sizes, cells in rows:
    body.append(f"| {res} | {m:,} | {first:.2f} s | {spread(times)} | {spread(thr)} | "
                f"{int(statistics.median(cells)):,} | {statistics.median(sizes) / 1e3:.0f} kB |")
  results.update_section("viewer response time", "\n".join(body))


if __name__ == "__main__":
  main()
