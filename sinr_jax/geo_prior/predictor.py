"""A trained geo prior from its run directory: P(y | lon, lat, day) without the training config.

  prior = sinr_jax.geo_prior.predictor.load("runs/gp")
  p = prior.predict(lon, lat, day=day)          # (N, C); day = day-of-year fraction in [0, 1)
  lp = prior.log_prior(lon, lat, day, columns)  # log σ(f(x)·O_c) at chosen columns, no underflow

It loads the inference checkpoint (no photographer embeddings); a run that has not finished yet
is read from its newest training checkpoint with P dropped. The interface is that of
sinr_jax.RangePredictor (taxa, columns, embed, logits, predict, params["species_embedding"]), so a
prior without dates also runs through the SINR evaluators; a prior with dates needs `day`.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from ecorep.trainer import read_checkpoint
from sinr_jax import coords
from sinr_jax.errors import CheckpointMismatchError, SinrInputError
from sinr_jax.geo_prior import encoding, rundir
from sinr_jax.geo_prior.model import GeoPriorModel
from sinr_jax.geo_prior.train import inference_params
from sinr_jax.observations import ClassIndex
from sinr_jax.predictor import TaxonColumns, _lonlat


class GeoPriorPredictor(TaxonColumns):
  def __init__(self, model: GeoPriorModel, params, class_index: ClassIndex, *, use_date: bool,
               wrap: bool, run_dir: str | None = None, step: int | None = None):
    self.model, self.params, self.class_index = model, params, class_index
    self.use_date, self.wrap, self.run_dir, self.step = use_date, wrap, run_dir, step

  def _inputs(self, lon, lat, day):
    lonlat = _lonlat(lon, lat)
    if not self.use_date:
      return lonlat, np.zeros(len(lonlat), np.float32)
    if day is None:
      raise SinrInputError("this prior was trained with dates: pass day (day-of-year fractions "
                           "in [0, 1))", field="day")
    day = np.broadcast_to(np.asarray(day, np.float32), (len(lonlat),))
    bad = ~((day >= 0) & (day <= 1))
    if bad.any():
      i = int(np.argmax(bad))
      raise SinrInputError(f"day[{i}] = {day[i]} is not a day-of-year fraction in [0, 1]",
                           field="day", row=i)
    return lonlat, day

  def embed(self, lon, lat, day=None, *, batch_size: int = 65536) -> np.ndarray:
    """f(x) at (lon, lat) degrees and day-of-year fractions → (N, D)."""
    lonlat, day = self._inputs(lon, lat, day)
    out = []
    for start in range(0, len(lonlat), batch_size):
      chunk, d = lonlat[start:start + batch_size], day[start:start + batch_size]
      n = len(chunk)
      if len(lonlat) > batch_size:  # one compiled shape for every chunk
        chunk = np.pad(chunk, ((0, batch_size - n), (0, 0)))
        d = np.pad(d, (0, batch_size - n))
      out.append(np.asarray(_embed(self.model, self.use_date, self.wrap, self.params,
                                   jnp.asarray(chunk), jnp.asarray(d)))[:n])
    return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

  def logits(self, lon, lat, taxa=None, day=None) -> np.ndarray:
    cols = self.columns(taxa)
    return self.embed(lon, lat, day) @ np.asarray(self.params["species_embedding"])[cols].T

  def predict(self, lon, lat, taxa=None, day=None) -> np.ndarray:
    """P(y | x) of each requested taxon → (N, len(taxa))."""
    return scipy.special.expit(self.logits(lon, lat, taxa, day))

  def log_prior(self, lon, lat, day, columns: np.ndarray) -> np.ndarray:
    """log σ(f(x_i)·O_c) for the (N, k) class columns `columns[i]` of each location i."""
    emb = jnp.asarray(self.embed(lon, lat, day))
    head = jnp.asarray(self.params["species_embedding"])
    return np.asarray(_log_sigmoid_rows(emb, head, jnp.asarray(columns)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _embed(model, use_date, wrap, params, lonlat, day):
  x = encoding.encode(coords.normalize(lonlat), day, use_date=use_date, wrap=wrap)
  return model.apply({"params": params}, x, method=GeoPriorModel.embed)


@jax.jit
def _log_sigmoid_rows(emb, head, cols):
  return jax.nn.log_sigmoid(jnp.einsum("nd,nkd->nk", emb, head[cols]))


def load(run_dir: str | os.PathLike, *, step: int | None = None) -> GeoPriorPredictor:
  """The run's inference model (newest, or `step`'s)."""
  run_dir = os.path.abspath(os.fspath(run_dir))
  spec = rundir.read_model_spec(run_dir)
  class_index = ClassIndex.load(os.path.join(run_dir, rundir.TAXA_FILE))
  m, inp = spec["model"], spec["input"]
  if m["num_classes"] != len(class_index):
    raise CheckpointMismatchError(f"model.json has {m['num_classes']} classes but taxa.json "
                                  f"{len(class_index)}", file=os.path.join(run_dir,
                                                                           rundir.TAXA_FILE))
  model = GeoPriorModel(num_classes=m["num_classes"], input_dim=m["input_dim"],
                        num_photographers=0, width=m["width"], depth=m["depth"],
                        dropout=m["dropout"])
  inference = os.path.join(run_dir, rundir.INFERENCE_DIR)
  source = inference if os.path.isdir(inference) and os.listdir(inference) else os.path.join(
      run_dir, rundir.CHECKPOINT_DIR)
  state, step = read_checkpoint(source, step, error=SinrInputError)
  params = jax.tree.map(jnp.asarray, inference_params(state["params"]))
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, m["input_dim"])))["params"])
  if jax.tree.map(lambda a: a.shape, params) != jax.tree.map(lambda a: a.shape, expected):
    raise CheckpointMismatchError("checkpoint parameters do not match model.json", file=source)
  return GeoPriorPredictor(model, params, class_index, use_date=inp["use_date"], wrap=inp["wrap"],
                           run_dir=run_dir, step=step)
