"""Checks of command-line inputs made before any work starts: each failure is one line.

The scripts call these first, so a wrong device, an output path that is a folder or a model
file that is not one fails in a second instead of after the data is built or a model trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .data import DataFileError, require_torch_file
from .errors import UserError


class InputError(UserError):
    """A command-line value that cannot work; the message names it and the fix."""


def user_path(text) -> Path:
    """A path as a user wrote it, `~` and `~name` expanded; a `~name` of no such user is one InputError."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory"
        raise InputError(f"{text}: no home folder for {str(text).split('/')[0]!r}; write the path out") from None


def positive_numbers(text) -> list[float]:
    """An argparse type: comma-separated finite numbers > 0 (temperatures, scales), else argparse's one-line error."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {part.strip()!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"each must be a finite number > 0, got {part.strip()}")
        values.append(value)
    return values


def number_at_least(kind, minimum=0):
    """An argparse type: a number of `kind` (int or float) no smaller than `minimum`, else argparse's one-line error."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole' if kind is int else 'a'} number, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def available_devices() -> list[str]:
    """The devices this torch build can use here, e.g. ['cpu'] or ['cpu', 'cuda:0', 'cuda:1']."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def check_device(name: str | None, flag: str = "--device") -> None:
    """Refuse a device this torch cannot use (e.g. cuda on a CPU-only build), naming what is available."""
    if name in (None, "auto"):
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(
            f"{flag} {name}: not a device name; use auto or one of {', '.join(available_devices())}"
        ) from None
    available = available_devices()
    if device.type == "cpu":
        return
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count and (device.index is None or device.index < count):
            return
    elif device.type in available:
        return
    build = f"torch {torch.__version__}" + ("" if torch.backends.cuda.is_built() else ", built without CUDA")
    raise InputError(f"{flag} {name}: not available here ({build}); available: {', '.join(available)} (or auto)")


def check_output_file(path, flag: str) -> None:
    """An output file's path must not be a folder, nor lie under a file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; pass a file name such as {path / 'result.pt'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {path}: {parent} is a file, not a folder")
            break


def check_output_folder(path, flag: str) -> None:
    """An output folder's path must not be an existing file (nor lie under one)."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise InputError(f"{flag} {path}: {candidate} is a file, not a folder; pass a folder")
            return


def check_model_file(path, flag: str = "--model") -> None:
    """A model file must exist and be a complete torch file (its contents are checked when loaded)."""
    path = Path(path)
    require_torch_file(path, "the model.pt written by finalize", InputError, label=f"{flag} {path}")


def check_sampling(
    samples: int, proposals: int | None, refine_steps: int, mix: float, temperature: float, spread: float | None = None
) -> None:
    """generate's counts and scales: positive counts, K >= S, --mix a fraction, --temperature and --spread finite."""
    for flag, value in (("--samples", samples), ("--proposals", proposals)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be a positive integer, got {value}")
    if refine_steps < 0:
        raise InputError(f"--refine-steps must be >= 0, got {refine_steps}")
    if proposals is not None and proposals < samples:
        raise InputError(f"--proposals {proposals} is below --samples {samples}; it must be at least as many")
    if not 0.0 <= mix <= 1.0:
        raise InputError(f"--mix {mix:g}: must lie in [0, 1] (the fraction of proposals from the network)")
    if not temperature > 0 or temperature == float("inf"):
        raise InputError(f"--temperature {temperature:g}: must be a finite number > 0 (1 is the prior's scale)")
    if spread is not None and not 0 <= spread < float("inf"):
        raise InputError(f"--spread {spread:g}: must be a finite number >= 0 (a noise std in endpoint units)")


def check_data_files(data, prefix: str = "--") -> None:
    """Read and check a DataSpec's train_file and val_file now, before the training data is built."""
    from .data import load_challenge
    from .lines import POINTS

    for key in ("train_file", "val_file"):
        name = getattr(data, key)
        if not name:
            continue
        x, _ = load_challenge(name)  # DataFileError: missing, unsafe, not a torch file, bad shapes, NaN, empty
        if x.shape[-2] != POINTS:
            flag = f"{prefix}{key.replace('_', '-')}"
            raise InputError(f"{flag} {name}: lines of {x.shape[-2]} points; the model needs {POINTS}")


__all__ = [
    "DataFileError",
    "InputError",
    "available_devices",
    "check_data_files",
    "check_device",
    "check_model_file",
    "check_output_file",
    "check_output_folder",
    "check_sampling",
]
