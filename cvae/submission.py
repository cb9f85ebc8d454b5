"""Judging samples and submission files: the challenge's gates, validity, coverage.

`assess` scores samples x (N, S, P, 2) for conditions y; `read_conditions` and
`group_submission` turn a challenge `.pt` scoring file and a submission's rows into those
tensors; `score_submission` does both for `scripts/score.py`. Finalize's validation and the
scoring script share this code, so their numbers agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .branches import unsolvable
from .data import load_challenge
from .errors import UserError
from .functions import FunctionPair
from .metrics import VALID_RMSE, branches, coverage, evaluate, validity

EXACT_X_RMSE = 1e-3  # a file's x counts as a true solution of its y below this RMSE


class SubmissionError(UserError):
    """A submission that does not fit its scoring file."""


def plain(value):
    """numpy/pandas scalars (also inside dicts and lists) to JSON-friendly Python values; NaN to None."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _percentiles(values: torch.Tensor) -> dict:
    values = values.flatten().double()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return {"median": None, "p90": None, "max": None}
    q = torch.quantile(values, torch.tensor([0.5, 0.9], dtype=values.dtype))
    return {"median": q[0].item(), "p90": q[1].item(), "max": values.max().item()}


def assess(x: torch.Tensor, y: torch.Tensor, functions: FunctionPair, x_true: torch.Tensor | None = None) -> dict:
    """Gates, per-criterion validity, coverage and the search score of samples x (N, S, P, 2).

    Coverage is None where it cannot be measured (functions outside the sin/cos family, or
    conditions without an exact solution); the reason is under coverage_note.
    """
    checks = validity(x, y, functions)
    n, s = checks["valid"].shape
    frac = {k: checks[k].double().mean().item() for k in ("descending", "ascending", "straight")}
    frac["rmse_below_0.1"] = (checks["rmse"] < VALID_RMSE).double().mean().item()
    frac["valid"] = checks["valid_frac"]
    result = {
        "conditions": n,
        "samples_per_condition": s,
        "gates_pass": bool(checks["gates_pass"]),
        "gate_monotone": bool(checks["gate_monotone"]),
        "gate_straight": bool(checks["gate_straight"]),
        "gate_rmse": bool(checks["gate_rmse"]),
        "overall_rmse": plain(float(checks["overall_rmse"])),
        "valid_frac": checks["valid_frac"],
        "per_sample": frac,
        "sample_rmse": _percentiles(checks["rmse"]),
        "coverage": None,
        "coverage_norm": None,
        "branches_median": None,
        "coverage_note": "",
        "per_condition": [{"valid": int(v)} for v in checks["valid"].sum(1).tolist()],
    }
    summary, branch_sets = None, None
    try:
        if functions.trig is not None:
            branch_sets = branches(y, functions, x_true)  # the costly part: once, shared below
        summary = evaluate(x, y, functions, x_true=x_true, branch_sets=branch_sets)
    except ValueError as err:  # y without an exact solution: no branches to count
        result["coverage_note"] = f"coverage not measured: {err}"
    if summary is not None:
        result["score"] = plain(summary["score"])
        result["diversity"] = plain(summary["diversity"])
    if functions.trig is None:
        result["coverage_note"] = (
            f"coverage not measured: {list(functions.texts)} are not both sin/cos(a*x0 + b*x1 + c), "
            "so the exact branches cannot be enumerated (diversity stands in)"
        )
    elif summary is not None:
        cover = coverage(x, y, functions, branch_sets=branch_sets)
        result.update(
            coverage=cover["coverage"],
            coverage_norm=cover["coverage_norm"],
            branches_median=cover["branches_median"],
        )
        for row, count, hits in zip(result["per_condition"], cover["n_branches"].tolist(), cover["hits"].tolist()):
            row.update(branches=int(count), hits=int(hits))
    return result


def exact_x(x: torch.Tensor, y: torch.Tensor, functions: FunctionPair) -> bool:
    """Whether x (N, P, 2) reproduces y exactly enough to serve as the true solutions."""
    if x.shape != y.shape or not torch.isfinite(x).all():
        return False
    error = (functions(x.double()) - y.double()).square().mean((-2, -1)).sqrt()
    return bool((error < EXACT_X_RMSE).all())


# --- submissions: conditions of a scoring file, rows grouped by condition ---


def _runs(y: torch.Tensor, atol: float = 1e-5) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive rows with the same y."""
    if y.shape[0] == 0:
        return []
    change = (y[1:] - y[:-1]).abs().flatten(1).amax(1) > atol
    starts = [0, *(change.nonzero().flatten() + 1).tolist()]
    ends = [*starts[1:], y.shape[0]]
    return [(s, e - s) for s, e in zip(starts, ends)]


@dataclass
class Conditions:
    """The conditions of a scoring file: y (N, P, 2), true x or None, and how they were read."""

    y: torch.Tensor
    x_true: torch.Tensor | None
    note: str


def placeholder_x(x: torch.Tensor) -> bool:
    """Whether a file's x carry no solutions at all (every line constant, e.g. zeros): it has no true x."""
    return bool(((x.amax(-2) - x.amin(-2)).abs() == 0).all())


def check_true_x(path, x: torch.Tensor, y: torch.Tensor, functions: FunctionPair) -> None:
    """Refuse functions under which a scoring file's own x do not give its y (unless it has no true x).

    Scoring with the wrong pair would judge every sample as failed; the file itself shows the mismatch.
    """
    if placeholder_x(x) or exact_x(x, y, functions):
        return
    error = (functions(x.double()) - y.double()).square().mean((-2, -1)).sqrt()
    bad = int((error >= EXACT_X_RMSE).sum())
    raise SubmissionError(
        f"{path}: its x do not reproduce its y under the functions {list(functions.texts)} ({bad} of "
        f"{len(error)} rows off, median RMSE {error.median():.3g}); pass the functions the file was made "
        "with (--functions F1 F2)"
    )


def check_solvable(path, y: torch.Tensor, functions: FunctionPair) -> None:
    """Refuse conditions that the functions cannot have produced (no straight-line pair reproduces them):
    every sample would fail, whatever the generator."""
    rows = unsolvable(y, functions)
    if rows:
        raise SubmissionError(
            f"{path}: {len(rows)} of its conditions have no exact solution under the functions "
            f"{list(functions.texts)} (e.g. conditions {rows[:5]}), so they were not made with them; pass the "
            "functions the file was made with (--functions F1 F2)"
        )


def read_conditions(path, functions: FunctionPair, strict: bool = False) -> Conditions:
    """Conditions from a challenge file: one per row, or one per run if it is itself a submission.

    A submission repeats each condition in consecutive rows; those runs collapse to one
    condition and its x (generated samples) is not a truth. Otherwise x serves as x_true when
    it reproduces y exactly (the official validation set does), else it is ignored.
    """
    x, y = load_challenge(path)
    runs = _runs(y)
    if len(runs) < y.shape[0]:
        lengths = sorted({n for _, n in runs})
        check_solvable(path, y[[s for s, _ in runs]], functions)
        return Conditions(
            y[[s for s, _ in runs]],
            None,
            f"{len(runs)} conditions from a submission's y ({y.shape[0]} rows, runs of "
            f"{'/'.join(map(str, lengths))} repeated rows collapsed); its x are samples, not true solutions",
        )
    if strict:
        check_true_x(path, x, y, functions)
    if exact_x(x, y, functions):
        return Conditions(y, x, f"{y.shape[0]} conditions, one per row; the file's x reproduce y and serve as true x")
    check_solvable(path, y, functions)
    return Conditions(y, None, f"{y.shape[0]} conditions, one per row; the file's x do not reproduce y and are ignored")


def group_submission(x: torch.Tensor, y: torch.Tensor, conditions: torch.Tensor, atol: float = 1e-4) -> torch.Tensor:
    """Samples x (N, S, P, 2) for conditions (N, P, 2) from submission rows (x, y) of shape (R, P, 2).

    Rows in the challenge's order (S consecutive rows per condition, conditions in the scoring
    file's order) are taken as they are; otherwise each run of consecutive rows with one y is
    matched to the condition it repeats. Every condition needs the same number S of rows.
    """
    n, rows = conditions.shape[0], x.shape[0]
    if y.shape[1:] != conditions.shape[1:]:
        raise SubmissionError(
            f"the submission's conditions have shape {tuple(y.shape[1:])}, the scoring file's "
            f"{tuple(conditions.shape[1:])}"
        )
    if rows % n == 0 and rows:
        s = rows // n
        if (y.view(n, s, *y.shape[1:]) - conditions[:, None]).abs().amax().item() <= atol:
            return x.view(n, s, *x.shape[1:])
    runs = _runs(y)
    starts = torch.tensor([start for start, _ in runs])
    first = y[starts].flatten(1).double()
    distance = torch.cdist(first, conditions.flatten(1).double())  # (runs, N)
    nearest = distance.argmin(1)
    gap = (y[starts] - conditions[nearest]).abs().flatten(1).amax(1)
    if (gap > atol).any():
        bad = int((gap > atol).nonzero()[0])
        raise SubmissionError(
            f"submission rows {runs[bad][0]}..{runs[bad][0] + runs[bad][1] - 1} repeat a y that is not a "
            f"condition of the scoring file (max difference {gap[bad]:.3g}); score against the file the "
            "submission was made for"
        )
    members: list[list[int]] = [[] for _ in range(n)]
    for (start, length), target in zip(runs, nearest.tolist()):
        members[target].extend(range(start, start + length))
    counts = [len(m) for m in members]
    missing = [i for i, c in enumerate(counts) if c == 0]
    if missing:
        raise SubmissionError(
            f"the submission has no rows for {len(missing)} of the scoring file's {n} conditions "
            f"(first: condition {missing[0]}); generate it from the same scoring file"
        )
    if len(set(counts)) > 1:
        raise SubmissionError(
            f"conditions have unequal numbers of samples ({min(counts)} to {max(counts)} rows); "
            "a submission has the same number (30) of rows for every condition"
        )
    index = torch.tensor(members)
    return x[index]


def score_submission(path, scoring=None, functions=None, samples_per_condition: int | None = None) -> dict:
    """Assess a submission file against a scoring file (default: the submission's own y).

    A scoring file with one condition per row must have x that its y come from under `functions`
    (or no x at all: constant placeholder lines); `samples_per_condition`, when given, is the
    number of rows each condition must have. Returns assess()'s dict plus `submission`,
    `scoring`, `rows`, `conditions_note`, `functions`.
    """
    if samples_per_condition is not None and samples_per_condition < 1:
        raise SubmissionError(f"--samples must be a positive integer, got {samples_per_condition}")
    functions = FunctionPair(functions) if functions is not None else FunctionPair()
    x, y = load_challenge(path)
    conditions = read_conditions(scoring if scoring is not None else path, functions, strict=True)
    samples = group_submission(x, y, conditions.y)
    if samples_per_condition is not None and samples.shape[1] != samples_per_condition:
        raise SubmissionError(
            f"{path}: {samples.shape[1]} samples per condition, expected {samples_per_condition} (the "
            f"challenge's count); regenerate it with --samples {samples_per_condition}, or pass "
            f"--samples {samples.shape[1]} to score it as it is"
        )
    result = assess(samples, conditions.y, functions, conditions.x_true)
    result.update(
        submission=str(path),
        scoring=str(scoring if scoring is not None else path),
        rows=int(x.shape[0]),
        conditions_note=conditions.note,
        functions=list(functions.texts),
    )
    return result
