"""torchvision's ResNet-50 layout in plain torch.nn: the names, shapes and forward pass of
`torchvision.models.resnet50` (v1.5: stride on the 3×3 conv; BN ε 1e-5; zero-padded convs,
-inf-padded max-pool), without torchvision. Its state dict has torchvision's keys (conv1, bn1,
layer{s}.{i}.conv{j}/bn{j}/downsample.{0,1}, fc), so it is what vision_jax.port_torch imports
and the PyTorch forward pass it is compared with (tests/vision/test_port_torch_resnet.py at a small
width, benchmarks/port_torch_agreement.py at the published one). Only PyTorch comparisons import
this; PyTorch is never a runtime dependency.
"""
from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
  def __init__(self, inplanes: int, planes: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU()
    self.downsample = None
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                      nn.BatchNorm2d(planes * 4))

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
  """`width` 64 is the published model (25,557,032 parameters with the 1000-way fc)."""

  def __init__(self, width: int = 64, num_classes: int = 1000):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = width
    for s, n in enumerate((3, 4, 6, 3), start=1):
      planes, blocks = width * 2 ** (s - 1), []
      for b in range(n):
        blocks.append(Bottleneck(inplanes, planes, 2 if s > 1 and b == 0 else 1))
        inplanes = planes * 4
      setattr(self, f"layer{s}", nn.Sequential(*blocks))
    self.fc = nn.Linear(inplanes, num_classes)

  def features(self, x):
    """Pooled features of standardised NCHW images."""
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    for s in range(1, 5):
      x = getattr(self, f"layer{s}")(x)
    return x.mean(dim=(2, 3))

  def forward(self, x):
    return self.fc(self.features(x))


def randomize_batch_norm(net: nn.Module) -> nn.Module:
  """BN statistics and affine parameters away from their 0/1 defaults (as in trained weights),
  so that a comparison exercises them; returns the net in eval mode."""
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.0)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 2.0)
  return net.eval()
