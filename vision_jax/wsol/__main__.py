"""`python -m vision_jax.wsol --config=configs/wsol.py:<method>,<level>`."""
from __future__ import annotations

import sys

from vision_jax.wsol.train import main

if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
