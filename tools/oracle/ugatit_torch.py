"""Minimal PyTorch modules with the semantics of U-GAT-IT's reference networks.

Written from the behavioural description of znxlwm/UGATIT-pytorch at HEAD (b8c4251),
not copied from it.  Parameter and buffer names are chosen so that ``state_dict()``
keys are identical to that repository's checkpoints (e.g. ``DownBlock.1.weight``,
``UpBlock2.3.rho``, ``model.1.weight_orig``).

Semantics worth remembering:
  * adaILN / ILN statistics use the UNBIASED variance (divisor N-1) with eps=1e-5
    inside the square root; the plain InstanceNorm2d layers of the encoder use
    torch's InstanceNorm (biased variance, affine=False).
  * the AdaILN residual block returns ``out + x``.
  * one (gamma, beta) pair from the MLP feeds every adaILN layer.
  * in the discriminator the CAM logits use the spectrally normalised Linear
    weight, while the feature re-weighting uses the raw ``weight_orig``.
  * the discriminator uses LeakyReLU(0.2) everywhere, including after conv1x1.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

EPS = 1e-5


def _reflect_conv(pad, cin, cout, k, stride=1, bias=False):
    """Two Sequential entries: reflection pad then conv without padding."""
    return [nn.ReflectionPad2d(pad), nn.Conv2d(cin, cout, k, stride, 0, bias=bias)]


def _standardise(x, dims):
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True)  # unbiased, as in the reference
    return (x - mean) / torch.sqrt(var + EPS)


def _mix_in_ln(x, rho):
    return rho * _standardise(x, [2, 3]) + (1.0 - rho) * _standardise(x, [1, 2, 3])


class adaILN(nn.Module):
    """Adaptive instance-layer norm; gamma/beta (B, C) come from the generator MLP."""

    def __init__(self, channels):
        super().__init__()
        self.rho = nn.Parameter(torch.full((1, channels, 1, 1), 0.9))

    def forward(self, x, gamma, beta):
        y = _mix_in_ln(x, self.rho)
        return y * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(nn.Module):
    """Instance-layer norm with its own learnable affine transform."""

    def __init__(self, channels):
        super().__init__()
        self.rho = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return _mix_in_ln(x, self.rho) * self.gamma + self.beta


class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        layers = _reflect_conv(1, dim, dim, 3) + [nn.InstanceNorm2d(dim), nn.ReLU(True)]
        layers += _reflect_conv(1, dim, dim, 3) + [nn.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)  # convs at indices 1 and 5

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetAdaILNBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 0, bias=False)
        self.norm1 = adaILN(dim)
        self.relu1 = nn.ReLU(True)
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 0, bias=False)
        self.norm2 = adaILN(dim)

    def forward(self, x, gamma, beta):
        h = self.relu1(self.norm1(self.conv1(self.pad1(x)), gamma, beta))
        h = self.norm2(self.conv2(self.pad2(h)), gamma, beta)
        return h + x


class ResnetGenerator(nn.Module):
    """Returns (image, cam_logit (B,2), heatmap (B,1,H/4,W/4))."""

    def __init__(self, ngf=64, n_blocks=4, img_size=256, light=False, input_nc=3, output_nc=3):
        super().__init__()
        self.light = light
        self.n_blocks = n_blocks
        c = ngf * 4  # bottleneck width after two stride-2 convs

        down = _reflect_conv(3, input_nc, ngf, 7) + [nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for m in (1, 2):
            down += _reflect_conv(1, ngf * m, ngf * m * 2, 3, stride=2)
            down += [nn.InstanceNorm2d(ngf * m * 2), nn.ReLU(True)]
        down += [ResnetBlock(c) for _ in range(n_blocks)]
        self.DownBlock = nn.Sequential(*down)

        self.gap_fc = nn.Linear(c, 1, bias=False)
        self.gmp_fc = nn.Linear(c, 1, bias=False)
        self.conv1x1 = nn.Conv2d(2 * c, c, 1, 1, bias=True)
        self.relu = nn.ReLU(True)

        fc_in = c if light else (img_size // 4) * (img_size // 4) * c
        self.FC = nn.Sequential(nn.Linear(fc_in, c, bias=False), nn.ReLU(True),
                                nn.Linear(c, c, bias=False), nn.ReLU(True))
        self.gamma = nn.Linear(c, c, bias=False)
        self.beta = nn.Linear(c, c, bias=False)

        for i in range(n_blocks):
            setattr(self, "UpBlock1_%d" % (i + 1), ResnetAdaILNBlock(c))

        up = []
        for m in (4, 2):
            up += [nn.Upsample(scale_factor=2, mode="nearest")]
            up += _reflect_conv(1, ngf * m, ngf * m // 2, 3)
            up += [ILN(ngf * m // 2), nn.ReLU(True)]
        up += _reflect_conv(3, ngf, output_nc, 7) + [nn.Tanh()]
        self.UpBlock2 = nn.Sequential(*up)

    def forward(self, inp):
        x = self.DownBlock(inp)
        b = x.shape[0]

        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).view(b, -1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).view(b, -1))
        w_gap = self.gap_fc.weight[0].view(1, -1, 1, 1)
        w_gmp = self.gmp_fc.weight[0].view(1, -1, 1, 1)
        cam_logit = torch.cat([gap_logit, gmp_logit], dim=1)
        x = self.relu(self.conv1x1(torch.cat([x * w_gap, x * w_gmp], dim=1)))
        heatmap = x.sum(dim=1, keepdim=True)

        if self.light:
            h = F.adaptive_avg_pool2d(x, 1).view(b, -1)
        else:
            h = x.view(b, -1)
        h = self.FC(h)
        gamma, beta = self.gamma(h), self.beta(h)

        for i in range(self.n_blocks):
            x = getattr(self, "UpBlock1_%d" % (i + 1))(x, gamma, beta)
        return self.UpBlock2(x), cam_logit, heatmap


class Discriminator(nn.Module):
    """PatchGAN discriminator with CAM; returns (logit, cam_logit (B,2), heatmap).

    n_layers=7 is the global discriminator (needs >= 96 px input), 5 the local one.
    """

    def __init__(self, ndf=64, n_layers=5, input_nc=3):
        super().__init__()

        def sn_block(cin, cout, stride):
            return [nn.ReflectionPad2d(1),
                    spectral_norm(nn.Conv2d(cin, cout, 4, stride, 0, bias=True)),
                    nn.LeakyReLU(0.2, True)]

        layers = sn_block(input_nc, ndf, 2)
        ch = ndf
        for _ in range(n_layers - 3):
            layers += sn_block(ch, ch * 2, 2)
            ch *= 2
        layers += sn_block(ch, ch * 2, 1)
        ch *= 2
        self.model = nn.Sequential(*layers)

        self.gap_fc = spectral_norm(nn.Linear(ch, 1, bias=False))
        self.gmp_fc = spectral_norm(nn.Linear(ch, 1, bias=False))
        self.conv1x1 = nn.Conv2d(2 * ch, ch, 1, 1, bias=True)
        self.leaky_relu = nn.LeakyReLU(0.2, True)
        self.pad = nn.ReflectionPad2d(1)
        self.conv = spectral_norm(nn.Conv2d(ch, 1, 4, 1, 0, bias=False))

    def forward(self, inp):
        x = self.model(inp)
        b = x.shape[0]

        # logits through the SN-normalised weight (forward pre-hook) ...
        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).view(b, -1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).view(b, -1))
        # ... but the re-weighting uses the raw parameter, as the reference does
        w_gap = self.gap_fc.weight_orig[0].view(1, -1, 1, 1)
        w_gmp = self.gmp_fc.weight_orig[0].view(1, -1, 1, 1)
        cam_logit = torch.cat([gap_logit, gmp_logit], dim=1)
        x = self.leaky_relu(self.conv1x1(torch.cat([x * w_gap, x * w_gmp], dim=1)))
        heatmap = x.sum(dim=1, keepdim=True)
        return self.conv(self.pad(x)), cam_logit, heatmap


def count_params(module):
    """Trainable parameters (SN weight_orig and biases; not the u/v buffers)."""
    return sum(p.numel() for p in module.parameters())
