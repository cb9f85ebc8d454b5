"""The CVAE loss: beta*KLD + wx*reconstruction(x) + wy*error(f(x_hat), y).

The y-term runs the condition functions on the decoded x in torch, so its gradient
reaches the model (the original computed it in numpy on detached tensors, which
trained nothing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import Config
from .functions import FunctionPair
from .lines import grid, lines_from_endpoints
from .metrics import VALID_RMSE

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


def sigma_at(config: Config, epoch: int) -> float:
    """The categorical components' std: annealed geometrically from sigma_start to sigma over sigma_anneal epochs.

    Wide early, every component is responsible for some data and moves toward a solution; narrow
    later, each is held to the precision the challenge's RMSE gate needs.
    A precision phase (`sigma_final` > 0, `precision_epochs` > 0) narrows it again over the last epochs,
    geometrically from sigma to sigma_final: the components are then held to the endpoint precision the
    challenge's RMSE gate asks of the network's own samples.
    """
    sigma = config.sigma
    if config.sigma_start > config.sigma and config.sigma_anneal > 0:
        progress = min(1.0, epoch / config.sigma_anneal)
        sigma = config.sigma_start * (config.sigma / config.sigma_start) ** progress
    begin = config.epochs - config.precision_epochs
    if config.sigma_final > 0 and config.precision_epochs > 0 and epoch >= begin:
        progress = min(1.0, (epoch - begin + 1) / config.precision_epochs)
        sigma = sigma * (config.sigma_final / sigma) ** progress
    return sigma


def component_y_error(ends: torch.Tensor, y: torch.Tensor, functions: FunctionPair) -> torch.Tensor:
    """Mean squared error of each component's recomputed conditions: ends (B, C, 4), y (B, P, 2) -> (B, C).

    For g(a*x0 + b*x1 + c) functions the argument is linear along a line, so it is computed from the
    endpoints directly (the same values, about half the work of evaluating the 50x2 points).
    """
    trigs = functions.trig
    if trigs is None:
        lines = lines_from_endpoints(ends, y.shape[-2])  # (B, C, P, 2)
        return (functions(lines) - y.unsqueeze(1)).square().mean((-2, -1))
    t = grid(y.shape[-2], ends)
    error = 0.0
    for i, trig in enumerate(trigs):
        start = trig.a * ends[..., 0] + trig.b * ends[..., 2] + trig.c
        end = trig.a * ends[..., 1] + trig.b * ends[..., 3] + trig.c
        phase = torch.addcmul(start.unsqueeze(-1), (end - start).unsqueeze(-1), t)  # (B, C, P)
        g = torch.cos(phase) if trig.kind == "cos" else torch.sin(phase)
        error = error + (g - y[..., i].unsqueeze(1)).square().mean(-1)
    return error / len(trigs)


# The closed form below needs each half step of a phase line between two points below this (radians), far
# from sin's next zero at pi; the official functions reach (49 + 63 + 56) / 49 ... at most 119 / 49 = 2.43.
CLOSED_FORM_HALF_STEP = 2.5


def _mean_cos(start: torch.Tensor, step: torch.Tensor, points: int) -> torch.Tensor:
    """(1/P) * sum over k < P of cos(start + k * step), in closed form (the Dirichlet kernel)."""
    half = step / 2
    small = half.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(half), half)  # no 0/0 in the branch not taken: its gradient is NaN
    ratio = torch.sin(points * safe) / (points * torch.sin(safe))
    kernel = torch.where(small, 1 - (points**2 - 1) * half.square() / 6, ratio)
    return torch.cos(start + (points - 1) * half) * kernel


def closed_form_ok(functions: FunctionPair, points: int) -> bool:
    """Whether `line_y_error` applies: both functions sin/cos of a linear argument, slow enough per point."""
    trigs = functions.trig
    return trigs is not None and all((abs(t.a) + abs(t.b)) / (points - 1) < CLOSED_FORM_HALF_STEP for t in trigs)


def line_y_error(ends: torch.Tensor, truth: torch.Tensor, functions: FunctionPair, points: int) -> torch.Tensor:
    """`component_y_error` for conditions that are exact lines: ends (B, C, 4), truth (B, 4) the endpoints of a
    line reproducing each y -> (B, C), in O(B*C) instead of O(B*C*P).

    Along lines both arguments are linear in the point index, so with cos^2 = (1 + cos 2z) / 2 and
    2 cos a cos b = cos(a - b) + cos(a + b) the mean squared error is a sum of means of cosines of arithmetic
    progressions, each closed form. Most of a y-phase epoch's cost was this error over 50 points (sin is cos
    shifted by pi/2). Needs `closed_form_ok`.
    """
    error = 0.0
    n = points - 1
    for trig in functions.trig:
        shift = trig.c - (math.pi / 2 if trig.kind == "sin" else 0.0)
        start = trig.a * ends[..., 0] + trig.b * ends[..., 2] + shift  # (B, C)
        slope = trig.a * (ends[..., 1] - ends[..., 0]) + trig.b * (ends[..., 3] - ends[..., 2])
        u = (trig.a * truth[:, 0] + trig.b * truth[:, 2] + shift).unsqueeze(1)  # (B, 1): the condition's own line
        s = (trig.a * (truth[:, 1] - truth[:, 0]) + trig.b * (truth[:, 3] - truth[:, 2])).unsqueeze(1)
        squares = 1 + 0.5 * (_mean_cos(2 * start, 2 * slope / n, points) + _mean_cos(2 * u, 2 * s / n, points))
        error = (
            error
            + squares
            - _mean_cos(start - u, (slope - s) / n, points)
            - _mean_cos(start + u, (slope + s) / n, points)
        )
    return (error / len(functions.trig)).clamp_min(0.0)


def wv_at(config: Config, epoch: int) -> float:
    """wv, held at 0 with the y-term for the first `wy_delay` epochs."""
    return 0.0 if epoch < config.wy_delay else config.wv


def categorical_loss(
    ends, log_prior, targets, y, functions: FunctionPair, config: Config, beta, wy, wv, sigma, truth=None
):
    """(total, parts) of the categorical CVAE: beta*KL(q || p) + wx*x-term + wy*y-term + wv*validity.

    targets (B, M, 4): endpoints of each condition's solutions, NaN-padded (M = 1: the drawn line);
    the loss is averaged over a condition's solutions, the expectation of drawing one uniformly.
    q(c | x, y) is the exact posterior, the responsibilities of the components for x under
    Gaussians of std `sigma` in endpoint space (detached: with beta = wx = 1 the loss is then the
    mixture's negative log-likelihood and its gradient). The x-term is the responsible components'
    Gaussian negative log-likelihood; the y-term is each component's y-error weighted by q and by the
    (detached) prior, so the components the data and the sampler use both reproduce y; the validity
    term is the cross-entropy from the components whose y-RMSE is below the challenge's threshold to
    p(c | y), so prior mass leaves the components that do not reproduce y.
    truth (B, 4): endpoints of a line reproducing each y, when known (training data): the components' y-errors
    are then computed in closed form (`line_y_error`), the same values at a fraction of the cost.
    Parts: kld, x_loss (q-weighted mean squared endpoint error), y_loss and prior_valid (the prior's mass on
    valid components; both 0 before the y phase, when the components' y-errors are not computed).
    """
    present = ~targets[..., 0].isnan()  # (B, M)
    weight = present / present.sum(-1, keepdim=True).clamp_min(1)  # each condition's solutions equally
    t = targets.nan_to_num()
    # squared distances (B, M, C) as |t|^2 + |e|^2 - 2 t.e: one batched matmul instead of a (B, M, C, 4) tensor
    distance = torch.baddbmm(
        t.square().sum(-1, keepdim=True) + ends.square().sum(-1).unsqueeze(1), t, ends.transpose(1, 2), alpha=-2
    ).clamp_min(0)
    with torch.no_grad():
        q = torch.softmax(log_prior.unsqueeze(1) - distance / (2 * sigma**2), dim=-1)
    kld_value = ((q * (torch.log(q.clamp_min(1e-30)) - log_prior.unsqueeze(1))).sum(-1) * weight).sum(-1).mean()
    squared = ((q * distance).sum(-1) * weight).sum(-1).mean()
    prior = log_prior.exp()
    loss = beta * kld_value + config.wx * squared / (2 * sigma**2)
    y_loss = torch.zeros((), device=ends.device)
    prior_valid = torch.zeros((), device=ends.device)
    if wy > 0 or wv > 0:  # the y-error of C components per condition is most of an epoch's cost
        y_err = (
            component_y_error(ends, y, functions)
            if truth is None
            else line_y_error(ends, truth, functions, y.shape[-2])
        )
        responsibility = (q * weight.unsqueeze(-1)).sum(1)  # (B, C): the condition's mean q
        y_loss = (0.5 * (responsibility + prior.detach()) * y_err).sum(-1).mean()
        with torch.no_grad():
            valid = (y_err.sqrt() < VALID_RMSE).to(ends.dtype)
            has_valid = valid.sum(-1) > 0
            valid_target = valid / valid.sum(-1, keepdim=True).clamp_min(1.0)
            prior_valid = (prior * valid).sum(-1).mean()
        validity = (-(valid_target * log_prior).sum(-1) * has_valid).sum() / has_valid.sum().clamp_min(1)
        loss = loss + wy * y_loss + wv * validity
    parts = {"kld": kld_value, "x_loss": squared / 4, "y_loss": y_loss, "prior_valid": prior_valid}
    return loss, parts
