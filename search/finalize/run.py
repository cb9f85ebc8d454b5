"""Finalize a search: retrain its best configuration on the full training set, validate, plot, report.

`finalize` is a sequence of named steps: build the data, retrain (with a progress bar), generate in
every regime of `cvae.regimes` (the search objective's first; search/finalize/report.py chooses them),
draw the pictures (search/finalize/plots.py), and write `model.pt`, `report.json` and `report.md`.
Samples are judged by `cvae.submission.assess`, the same code `scripts/score.py` uses.
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cvae.config import Config
from cvae.functions import FunctionPair
from cvae.submission import assess, exact_x, plain
from cvae.train import Trainer

from ..driver.files import MODEL, REPORT_JSON, REPORT_MD
from ..driver.warm_start import read_record
from ..trials import OBJECTIVES, trial_counts
from . import plots
from . import report as reporting
from .choice import landed
from .experiment import VAL_SAMPLES, Experiment


class Stopwatch(dict):
    """Seconds per named step: `with clock("train_s"): ...`."""

    @contextlib.contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        yield
        self[name] = time.perf_counter() - started


def _progress_callback(bar):
    def callback(row: dict):
        postfix = {
            "loss": f"{row['loss']:.4g}",
            "kld": f"{row['kld']:.3g}",
            "x": f"{row['x_loss']:.3g}",
            "y": f"{row['y_loss']:.3g}",
        }
        if "val_score" in row:
            postfix["val_score"] = f"{row['val_score']:.3f}"
            postfix["valid"] = f"{100 * row['val_valid_frac']:.0f}%"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)

    return callback


def retrain(
    config: Config,
    train: tuple,
    val: tuple | None,
    device=None,
    progress: bool = True,
    time_budget: float | None = None,
    log=print,
    compile: bool = False,
) -> Trainer:
    """A Trainer that has trained `config` for config.epochs, with a tqdm bar (epochs, losses, ETA).

    time_budget (seconds): after each epoch the epochs are re-planned to those that still fit at the last epoch's
    pace, at most config.epochs, so a wide network or a large batch does not overrun the time a user set aside
    (an epoch can grow dearer mid-run: the y-term starts after wy_delay). The cosine schedule follows the current
    total (a cut lowers the learning rate a little, a cut taken back raises it). compile: the loss compiled first
    (Trainer.compile_loss), its time counted in the budget."""
    trainer, asked, compile_s = Trainer(config, train, val, device), time_budget, 0.0
    if compile:
        started = time.perf_counter()
        why_not = trainer.compile_loss()
        compile_s = time.perf_counter() - started
        log(
            f"finalize: {why_not}"
            if why_not
            else f"finalize: compiled the loss with torch.compile in {compile_s:.0f} s"
        )
        time_budget = None if time_budget is None else max(time_budget - compile_s, 1.0)
    options = dict(total=config.epochs, desc="retraining", unit="epoch", file=sys.stderr, dynamic_ncols=True)
    with tqdm(disable=not progress, **options) as bar:
        if time_budget is None:
            trainer.fit(callback=_progress_callback(bar))
        else:
            spent = fit_within(trainer, time_budget, bar, log)
            if trainer.epoch < config.epochs:
                budget = f"--time-budget {asked:g} s" + (f", {compile_s:.0f} s of it compiling" if compile_s else "")
                log(f"finalize: trained {trainer.epoch} of {config.epochs} epochs in {spent:.0f} s ({budget})")
    return trainer


def fit_within(trainer: Trainer, seconds: float, bar, log) -> float:
    """Train epoch by epoch, re-planning the trainer's epochs after each (`epochs_planned`); returns the seconds
    spent. Says so, once, when the plan ends before the y-term starts."""
    callback, spent, planned, warned = _progress_callback(bar), 0.0, trainer.config.epochs, False
    while trainer.epoch < trainer.config.epochs and trainer.status not in ("diverged", "stopped"):
        trainer.fit(epochs=trainer.epoch + 1, callback=callback)
        last = trainer.history[-1]["seconds"]
        spent += last
        fitting = epochs_planned(planned, trainer.epoch, seconds - spent, last)
        if fitting != trainer.config.epochs:
            trainer.config = trainer.config.replace(epochs=fitting)
            bar.total = fitting  # shown by the next epoch's line (a refresh here printed this epoch's twice)
        if not warned and (why := y_term_missed(trainer.config)):
            log(f"finalize: warning: {why}")
            warned = True
    return spent


def y_term_missed(config: Config) -> str | None:
    """Why `config` trains a model never fitted to its conditions (None when it is): its epochs end before the
    y-term starts. Schedules count epochs, so a larger --train-size in the same time budget can get there."""
    if config.wy <= 0 or config.wy_delay < config.epochs:
        return None
    return (
        f"{config.epochs} epochs fit in the time budget at this pace, and the y-term starts after "
        f"{config.wy_delay} (wy_delay): the model would never be fitted to its conditions; "
        "raise --time-budget or lower --train-size"
    )


def epochs_planned(planned: int, done: int, seconds_left: float, epoch_s: float) -> int:
    """The epochs to train in all: those done and those that still fit at the last epoch's pace, at most the
    plan. A cut can be taken back: the first epoch is often slower than the rest (caches, a compiled loss's
    first calls), and a plan made from it alone would keep the slow pace's epochs."""
    return done + epochs_within(seconds_left, epoch_s, planned - done)


def epochs_within(seconds: float, epoch_s: float, epochs: int) -> int:
    """The epochs (0 to `epochs`) that fit in `seconds` at `epoch_s` an epoch."""
    return max(0, min(epochs, int(seconds // max(epoch_s, 1e-9))))


def finalize(
    experiment: Experiment,
    out,
    *,
    epochs: int | None = None,
    device=None,
    samples: int = VAL_SAMPLES,
    progress: bool = True,
    log=print,
    choice: dict | None = None,
    time_budget: float | None = None,
    compile: bool = False,
    max_lr: float | None = None,
) -> dict:
    """Retrain, validate, save model.pt, plots and report.json/report.md in `out`; returns the report.

    choice: search/finalize/choice.py's re-runs of the top configurations (experiment.config is the picked
    one): the report says how sure the choice is and where the final model landed. time_budget: seconds of
    training at most, compile: torch.compile the loss first (retrain). max_lr: the chosen learning rate at most
    this (a run many times longer than the search's trials trains best at a lower peak rate than the one a short
    trial favours, docs/quality.md)."""
    clock, out = Stopwatch(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = experiment.config if epochs is None else experiment.config.replace(epochs=epochs)
    if max_lr and config.lr > max_lr:
        config = config.replace(lr=max_lr)
        log(f"finalize: the chosen learning rate {experiment.config.lr:.3g} capped at {max_lr:g} (--max-lr)")
    with clock("total_s"):
        with clock("data_s"):
            train, val = experiment.data.build(config)
        log(
            f"data: {train[0].shape[0]} training rows ({experiment.data.train_file or 'synthetic'}), "
            f"{val[0].shape[0]} validation conditions ({experiment.data.val_file or 'synthetic'})"
        )
        with clock("train_s"):
            trainer = retrain(config, train, val, device, progress, time_budget, log, compile)
        clock["epoch_mean_s"] = clock["train_s"] / max(trainer.epoch, 1)
        trainer.save(out / MODEL, resumable=False)
        if trainer.status != "finished":
            log(f"warning: training ended with status {trainer.status!r} after {trainer.epoch} epochs")
        with clock("evaluate_s"):
            regimes, shown = validate(experiment, trainer, val, samples, log)
        with clock("plots_s"):
            files, skipped = draw(experiment, trainer, val, shown, samples, out)
    timings = {k: clock[k] for k in ("data_s", "train_s", "epoch_mean_s", "evaluate_s", "plots_s", "total_s")}
    report = build_report(experiment, trainer, train, val, samples, regimes, timings)
    if config.lr != experiment.config.lr:
        report["differences"].append(reporting.lr_difference(experiment.config.lr, config.lr))
    report.update(files={"model": MODEL, **files}, skipped_plots=skipped)
    if choice is not None:
        report["choice"] = landed(choice, report)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    (out / REPORT_MD).write_text(reporting.report_markdown(report))
    return report


def validate(experiment: Experiment, trainer: Trainer, val: tuple, samples: int, log) -> tuple[list, list]:
    """Each regime the report shows, judged on the validation conditions: (entries, pictures to draw).

    Pictures: the objective's regime, and network only beside it when the objective is not network only.
    """
    config, functions = trainer.config, trainer.functions
    x_true = val[0] if exact_x(val[0], val[1], functions) else None
    objective = experiment.objective
    entries, shown = [], []
    for entry in reporting.report_regimes(objective, OBJECTIVES[objective][0], config, samples):
        regime, first = entry["regime"], entry["key"] == "objective"
        generator = torch.Generator(trainer.device).manual_seed(config.seed + 1)
        x = regime.generate(trainer.model, val[1].to(trainer.device), functions, samples, generator).cpu()
        validation = assess(x, val[1], functions, x_true)
        entries.append(
            {
                "key": entry["key"],
                "label": regime.label,
                "role": entry["role"],
                "objective": first,
                "regime": {k: getattr(regime, k) for k in ("kind", "proposals", "refine_steps", "temperature")},
                "validation": validation,
            }
        )
        if first or (regime.kind == "network" and shown[0][1].kind != "network"):
            shown.append(("" if first else "_network", regime, x))
        log(f"validation, {regime.label}: {reporting.summary_line(validation)}")
    return entries, shown


def draw(experiment: Experiment, trainer: Trainer, val: tuple, shown: list, samples: int, out: Path):
    """Every picture of the report: ({key: file}, {key: why it was skipped})."""
    config, functions = trainer.config, trainer.functions
    metric = OBJECTIVES[experiment.objective][0]
    x_true = val[0] if exact_x(val[0], val[1], functions) else None
    about = f"{config.model} {config.head}, {trainer.epoch} epochs"
    files = {"training_curves": plots.training_curves(trainer, config, metric, about, out)}
    pictures, skipped = plots.sample_pictures(shown, val, functions, x_true, samples, about, out)
    study, missing = plots.study_pictures(experiment, metric, out)
    return {**files, **pictures, **study}, {**skipped, **missing}


def build_report(experiment: Experiment, trainer: Trainer, train, val, samples: int, regimes: list, timings) -> dict:
    """report.json's content (report.md is rendered from it)."""
    config, functions = trainer.config, FunctionPair(trainer.config.functions)
    metric = OBJECTIVES[experiment.objective][0]
    final = trainer.history[-1] if trainer.history else {}
    return {
        "experiment": str(experiment.path) if experiment.path else None,
        "config_source": experiment.source,
        "config": config.to_dict(),
        "objective": {
            "name": experiment.objective,
            "metric": metric,
            "mode": experiment.mode,
            "regime": regimes[0]["label"],
        },
        "data": {
            "train_rows": int(train[0].shape[0]),
            **{k: getattr(experiment.data, k) for k in ("train_file", "lines", "x_targets")},
            "val_conditions": int(val[0].shape[0]),
            **{k: getattr(experiment.data, k) for k in ("val_file", "seed")},
            "true_x_known": exact_x(val[0], val[1], functions),
        },
        "search": {
            "trials": 0 if experiment.results is None else len(experiment.results),
            "scored_trials": experiment.finished_trials,
            "ended": trial_counts(experiment.results),
            "mode": experiment.mode,
            "best_trial": experiment.best_trial,
        },
        "differences": reporting.differences(experiment.search, config, experiment.data, samples)
        if experiment.search
        else [],
        "training": {
            "status": trainer.status,
            "epochs": trainer.epoch,
            "final": {k: plain(final[k]) for k in ("loss", "kld", "x_loss", "y_loss", metric) if k in final},
            "history": [{k: plain(v) for k, v in row.items()} for row in trainer.history],
        },
        "warm_start": read_record(experiment.path),  # what the search took from earlier experiments, if anything
        "validation": regimes[0]["validation"],
        "regimes": regimes,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "device": str(trainer.device),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }
