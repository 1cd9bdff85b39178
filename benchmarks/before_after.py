"""Before/after: the same benchmark command from a git revision and from the working tree,
alternating processes, each side's numbers with their spread.

  python benchmarks/before_after.py --rev=<commit> [--after_rev=<commit>] [--rounds=5]
      [--max_seconds=0] [--python=PY] [--keep] [--json_out=F] -- <command ...>

e.g.
  python benchmarks/before_after.py --rev=HEAD~3 -- \\
      benchmarks/sinr_train_throughput.py --jax_only --species=10000 --block_sizes=256
  python benchmarks/before_after.py --rev=HEAD -- \\
      benchmarks/sinr_eval_throughput.py --parts=scorer --no_record

The revision is checked out with `git worktree add --detach` into a temporary folder (removed at
the end unless --keep). "After" is the working tree as it is, uncommitted changes included (or
--after_rev, checked out the same way). Both run with the same Python (this one, or --python)
from their own tree's root, with PYTHONPATH=<that tree> in front, so each imports its own tree's
code; ECOREP_BENCH_NO_RECORD=1 keeps RESULTS.md untouched. The tool imports nothing from the
project: it only runs the command in two trees. The command is any benchmark that takes
--summary_json=F and writes the gpu_suite rows [{"name", "metric", "value", "unit"}] there (a
first word ending in .py, or `-m`, runs with the Python above); use each benchmark's JAX-only entry
point (--jax_only) so that PyTorch is not timed. Rounds alternate before / after / before / after
...; the process wall time (start-up and compile included) is reported too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

WALL = "process wall time"


def git(*args: str, cwd: str) -> str:
  return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                        text=True).stdout.strip()


def add_worktree(repo: str, rev: str, parent: str, label: str) -> str:
  sha = git("rev-parse", "--verify", f"{rev}^{{commit}}", cwd=repo)
  path = os.path.join(parent, f"{label}_{sha[:10]}")
  subprocess.run(["git", "worktree", "add", "--detach", path, sha], cwd=repo, check=True,
                 stdout=sys.stderr, stderr=sys.stderr)
  return path


def remove_worktree(repo: str, path: str) -> None:
  subprocess.run(["git", "worktree", "remove", "--force", path], cwd=repo, check=False,
                 stdout=sys.stderr, stderr=sys.stderr)
  shutil.rmtree(path, ignore_errors=True)
  subprocess.run(["git", "worktree", "prune"], cwd=repo, check=False)


def command_for(tree: str, python: str, command: list[str]) -> list[str]:
  first = command[0]
  if first == "-m" or first.endswith(".py"):
    if first.endswith(".py") and not os.path.exists(os.path.join(tree, first)):
      raise SystemExit(f"{first} does not exist in {tree}")
    return [python, *command]
  return list(command)


def side(name: str, tree: str, python: str, command: list[str]) -> harness.Side:
  pp = os.environ.get("PYTHONPATH", "")
  env = {"PYTHONPATH": tree + (os.pathsep + pp if pp else ""), "ECOREP_BENCH_NO_RECORD": "1"}
  return harness.Side(name, command_for(tree, python, command), cwd=tree, env=env,
                      protocol="summary_json")


def describe(repo: str, rev: str | None) -> str:
  if rev is None:
    head = git("rev-parse", "--short", "HEAD", cwd=repo)
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=repo)
    return f"working tree (HEAD {head}{', with uncommitted changes' if dirty else ''})"
  return git("log", "-1", "--format=%h %s", rev, cwd=repo)


def report(rounds: harness.Rounds) -> tuple[list[str], dict]:
  keys = [k for k in rounds.keys("before") if k in rounds.keys("after")]
  units = {**rounds.info("after").get("units", {}), WALL: "s"}
  lines = ["| metric | unit | before | after | after ÷ before |", "|---|---|---|---|---|"]
  out = {}
  for k in keys + [WALL]:
    if k == WALL:
      b, a = rounds.info_values("before", "wall_s"), rounds.info_values("after", "wall_s")
    else:
      b, a = rounds.values("before", k), rounds.values("after", k)
    sb, sa, r = harness.spread(b), harness.spread(a), harness.ratio(a, b)
    spec = ".4g"
    lines.append(f"| {k} | {units.get(k, '')} | {sb.fmt(spec)} | {sa.fmt(spec)} | "
                 f"{r.fmt('.3f', '×')} |")
    out[k] = {"unit": units.get(k, ""), "before": vars(sb), "after": vars(sa),
              "after_over_before": vars(r), "before_rounds": b, "after_rounds": a}
  missing = sorted(set(rounds.keys("before")) ^ set(rounds.keys("after")))
  if missing:
    lines.append("\nreported by one side only: " + ", ".join(missing))
  return lines, out


def main() -> None:
  argv = sys.argv[1:]
  split = argv.index("--") if "--" in argv else len(argv)
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--rev", required=True, help="the 'before' revision (any git rev)")
  p.add_argument("--after_rev", default=None, help="'after' revision (default: the working tree)")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--max_seconds", type=float, default=0.0)
  p.add_argument("--python", default=sys.executable, help="the Python both sides run with")
  p.add_argument("--no_compile_cache", action="store_true",
                 help="no shared JAX compilation cache (e.g. to compare compile times)")
  p.add_argument("--keep", action="store_true", help="keep the worktree(s)")
  p.add_argument("--json_out", default="")
  args = p.parse_args(argv[:split])
  command = argv[split + 1:]
  if not command:
    p.error("no benchmark command: put it after --")
  repo = git("rev-parse", "--show-toplevel", cwd=HERE)
  parent = tempfile.mkdtemp(prefix="ecorep_before_after_")
  trees = []
  try:
    before = add_worktree(repo, args.rev, parent, "before")
    trees.append(before)
    after = repo
    if args.after_rev:
      after = add_worktree(repo, args.after_rev, parent, "after")
      trees.append(after)
    print(f"before: {describe(repo, args.rev)}\nafter:  {describe(repo, args.after_rev)}\n"
          f"command: {' '.join(command)}", flush=True)
    sides = [side("before", before, args.python, command),
             side("after", after, args.python, command)]
    rounds = harness.alternate(sides, args.rounds, max_seconds=args.max_seconds,
                               compile_cache=not args.no_compile_cache)
  finally:
    if not args.keep:
      for t in trees:
        remove_worktree(repo, t)
      shutil.rmtree(parent, ignore_errors=True)
    elif trees:
      print(f"worktrees kept: {' '.join(trees)}", file=sys.stderr)
  lines, out = report(rounds)
  n = len(rounds.rounds)
  print(f"\n{n} round{'s' if n != 1 else ''} of alternating processes (before, after); cells: "
        "median (min–max over rounds); ratio: after ÷ before of the medians (min–max of the "
        "per-round ratios). For times (s, ms) below 1× is faster; for rates above.\n")
  print("\n".join(lines), flush=True)
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump({"rev": args.rev, "after_rev": args.after_rev, "command": command, "rounds": n,
                 "metrics": out}, f, indent=1)


if __name__ == "__main__":
  main()
