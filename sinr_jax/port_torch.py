"""Imports the published SINR PyTorch checkpoints as run directories of this project.

  python -m sinr_jax.port_torch --checkpoint=model.pt --out=runs/ported
      [--env_raster=bioclim_elevation_scaled.npy] [--overwrite] [--trust_pickle]

The checkpoint is the reference's `torch.save({'state_dict': model.state_dict(), 'params':
params})`, for every released model (coords, env and env+coords inputs, caps 10/100/1000/all):
params hold 'model' ('ResidualFCNet' or 'LinNet'), 'input_dim', 'num_classes', 'num_filts',
'depth', 'class_to_taxa' (taxon id of every class) and 'input_enc' ('sin_cos', 'env',
'sin_cos_env'). ResidualFCNet's state dict: feats.0 (input Linear), feats.{2+i}.w1/.w2 (the
residual blocks; feats.1 is the ReLU) and class_emb.weight (no bias); LinNet: class_emb.weight
on the raw input encoding. torch Linear weights are (out, in); Flax Dense kernels are their
transpose, while RangeModel's species_embedding keeps torch's (species, dim) layout.

The input encoding is the reference's: [sin πλ, sin πφ, cos πλ, cos πφ], then the bilinearly
sampled raster for env inputs. Env models need the raster they were trained with (--env_raster);
its path is recorded in model.json (`sinr_jax.load(run, env_raster=...)` overrides it).

The run directory (sinr_jax/rundir.py) is what `sinr_jax.load`, `python -m sinr_jax.evaluate
--data_dir=...` and the export read: model.json, taxa.json, config.json (the checkpoint's params
and provenance) and one ecorep.trainer checkpoint at step 0 holding the parameters. It is written
into a temporary directory and renamed when complete; an existing non-empty --out is refused
unless --overwrite, which replaces it only once the new one is complete.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ecorep import io, torch_file, trainer
from ecorep.cli import flag_is_true, parse_flags, run_cli
from sinr_jax import rundir
from sinr_jax.env import load_raster
from sinr_jax.export import check_out_dir
from sinr_jax.errors import SinrInputError
from sinr_jax.features import canonical_kind
from sinr_jax.models import RangeModel
from sinr_jax.observations import ClassIndex

_log = logging.getLogger(__name__)
FLAGS = ("checkpoint", "out", "env_raster", "overwrite", "trust_pickle")
MODELS = ("ResidualFCNet", "LinNet")
REFERENCE_DROPOUT = 0.5   # the reference's ResLayer: nn.Dropout() (p = 0.5); training only
COORD_DIM = 4             # [sin πλ, sin πφ, cos πλ, cos πφ]


@dataclasses.dataclass
class PortedRangeModel:
  """A converted checkpoint: RangeModel parameters and what model.json records."""
  params: dict               # RangeModel parameters, float32 numpy
  taxa: np.ndarray           # sorted taxon ids: the rows of params["species_embedding"]
  encoder: str               # "resfc" | "linear"
  input_kind: str            # "coords" | "env" | "env_coords"
  input_dim: int
  width: int
  depth: int
  dropout: float
  reference_params: dict     # the checkpoint's params, JSON-safe (for config.json)

  @property
  def env_channels(self) -> int:
    return self.input_dim - (COORD_DIM if self.input_kind == "env_coords" else 0)

  def module(self) -> RangeModel:
    return RangeModel(num_species=len(self.taxa), input_dim=self.input_dim,
                      encoder=self.encoder, width=self.width, depth=self.depth,
                      dropout=self.dropout)


def expected_state_dict(model: str, *, input_dim: int, num_classes: int, num_filts: int = 0,
                        depth: int = 0) -> dict[str, tuple[int, ...]]:
  """{key: shape} of the reference's state dict for these params."""
  if model == "LinNet":
    return {"class_emb.weight": (num_classes, input_dim)}
  shapes = {"feats.0.weight": (num_filts, input_dim), "feats.0.bias": (num_filts,)}
  for i in range(depth):
    for layer in ("w1", "w2"):
      shapes[f"feats.{2 + i}.{layer}.weight"] = (num_filts, num_filts)
      shapes[f"feats.{2 + i}.{layer}.bias"] = (num_filts,)
  shapes["class_emb.weight"] = (num_classes, num_filts)
  return shapes


def port_range_model(checkpoint: Mapping[str, Any], *,
                     source: str = "<checkpoint>") -> PortedRangeModel:
  """Converts {'state_dict': {name: array}, 'params': {...}} (numpy arrays or anything
  np.asarray takes) into RangeModel parameters. Bad input raises SinrInputError naming `source`
  and the key: a missing or invalid param, a missing, unexpected or wrongly shaped array."""
  if not isinstance(checkpoint, Mapping):
    raise SinrInputError(f"expected a dict with 'state_dict' and 'params', got "
                         f"{type(checkpoint).__name__}", file=source)
  for key in ("state_dict", "params"):
    if not isinstance(checkpoint.get(key), Mapping):
      raise SinrInputError(f"the checkpoint has no '{key}' dict (keys: "
                           f"{', '.join(map(str, checkpoint)) or 'none'}); expected the SINR "
                           "reference's {'state_dict': ..., 'params': ...}", file=source,
                           field=key)
  ref = dict(checkpoint["params"])
  model, kind, input_dim, num_classes, taxa_list = _check_params(ref, source)
  num_filts = _positive_int(ref, "num_filts", source) if model == "ResidualFCNet" else 0
  depth = _positive_int(ref, "depth", source, zero_ok=True) if model == "ResidualFCNet" else 0
  state = _check_state_dict(checkpoint["state_dict"], expected_state_dict(
      model, input_dim=input_dim, num_classes=num_classes, num_filts=num_filts, depth=depth),
      source, f"{model} with input_dim {input_dim}, num_classes {num_classes}"
      + (f", num_filts {num_filts}, depth {depth}" if model == "ResidualFCNet" else ""))

  taxa = np.asarray(taxa_list, np.int64)
  order = np.argsort(taxa, kind="stable")  # ClassIndex rows are sorted taxon ids
  params = {"species_embedding": state["class_emb.weight"][order]}
  if model == "ResidualFCNet":
    dense = lambda prefix: {"kernel": state[prefix + ".weight"].T.copy(),
                            "bias": state[prefix + ".bias"]}
    encoder = {"input": dense("feats.0")}
    for i in range(depth):
      encoder[f"block{i}"] = {layer: dense(f"feats.{2 + i}.{layer}") for layer in ("w1", "w2")}
    params["location_encoder"] = encoder
  ported = PortedRangeModel(
      params=params, taxa=taxa[order], encoder="resfc" if model == "ResidualFCNet" else "linear",
      input_kind=kind, input_dim=input_dim, width=num_filts if num_filts else input_dim,
      depth=depth, dropout=REFERENCE_DROPOUT if model == "ResidualFCNet" else 0.0,
      reference_params=_json_safe(ref))
  _check_against_module(ported, source)
  return ported


def _check_params(ref: dict, source: str):
  for key in ("model", "input_dim", "num_classes", "class_to_taxa", "input_enc"):
    if key not in ref:
      raise SinrInputError(f"params lack '{key}' (a SINR reference checkpoint records model, "
                           "input_dim, num_classes, class_to_taxa and input_enc)", file=source,
                           field=f"params.{key}")
  model = ref["model"]
  if model not in MODELS:
    raise SinrInputError(f"params['model'] = {model!r} is not one of {', '.join(MODELS)}",
                         file=source, field="params.model")
  try:
    kind = canonical_kind(str(ref["input_enc"]))
  except ValueError:
    raise SinrInputError(f"params['input_enc'] = {ref['input_enc']!r} is not one of sin_cos, "
                         "env, sin_cos_env", file=source, field="params.input_enc") from None
  input_dim = _positive_int(ref, "input_dim", source)
  if kind == "coords" and input_dim != COORD_DIM or kind == "env_coords" and input_dim <= COORD_DIM:
    raise SinrInputError(f"params['input_dim'] = {input_dim} does not fit input_enc "
                         f"{ref['input_enc']!r} ({COORD_DIM} sin/cos features"
                         + (" plus the raster's channels)" if kind != "coords" else ")"),
                         file=source, field="params.input_dim")
  num_classes = _positive_int(ref, "num_classes", source)
  taxa = ref["class_to_taxa"]
  try:
    values = np.asarray(list(taxa))
  except TypeError:
    values = np.asarray([])
  if values.ndim != 1 or values.dtype.kind not in "iu":
    raise SinrInputError(f"params['class_to_taxa'] must be a list of integer taxon ids, got "
                         f"{type(taxa).__name__} of {values.dtype}", file=source,
                         field="params.class_to_taxa")
  if len(values) != num_classes:
    raise SinrInputError(f"params['class_to_taxa'] lists {len(values)} taxa but num_classes is "
                         f"{num_classes}", file=source, field="params.class_to_taxa")
  unique, counts = np.unique(values, return_counts=True)
  if (counts > 1).any():
    dup = int(unique[np.argmax(counts > 1)])
    raise SinrInputError(f"params['class_to_taxa'] lists taxon {dup} more than once "
                         f"(at classes {np.flatnonzero(values == dup).tolist()})", file=source,
                         field="params.class_to_taxa")
  return model, kind, input_dim, num_classes, values


def _positive_int(ref: dict, key: str, source: str, zero_ok: bool = False) -> int:
  value = ref.get(key)
  ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and (
      value >= 0 if zero_ok else value > 0)
  if not ok:
    raise SinrInputError(f"params['{key}'] must be a {'non-negative' if zero_ok else 'positive'}"
                         f" integer, got {value!r}", file=source, field=f"params.{key}")
  return int(value)


def _check_state_dict(state_dict: Mapping, expected: dict[str, tuple[int, ...]], source: str,
                      what: str) -> dict[str, np.ndarray]:
  """The arrays of `expected`, float32; missing, unexpected, misshapen, non-float or
  non-finite arrays raise SinrInputError naming the key."""
  missing = [k for k in expected if k not in state_dict]
  if missing:
    raise SinrInputError(f"state_dict lacks '{missing[0]}' ({len(missing)} of the "
                         f"{len(expected)} arrays of a {what} are missing"
                         + (f": {', '.join(missing[:5])}" if len(missing) > 1 else "") + ")",
                         file=source, field=missing[0])
  extra = [k for k in state_dict if k not in expected]
  if extra:
    raise SinrInputError(f"state_dict has unexpected '{extra[0]}' ({len(extra)} arrays that a "
                         f"{what} does not have; do the checkpoint's params describe its "
                         "weights?)", file=source, field=str(extra[0]))
  out = {}
  for key, shape in expected.items():
    value = np.asarray(state_dict[key])
    if value.shape != shape:
      raise SinrInputError(f"state_dict '{key}' has shape {value.shape}, a {what} needs "
                           f"{shape}", file=source, field=key)
    if value.dtype.kind != "f":
      raise SinrInputError(f"state_dict '{key}' holds {value.dtype}, not floating point",
                           file=source, field=key)
    if not np.isfinite(value).all():
      raise SinrInputError(f"state_dict '{key}' holds {int((~np.isfinite(value)).sum())} NaN or "
                           "inf values", file=source, field=key)
    out[key] = value.astype(np.float32)
  return out


def _check_against_module(ported: PortedRangeModel, source: str) -> None:
  """The converted tree must be exactly what RangeModel builds (so that load() accepts it)."""
  module = ported.module()
  expected = jax.eval_shape(lambda: module.init(jax.random.key(0),
                                                jnp.zeros((1, ported.input_dim))))["params"]
  want = jax.tree.map(lambda a: tuple(a.shape), expected)
  got = jax.tree.map(lambda a: tuple(a.shape), ported.params)
  if want != got:  # a conversion bug, not bad input; still reported, never written
    raise SinrInputError(f"converted parameters {got} do not match RangeModel's {want}",
                         file=source)


def _json_safe(x: Any) -> Any:
  if isinstance(x, Mapping):
    return {str(k): _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, np.ndarray):
    return x.tolist() if x.size <= 64 else f"<array {x.dtype} {list(x.shape)}>"
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return str(x)
  if x is None or isinstance(x, (str, int, float, bool)):
    return x
  return str(x)


def write_run(ported: PortedRangeModel, out: str, *, env_raster: str | None = None,
              provenance: dict | None = None, overwrite: bool = False) -> str:
  """Writes `ported` as a run directory at `out` (atomically); returns its absolute path.
  Env models need `env_raster`, checked against the model's channel count first."""
  out = check_out_dir(out, overwrite=overwrite)
  raster_shape = None
  if ported.input_kind == "coords":
    env_raster = None
  else:
    if not env_raster:
      raise SinrInputError(
          f"this is an {ported.reference_params.get('input_enc')!r} model: pass --env_raster= "
          f"the raster it was trained with ({ported.env_channels} channels, e.g. the SINR "
          "release's bioclim_elevation_scaled.npy)", field="env_raster")
    raster_shape = load_raster(env_raster, channels=ported.env_channels).shape
    env_raster = os.path.abspath(env_raster)
  spec = rundir.model_spec(num_species=len(ported.taxa), input_dim=ported.input_dim,
                           encoder=ported.encoder, width=ported.width, depth=ported.depth,
                           dropout=ported.dropout, input_kind=ported.input_kind,
                           env_raster=env_raster, env_shape=raster_shape)
  record = {"ported_from": {"framework": "pytorch", "reference": "elijahcole/sinr",
                            **(provenance or {})},
            "reference_params": ported.reference_params,
            # sinr_jax.evaluate reads data.train_file: this run has no simulated world.
            "data": {"train_file": "the SINR release's training data (weights ported from "
                                   "PyTorch)"}}
  state = trainer.TrainState(step=np.zeros((), np.int32), params=ported.params, opt_state={})
  with io.atomic_directory(out) as tmp:
    rundir.write_or_check_model_spec(str(tmp), spec, resuming=False)
    ClassIndex(ported.taxa).save(os.path.join(tmp, rundir.TAXA_FILE))
    io.write_json(os.path.join(tmp, rundir.CONFIG_FILE), record)
    trainer.save_checkpoint(os.path.join(tmp, rundir.CHECKPOINT_DIR), state, jax.random.key(0),
                            {"ported_from": record["ported_from"]})
  return out


def port_file(checkpoint: str, out: str, *, env_raster: str | None = None, trust: bool = False,
              overwrite: bool = False) -> str:
  """Reads a reference checkpoint file (weights_only unless `trust`) and writes the run."""
  check_out_dir(out, overwrite=overwrite)  # before the (possibly large) read
  if env_raster is not None and not os.path.isfile(env_raster):
    raise SinrInputError("raster file not found", file=env_raster, field="env_raster")
  ported = port_range_model(torch_file.read(checkpoint, trust=trust, error=SinrInputError),
                            source=os.fspath(checkpoint))
  env_norm = ported.reference_params.get("env_norm")
  if ported.input_kind != "coords" and env_norm not in (None, False, "none"):
    _log.warning("the checkpoint records env_norm = %r: pass the raster normalised the way the "
                 "model was trained", env_norm)
  return write_run(ported, out, env_raster=env_raster, overwrite=overwrite,
                   provenance={"file": os.path.abspath(checkpoint),
                               "sha256": torch_file.sha256(checkpoint)})


def main(argv: list[str]) -> int:
  def body(argv):
    flags = parse_flags(argv, FLAGS, required=("checkpoint", "out"))
    out = port_file(flags["checkpoint"], flags["out"], env_raster=flags.get("env_raster"),
                    trust=flag_is_true(flags, "trust_pickle"),
                    overwrite=flag_is_true(flags, "overwrite"))
    from sinr_jax.predictor import load
    model = load(out)
    print(f"ported {flags['checkpoint']} -> {out}: {len(model.taxa)} taxa, "
          f"{model.model.encoder} encoder, {model.encoder.kind} input "
          f"({model.model.input_dim}-d), embedding {model.embed_dim}-d. "
          f"Load it with sinr_jax.load({out!r})")
  return run_cli(argv, body, __doc__, flags=FLAGS)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
