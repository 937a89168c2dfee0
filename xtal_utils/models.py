"""Classifiers of 1D powder patterns: a ResNet in torchvision's shape, and a patch transformer.

Both take ``(batch, in_channels, n_points)`` for any n_points from about 1024 to 8192 and return
logits ``(batch, n_classes)``: 230 space groups or 99 extinction groups. Channel 0 is the intensity;
an optional channel 1 is sin^2(theta) on the same grid (:func:`add_sin2theta_channel`), which the
NIST transformer uses as a coordinate.

Peak positions matter in diffraction, so neither model pools positions away entirely: the ResNet
keeps ``pool_size`` coarse positions before its classifier, and the transformer has positional
encodings on its patches.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ResNet1dConfig:
    n_classes: int
    in_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64, 128)  # channels of each stage
    blocks: tuple[int, ...] = (1, 1, 1, 1)  # residual blocks per stage
    stem_kernel: int = 15  # samples; a wide first kernel sees whole peaks
    kernel_size: int = 5  # samples, in the residual blocks
    pool_size: int = 8  # coarse positions kept before the classifier
    dropout: float = 0.0
    log_d: tuple[float, float] | None = None  # (first, last) 2-theta of the input grid, degrees: resample the
    #                                          pattern onto a grid uniform in ln d first (see LogDAxis)
    intensity: str = "linear"  # 'linear', 'sqrt' or 'log': how channel 0 is scaled first (see scale_intensity)
    norm: str = "batch"  # 'batch' (BatchNorm) or 'group' (GroupNorm, which does not depend on the batch)


@dataclass(frozen=True)
class Transformer1dConfig:
    n_classes: int
    in_channels: int = 1
    patch_size: int = 32  # samples per token
    d_model: int = 128
    depth: int = 4
    n_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    patch_norm: bool = True  # LayerNorm on each patch embedding, so that sparse peaks are not drowned by the
    #                          unit-amplitude position encodings (without it the model stays at the prior)
    intensity: str = "linear"  # 'linear', 'sqrt' or 'log': how channel 0 is scaled first (see scale_intensity)


INTENSITY_SCALES = ("linear", "sqrt", "log")
LOG_FLOOR = 1e-3  # 'log' maps [0, 1] onto [0, 1] by log10(x + floor), so peaks of 0.1 % still show


def scale_intensity(x: torch.Tensor, scale: str) -> torch.Tensor:
    """Channel 0 (intensity, maximum about 1) as is, square-rooted or logarithmic, so that the weak
    reflections whose absence or presence decides the extinction group are not lost beside the strong."""
    if scale == "linear":
        return x
    first = x[:, :1].clamp_min(0)
    if scale == "sqrt":
        first = first.sqrt()
    elif scale == "log":
        first = (torch.log10(first + LOG_FLOOR) - math.log10(LOG_FLOOR)) / -math.log10(LOG_FLOOR)
    else:
        raise ValueError(f"intensity must be one of {INTENSITY_SCALES}, got {scale!r}")
    return torch.cat([first, x[:, 1:]], dim=1)


class LogDAxis(nn.Module):
    """Resample a pattern from a uniform 2-theta grid onto one uniform in ln d, by linear interpolation.

    On a ln d axis a change of lattice scale is a shift, which a convolution's translation symmetry
    handles. ln d = ln(lambda / 2) - ln sin(theta), so the grid depends on the 2-theta range alone,
    not on the wavelength. The output has as many points as the input, from d_max (first 2-theta) to
    d_min (last 2-theta).

    Input and output (batch, channels, n_points).
    """

    def __init__(self, two_theta_range: tuple[float, float]):
        super().__init__()
        self.two_theta_range = tuple(float(t) for t in two_theta_range)
        self._tables: dict = {}

    def _table(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (n, str(device))
        if key not in self._tables:
            lo, hi = self.two_theta_range
            theta = torch.deg2rad(torch.tensor([lo, hi], dtype=torch.float64)) / 2
            log_sin = torch.linspace(float(torch.log(torch.sin(theta[0]))), float(torch.log(torch.sin(theta[1]))),
                                     n, dtype=torch.float64)
            two_theta = 2 * torch.rad2deg(torch.asin(torch.exp(log_sin)))
            position = ((two_theta - lo) / (hi - lo) * (n - 1)).clamp(0, n - 1)
            left = position.floor().long().clamp(max=n - 2)
            self._tables[key] = (left.to(device), (position - left).float().to(device))
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, frac = self._table(x.shape[-1], x.device)
        return x[..., left] * (1 - frac) + x[..., left + 1] * frac


NORMS = ("batch", "group")
GROUP_CHANNELS = 8  # channels per group of GroupNorm


def norm_layer(channels: int, kind: str = "batch") -> nn.Module:
    """BatchNorm1d, or GroupNorm with groups of GROUP_CHANNELS channels (at least one group)."""
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // GROUP_CHANNELS), channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class BasicBlock1d(nn.Module):
    """Two convolutions with a shortcut, as torchvision's BasicBlock, in 1D."""

    def __init__(self, in_channels: int, channels: int, *, stride: int = 1, kernel_size: int = 5,
                 norm: str = "batch"):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn1 = norm_layer(channels, norm)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False)
        self.bn2 = norm_layer(channels, norm)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv1d(in_channels, channels, 1, stride=stride, bias=False), norm_layer(channels, norm)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet1d(nn.Module):
    """A 1D ResNet (after He et al. 2016 and Lolla et al. 2022) for powder patterns.

    Stem (wide convolution, stride 2, max-pool), then ``len(widths)`` stages of BasicBlock1d, each
    halving the length, then adaptive average pooling to ``pool_size`` positions and a linear layer.

    Input (batch, in_channels, n_points); output logits (batch, n_classes).
    """

    def __init__(self, n_classes: int, in_channels: int = 1, **kwargs):
        super().__init__()
        self.config = config = ResNet1dConfig(n_classes=n_classes, in_channels=in_channels, **kwargs)
        if len(config.widths) != len(config.blocks):
            raise ValueError("widths and blocks must have the same length")
        if config.intensity not in INTENSITY_SCALES:
            raise ValueError(f"intensity must be one of {INTENSITY_SCALES}, got {config.intensity!r}")
        width = config.widths[0]
        self.axis = LogDAxis(config.log_d) if config.log_d else nn.Identity()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, config.stem_kernel, stride=2, padding=config.stem_kernel // 2, bias=False),
            norm_layer(width, config.norm),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        layers, in_width = [], width
        for i, (channels, n_blocks) in enumerate(zip(config.widths, config.blocks)):
            layers.append(self._make_layer(in_width, channels, n_blocks, stride=1 if i == 0 else 2))
            in_width = channels
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(config.pool_size)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(in_width * config.pool_size, n_classes)
        self._init_weights()

    def _make_layer(self, in_channels: int, channels: int, n_blocks: int, stride: int) -> nn.Sequential:
        k, norm = self.config.kernel_size, self.config.norm
        blocks = [BasicBlock1d(in_channels, channels, stride=stride, kernel_size=k, norm=norm)]
        blocks += [BasicBlock1d(channels, channels, kernel_size=k, norm=norm) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # start each residual branch near identity (torchvision's zero_init_residual)
            if isinstance(m, BasicBlock1d):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(self.axis(scale_intensity(x, self.config.intensity))))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.dropout(x))


def _sinusoidal(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Fixed sinusoidal encodings (len, d_model) of fractional positions in [0, 1]."""
    i = torch.arange(d_model // 2, device=positions.device, dtype=positions.dtype)
    freq = torch.exp(-math.log(10_000.0) * 2 * i / d_model) * 1024  # positions are fractions of the grid
    angles = positions[:, None] * freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Transformer1d(nn.Module):
    """A transformer over patches of the pattern (as a ViT, in 1D).

    The pattern is cut into ``patch_size``-sample patches, each embedded linearly and layer-normed; fixed sinusoidal
    encodings of the patch centres (as fractions of the grid, so any n_points works) are added, a
    class token is prepended, and ``depth`` pre-norm encoder layers follow. The class token's final
    state gives the logits.

    Input (batch, in_channels, n_points); output logits (batch, n_classes). n_points is padded with
    zeros on the right up to a multiple of ``patch_size``.
    """

    def __init__(self, n_classes: int, in_channels: int = 1, **kwargs):
        super().__init__()
        self.config = config = Transformer1dConfig(n_classes=n_classes, in_channels=in_channels, **kwargs)
        self.embed = nn.Conv1d(in_channels, config.d_model, config.patch_size, stride=config.patch_size)
        self.embed_norm = nn.LayerNorm(config.d_model) if config.patch_norm else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, int(config.d_model * config.mlp_ratio),
            dropout=config.dropout, activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, n_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = scale_intensity(x, self.config.intensity)
        pad = (-x.shape[-1]) % self.config.patch_size
        if pad:
            x = nn.functional.pad(x, (0, pad))
        tokens = self.embed_norm(self.embed(x).transpose(1, 2))  # (batch, n_patches, d_model)
        n_patches = tokens.shape[1]
        centres = (torch.arange(n_patches, device=x.device, dtype=tokens.dtype) + 0.5) / n_patches
        tokens = tokens + _sinusoidal(centres, self.config.d_model)[None]
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        out = self.norm(self.encoder(tokens))
        return self.head(out[:, 0])


MODELS = {"ResNet1d": ResNet1d, "Transformer1d": Transformer1d}


def model_spec(model: nn.Module) -> dict:
    """What is needed to rebuild ``model``: its class name and config, as plain JSON values."""
    return {"name": type(model).__name__, "config": dataclasses.asdict(model.config)}


def build_model(spec: dict) -> nn.Module:
    """Rebuild a model from :func:`model_spec`'s output."""
    config = dict(spec["config"])
    cls = MODELS[spec["name"]]
    for key, value in config.items():
        if isinstance(value, list):
            config[key] = tuple(value)
    return cls(config.pop("n_classes"), config.pop("in_channels"), **config)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def add_sin2theta_channel(intensity: torch.Tensor, two_theta: torch.Tensor) -> torch.Tensor:
    """Stack sin^2(theta) as a second channel: (batch, n_points) -> (batch, 2, n_points)."""
    sin2 = torch.sin(torch.deg2rad(two_theta.to(intensity)) / 2) ** 2
    return torch.stack([intensity, sin2.expand_as(intensity)], dim=1)
