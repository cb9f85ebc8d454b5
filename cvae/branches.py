"""Every exact solution of a condition, for functions g(a*x0 + b*x1 + c), g in {sin, cos}.

Along straight lines u = a1*x0 + b1*x1 + c1 and v = a2*x0 + b2*x1 + c2 are straight lines, and
cos(u') = cos(u) along a line forces u' = ±u + 2πk (for sin: u' = u + 2πk or π − u + 2πk). With
[[a1, b1], [a2, b2]] invertible, each choice for u and v is one line pair; those descending/ascending
inside [0, 1] are the branches, the complete solution set (cvae.metrics counts coverage on them,
cvae.data trains on them). Everything is linear, so the work is done on the 4 endpoints.
"""

from __future__ import annotations

import math

import torch

from cvae.functions import FunctionPair, Trig
from cvae.lines import endpoints_from_lines, grid
from cvae.solve import levenberg_marquardt, solve
from cvae.solve import rmse as endpoint_rmse

SEED_RMSE = 1e-3  # a seed solution this close to y is exact up to float32 noise
BOX_TOL = 1e-6  # branches may touch the domain's edges within this
_PHASE_STEP = 0.1  # grid step of the frequency search in the seed fit (radians per line)
_FIT_RETRY_RMSE = 1e-6  # a phase-line fit worse than this tries the small-slope starts
_CHUNK = 256  # conditions per vectorised block in the branch enumeration


def _phase(trig: Trig) -> float:
    """g(u) = cos(u - phase): sin is cos shifted by π/2, so one fit and one rule serve both."""
    return math.pi / 2 if trig.kind == "sin" else 0.0


def _fit_cos_line(target: torch.Tensor, max_slope: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit cos(w_start + (w_end - w_start) t) = target (N, P); returns w_start, w_end (N,).

    A line of phase is determined by the target only up to ±w + 2πk, so the slope is
    searched over [0, max_slope] on a grid (per slope the best phase is a linear
    least-squares fit, done for all conditions by one matmul). That fit degenerates for
    slopes below the grid step, where the phase may also pass through 0 or π (cos is flat
    there and each side is a local minimum). So the grid's start is polished by a 2-parameter
    Levenberg–Marquardt, and where that is not yet exact three more starts join the two end
    values ±arccos(target) without crossing, through 0 and through π; the best is kept.
    Exact targets give exact lines.
    """
    target = target.to(torch.float64)
    t = grid(target.shape[-1], target)
    slopes = torch.arange(0.0, max_slope + 2 * _PHASE_STEP, _PHASE_STEP, dtype=t.dtype, device=t.device)
    cos, sin = torch.cos(slopes[:, None] * t), torch.sin(slopes[:, None] * t)  # (G, P)
    cc, ss, cs = cos.square().sum(-1), sin.square().sum(-1), (cos * sin).sum(-1)
    ridge = 1e-9  # slope 0 makes sin vanish; the ridge keeps the 2x2 system solvable there
    det = (cc + ridge) * (ss + ridge) - cs.square()
    starts, line_slopes = [], []
    for block in target.split(_CHUNK):
        yc, ys = block @ cos.T, block @ sin.T  # (n, G)
        amp_cos = ((ss + ridge) * yc - cs * ys) / det  # target ≈ amp_cos cos(st) + amp_sin sin(st)
        amp_sin = ((cc + ridge) * ys - cs * yc) / det
        alpha = torch.atan2(-amp_sin, amp_cos)
        ca, sa = torch.cos(alpha), torch.sin(alpha)
        # squared error of the unit-amplitude cos(alpha + slope t), from the sums above
        error = ca.square() * cc - 2 * ca * sa * cs + sa.square() * ss - 2 * (ca * yc - sa * ys)
        best = error.argmin(-1)
        starts.append(alpha.gather(-1, best[:, None]).squeeze(-1))
        line_slopes.append(slopes[best])
    alpha, slope, cost = _polish_cos_line(torch.cat(starts), torch.cat(line_slopes), target, t)
    retry = (cost / target.shape[-1]).sqrt() > _FIT_RETRY_RMSE
    if retry.any():
        rest = target[retry]
        first = torch.arccos(rest[:, 0].clamp(-1.0, 1.0))
        last = torch.arccos(rest[:, -1].clamp(-1.0, 1.0))
        ends = torch.stack([last, -last, 2 * math.pi - last])  # no crossing, through 0, through π
        more = _polish_cos_line(first.repeat(3), (ends - first).flatten(), rest.repeat(3, 1), t)
        more_alpha, more_slope, more_cost = (m.view(3, -1) for m in more)
        best = more_cost.argmin(0, keepdim=True)
        better = more_cost.gather(0, best)[0] < cost[retry]
        alpha[retry] = torch.where(better, more_alpha.gather(0, best)[0], alpha[retry])
        slope[retry] = torch.where(better, more_slope.gather(0, best)[0], slope[retry])
    return alpha, alpha + slope


def _polish_cos_line(alpha, slope, target, t, steps: int = 30):
    """Levenberg–Marquardt for cos(alpha + slope t) = target, batched; returns alpha, slope, cost."""

    def residuals(q):
        return torch.cos(q[:, :1] + q[:, 1:] * t) - target

    def jacobian(q):
        phase = q[:, :1] + q[:, 1:] * t
        sin = torch.sin(phase)
        return torch.cos(phase) - target, torch.stack([-sin, -t * sin], dim=-1)

    q = levenberg_marquardt(torch.stack([alpha, slope], dim=-1), residuals, jacobian, steps)
    return q[:, 0], q[:, 1], residuals(q).square().sum(-1)


def _phase_lines_from_endpoints(p: torch.Tensor, trigs: tuple[Trig, Trig]) -> list[tuple]:
    """(w_start, w_end) of both functions' phase lines for endpoints p (N, 4)."""
    x0, x1 = p[:, :2], p[:, 2:]
    lines = []
    for trig in trigs:
        w = trig.a * x0 + trig.b * x1 + trig.c - _phase(trig)
        lines.append((w[:, 0], w[:, 1]))
    return lines


def _seed_phase_lines(y: torch.Tensor, functions: FunctionPair, x_true: torch.Tensor | None) -> list[tuple]:
    """One exact (w_start, w_end) per function and condition; raises if y has no solution."""
    trigs = functions.trig
    y = y.to(torch.float64)
    if x_true is not None:
        p = endpoints_from_lines(x_true.to(device=y.device, dtype=torch.float64))
        bad = endpoint_rmse(p, y, functions) > SEED_RMSE
        if bad.any():
            rows = bad.nonzero().flatten()[:10].tolist()
            raise ValueError(f"x_true does not reproduce y (RMSE > {SEED_RMSE}) for conditions {rows}")
        return _phase_lines_from_endpoints(p, trigs)
    lines, unsolved = _fit_phase_lines(y, functions)
    if unsolved.any():
        rows = unsolved.nonzero().flatten()[:10].tolist()
        raise ValueError(f"found no exact solution (RMSE < {SEED_RMSE}) of y for conditions {rows}")
    return lines


def _fit_phase_lines(y: torch.Tensor, functions: FunctionPair) -> tuple[list[tuple], torch.Tensor]:
    """Each function's phase line fitted to y, the general solver where the fit misses; and the rows that
    have no exact solution at all."""
    trigs = functions.trig
    lines, bad = [], torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
    for k, trig in enumerate(trigs):
        w_start, w_end = _fit_cos_line(y[..., k], abs(trig.a) + abs(trig.b))
        fitted = torch.cos(w_start[:, None] + (w_end - w_start)[:, None] * grid(y.shape[-2], y))
        bad |= (fitted - y[..., k]).square().mean(-1).sqrt() > SEED_RMSE
        lines.append((w_start, w_end))
    unsolved = torch.zeros_like(bad)
    if bad.any():  # e.g. y made from x outside the box: fall back to the general solver
        p, err = solve(y[bad], functions, generator=torch.Generator(device=y.device).manual_seed(0))
        unsolved[bad] = err > SEED_RMSE
        for (w_start, w_end), (ws, we) in zip(lines, _phase_lines_from_endpoints(p.double(), trigs)):
            w_start[bad], w_end[bad] = ws, we
    return lines, unsolved


def unsolvable(y: torch.Tensor, functions: FunctionPair) -> list[int]:
    """Conditions (rows of y) that no straight-line pair reproduces under these sin/cos functions: the
    functions cannot have produced them. Empty for functions outside the family (nothing to tell)."""
    if functions.trig is None or functions.continuum():
        return []
    return _fit_phase_lines(y.to(torch.float64), functions)[1].nonzero().flatten().tolist()


def _phase_candidates(w_start, w_end, trig: Trig):
    """All ±w + 2πk + phase (start, end) inside the box's range of u; (N, C) each plus a mask."""
    reach = abs(trig.a) + abs(trig.b)
    low = trig.c + min(trig.a, 0.0) + min(trig.b, 0.0) - BOX_TOL * reach
    high = trig.c + max(trig.a, 0.0) + max(trig.b, 0.0) + BOX_TOL * reach
    turn = 2 * math.pi
    shift = torch.floor(w_start / turn) * turn  # w_start in [0, 2π) keeps the k range small
    w = torch.stack([w_start - shift, w_end - shift], dim=-1)  # (N, 2)
    span = w.abs().max().item()
    phase = _phase(trig)
    k = torch.arange(
        math.floor((low - phase - span) / turn), math.ceil((high - phase + span) / turn) + 1, device=w.device
    )
    sign = torch.tensor([1.0, -1.0], dtype=w.dtype, device=w.device)
    u = sign[:, None, None] * w[:, None, None, :] + turn * k[:, None].to(w.dtype) + phase  # (N, 2, K, 2)
    u = u.flatten(1, 2)
    inside = ((u >= low) & (u <= high)).all(-1)
    keep = inside.sum(-1).max().item()
    order = inside.to(torch.int8).argsort(dim=-1, descending=True, stable=True)[:, :keep]
    u, inside = u.gather(1, order[..., None].expand(-1, -1, 2)), inside.gather(1, order)
    # a phase line constant at 0 or π is its own mirror image: drop the later copy
    same = (u[:, :, None, :] - u[:, None, :, :]).abs().amax(-1) <= 1e-9 * max(reach, 1.0)
    inside &= ~(same & inside[:, None, :]).tril(diagonal=-1).any(-1)
    return u[..., 0], u[..., 1], inside


def branches(y: torch.Tensor, functions: FunctionPair, x_true: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Every exact solution of each condition y (N, P, 2): a list of N (n_branches, 4) endpoint tensors.

    Needs a trig-family FunctionPair. The seed solution is x_true's (N, P, 2) endpoints when
    given, else a per-function fit of the phase line from y alone (with the multi-start
    solver as fallback). Float64, on y's device; the order within a condition is arbitrary
    but deterministic. On the official validation set a condition has 1 to 42 branches,
    median 13 (a brute-force multi-start search finds no others).
    """
    trigs = functions.trig
    if trigs is None:
        raise ValueError(f"branches need both functions of the form sin/cos(a*x0 + b*x1 + c); got {functions}")
    if functions.continuum():
        raise ValueError(functions.continuum())
    (a1, b1, c1), (a2, b2, c2) = ((t.a, t.b, t.c) for t in trigs)
    det = a1 * b2 - b1 * a2
    (uw_start, uw_end), (vw_start, vw_end) = _seed_phase_lines(y, functions, x_true)
    out = []
    for rows in torch.arange(y.shape[0], device=y.device).split(_CHUNK):
        us, ue, u_ok = _phase_candidates(uw_start[rows], uw_end[rows], trigs[0])
        vs, ve, v_ok = _phase_candidates(vw_start[rows], vw_end[rows], trigs[1])
        u = torch.stack([us, ue], -1)[:, :, None, :] - c1  # (n, Cu, 1, 2): start, end
        v = torch.stack([vs, ve], -1)[:, None, :, :] - c2  # (n, 1, Cv, 2)
        x0 = (b2 * u - b1 * v) / det  # (n, Cu, Cv, 2)
        x1 = (a1 * v - a2 * u) / det
        p = torch.cat([x0, x1], dim=-1)  # (x0 start, x0 end, x1 start, x1 end)
        keep = (
            u_ok[:, :, None]
            & v_ok[:, None, :]
            & ((p >= -BOX_TOL) & (p <= 1 + BOX_TOL)).all(-1)
            & (p[..., 0] - p[..., 1] >= -BOX_TOL)
            & (p[..., 3] - p[..., 2] >= -BOX_TOL)
        )
        keep = keep.flatten(1, 2)
        out.extend(p.flatten(1, 2)[keep].clamp(0.0, 1.0).split(keep.sum(-1).tolist()))
    return out
