"""Data: synthetic training lines, the challenge's `.pt` files (loaded safely), submissions.

Everything is held as tensors: x (N, 50, 2) lines and y (N, 50, 2) conditions.
The challenge's files store both as (N, 1, 50, 2) inside a `TensorDataset`.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Literal, get_args

import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from .branches import branches
from .config import Int, Model
from .errors import UserError, first_line
from .functions import FunctionPair
from .lines import POINTS, endpoints_from_lines, lines_from_endpoints, uniform_starts

LOW, HIGH = 0.1, 1.0


class DataFileError(UserError):
    """A data file that is missing, unsafe or malformed."""


Lines = Literal["official", "uniform"]
LINE_DISTRIBUTIONS = get_args(Lines)


def synthetic_lines(n: int, seed: int = 0, points: int = POINTS, distribution: str = "official") -> torch.Tensor:
    """n exact line pairs, as x (n, points, 2).

    "official" is fitted to the official validation set: x0's end ~ U(0.1, 1) and its start
    ~ U(end, 1); x1's start ~ U(0.1, 1) and its end ~ U(start, 1), independent of x0 (KS < 0.02
    per endpoint). "uniform" draws monotone lines uniformly over the whole box [0, 1], the
    domain the coverage metric counts branches in: a CVAE trained on it has seen solutions
    with endpoints below 0.1 too, which official-like data never shows it.
    """
    if n < 1:
        raise ValueError(f"synthetic data needs n >= 1 rows, got {n}")
    if distribution not in LINE_DISTRIBUTIONS:
        raise ValueError(f"unknown line distribution {distribution!r}; use one of {', '.join(LINE_DISTRIBUTIONS)}")
    g = torch.Generator().manual_seed(seed)
    if distribution == "uniform":
        return lines_from_endpoints(uniform_starts(n, generator=g, dtype=torch.float64), points).float()
    u = torch.rand(n, 4, generator=g, dtype=torch.float64)
    x0_end = LOW + (HIGH - LOW) * u[:, 0]
    x0_start = x0_end + (HIGH - x0_end) * u[:, 1]
    x1_start = LOW + (HIGH - LOW) * u[:, 2]
    x1_end = x1_start + (HIGH - x1_start) * u[:, 3]
    p = torch.stack([x0_start, x0_end, x1_start, x1_end], dim=-1)
    return lines_from_endpoints(p, points).float()


def make_dataset(
    n: int, functions: FunctionPair, seed: int = 0, distribution: str = "official"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic (x, y) with y = functions(x), computed in float64 then stored as float32."""
    x = synthetic_lines(n, seed, distribution=distribution)
    return x, functions(x.double()).float()


XTargets = Literal["given", "uniform_branch", "all_branches"]


def branch_targets(x: torch.Tensor, y: torch.Tensor, functions: FunctionPair, exact: bool = True) -> torch.Tensor:
    """Every exact solution of each row's y as float64 endpoints (N, M, 4), padded with NaN.

    A row whose solutions cannot be enumerated keeps its own line as its one target. Needs sin/cos
    functions; `exact`: x reproduces y, so it seeds the enumeration.
    """
    try:
        sets = branches(y, functions, x_true=x if exact else None)
    except ValueError as err:
        raise ValueError(f"data x_targets=uniform_branch or all_branches needs enumerable solutions: {err}") from None
    own = endpoints_from_lines(x).double()
    sets = [b if len(b) else own[i : i + 1] for i, b in enumerate(sets)]
    width = max(len(b) for b in sets)
    padded = torch.full((len(sets), width, 4), float("nan"), dtype=torch.float64)
    for i, b in enumerate(sets):
        padded[i, : len(b)] = b
    return padded  # float64: a drawn target's line is computed before rounding, as the enumeration gives it


def uniform_branch_targets(
    x: torch.Tensor, y: torch.Tensor, functions: FunctionPair, seed: int = 0, exact: bool = True, solutions=None
) -> torch.Tensor:
    """x with each row replaced by one exact solution of its y, drawn uniformly over all of them.

    Drawn lines weight a condition's solutions by how likely the line was, so a CVAE learns to
    propose the popular ones and rarely the rest; drawn uniformly over the branches, it learns
    to propose each equally often, which is what coverage rewards. Needs sin/cos functions
    (the branches are enumerated exactly). `exact`: x reproduces y, so it seeds the enumeration;
    `solutions`: branch_targets' result, when already computed.
    """
    if solutions is None:
        solutions = branch_targets(x, y, functions, exact)
    counts = (~solutions[..., 0].isnan()).sum(1)
    g = torch.Generator().manual_seed(seed)
    draw = (torch.rand(len(counts), generator=g, dtype=torch.float64) * counts).long()
    picks = solutions[torch.arange(len(counts)), draw].double()
    return lines_from_endpoints(picks, x.shape[-2]).to(x.dtype)


def torch_file_problem(path) -> str | None:
    """Why `path` cannot be a torch.save file, judged from its bytes alone (None: it looks like one).

    torch.save writes a zip archive (or, before torch 1.6, a pickle stream); anything else is
    refused before torch.load sees it, so random bytes or a truncated copy get a plain reason.
    """
    path = Path(path)
    if path.is_dir():
        return "a folder, not a file"
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return None if zipfile.is_zipfile(path) else "a damaged or truncated torch file (its zip archive is incomplete)"
    if head[:1] == b"\x80":  # the legacy (pre-1.6) format: a pickle stream
        return None
    return "not a torch file (torch.save writes a zip archive; these bytes are not one)" if head else "an empty file"


def _check(name: str, tensor, path) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise DataFileError(f"{path}: {name} is {type(tensor).__name__}, expected a tensor")
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.dim() != 3 or tensor.shape[-1] != 2 or tensor.shape[1] < 2:
        raise DataFileError(f"{path}: {name} has shape {tuple(tensor.shape)}, expected (N, 1, P, 2) or (N, P, 2)")
    if tensor.shape[0] == 0:
        raise DataFileError(f"{path}: {name} has no rows (shape {tuple(tensor.shape)}); the file is empty")
    if not torch.isfinite(tensor).all():
        raise DataFileError(f"{path}: {name} contains NaN or inf; clean the file or regenerate it")
    return tensor.float()


def require_torch_file(path: Path, what: str, error: type[UserError] = DataFileError, label: str = "") -> None:
    """A file given by a user must exist and be a complete torch file; else one line naming `what` to pass."""
    label = label or str(path)
    if not path.exists():
        raise error(f"{label}: no such file; pass {what}")
    problem = torch_file_problem(path)
    if problem:
        raise error(f"{label}: {problem}; pass {what}")


def load_challenge(path) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from a challenge `.pt` file, never unpickling anything but tensors.

    Accepts a TensorDataset(x, y), a list of (x, y) pairs or a {"x", "y"} dict.
    `weights_only=True` plus an allow-list of TensorDataset keeps a malicious file
    from running code.
    """
    path = Path(path)
    require_torch_file(path, "the path of a challenge .pt file")
    try:
        with torch.serialization.safe_globals([TensorDataset]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the outcome says enough
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests turning the safety off, i.e. running the file's code: name the culprit only.
        culprit = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" ({culprit.group(1)})" if culprit else ""
        raise DataFileError(
            f"{path}: refused to load, it holds objects outside the allow-list of tensors and TensorDataset{what}"
        ) from None
    except (RuntimeError, EOFError, OSError, IndexError, ValueError) as err:
        first = first_line(err)
        raise DataFileError(f"{path}: not a readable torch file ({type(err).__name__}: {first})") from None
    if isinstance(obj, TensorDataset) and len(obj.tensors) == 2:
        x, y = obj.tensors
    elif isinstance(obj, dict) and {"x", "y"} <= obj.keys():
        x, y = obj["x"], obj["y"]
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(r, (list, tuple)) and len(r) == 2 for r in obj):
        try:
            x = torch.stack([torch.as_tensor(r[0]).reshape(-1, 2) for r in obj])
            y = torch.stack([torch.as_tensor(r[1]).reshape(-1, 2) for r in obj])
        except (RuntimeError, TypeError) as err:
            raise DataFileError(f"{path}: (x, y) pairs of unequal or bad shapes ({err})") from None
    else:
        raise DataFileError(
            f"{path}: holds a {type(obj).__name__}; expected TensorDataset(x, y), a list of (x, y) pairs "
            "or a dict with 'x' and 'y'"
        )
    x, y = _check("x", x, path), _check("y", y, path)
    if x.shape != y.shape:
        raise DataFileError(f"{path}: x {tuple(x.shape)} and y {tuple(y.shape)} differ in shape")
    return x, y


def save_submission(path, x: torch.Tensor, y: torch.Tensor) -> Path:
    """Write samples x (N, S, P, 2) for conditions y (N, P, 2) in the challenge's format.

    Rows of one condition are consecutive and y repeats the GIVEN condition
    (the scorer recomputes y from x itself).
    """
    if x.dim() != 4 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[1:]:
        raise ValueError(f"expected x (N, S, P, 2) and y (N, P, 2), got {tuple(x.shape)} and {tuple(y.shape)}")
    n, s, p, _ = x.shape
    rows_x = x.detach().float().cpu().reshape(n * s, 1, p, 2).contiguous()
    rows_y = y.detach().float().cpu().repeat_interleave(s, dim=0).reshape(n * s, 1, p, 2).contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(TensorDataset(rows_x, rows_y), path)
    return path


class DataSpec(Model):
    """Where training and validation data come from; the `data:` section of a search file."""

    train_size: Int = Field(20000, gt=0)
    val_conditions: Int = Field(50, gt=0)
    seed: Int = 0
    train_file: str | None = None  # a challenge .pt file instead of synthetic lines
    val_file: str | None = None  # e.g. the official validation_dataset.pt
    lines: Lines = "official"  # synthetic training lines: "official"-like or "uniform" over [0, 1]
    x_targets: XTargets = "given"  # or "uniform_branch": train on a uniformly drawn solution of each y

    def build(self, functions) -> tuple[tuple, tuple]:
        """((x_train, y_train), (x_val, y_val)) for a Config's functions (or a FunctionPair, or the two
        texts); synthetic validation uses a seed disjoint from training."""
        functions = FunctionPair.of(functions)
        if self.train_file:
            train = load_challenge(self.train_file)
            train = (train[0][: self.train_size], train[1][: self.train_size])
        else:
            train = make_dataset(self.train_size, functions, self.seed, self.lines)
        if self.x_targets in ("uniform_branch", "all_branches"):
            solutions = branch_targets(*train, functions, exact=not self.train_file)
            x = uniform_branch_targets(*train, functions, self.seed, solutions=solutions)
            # all_branches keeps every solution too: the categorical latent's loss averages over them
            train = (x, train[1], solutions.float()) if self.x_targets == "all_branches" else (x, train[1])
        if self.val_file:
            x, y = load_challenge(self.val_file)
            val = (x[: self.val_conditions], y[: self.val_conditions])
        else:
            val = make_dataset(self.val_conditions, functions, self.seed + 1_000_003)
        return train, val
