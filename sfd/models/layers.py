"""Building blocks shared by the encoders, the generator and the discriminator.

StyleGAN2-style layers with an equalized learning rate (weights stored at unit variance and
scaled at run time). Every resampling and blur is one ordinary conv / conv-transpose call with a
fixed kernel, so the whole network runs on the backend's fast convolution kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def _binomial_kernel(gain: float = 1.0) -> torch.Tensor:
    """The 4x4 [1, 3, 3, 1] outer-product low-pass kernel, normalised to sum to `gain`."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k * (gain / k.sum())


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None = None) -> torch.Tensor:
    """`leaky_relu(x * scale + bias, 0.2) * sqrt(2)` in two passes over `x`.

    The sqrt(2) gain is folded into `scale` and `bias` (leaky ReLU is positively homogeneous), so
    the only full-tensor work is one multiply-add and one in-place activation.
    `scale` broadcasts like `x` (per sample and channel) or is None.
    """
    shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
    b = None if bias is None else (bias * SQRT2).view(shape)
    if scale is None:
        x = x * SQRT2 if b is None else torch.add(b, x, alpha=SQRT2)
    else:
        x = x * (scale * SQRT2) if b is None else torch.addcmul(b, x, scale * SQRT2)
    if torch.is_grad_enabled() and x.requires_grad:
        return F.leaky_relu(x, 0.2)
    return F.leaky_relu_(x, 0.2)


class Blur(nn.Module):
    """Depthwise [1, 3, 3, 1] low-pass filter with fixed padding (anti-aliasing around resampling)."""

    def __init__(self, channels: int, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.pad = pad
        self.channels = channels
        kernel = _binomial_kernel(gain)[None, None].repeat(channels, 1, 1, 1)
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p0, p1 = self.pad
        if p0 == p1:
            return F.conv2d(x, self.kernel.to(x.dtype), padding=p0, groups=self.channels)
        x = F.pad(x, (p0, p1, p0, p1))
        return F.conv2d(x, self.kernel.to(x.dtype), groups=self.channels)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate; optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """2-D convolution with equalized learning rate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Module):
    """Equalized conv, optionally preceded by a blur and strided by 2 (downsampling), then bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True):
        super().__init__()
        if downsample:
            # Blur then a stride-2 conv: output exactly half the input size for k in {1, 3}.
            p = 4 - 2 + kernel_size - 1
            self.blur = Blur(in_channels, ((p + 1) // 2, p // 2))
            stride, padding = 2, 0
        else:
            self.blur = None
            stride, padding = 1, kernel_size // 2
        self.conv = EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.blur is not None:
            x = self.blur(x)
        x = self.conv(x)
        if self.activate:
            return fused_leaky_relu(x, self.bias)
        return x if self.bias is None else x + self.bias.view(1, -1, 1, 1)


class ResBlock(nn.Module):
    """StyleGAN2 residual down-sampling block: two convs and a 1x1 skip, halving the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return (out + self.skip(x)) * (1.0 / SQRT2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, batched by modulating activations instead of weights.

    `conv(x * s, w) * d` equals `conv(x, w * s)` demodulated per sample, so one shared-weight conv
    serves the whole batch (no per-sample weights, no grouped conv).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2
        if upsample:
            # A stride-2 transposed conv gives 2H + k - 2 pixels; the blur trims it back to 2H.
            p = (4 - 2) - (kernel_size - 1)
            self.blur = Blur(out_channels, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def modulate(self, x: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Scaled input, effective weight and per-sample demodulation factors (or None)."""
        s = self.modulation(style)
        w = self.weight * self.scale
        demod = None
        if self.demodulate:
            demod = torch.rsqrt(s.square() @ w.square().sum(dim=(2, 3)).t() + 1e-8)[:, :, None, None]
        return x * s[:, :, None, None], w, demod

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x, w, demod = self.modulate(x, style)
        out = self._conv(x, w)
        return out if demod is None else out * demod

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            return self.blur(F.conv_transpose2d(x, w.transpose(0, 1), stride=2))
        return F.conv2d(x, w, padding=self.padding)


class StyledConv(nn.Module):
    """Modulated conv + bias + leaky ReLU, with the demodulation folded into the activation pass."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x, w, demod = self.conv.modulate(x, style)
        return fused_leaky_relu(self.conv._conv(x, w), self.bias, demod)


class ModulatedToImage(nn.Module):
    """Modulated 1x1 projection without demodulation (ToRGB / flow heads), optionally zero-initialised."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, zero_init: bool = False,
                 bias_init: torch.Tensor | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
        bias = torch.zeros(out_channels) if bias_init is None else bias_init.clone().float()
        self.bias = nn.Parameter(bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # Per-sample 1x1 weights applied as a batched matmul: no pass over x to modulate it.
        s = self.conv.modulation(style)
        w = (self.conv.weight[:, :, 0, 0] * self.conv.scale)[None] * s[:, None, :]  # (B, out, in)
        b, c, h, wd = x.shape
        out = torch.bmm(w, x.reshape(b, c, h * wd)) if x.is_contiguous() else torch.einsum("boi,bihw->bohw", w, x)
        return out.view(b, -1, h, wd) + self.bias.view(1, -1, 1, 1)
