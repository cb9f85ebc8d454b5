"""Straight-line pairs as 4 endpoints: the shared currency of model head, solver and metrics.

A solution is x (..., P, 2): x0 a descending line, x1 an ascending line, P points
each. Its endpoints p = (x0_start, x0_end, x1_start, x1_end) say the same in 4 numbers.
"""

from __future__ import annotations

import torch

POINTS = 50


def grid(points: int = POINTS, like: torch.Tensor | None = None) -> torch.Tensor:
    """t = 0..1 in `points` steps, on like's device and dtype."""
    kwargs = {} if like is None else {"device": like.device, "dtype": like.dtype}
    return torch.linspace(0.0, 1.0, points, **kwargs)


def lines_from_endpoints(p: torch.Tensor, points: int = POINTS) -> torch.Tensor:
    """p (..., 4) -> x (..., points, 2); differentiable."""
    t = grid(points, p).unsqueeze(-1)  # (P, 1)
    start = p[..., [0, 2]].unsqueeze(-2)  # (..., 1, 2)
    end = p[..., [1, 3]].unsqueeze(-2)
    return start + (end - start) * t


def endpoints_from_lines(x: torch.Tensor) -> torch.Tensor:
    """Least-squares straight-line fit of x (..., P, 2) -> endpoints (..., 4).

    Exact for exact lines; for a noisy network output it is the closest line pair.
    """
    t = grid(x.shape[-2], x)
    tc = t - t.mean()
    slope = (x * tc.unsqueeze(-1)).sum(-2) / (tc * tc).sum()  # (..., 2)
    mid = x.mean(-2)
    start = mid - slope * t.mean()
    end = start + slope
    return torch.stack([start[..., 0], end[..., 0], start[..., 1], end[..., 1]], dim=-1)


def uniform_starts(n: int, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """n uniformly random line pairs in [0, 1]: x0 descending, x1 ascending, as endpoints (n, 4): the solver's
    no-learning starts and the synthetic data's "uniform" lines."""
    u = torch.rand(n, 4, generator=generator, device=device, dtype=dtype)
    x0 = u[:, :2].sort(dim=-1, descending=True).values
    x1 = u[:, 2:].sort(dim=-1).values
    return torch.cat([x0, x1], dim=-1)
