"""Tables, differences to a baseline encoder, and the PNG figures of the representation
protocols (the seed's ΔACC stem plots, label-budget curves, accuracy per hierarchy level)."""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vision_jax.errors import VisionInputError  # noqa: E402


def deltas(values: Mapping[str, Mapping[str, float]],
           baseline: str) -> dict[str, dict[str, float]]:
  """{encoder: {key: value − the baseline's value}} over the keys both have."""
  if baseline not in values:
    raise VisionInputError(f"baseline '{baseline}' is not one of the encoders "
                           f"({', '.join(values)})", field="baseline")
  base = values[baseline]
  return {name: {k: float(v - base[k]) for k, v in row.items() if k in base}
          for name, row in values.items()}


def pct(value, signed: bool = False) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ["| " + " | ".join(map(str, header)) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
  return "\n".join(lines)


def score_table(values: Mapping[str, Mapping[str, float]], keys: Sequence[str],
                baseline: str | None = None, first: str = "encoder") -> str:
  """Encoders as rows, `keys` as columns, accuracies in %; with a baseline, Δ rows follow."""
  rows = [[name] + [pct(v.get(k)) for k in keys] for name, v in values.items()]
  if baseline:
    for name, d in deltas(values, baseline).items():
      if name != baseline:
        rows.append([f"Δ {name} − {baseline}"] + [pct(d.get(k), True) for k in keys])
  return markdown_table([first, *keys], rows)


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_deltas(delta: Mapping[str, Mapping[str, float]], keys: Sequence[str], baseline: str,
                path: str, *, title: str, xlabel: str) -> str:
  """Stems of each encoder's Δ accuracy (points) per key, as the seed's Figs. 2.3 and 2.4."""
  names = [n for n in delta if n != baseline]
  fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(keys) + 2) + (2.2 if names else 0), 3.8))
  width = 0.8 / max(1, len(names))
  for j, name in enumerate(names):
    xs = [i - 0.4 + width * (j + 0.5) for i in range(len(keys))]
    ys = [100 * delta[name].get(k, float("nan")) for k in keys]
    color = f"C{j}" if len(names) <= 10 else plt.cm.tab20(j % 20)  # distinct beyond 10
    ax.vlines(xs, 0, ys, colors=[color], linewidth=1.5)
    ax.plot(xs, ys, "o", color=color, label=name)
  ax.axhline(0, color="black", linewidth=0.8)
  ax.set_xticks(range(len(keys)), [k.replace("/", "\n") for k in keys], fontsize=8)
  ax.set_ylabel(f"Δ accuracy vs {baseline} (points)")
  ax.set_xlabel(xlabel)
  ax.set_title(title)
  if names:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  return _save(fig, path)


def plot_budget(curves: Mapping[str, Mapping[str, dict]], path: str, *, title: str) -> str:
  """Top-1 against labelled images per class (log x), mean ± std over seeds; solid: linear
  probe, dashed: fine-tuning."""
  fig, ax = plt.subplots(figsize=(6.0, 4.0))
  styles = {"linear": ("-", "o"), "finetune": ("--", "s")}
  budgets = set()
  for j, (name, kinds) in enumerate(curves.items()):
    for kind, curve in kinds.items():
      mean = [100 * m for m in curve["mean"]]
      std = [100 * s for s in curve["std"]]
      line, marker = styles.get(kind, (":", "^"))
      budgets.update(curve["budgets"])
      ax.plot(curve["budgets"], mean, line, marker=marker, color=f"C{j}",
              label=f"{name} ({kind})")
      ax.fill_between(curve["budgets"], [m - s for m, s in zip(mean, std)],
                      [m + s for m, s in zip(mean, std)], color=f"C{j}", alpha=0.15)
  ax.set_xscale("log")
  ax.set_xticks(sorted(budgets), [str(b) for b in sorted(budgets)])
  ax.minorticks_off()
  ax.set_xlabel("labelled training images per class")
  ax.set_ylabel("test top-1 (%)")
  ax.set_title(title)
  ax.legend(fontsize=7)
  return _save(fig, path)


def plot_granularity(results: Mapping[str, dict], path: str, *, title: str) -> str:
  """Top-1 per hierarchy level, finest left; solid: probes retrained on coarsened labels,
  dotted: the leaf probe re-scored at each level."""
  fig, ax = plt.subplots(figsize=(6.0, 4.0))
  levels = None
  for j, (name, result) in enumerate(results.items()):
    rows = result["levels"]
    levels = [r["level"] for r in rows]
    xs = range(len(rows))
    ax.plot(xs, [100 * r["retrained_top1"] for r in rows], "-o", color=f"C{j}",
            label=f"{name} (retrained)")
    ax.plot(xs, [100 * r["rescored_top1"] for r in rows], ":s", color=f"C{j}",
            label=f"{name} (re-scored)")
  if levels:
    ax.set_xticks(range(len(levels)), levels)
  ax.set_xlabel("label level (finest left)")
  ax.set_ylabel("test top-1 (%)")
  ax.set_title(title)
  ax.legend(fontsize=7)
  return _save(fig, path)
