"""PyTorch twins of ctstream's networks (src/train/models.rs), layer for layer.

Same layers, same shapes, same parameter count as the Burn models, so that a training step
or a prediction tile can be timed in both frameworks on the same machine
(tools/bench/train_vs_pytorch.py). What must match, and why it does:

- Conv3d and ConvTranspose3d have a bias in both (Burn's default, PyTorch's default).
- BatchNorm: epsilon 1e-5, momentum 0.1 in both; two parameters per channel (the running
  statistics are buffers in PyTorch and non-parameter state in Burn: neither counts).
- PReLU: one shared slope, initialised to 0.25 (Burn's `PReluConfig::new()`, PyTorch's
  `nn.PReLU()`).
- U-Net max pooling: Burn's reshape + max over 2x2x2 blocks is `max_pool3d(2)`.
- Adam: Burn's defaults are beta (0.9, 0.999) and epsilon 1e-5 (PyTorch's is 1e-8).
- Losses: soft Dice with smoothing 1 over the whole batch, plus mean BCE of probabilities
  clamped to [1e-6, 1 - 1e-6] (src/train/loss.rs).

`python3 tools/bench/twin.py [--json]` prints the parameter counts of the benchmarked
configurations (tests/integration/train.rs compares them with Burn's).
"""

import torch
import torch.nn.functional as F
from torch import nn


def ch(base, width):
    """Channels after the width multiplier (at least 1), as models.rs rounds them."""
    # Rust's f64::round rounds half away from zero; Python's round() rounds half to even.
    v = base * width
    return max(1, int(v + 0.5) if v >= 0 else -int(-v + 0.5))


class ConvBnRelu(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.a = ConvBnRelu(cin, cout)
        self.b = ConvBnRelu(cout, cout)

    def forward(self, x):
        return self.b(self.a(x))


class UNet3d(nn.Module):
    """models.rs `UNet3d`: 32-64-128-256 (x width), 512 bottleneck, skip concatenation."""

    def __init__(self, width):
        super().__init__()
        f = [ch(c, width) for c in (32, 64, 128, 256)]
        fb = ch(512, width)
        self.down = nn.ModuleList()
        cin = 1
        for c in f:
            self.down.append(DoubleConv(cin, c))
            cin = c
        self.bottleneck = DoubleConv(cin, fb)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cprev = fb
        for c in reversed(f):
            self.up.append(nn.ConvTranspose3d(cprev, c, 2, stride=2))
            self.dec.append(DoubleConv(2 * c, c))
            cprev = c
        self.out = nn.Conv3d(cprev, 1, 1)

    def forward(self, x):
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        x = self.bottleneck(x)
        for u, d in zip(self.up, self.dec):
            x = d(torch.cat([u(x), skips.pop()], 1))
        return torch.sigmoid(self.out(x))


class ResStage(nn.Module):
    """models.rs `ResStage`: n 5x5x5 conv + BN + PReLU, the residual added before the last
    activation."""

    def __init__(self, cin, c, n):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv3d(cin if i == 0 else c, c, 5, padding=2) for i in range(n)]
        )
        self.norms = nn.ModuleList([nn.BatchNorm3d(c, eps=1e-5, momentum=0.1) for _ in range(n)])
        self.acts = nn.ModuleList([nn.PReLU(1, init=0.25) for _ in range(n)])

    def forward(self, x, residual):
        n = len(self.convs)
        y = x
        for i, (c, bn, a) in enumerate(zip(self.convs, self.norms, self.acts)):
            y = bn(c(y))
            if i + 1 == n:
                y = y + residual
            y = a(y)
        return y


class VNet(nn.Module):
    """models.rs `VNet`: stages of 1, 2, 3, 3 convolutions (16-32-64-128 x width), a 256
    bottom stage of 3, strided 2x2x2 down convolutions, transposed up convolutions."""

    def __init__(self, width):
        super().__init__()
        c = [ch(v, width) for v in (16, 32, 64, 128)]
        cb = ch(256, width)
        convs = [1, 2, 3, 3]
        self.base = c[0]
        self.stages = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.down_acts = nn.ModuleList()
        for i, (ci, n) in enumerate(zip(c, convs)):
            self.stages.append(ResStage(1 if i == 0 else ci, ci, n))
            nxt = c[i + 1] if i + 1 < len(c) else cb
            self.downs.append(nn.Conv3d(ci, nxt, 2, stride=2))
            self.down_acts.append(nn.PReLU(1, init=0.25))
        self.bottom = ResStage(cb, cb, 3)
        self.ups = nn.ModuleList()
        self.up_acts = nn.ModuleList()
        self.dec = nn.ModuleList()
        cprev = cb
        for ci, n in reversed(list(zip(c, convs))):
            self.ups.append(nn.ConvTranspose3d(cprev, ci, 2, stride=2))
            self.up_acts.append(nn.PReLU(1, init=0.25))
            self.dec.append(ResStage(2 * ci, ci, max(n, 1)))
            cprev = ci
        self.out = nn.Conv3d(cprev, 1, 1)

    def forward(self, x):
        skips = []
        y = self.stages[0](x, x.repeat(1, self.base, 1, 1, 1))
        for i in range(len(self.stages)):
            if i > 0:
                y = self.stages[i](y, y)
            skips.append(y)
            y = self.down_acts[i](self.downs[i](y))
        y = self.bottom(y, y)
        for u, a, d in zip(self.ups, self.up_acts, self.dec):
            up = a(u(y))
            y = d(torch.cat([up, skips.pop()], 1), up)
        return torch.sigmoid(self.out(y))


EPS = 1.0


def soft_dice(p, t):
    inter = (p * t).sum()
    return 1.0 - (2.0 * inter + EPS) / (p.sum() + t.sum() + EPS)


def bce(p, t):
    p = p.clamp(1e-6, 1.0 - 1e-6)
    return -(t * p.log() + (1.0 - t) * (1.0 - p).log()).mean()


def dice_bce(p, t):
    return soft_dice(p, t) + bce(p, t)


def build(model, width):
    """The twin of `ctstream train --model MODEL --width WIDTH`."""
    if model == "unet3d":
        return UNet3d(width)
    if model == "vnet":
        return VNet(width)
    raise ValueError(f"unknown model {model!r}: unet3d or vnet")


def num_params(net):
    """Trainable values, as Burn's `Module::num_params` counts them."""
    return sum(p.numel() for p in net.parameters())


def adam(net, lr):
    """Burn's `AdamConfig::new()`: beta (0.9, 0.999), epsilon 1e-5."""
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-5)


if __name__ == "__main__":
    import json
    import sys

    counts = {
        f"{m} {w}": num_params(build(m, w))
        for m, w in (("unet3d", 0.25), ("vnet", 0.125), ("unet3d", 1.0), ("vnet", 1.0))
    }
    if "--json" in sys.argv[1:]:
        print(json.dumps(counts))
    else:
        for k, v in counts.items():
            print(f"{k}: {v} parameters")
