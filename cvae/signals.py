"""Failure signals of a conditional generative model, measured on the validation batch already scored.

A single score hides how a generative model fails; these name the ways it does:

- a collapsed prior: the categorical latent's p(c | y) puts its mass on one or two components
  (`prior_entropy` in nats, and `prior_components` = exp(entropy), the effective number of components);
- a collapsed posterior: a Gaussian latent whose KL to the prior is near zero in every dimension
  (`kl_per_dim`, the mean over dimensions, and `kl_max_dim`, the largest: the decoder ignores z when even
  that is near zero);
- a decoder that ignores its condition: its samples fit the other conditions as well as their own
  (`condition_gap`: the samples' RMSE of f(x) against the other conditions minus that against their own, and
  its standard error over the conditions, `condition_gap_se`: with few conditions the gap is mostly noise).

Each costs one small forward pass or one evaluation of f on samples the trainer drew anyway; deciding
what counts as a failure is the search's business (search/trials.py), not the model library's.
"""

from __future__ import annotations

import math

import torch

from .functions import FunctionPair


def condition_gap(x: torch.Tensor, y: torch.Tensor, functions: FunctionPair) -> tuple[float, float]:
    """How much better the samples fit their own condition than the others (about 0 when they ignore y), and
    that mean's standard error over the conditions (NaN with fewer than two).

    x (N, S, P, 2) samples of conditions y (N, P, 2). A sample's error against a condition is the RMSE of
    f(x) against it, the challenge's own measure; against the others it is the mean over every other
    condition of the batch, which keeps the gap's noise low.
    """
    n = y.shape[0]
    if n < 2:
        return math.nan, math.nan
    fx = functions(x.to(torch.float64))  # (N, S, P, 2)
    y = y.to(device=fx.device, dtype=torch.float64)
    # errors[i, s, j]: sample s of condition i against condition j, one condition at a time (memory stays N*S*P)
    errors = torch.stack([(fx - y[j]).square().mean((-2, -1)).sqrt() for j in range(n)], dim=-1)
    own = errors.diagonal(dim1=0, dim2=2).T  # (N, S)
    others = (errors.sum(-1) - own) / (n - 1)
    per_condition = (others - own).mean(1)
    per_condition = per_condition[per_condition.isfinite()]
    if per_condition.numel() < 2:
        return math.nan, math.nan
    return per_condition.mean().item(), (per_condition.std() / math.sqrt(per_condition.numel())).item()


@torch.no_grad()
def prior_entropy(log_prior: torch.Tensor) -> float:
    """Mean entropy (nats) over conditions of p(c | y), from its log (N, C)."""
    return -(log_prior.exp() * log_prior).nansum(-1).mean().item()


@torch.no_grad()
def latent_kl(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KL(q(z | x, y) || N(0, I)) per latent dimension (D,), averaged over the batch."""
    was_training = model.training
    model.eval()
    mu, logvar = model.encode(x, y)
    model.train(was_training)
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp())).mean(0)


@torch.no_grad()
def failure_signals(model, val: tuple, samples: torch.Tensor, functions: FunctionPair) -> dict[str, float]:
    """The signals of one validation pass: `val` = (x_val, y_val), `samples` the (N, S, P, 2) drawn for y_val."""
    x_val, y_val = val
    gap, gap_se = condition_gap(samples, y_val, functions)
    signals = {"condition_gap": gap, "condition_gap_se": gap_se}
    if model.config.latent == "categorical":
        was_training = model.training
        model.eval()
        _ends, log_prior = model(y_val)
        model.train(was_training)
        entropy = prior_entropy(log_prior)
        signals.update(prior_entropy=entropy, prior_components=math.exp(entropy))
    else:
        kl = latent_kl(model, x_val, y_val)
        signals.update(kl_per_dim=kl.mean().item(), kl_max_dim=kl.max().item())
    return signals
