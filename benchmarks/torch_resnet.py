"""A plain-PyTorch SimCLR training step (benchmark baseline): the same work as
vision_jax.pretrain's step for configs/simclr.py.

ResNet-50 v1.5 (stride on the 3×3 conv, BN decay 0.9/ε 1e-5, last BN γ of each block 0), the
2-layer SimCLR head (bias-free linears + BN, no β on the last), on-device batch augmentation with
per-image parameters (flip; brightness, contrast, saturation, hue in a per-image random order
with p 0.8; grayscale p 0.2; Gaussian blur p 0.5), NT-Xent over both views (mean over 2N
anchors), and LARS (trust ratio, momentum 0.9; BN parameters and biases excluded). torchvision
is not used. Only the benchmark imports this; PyTorch is never a runtime dependency.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN = dict(momentum=0.1, eps=1e-5)  # PyTorch's momentum 0.1 = decay 0.9


class Bottleneck(nn.Module):
  def __init__(self, cin: int, filters: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, filters, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(filters, **BN)
    self.conv2 = nn.Conv2d(filters, filters, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(filters, **BN)
    self.conv3 = nn.Conv2d(filters, filters * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(filters * 4, **BN)
    nn.init.zeros_(self.bn3.weight)
    self.proj = None
    if stride != 1 or cin != filters * 4:
      self.proj = nn.Sequential(nn.Conv2d(cin, filters * 4, 1, stride, bias=False),
                                nn.BatchNorm2d(filters * 4, **BN))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


class ResNet50(nn.Module):
  def __init__(self, width_multiplier: int = 1):
    super().__init__()
    w = 64 * width_multiplier
    self.stem = nn.Sequential(nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w, **BN),
                              nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    blocks, cin = [], w
    for stage, n in enumerate((3, 4, 6, 3)):
      for b in range(n):
        blocks.append(Bottleneck(cin, w * 2**stage, 2 if (b == 0 and stage > 0) else 1))
        cin = w * 2**stage * 4
    self.blocks = nn.Sequential(*blocks)
    self.feature_dim = cin
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x):
    return self.blocks(self.stem(x)).mean(dim=(2, 3))


class SimCLRHead(nn.Module):
  def __init__(self, dim: int, out_dim: int = 128):
    super().__init__()
    self.fc1, self.bn1 = nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, **BN)
    self.fc2 = nn.Linear(dim, out_dim, bias=False)
    self.bn2 = nn.BatchNorm1d(out_dim, affine=False, **BN)
    self.gamma = nn.Parameter(torch.ones(out_dim))  # the last BN's scale; it has no β

  def forward(self, x):
    return self.bn2(self.fc2(F.relu(self.bn1(self.fc1(x))))) * self.gamma


def nt_xent(z1, z2, temperature: float):
  z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
  n = z1.shape[0]
  logits = z @ z.T / temperature
  logits.fill_diagonal_(-1e9)
  targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
  return F.cross_entropy(logits, targets)


def _rgb_to_hsv(x):
  r, g, b = x.unbind(1)
  v, _ = x.max(1)
  c = v - x.min(1).values
  s = torch.where(v > 0, c / v.clamp_min(1e-12), torch.zeros_like(v))
  cc = c.clamp_min(1e-12)
  h = torch.where(v == r, (g - b) / cc, torch.where(v == g, 2 + (b - r) / cc, 4 + (r - g) / cc))
  h = torch.where(c > 0, torch.remainder(h / 6, 1.0), torch.zeros_like(h))
  return h, s, v


def _hsv_to_rgb(h, s, v):
  n = torch.tensor([5.0, 3.0, 1.0], device=h.device).view(1, 3, 1, 1)
  k = torch.remainder(n + 6 * h.unsqueeze(1), 6)
  return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def augment(x, strength: float = 1.0, blur_p: float = 0.5):
  """SimCLR's device-side augmentations on an (N, 3, H, W) float batch in [0, 1]."""
  n, dev = x.shape[0], x.device
  u = torch.rand(n, 14, device=dev).view(n, 14, 1, 1)
  x = torch.where(u[:, 0:1] < 0.5, x.flip(3), x)
  order = torch.argsort(u[:, 2:6, 0, 0], dim=1)
  between = lambda t, lo, hi: lo + (hi - lo) * t  # noqa: E731
  bright = between(u[:, 6:7], 1 - 0.8 * strength, 1 + 0.8 * strength)
  contrast = between(u[:, 7:8], 1 - 0.8 * strength, 1 + 0.8 * strength)
  sat = between(u[:, 8], 1 - 0.8 * strength, 1 + 0.8 * strength)
  hue = between(u[:, 9], -0.2 * strength, 0.2 * strength)
  jittered = x
  for pos in range(4):
    op = order[:, pos].view(n, 1, 1, 1)
    mean = jittered.mean(dim=(2, 3), keepdim=True)
    scale = torch.where(op == 0, bright, torch.where(op == 1, contrast, torch.ones_like(bright)))
    shift = torch.where(op == 1, mean * (1 - contrast), torch.zeros_like(mean))
    affine = jittered * scale + shift
    h, s, v = _rgb_to_hsv(jittered)
    op2 = op[:, 0]
    s = torch.clamp(s * torch.where(op2 == 2, sat, torch.ones_like(sat)), 0, 1)
    h = torch.remainder(h + torch.where(op2 == 3, hue, torch.zeros_like(hue)), 1.0)
    jittered = torch.clamp(torch.where(op <= 1, affine, _hsv_to_rgb(h, s, v)), 0, 1)
  x = torch.where(u[:, 1:2] < 0.8, jittered, x)
  gray = (x * torch.tensor([0.2989, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(1, True)
  x = torch.where(u[:, 10:11] < 0.2, gray.expand_as(x), x)
  radius = max(x.shape[-1] // 10, 1) // 2
  sigma = between(u[:, 12, 0, 0], 0.1, 2.0)
  taps = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
  kernel = torch.exp(-taps[None] ** 2 / (2 * sigma[:, None] ** 2))
  kernel = kernel / kernel.sum(1, keepdim=True)  # (n, taps): per-image blur, grouped convs
  flat = x.reshape(1, n * 3, *x.shape[2:])
  k = kernel.repeat_interleave(3, 0)
  blurred = F.conv2d(flat, k.view(n * 3, 1, -1, 1), padding=(radius, 0), groups=n * 3)
  blurred = F.conv2d(blurred, k.view(n * 3, 1, 1, -1), padding=(0, radius), groups=n * 3)
  x = torch.where(u[:, 11:12] < blur_p, blurred.view_as(x), x)
  return x.clamp(0, 1)


class LARS(torch.optim.Optimizer):
  """SimCLR's LARS: g += wd·w, g *= η‖w‖/‖g‖ (decayed tensors only), v = m·v + lr·g, w -= v."""

  def __init__(self, params, lr, weight_decay=1e-6, momentum=0.9, eta=1e-3):
    super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

  @torch.no_grad()
  def step(self):
    for group in self.param_groups:
      for p in group["params"]:
        if p.grad is None:
          continue
        g = p.grad
        if p.ndim > 1:  # kernels; BN parameters and biases get no decay or adaptation
          g = g.add(p, alpha=group["weight_decay"])
          w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
          ratio = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                              torch.ones_like(w_norm))
          g = g * ratio
        state = self.state[p]
        if "v" not in state:
          state["v"] = torch.zeros_like(p)
        state["v"].mul_(group["momentum"]).add_(g, alpha=group["lr"])
        p.sub_(state["v"])


class TorchSimCLR:
  """`step(views uint8 (B, 2, H, W, 3) tensor) -> loss`, the same work as the JAX step."""

  def __init__(self, device: str = "cpu", amp: bool = False, channels_last: bool = False,
               temperature: float = 0.1, lr: float = 0.3):
    self.device, self.amp, self.temperature = device, amp, temperature
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.backbone = ResNet50().to(device, memory_format=self.memory_format)
    self.head = SimCLRHead(self.backbone.feature_dim).to(device)
    params = list(self.backbone.parameters()) + list(self.head.parameters())
    self.opt = LARS(params, lr=lr)

  def step(self, views: torch.Tensor) -> torch.Tensor:
    b = views.shape[0]
    x = views.to(self.device, non_blocking=True).flatten(0, 1).permute(0, 3, 1, 2).float() / 255
    x = augment(x).contiguous(memory_format=self.memory_format)
    with torch.autocast(self.device if self.device != "cpu" else "cpu", dtype=torch.bfloat16,
                        enabled=self.amp):
      z = self.head(self.backbone(x)).view(b, 2, -1)
    loss = nt_xent(z[:, 0], z[:, 1], self.temperature)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    self.opt.step()
    return loss.detach()

