"""Sampling: S solutions per condition, batched over all conditions at once.

Optionally each proposal is refined by Levenberg-Marquardt on its 4 endpoints, and
K > S proposals are drawn so that S valid, spread-out ones can be selected.
"""

from __future__ import annotations

import torch

from .functions import FunctionPair
from .lines import endpoints_from_lines, lines_from_endpoints
from .metrics import validity
from .model import CVAE
from .solve import refine, uniform_starts

CHUNK = 65536  # rows decoded at once: bounds memory for K = 3000 over many conditions


@torch.no_grad()
def sample(model: CVAE, y: torch.Tensor, samples: int, generator=None, noise: str = "prior") -> torch.Tensor:
    """x (N, samples, P, 2) for conditions y (N, P, 2).

    noise="prior" draws z ~ N(0, I), the textbook CVAE; "encoder" pushes Gaussian noise
    through the encoder as the original did.
    """
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
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z = torch.randn(shape, generator=generator, device=device)
        out.append(model.decode(z, part))
    model.train(was_training)
    return torch.cat(out).view(y.shape[0], samples, *y.shape[1:])


def select(x: torch.Tensor, y: torch.Tensor, functions: FunctionPair, samples: int) -> torch.Tensor:
    """Pick `samples` of K candidates per condition: valid ones first, spread out.

    Greedy farthest-point selection in endpoint space over the valid candidates (the
    lowest-RMSE one first, near-duplicates naturally last); only when a condition has
    fewer valid candidates than `samples` do invalid ones fill in, lowest RMSE first.
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
    return x[rows.unsqueeze(1), torch.stack(picks, dim=1)]


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
) -> torch.Tensor:
    """x (N, samples, P, 2): the network alone by default; with refinement and oversampling on request.

    proposals_from="uniform" replaces the network by uniformly random monotone lines:
    the no-learning multi-start baseline through the same code path.
    """
    k = proposals or samples
    if proposals_from == "uniform":
        device = y.device
        p = uniform_starts(y.shape[0] * k, generator=generator, device=device).view(y.shape[0], k, 4)
        x = lines_from_endpoints(p.to(y.dtype), y.shape[1])
    elif model is None:
        raise ValueError("generate needs a model unless proposals_from='uniform'")
    else:
        x = sample(model, y, k, generator=generator, noise=noise)
    if refine_steps > 0:
        rows_y = y.to(x.device).repeat_interleave(k, dim=0)
        p = refine(endpoints_from_lines(x).flatten(0, 1), rows_y, functions, steps=refine_steps)
        x = lines_from_endpoints(p, y.shape[1]).view(x.shape)
    if k > samples:
        x = select(x, y.to(x.device), functions, samples)
    return x
