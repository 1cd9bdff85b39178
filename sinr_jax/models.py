"""Range models: a location encoder f_θ and a bias-free species head h_φ, ŷ = σ(h_φ(f_θ(x))).

Flax Linen: parameters are a plain pytree, so the same `apply(params, x, rngs)` is jitted,
sharded, checkpointed and optimised without module state.

The head is stored as a (species, dim) `species_embedding` matrix (the layout of a PyTorch
Linear weight): a species' row is its embedding, blocks of species are contiguous slices.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ecorep.errors import ConfigError

ENCODERS = ("resfc", "linear")


def torch_uniform(fan_in: int):
  """U(±1/√fan_in): the PyTorch Linear default the reference trains with."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _dense(features: int, fan_in: int, name: str) -> nn.Dense:
  init = torch_uniform(fan_in)
  return nn.Dense(features, kernel_init=init, bias_init=init, name=name)


class ResidualBlock(nn.Module):
  """x + ReLU(W2 · Dropout(ReLU(W1 · x)))."""
  width: int
  dropout: float

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = nn.relu(_dense(self.width, self.width, "w1")(x))
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    y = nn.relu(_dense(self.width, self.width, "w2")(y))
    return x + y


class ResidualFCNet(nn.Module):
  """Input layer (d → width) + ReLU, then `depth` residual blocks."""
  input_dim: int
  width: int = 256
  depth: int = 4
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(_dense(self.width, self.input_dim, "input")(x))
    for i in range(self.depth):
      x = ResidualBlock(self.width, self.dropout, name=f"block{i}")(x, train)
    return x


class RangeModel(nn.Module):
  """Location encoder + species head. `encoder='linear'` is logistic regression on the inputs."""
  num_species: int
  input_dim: int
  encoder: str = "resfc"
  width: int = 256
  depth: int = 4
  dropout: float = 0.5

  def setup(self):
    if self.encoder == "resfc":
      self.location_encoder = ResidualFCNet(self.input_dim, self.width, self.depth, self.dropout)
    elif self.encoder != "linear":
      raise ConfigError(f"unknown encoder '{self.encoder}'; choose one of {', '.join(ENCODERS)}",
                        field="model.encoder")
    self.species_embedding = self.param(
        "species_embedding", torch_uniform(self.embed_dim), (self.num_species, self.embed_dim))

  @property
  def embed_dim(self) -> int:
    return self.width if self.encoder == "resfc" else self.input_dim

  def embed(self, x, train: bool = False):
    """f_θ(x): the location embedding (the inputs themselves for logistic regression)."""
    return self.location_encoder(x, train) if self.encoder == "resfc" else x

  def __call__(self, x, train: bool = False):
    """(logits, extras): species logits h_φ(f_θ(x)) of shape (N, S), and {"pre_logits": f_θ(x)}
    (the convention of every model in the project)."""
    emb = self.embed(x, train)
    return emb @ self.species_embedding.T, {"pre_logits": emb}


def param_count(num_species: int, input_dim: int, width: int = 256, depth: int = 4,
                encoder: str = "resfc") -> int:
  """Closed-form parameter count of RangeModel (for checks and logs)."""
  if encoder == "linear":
    return num_species * input_dim
  return (input_dim + 1) * width + depth * 2 * (width + 1) * width + num_species * width
