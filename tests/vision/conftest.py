"""Fixtures shared by the vision tests."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ecorep.checkpoint import Checkpointer
from vision_jax import encoder as encoder_lib


@pytest.fixture
def write_encoder_run():
  """`write(run, variables, image_size, step)`: a ResNet-10 (base width 8, small stem) encoder run
  directory as pretraining leaves it: model.json and one checkpoint of the backbone."""
  def write(run, variables, image_size: int, step: int = 2):
    os.makedirs(run)
    spec = encoder_lib.model_spec(depth=10, width_multiplier=1, small_stem=True, base_width=8,
                                  image_size=image_size, method="simclr")
    with open(os.path.join(run, "model.json"), "w") as f:
      json.dump(spec, f)
    with Checkpointer(os.path.join(run, "checkpoints")) as ckpt:
      ckpt.save(step, {"state": {"step": np.int32(step),
                                 "params": {"backbone": variables["params"]},
                                 "model_state": {"backbone": variables["batch_stats"]}}})
  return write
