"""The conditional VAEs, built from one Config.

Gaussian latent (`CVAE`): encoder q(z | x[, y]), decoder p(x | z, y). Two families: the
original conv net (kernels (16, 2) then (8, 1), 32/64 channels, decoder conditioned on the
flattened y) and an MLP. Two output heads: 50x2 free points (the original) or 4 line
endpoints that are monotone by construction.

Categorical latent (`CategoricalCVAE`): the solutions of a condition are a handful of
isolated points in endpoint space, so the latent is a component c in {1..C} with a learned
prior p(c | y) (Sohn et al.'s CVAE with a prior network; a mixture density network in
Bishop's terms). One MLP on y emits every component's monotone line pair and the prior's
logits; the posterior q(c | x, y) is exact (the components' responsibilities, see losses).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .config import Config
from .lines import POINTS, lines_from_endpoints

CONV_LENGTH = POINTS - 16 + 1 - 8 + 1  # rows left after the two convolutions: 28
CONV_FEATURES = 64 * CONV_LENGTH


def condition_inputs(y: torch.Tensor, features: str = "y") -> torch.Tensor:
    """What the network sees of conditions y (B, P, 2): y flattened, and with "y_arccos" also arccos(y)
    rescaled to [-1, 1] (y clamped to [-1, 1] first).

    A fixed, non-learned input transform: for g(a*x0 + b*x1 + c), g in {sin, cos}, arccos(y) is the
    argument's line folded into [0, pi], so each exact solution's endpoints are piecewise linear in these
    inputs, which a ReLU network represents exactly; from y alone it has to approximate arccos, whose
    slope is unbounded where |y| nears 1. The network's output is still the sample: no solver.
    """
    flat = y.flatten(1)
    if features == "y":
        return flat
    return torch.cat([flat, torch.arccos(flat.clamp(-1.0, 1.0)) * (2 / torch.pi) - 1.0], dim=1)


def condition_width(config: Config) -> int:
    """Input features of a condition under config.condition_features."""
    return 2 * POINTS * (2 if config.condition_features == "y_arccos" else 1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    def __init__(self, config: Config, y_features: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, (16, 2)), nn.ReLU(), nn.Conv2d(32, 64, (8, 1)), nn.ReLU(), nn.Flatten()
        )
        self.fc = _mlp([CONV_FEATURES + y_features, config.hidden])

    def forward(self, x, y_flat):
        h = self.conv(x.unsqueeze(1))
        return self.fc(h if y_flat is None else torch.cat([h, y_flat], dim=1))


class ConvDecoder(nn.Module):
    """Mirror of the encoder; emits (B, 100): the 50x2 points, flattened."""

    def __init__(self, config: Config):
        super().__init__()
        self.fc = _mlp([config.latent_dim + condition_width(config), config.hidden, CONV_FEATURES])
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, (8, 1)), nn.ReLU(), nn.ConvTranspose2d(32, 1, (16, 2)), nn.Flatten()
        )
        self.out_features = 2 * POINTS

    def forward(self, zy):
        return self.deconv(self.fc(zy).view(-1, 64, CONV_LENGTH, 1))


class MLPEncoder(nn.Module):
    def __init__(self, config: Config, y_features: int):
        super().__init__()
        self.fc = _mlp([2 * POINTS + y_features] + [config.hidden] * config.depth)

    def forward(self, x, y_flat):
        h = x.flatten(1)
        return self.fc(h if y_flat is None else torch.cat([h, y_flat], dim=1))


class MLPDecoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.fc = _mlp([config.latent_dim + condition_width(config)] + [config.hidden] * config.depth)
        self.out_features = config.hidden

    def forward(self, zy):
        return self.fc(zy)


class PointsHead(nn.Module):
    """Free 50x2 points, as the original; a conv decoder already emits them."""

    def __init__(self, features: int, identity: bool):
        super().__init__()
        self.linear = nn.Identity() if identity else nn.Linear(features, 2 * POINTS)

    def forward(self, h):
        return self.linear(h).view(-1, POINTS, 2)


class LinesHead(nn.Module):
    """Endpoints squashed so x0 descends and x1 ascends inside (0, 1), whatever the weights."""

    def __init__(self, features: int):
        super().__init__()
        self.linear = nn.Linear(features, 4)

    def forward(self, h):
        return lines_from_endpoints(self.endpoints(h))

    def endpoints(self, h):
        return monotone_endpoints(self.linear(h))


def monotone_endpoints(raw: torch.Tensor) -> torch.Tensor:
    """(..., 4) unconstrained values -> endpoints with x0 descending and x1 ascending inside (0, 1)."""
    q = torch.sigmoid(raw)
    x0_start, x1_end = q[..., 0], q[..., 2]
    return torch.stack([x0_start, x0_start * q[..., 1], x1_end * q[..., 3], x1_end], dim=-1)


class CVAE(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        y_features = condition_width(config) if config.encoder_sees_y else 0
        encoder, decoder = (ConvEncoder, ConvDecoder) if config.model == "conv" else (MLPEncoder, MLPDecoder)
        self.encoder = encoder(config, y_features)
        self.to_mu = nn.Linear(config.hidden, config.latent_dim)
        self.to_logvar = nn.Linear(config.hidden, config.latent_dim)
        self.decoder = decoder(config)
        features = self.decoder.out_features
        if config.head == "lines":
            self.head = LinesHead(features)
        else:
            self.head = PointsHead(features, identity=config.model == "conv")

    def encode(self, x, y):
        features = self.config.condition_features
        h = self.encoder(x, condition_inputs(y, features) if self.config.encoder_sees_y else None)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z, y):
        return self.head(self.decoder(torch.cat([z, condition_inputs(y, self.config.condition_features)], dim=1)))

    def forward(self, x, y, generator: torch.Generator | None = None):
        """x_hat, mu, logvar; the reparameterisation noise comes from `generator` for exact resumes."""
        mu, logvar = self.encode(x, y)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode(z, y), mu, logvar


class CategoricalCVAE(nn.Module):
    """p(c | y) and the C components' line endpoints, from one MLP on the flattened y."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.trunk = _mlp([condition_width(config)] + [config.hidden] * config.depth)
        self.to_endpoints = nn.Linear(config.hidden, 4 * config.components)
        self.to_prior = nn.Linear(config.hidden, config.components)

    def forward(self, y):
        """(endpoints (B, C, 4), log p(c | y) (B, C))."""
        h = self.trunk(condition_inputs(y, self.config.condition_features))
        raw = self.to_endpoints(h).view(h.shape[0], self.config.components, 4)
        return monotone_endpoints(raw), torch.log_softmax(self.to_prior(h), dim=-1)


def build_model(config: Config) -> nn.Module:
    return CategoricalCVAE(config) if config.latent == "categorical" else CVAE(config)
