"""The training loop: epoch by epoch, seeded, device-agnostic, resumable bit for bit.

The whole dataset lives on the device as two tensors and batches are index slices
of a seeded permutation: no DataLoader, no per-item Python objects. All training
randomness (shuffling, reparameterisation noise) comes from one generator whose
state is checkpointed, so a restored run continues exactly as an unbroken one.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .config import Config
from .errors import UserError, first_line
from .functions import FunctionPair
from .inputs import available_devices
from .lines import endpoints_from_lines
from .losses import beta_at, categorical_loss, closed_form_ok, cvae_loss, sigma_at, wv_at, wy_at
from .metrics import branches, evaluate
from .model import build_model
from .sampling import prior_valid_mass, refine_samples, sample
from .signals import condition_gap, failure_signals

OPTIMIZERS = {"Adam": torch.optim.Adam, "RMSprop": torch.optim.RMSprop, "SGD": torch.optim.SGD}


def pick_device(name: str | None = None) -> torch.device:
    """'auto' (or None) takes cuda, then mps, then cpu (cvae.inputs.available_devices probes them)."""
    if name not in (None, "auto"):
        return torch.device(name)
    found = available_devices()
    return torch.device(next((d.split(":")[0] for d in found if d.startswith("cuda")), found[-1]))


def lr_at(config: Config, epoch: int) -> float:
    """The learning rate of a 0-based epoch: constant, or cosine-decayed over config.epochs (a pure function
    of the epoch, so a resumed run continues the same schedule)."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(epoch, config.epochs) / config.epochs))
    return config.lr


EXACT_RMSE = 1e-4  # lines whose recomputed y is this close to the given y count as exact (float32 rounding)


def exact_endpoints(x: torch.Tensor, y: torch.Tensor, functions: FunctionPair) -> torch.Tensor | None:
    """Endpoints (N, 4) of the lines x when every one reproduces its y and `line_y_error` applies; else None."""
    if not closed_form_ok(functions, x.shape[-2]):
        return None
    error = (functions(x) - y).square().mean((-2, -1)).sqrt()
    return endpoints_from_lines(x) if bool((error < EXACT_RMSE).all()) else None


class Trainer:
    """Trains one CVAE configuration on (x, y) tensors and validates it every epoch."""

    def __init__(self, config: Config, train: tuple, val: tuple | None = None, device=None):
        self.config = config
        self.device = pick_device(device)
        self.functions = FunctionPair(config.functions)
        with torch.random.fork_rng(devices=[]):  # initial weights from config.seed; the caller's RNG untouched
            torch.manual_seed(config.seed)
            self.model = build_model(config)
        self.model = self.model.to(self.device)
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.x, self.y = (t.to(self.device, torch.float32) for t in train[:2])
        # every solution of each condition (N, M, 4), NaN-padded, when the data has them (all_branches)
        self.solutions = train[2].to(self.device, torch.float32) if len(train) > 2 else None
        # endpoints of the lines when they reproduce y: the categorical loss's y-errors then take a closed form
        self.truth = exact_endpoints(self.x, self.y, self.functions) if config.latent == "categorical" else None
        self.val = None if val is None else tuple(t.to(self.device, torch.float32) for t in val[:2])
        self._val_branches = None  # enumerated on first validation, then reused every epoch
        self._categorical_loss = categorical_loss  # compile_loss() swaps in a compiled one
        self.epoch = 0
        self.history: list[dict] = []
        self.status = "new"

    def train_epoch(self) -> dict:
        """One pass over the data; returns the mean total loss and its unweighted parts."""
        self.model.train()
        n, size = self.x.shape[0], self.config.batch_size
        config, epoch = self.config, self.epoch
        beta, wy = beta_at(config, epoch), wy_at(config, epoch)
        categorical = config.latent == "categorical"
        wv, sigma = wv_at(config, epoch), sigma_at(config, epoch)
        # the training prior_valid exists only in the y phase, where the components' y-errors are computed
        keys = ("loss", "kld", "x_loss", "y_loss", *(("prior_valid",) if categorical and (wy or wv) else ()))
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(config, epoch)
        order = torch.randperm(n, generator=self.generator, device=self.device)
        sums = torch.zeros(len(keys), device=self.device)
        for start in range(0, n, size):
            index = order[start : start + size]
            x, y = self.x[index], self.y[index]
            if categorical:
                ends, log_prior = self.model(y)
                targets = endpoints_from_lines(x).unsqueeze(1) if self.solutions is None else self.solutions[index]
                truth = None if self.truth is None else self.truth[index]
                total, parts = self._categorical_loss(
                    ends, log_prior, targets, y, self.functions, config, beta, wy, wv, sigma, truth
                )
            else:
                x_hat, mu, logvar = self.model(x, y, generator=self.generator)
                total, parts = cvae_loss(x_hat, x, y, mu, logvar, self.functions, config, beta, wy)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            sums += torch.stack([total, *(parts[k] for k in keys[1:])]).detach() * len(index)
        means = (sums / n).tolist()  # the epoch's only host-device sync
        row = dict(zip(keys, means))
        if categorical:
            row["sigma"] = sigma
        return row

    def compile_loss(self) -> str | None:
        """Compile the categorical loss with torch.compile (its elementwise y-errors fuse into a few loops, most
        of a y-phase step on a CPU) and compile it now, so no epoch's time includes it. Both of the loss's
        graphs (before and after the y phase starts) are built on a few rows: forward and backward, gradients
        dropped, no step taken. Returns None, or why training stays eager (no C++ compiler, an unsupported
        device): the eager loss is kept and training is as without it."""
        if self.config.latent != "categorical":
            return "torch.compile is used for the categorical family only"
        config = self.config
        compiled = torch.compile(categorical_loss, dynamic=True)
        # A few rows, copied as an epoch's batches are (a view's guards fail on a copy), and as many as no other
        # dimension (torch.compile would take the two as equal and build again for the real batches)
        taken = {config.components, 4, *self.x.shape[1:], *self.y.shape[1:], *getattr(self.solutions, "shape", ())[1:]}
        count = next(n for n in range(8, 1000) if n not in taken)
        rows = torch.arange(min(count, self.x.shape[0]), device=self.device)
        x, y = self.x[rows], self.y[rows]
        targets = endpoints_from_lines(x).unsqueeze(1) if self.solutions is None else self.solutions[rows]
        truth = None if self.truth is None else self.truth[rows]
        phases = {(wy_at(config, e), wv_at(config, e)) for e in range(min(config.wy_delay, config.epochs - 1) + 1)}
        try:
            for wy, wv in phases:  # the weights the epochs will use: the graphs they need, no more
                ends, log_prior = self.model(y)
                total, _ = compiled(ends, log_prior, targets, y, self.functions, config, 1.0, wy, wv, 0.01, truth)
                total.backward()
        except Exception as err:  # any backend failure: keep training, eagerly
            return f"torch.compile failed ({first_line(err)}); training without it"
        finally:
            self.optimizer.zero_grad(set_to_none=True)
        self._categorical_loss = compiled
        return None

    def validate(self) -> dict:
        """Challenge metrics of `val_samples` samples per held-out condition (fixed noise)."""
        if self.val is None:
            return {}
        generator = torch.Generator(self.device).manual_seed(self.config.seed + 1)
        x_val, y_val = self.val
        if self._val_branches is None and self.functions.trig is not None:
            self._val_branches = branches(y_val.cpu(), self.functions, x_true=x_val.cpu())
        x = sample(self.model, y_val, self.config.val_samples, generator, self.config.noise)
        metrics = evaluate(x.cpu(), y_val.cpu(), self.functions, branch_sets=self._val_branches)
        row = {f"val_{k}": v for k, v in metrics.items()}
        # how the model fails, if it does (cvae/signals.py): the search may stop a trial on them
        signals = failure_signals(self.model, self.val, x, self.functions)
        row.update({f"val_{k}": v for k, v in signals.items()})
        if self.config.latent == "categorical":
            row["val_prior_valid"] = prior_valid_mass(self.model, y_val, self.functions)
        if self.config.val_refine_steps > 0:
            # The same samples as proposals, refined: how good a start distribution the model is.
            refined = refine_samples(x, y_val, self.functions, self.config.val_refine_steps)
            metrics = evaluate(refined.cpu(), y_val.cpu(), self.functions, branch_sets=self._val_branches)
            row.update({f"val_refined_{k}": v for k, v in metrics.items()})
            gap, gap_se = condition_gap(refined, y_val, self.functions)  # does the refined set still depend on y
            row.update(val_refined_condition_gap=gap, val_refined_condition_gap_se=gap_se)
        return row

    def fit(self, epochs: int | None = None, callback: Callable[[dict], bool | None] | None = None) -> dict:
        """Train up to `epochs` (default config.epochs); `callback(row)` after each epoch may return True to stop.

        A non-finite loss ends the run with status "diverged" and loss inf, never NaN.
        """
        epochs = self.config.epochs if epochs is None else epochs
        self.status = "running"
        while self.epoch < epochs:
            started, cpu_started = time.perf_counter(), time.process_time()
            row = self.train_epoch()
            self.epoch += 1
            diverged = not all(math.isfinite(v) for v in row.values())
            if diverged:
                row = {k: (v if math.isfinite(v) else float("inf")) for k, v in row.items()}
                row["loss"] = float("inf")
            else:
                row.update(self.validate())
            # cpu_seconds (this process's CPU time) < seconds means the epoch waited for a core.
            row.update(
                epoch=self.epoch,
                seconds=time.perf_counter() - started,
                cpu_seconds=time.process_time() - cpu_started,
                samples=self.x.shape[0],
            )
            self.history.append(row)
            if diverged:
                self.status = "diverged"
            stop = callback(row) if callback else None
            if diverged or stop:
                self.status = self.status if diverged else "stopped"
                break
        else:
            self.status = "finished"
        return {"status": self.status, "epochs": self.epoch, "history": self.history}

    # --- checkpoints: plain state dicts + config, loadable with weights_only=True ---

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "history": self.history,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])

    def save(self, path, resumable: bool = True) -> Path:
        """The one model-file format, read by `load_model` (and with resumable=True by `restore`): plain state
        dicts and values, loadable with weights_only=True. resumable=False leaves out the optimizer and the
        batch generator: a model to use, not a run to continue (finalize's model.pt)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        state["status"] = self.status
        if not resumable:
            state["model"] = {k: v.detach().cpu() for k, v in state["model"].items()}
            del state["optimizer"], state["generator"]
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # atomic: a crash mid-write never leaves a torn checkpoint
        return path

    @classmethod
    def restore(cls, path, train: tuple, val: tuple | None = None, device=None) -> Trainer:
        """A trainer that continues from the checkpoint at `path` on the given data."""
        state = load_checkpoint(path)
        trainer = cls(Config.from_dict(state["config"]), train, val, device)
        trainer.load_state_dict(state)
        return trainer


class ModelFileError(UserError):
    """A model or checkpoint file that is missing or holds something else."""


def load_checkpoint(path) -> dict:
    """A checkpoint or saved model, never unpickling code (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint or model file")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path, device=None) -> torch.nn.Module:
    """The CVAE saved in a checkpoint or model file (state dict + config), in eval mode.

    Whatever else the file holds is refused in one line: a pickle of other objects is never
    unpickled (weights_only), a dict of other keys or mismatched weights is named as such.
    """
    try:
        state = load_checkpoint(path)
        if not isinstance(state, dict) or not {"config", "model"} <= state.keys():
            raise ModelFileError(f"{path}: not a model file (expected a dict with 'config' and 'model')")
        model = build_model(Config.from_dict(state["config"]))
        model.load_state_dict(state["model"])
    except ModelFileError:
        raise
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path}: not a model file; it holds objects other than tensors and plain values "
            "(a dataset or submission?) and is not unpickled; pass the model.pt written by finalize"
        ) from None
    except (ValueError, RuntimeError, KeyError, TypeError, EOFError) as err:  # a ConfigError too: name the file
        first = first_line(err)
        raise ModelFileError(f"{path}: not a loadable model file ({first})") from None
    return model.to(pick_device(device)).eval()
