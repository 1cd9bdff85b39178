"""The geo prior P(y|x) = σ(f(x)·O_y): a location/time encoder f (SINR's ResidualFCNet), object
embeddings O (the rows of `species_embedding`, C × D) and, for training only, photographer
embeddings P (`photographer_embedding`, |P| × D).

The parameter names match sinr_jax.models.RangeModel: an inference parameter tree (P dropped) of
a coordinates-only, wrapped prior is a RangeModel's.
"""
from __future__ import annotations

import flax.linen as nn

from sinr_jax.models import ResidualFCNet, torch_uniform


class GeoPriorModel(nn.Module):
  num_classes: int
  input_dim: int
  num_photographers: int = 0  # 0: no P (inference, or the no-photographer variant)
  width: int = 256
  depth: int = 4
  dropout: float = 0.5

  def setup(self):
    self.location_encoder = ResidualFCNet(self.input_dim, self.width, self.depth, self.dropout)
    self.species_embedding = self.param("species_embedding", torch_uniform(self.width),
                                        (self.num_classes, self.width))
    if self.num_photographers:
      self.photographer_embedding = self.param(
          "photographer_embedding", torch_uniform(self.width), (self.num_photographers, self.width))

  @property
  def embed_dim(self) -> int:
    return self.width

  def embed(self, x, train: bool = False):
    """f(x): the location/time embedding."""
    return self.location_encoder(x, train)

  def __call__(self, x, train: bool = False):
    """(class logits f(x)·Oᵀ of shape (N, C), {"pre_logits": f(x)})."""
    emb = self.embed(x, train)
    return emb @ self.species_embedding.T, {"pre_logits": emb}
