"""Sampling: S solutions per condition, batched over all conditions at once.

Optionally each proposal is refined by Levenberg-Marquardt on its 4 endpoints, and
K > S proposals are drawn so that S valid, spread-out ones can be selected.
"""

from __future__ import annotations

import torch

from .functions import FunctionPair
from .lines import endpoints_from_lines, lines_from_endpoints, uniform_starts
from .losses import component_y_error
from .metrics import VALID_RMSE, validity
from .model import CVAE
from .solve import project, refine

CHUNK = 65536  # rows decoded at once: bounds memory for K = 3000 over many conditions


@torch.no_grad()
def sample(
    model: CVAE,
    y: torch.Tensor,
    samples: int,
    generator=None,
    noise: str = "prior",
    temperature: float = 1.0,
    distinct: bool = False,
    own_prior: bool = True,
    spread: float | None = None,
) -> torch.Tensor:
    """x (N, samples, P, 2) for conditions y (N, P, 2).

    Gaussian latent: noise="prior" draws z ~ N(0, I), the textbook CVAE; "encoder" pushes Gaussian
    noise through the encoder as the original did. temperature scales z's standard deviation
    (> 1 spreads proposals wider than the training posterior).
    Categorical latent: c ~ p(c | y)^(1/T), T = temperature * config.prior_temperature (the network's own
    sharpening, a Config key the search can tune; with `own_prior` False, for proposals that a check or a
    solver will judge, T = temperature alone), drawn independently or, with config.prior_sampling
    "systematic", spread over the components (`systematic`); each sample its component's line pair (the
    decoder's mean, as a Gaussian CVAE's sample is); with `distinct` (proposals to select from) the
    first min(samples, C) are the components in order of prior weight, each once, and any beyond are
    draws from the components' Gaussians (std sigma * temperature, or `spread` in endpoint units when given).
    """
    if model.config.latent == "categorical":
        prior_temperature = temperature * (model.config.prior_temperature if own_prior else 1.0)
        noise_std = model.config.sigma * temperature if spread is None else spread
        return _sample_categorical(model, y, samples, generator, (prior_temperature, noise_std), distinct)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = y.to(device).repeat_interleave(samples, dim=0)
    out = []
    for part in rows.split(CHUNK):
        shape = (part.shape[0], model.config.latent_dim)
        if noise == "encoder":
            fake = torch.randn(part.shape, generator=generator, device=device)
            mu, logvar = model.encode(fake, part)
            eps = torch.randn(shape, generator=generator, device=device)
            z = mu + temperature * eps * torch.exp(0.5 * logvar)
        else:
            z = temperature * torch.randn(shape, generator=generator, device=device)
        out.append(model.decode(z, part))
    model.train(was_training)
    return torch.cat(out).view(y.shape[0], samples, *y.shape[1:])


def _components(model, y: torch.Tensor):
    """Every component's endpoints (N, C, 4) and log prior (N, C), in chunks, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = [model(part) for part in y.to(device).split(CHUNK // model.config.components + 1)]
    model.train(was_training)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def independent(probs: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """n independent draws (N, n) of a component from each row of probs (N, C)."""
    return torch.multinomial(probs, n, replacement=True, generator=generator)


def systematic(probs: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """n draws (N, n) from each row of probs (N, C) by systematic sampling: one uniform offset u per row and
    the points (i + u) / n on the cumulative distribution. Each draw is still distributed as probs, but a
    component of mass p gets floor(n p) or ceil(n p) of them: fewer repeats of the same component than
    independent draws give, so n samples reach more of the components the prior believes in."""
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=probs.dtype)
    points = (torch.arange(n, device=probs.device, dtype=probs.dtype) + u) / n
    cumulative = probs.cumsum(1)
    return torch.searchsorted(cumulative, points.contiguous()).clamp(max=probs.shape[1] - 1)


def _sample_categorical(model, y, samples: int, generator, scales: tuple, distinct: bool) -> torch.Tensor:
    """scales: the prior's temperature, and the extra proposals' noise std in endpoint units."""
    prior_temperature, noise_std = scales
    ends, log_prior = _components(model, y)
    _n, c = log_prior.shape
    first = min(samples, c) if distinct else 0
    picks = [log_prior.argsort(dim=1, descending=True)[:, :first]]
    probs = torch.softmax(log_prior / prior_temperature, dim=1)
    draw = systematic if model.config.prior_sampling == "systematic" else independent
    picks.append(draw(probs, samples - first, generator))
    chosen = ends.gather(1, torch.cat(picks, dim=1).unsqueeze(-1).expand(-1, -1, 4))  # (N, samples, 4)
    if distinct and samples > first:
        # Proposals beyond the C components come from a Gaussian around each component's line pair:
        # copies of the same means would add nothing for a solver or a check to use.
        noise = torch.randn(chosen[:, first:].shape, generator=generator, device=chosen.device)
        extra = project(chosen[:, first:] + noise_std * noise)
        chosen = torch.cat([chosen[:, :first], extra], dim=1)
    return lines_from_endpoints(chosen, y.shape[-2])


@torch.no_grad()
def prior_valid_mass(model, y: torch.Tensor, functions: FunctionPair) -> float:
    """Mean over conditions of the prior mass p(c | y) on components whose recomputed y is valid."""
    ends, log_prior = _components(model, y)
    valid = component_y_error(ends, y.to(ends.device), functions).sqrt() < VALID_RMSE
    return (log_prior.exp() * valid).sum(1).mean().item()


def select(
    x: torch.Tensor, y: torch.Tensor, functions: FunctionPair, samples: int, repeat_valid: bool = True
) -> torch.Tensor:
    """Pick `samples` of K candidates per condition: valid ones first, spread out.

    Greedy farthest-point selection in endpoint space over the valid candidates (the
    lowest-RMSE one first, near-duplicates naturally last). When a condition has fewer
    valid candidates than `samples` but at least one, the valid ones are repeated in
    turn (a repeat costs no coverage, while an invalid sample costs validity and can
    fail the whole result's RMSE gate); with `repeat_valid=False`, or with no valid
    candidate at all, invalid ones fill in, lowest RMSE first.
    """
    n, k = x.shape[:2]
    if k < samples:
        raise ValueError(f"cannot select {samples} samples from {k} proposals; use --proposals >= --samples")
    checks = validity(x, y, functions)
    valid, rmse = checks["valid"].bool(), checks["rmse"].to(x.dtype)
    p = endpoints_from_lines(x)  # (N, K, 4)
    rows = torch.arange(n, device=x.device)
    chosen = torch.zeros(n, k, dtype=torch.bool, device=x.device)
    nearest = 10.0 - rmse  # distance to the chosen set; before any pick it ranks by RMSE
    picks = []
    for _ in range(samples):
        score = torch.where(valid, 100.0 + nearest, -rmse).masked_fill(chosen, float("-inf"))
        index = score.argmax(1)
        picks.append(index)
        chosen[rows, index] = True
        distance = (p - p[rows, index].unsqueeze(1)).abs().amax(-1)
        nearest = torch.minimum(nearest, distance)
    picks = torch.stack(picks, dim=1)  # (N, samples): the valid picks come first
    if repeat_valid:
        n_valid = valid.sum(1, keepdim=True).clamp(max=samples)
        slot = torch.arange(samples, device=x.device).unsqueeze(0)
        cycled = picks.gather(1, slot % n_valid.clamp(min=1))
        picks = torch.where((n_valid > 0) & (slot >= n_valid), cycled, picks)
    return x[rows.unsqueeze(1), picks]


def refine_samples(x: torch.Tensor, y: torch.Tensor, functions: FunctionPair, steps: int) -> torch.Tensor:
    """Samples x (N, K, P, 2) after `steps` Levenberg-Marquardt steps on each one's line endpoints."""
    rows_y = y.to(x.device).repeat_interleave(x.shape[1], dim=0)
    p = refine(endpoints_from_lines(x).flatten(0, 1), rows_y, functions, steps=steps)
    return lines_from_endpoints(p, y.shape[-2]).view(x.shape)


def generate(
    model: CVAE | None,
    y: torch.Tensor,
    functions: FunctionPair,
    samples: int = 30,
    proposals: int | None = None,
    refine_steps: int = 0,
    proposals_from: str = "model",
    generator=None,
    noise: str = "prior",
    temperature: float = 1.0,
    mix: float = 0.5,
    spread: float | None = None,
) -> torch.Tensor:
    """x (N, samples, P, 2): the network alone by default; with refinement and oversampling on request.

    proposals_from="uniform" replaces the network by uniformly random monotone lines:
    the no-learning multi-start baseline through the same code path. "mixed" draws a
    fraction `mix` of the K proposals from the network and the rest uniformly. `spread`: a categorical
    model's proposals beyond its components, their noise std in endpoint units (default sigma * temperature).
    """
    k = proposals or samples
    if proposals_from not in ("model", "uniform", "mixed"):
        raise ValueError(f"proposals_from={proposals_from!r} is not one of model, uniform, mixed")
    k_model = 0 if proposals_from == "uniform" else k if proposals_from == "model" else round(k * mix)
    if k_model > 0 and model is None:
        raise ValueError("generate needs a model unless proposals_from='uniform'")
    parts = []
    if k_model > 0:
        parts.append(
            sample(
                model,
                y,
                k_model,
                generator=generator,
                noise=noise,
                temperature=temperature,
                distinct=k > samples,
                own_prior=k == samples and refine_steps == 0,  # network only: the network's own sampler
                spread=spread,
            )
        )
    if k_model < k:
        n = y.shape[0]
        p = uniform_starts(n * (k - k_model), generator=generator, device=y.device).view(n, k - k_model, 4)
        parts.append(lines_from_endpoints(p.to(y.dtype), y.shape[1]).to(parts[0].device if parts else y.device))
    x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    if refine_steps > 0:
        x = refine_samples(x, y, functions, refine_steps)
    if k > samples:
        x = select(x, y.to(x.device), functions, samples)
    return x
