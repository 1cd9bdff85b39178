"""Training curves from metrics.jsonl."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ecorep.metrics import read_metrics  # noqa: E402


def plot_training_curves(metrics_path: str, out_path: str) -> str:
  rows = [r for r in read_metrics(metrics_path) if isinstance(r.get("loss"), (int, float))]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  steps = [r["step"] for r in rows]
  axes[0].plot(steps, [r["loss"] for r in rows])
  axes[0].set(xlabel="step", ylabel="training loss", title="loss")
  if rows and min(r["loss"] for r in rows) > 0:  # ME losses can go negative
    axes[0].set_yscale("log")
  axes[1].plot(steps, [r["lr"] for r in rows])
  axes[1].set(xlabel="step", ylabel="learning rate", title="learning rate")
  fig.tight_layout()
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  fig.savefig(out_path, dpi=100)
  plt.close(fig)
  return out_path
