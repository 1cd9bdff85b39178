"""PyTorch SINR training step written to mirror the published computation (benchmark baseline).

One forward over the concatenated data and random locations, sigmoid, elementwise
−log(p + 1e-5), the observed entries re-weighted by pos_weight, means, torch.optim.Adam — the
reference's AN-full. Only the benchmark imports this; PyTorch is never a runtime dependency.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class ResLayer(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.w1, self.w2 = nn.Linear(width, width), nn.Linear(width, width)
    self.dropout = nn.Dropout(0.5)

  def forward(self, x):
    return x + torch.relu(self.w2(self.dropout(torch.relu(self.w1(x)))))


class ResidualFCNet(nn.Module):
  def __init__(self, num_inputs: int, num_classes: int, width: int = 256, depth: int = 4):
    super().__init__()
    self.feats = nn.Sequential(nn.Linear(num_inputs, width), nn.ReLU(),
                               *[ResLayer(width) for _ in range(depth)])
    self.class_emb = nn.Linear(width, num_classes, bias=False)


def neg_log(x):
  return -torch.log(x + 1e-5)


def random_locations(n: int, device) -> torch.Tensor:
  """Uniform on the sphere, normalised lon/lat, then the sin/cos encoding."""
  u = torch.rand(n, 2, device=device)
  lon = 2.0 * u[:, 0] - 1.0
  lat = 1.0 - 2.0 * torch.acos(2.0 * u[:, 1] - 1.0) / math.pi
  loc = torch.stack([lon, lat], 1)
  return torch.cat([torch.sin(math.pi * loc), torch.cos(math.pi * loc)], 1)


def an_full_loss(model: ResidualFCNet, loc_feat, class_id, pos_weight: float):
  batch = loc_feat.shape[0]
  emb = model.feats(torch.cat([loc_feat, random_locations(batch, loc_feat.device)], 0))
  pred = torch.sigmoid(model.class_emb(emb[:batch]))
  pred_rand = torch.sigmoid(model.class_emb(emb[batch:]))
  loss_pos = neg_log(1.0 - pred)
  rows = torch.arange(batch, device=loc_feat.device)
  loss_pos[rows, class_id] = pos_weight * neg_log(pred[rows, class_id])
  return loss_pos.mean() + neg_log(1.0 - pred_rand).mean()


class TorchTrainer:
  def __init__(self, num_classes: int, width: int = 256, depth: int = 4, lr: float = 5e-4,
               pos_weight: float = 2048.0, device: str = "cpu", amp: bool = False):
    self.model = ResidualFCNet(4, num_classes, width, depth).to(device)
    self.opt = torch.optim.Adam(self.model.parameters(), lr)
    self.pos_weight, self.device, self.amp = pos_weight, device, amp

  def step(self, loc_feat, class_id) -> torch.Tensor:
    self.opt.zero_grad(set_to_none=True)
    with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.amp):
      loss = an_full_loss(self.model, loc_feat, class_id, self.pos_weight)
    loss.backward()
    self.opt.step()
    return loss.detach()
