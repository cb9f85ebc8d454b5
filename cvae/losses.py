"""The CVAE loss: beta*KLD + wx*reconstruction(x) + wy*error(f(x_hat), y).

The y-term runs the condition functions on the decoded x in torch, so its gradient
reaches the model (the original computed it in numpy on detached tensors, which
trained nothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import Config
from .functions import FunctionPair

RECONSTRUCTION = {"huber": F.huber_loss, "l1": F.l1_loss, "mse": F.mse_loss}


def kld(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """-0.5 * sum(1 + logvar - mu^2 - exp(logvar)) per sample, averaged over the batch.

    With free_bits > 0 each latent dimension's batch-mean KLD is floored at that value,
    so the optimiser gains nothing by collapsing it below (free bits, Kingma et al. 2016).
    """
    per_dim = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    if free_bits > 0:
        return per_dim.mean(0).clamp(min=free_bits).sum()
    return per_dim.sum(1).mean()


def reconstruction(x_hat: torch.Tensor, x: torch.Tensor, kind: str = "huber") -> torch.Tensor:
    return RECONSTRUCTION[kind](x_hat, x)


def y_error(x_hat: torch.Tensor, y: torch.Tensor, functions: FunctionPair) -> torch.Tensor:
    """Mean squared error of the conditions recomputed from x_hat against the given y."""
    return F.mse_loss(functions(x_hat), y)


def beta_at(config: Config, epoch: int) -> float:
    """beta, ramped linearly over the first `beta_warmup` epochs (0-based epoch)."""
    if config.beta_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, (epoch + 1) / config.beta_warmup)


def wy_at(config: Config, epoch: int) -> float:
    """wy, held at 0 for the first `wy_delay` epochs (0-based epoch).

    The y-term pulls every decoded line to its nearest local minimum of |f(x) - y|; switched on
    only after the latent has learnt to spread samples over the solutions, it polishes them
    instead of collapsing them onto one.
    """
    return 0.0 if epoch < config.wy_delay else config.wy


def cvae_loss(x_hat, x, y, mu, logvar, functions: FunctionPair, config: Config, beta: float, wy: float | None = None):
    """(total, parts): parts are the unweighted kld, x_loss, y_loss tensors; wy defaults to config.wy."""
    parts = {
        "kld": kld(mu, logvar, config.free_bits),
        "x_loss": reconstruction(x_hat, x, config.recon),
        "y_loss": y_error(x_hat, y, functions),
    }
    wy = config.wy if wy is None else wy
    total = beta * parts["kld"] + config.wx * parts["x_loss"] + wy * parts["y_loss"]
    return total, parts
