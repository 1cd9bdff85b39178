"""Reading PyTorch `.pt`/`.pth` files (published weights) into numpy, without trusting them.

`torch.save` files are pickles, and a pickle can run any code while it is read. PyTorch's
`weights_only` unpickler rebuilds only tensors and plain containers (dict, OrderedDict, list,
tuple, str, numbers, None), which is all a state dict and its hyperparameters need: that is how
these files are read. A file that holds anything else is refused, naming what it holds, unless
the caller trusts it (`trust=True`, the importers' --trust_pickle), which uses PyTorch's full
unpickler: do that only for files from a source you trust.

PyTorch is an optional extra (`pip install 'ecorep-jax[port]'`); the importers themselves work on
dicts of numpy arrays, so only reading the file needs it.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from ecorep.errors import InputError

INSTALL_HINT = "pip install 'ecorep-jax[port]' (or any recent `pip install torch`)"
TRUST_FLAG = "--trust_pickle"


def read(path: str | os.PathLike, *, trust: bool = False,
         error: type[InputError] = InputError) -> Any:
  """The file's contents with every tensor as a numpy array (bfloat16 as float32), containers
  as dicts, lists and tuples. Raises `error` (the caller's package's input error) naming the
  file when it is missing, unreadable, refused, or PyTorch is not installed."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise error("file not found", file=path)
  try:
    import torch
  except ImportError as e:
    raise error(f"reading a PyTorch file needs PyTorch, which is not installed: {INSTALL_HINT}",
                file=path) from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=not trust)
  except Exception as e:  # torch raises UnpicklingError, KeyError, RuntimeError... on bad files
    text = str(e)
    if not trust and "Weights only load failed" in text:
      # PyTorch's wording varies between versions: name the global it refused if it says.
      found = re.search(r"GLOBAL ([\w.]+)", text)
      detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
      what = (f"it references {found.group(1)}" if found else
              detail.group(1).strip()[:200] if detail else _first_line(e))
      raise error(
          "refused: the file holds Python objects other than tensors and plain containers ("
          f"{what}), which only PyTorch's full unpickler can rebuild, and that can run "
          f"arbitrary code from the file. If you trust the file's source, pass {TRUST_FLAG}",
          file=path) from e
    raise error(f"not a readable PyTorch file ({_first_line(e)})", file=path) from e
  return to_numpy(obj)


def to_numpy(obj: Any) -> Any:
  """Tensors -> numpy arrays, recursively through dicts, lists and tuples; other leaves as
  they are (torch objects a trusted file may hold, such as torch.device, become strings)."""
  if isinstance(obj, dict):
    return {k: to_numpy(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    items = [to_numpy(v) for v in obj]
    return tuple(items) if isinstance(obj, tuple) else items
  if (type(obj).__module__ or "").startswith("torch"):
    import torch
    if isinstance(obj, torch.Tensor):
      obj = obj.detach().cpu()
      if obj.dtype == torch.bfloat16:  # numpy has no bfloat16
        obj = obj.float()
      return obj.numpy()
    return str(obj)
  return obj


def sha256(path: str | os.PathLike) -> str:
  """Hex digest of a file (the importers record it as the run's provenance)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]
