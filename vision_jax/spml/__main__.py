"""`python -m vision_jax.spml --config=configs/spml.py:<loss>,<linear|finetune>`."""
from __future__ import annotations

import sys

from vision_jax.spml.train import main

if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
