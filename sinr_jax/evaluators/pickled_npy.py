"""Reading a pickled `.npy` (an object array, e.g. the published `snt_res_5.npy`) with consent.

`np.load(allow_pickle=True)` runs arbitrary code from the file. We refuse unless the caller says
`allow_pickle=True`, and even then unpickle with an allow-list: numpy arrays, dtypes and scalars
plus the pickle-native containers (dict, list, tuple, str, bytes, numbers). A file that needs any
other global (a class, a function) is rejected before anything is constructed from it.
"""
from __future__ import annotations

import importlib
import os
import pickle

import numpy as np

from sinr_jax.errors import SinrInputError

# (module, name) pairs the published pickles need. numpy 2 renamed numpy.core to numpy._core;
# pickles written by numpy 1.x name the old module, so both spellings resolve to the new one.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
}


class _ArraysOnly(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) not in _ALLOWED and not (module == "numpy.dtypes" and name.endswith("DType")):
      raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays, lists, "
                                   f"dicts, strings and numbers are accepted")
    if module.startswith("numpy.core"):
      try:
        module = module.replace("numpy.core", "numpy._core", 1)
        importlib.import_module(module)
      except ImportError:  # numpy 1.x
        module = module.replace("numpy._core", "numpy.core", 1)
    return getattr(importlib.import_module(module), name)


def load_pickled_npy(path: str | os.PathLike, *, allow_pickle: bool, what: str) -> object:
  """The object stored in the pickled `.npy` at `path` (a 0-d object array is unwrapped).

  `what` names the file's role in messages, e.g. "the S&T file".
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise SinrInputError(f"{what} not found", file=path)
  with open(path, "rb") as f:
    try:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, _, dtype = read_header(f)
    except (ValueError, OSError, EOFError) as e:
      raise SinrInputError(f"{what} is not a .npy file ({e})", file=path) from e
    if not dtype.hasobject:
      raise SinrInputError(f"{what} holds a plain {dtype}{shape} array, expected a pickled dict",
                           file=path)
    if not allow_pickle:
      raise SinrInputError(
          f"{what} is a Python pickle (a NumPy object array); unpickling a file can run code, so "
          "it is read only when you allow it: pass allow_pickle=True (CLI: --allow_pickle) for a "
          "file you trust", file=path)
    try:
      obj = _ArraysOnly(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as e:
      raise SinrInputError(f"cannot unpickle {what} ({e})", file=path) from e
  if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
    obj = obj.item()
  return obj
