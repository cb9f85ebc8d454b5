"""Finalize a search: retrain its best configuration on the full training set, validate, plot, report.

`load_experiment` reads a search experiment folder (`search_config.yaml`, `best_config.yaml`,
`results.csv`, `optuna.journal`), `finalize` retrains, generates in every regime of
`cvae.regimes` (the search objective's first; search/report.py chooses and renders them), and
writes `model.pt`, `report.json`, `report.md` and the PNGs; samples are judged by
`cvae.submission.assess`, the same code `scripts/score.py` uses. Every user mistake raises
`FinalizeError` with a one-line message.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from cvae.config import Config
from cvae.data import DataFileError
from cvae.functions import FunctionPair
from cvae.submission import assess, exact_x
from cvae.submission import plain as _plain

from . import report as _report
from .experiment import (  # noqa: F401  (re-exported: finalize's public names stay where they were)
    BEST_CONFIG,
    MODEL,
    PLOT_CONDITIONS,
    PLOTS,
    RESULTS,
    SEARCH_CONFIG,
    VAL_SAMPLES,
    Experiment,
    FinalizeError,
    load_config_file,
    load_experiment,
    with_data,
)
from .report import report_markdown
from .study import JOURNAL, StudyError, journal_path, load_study, plot_study

# --- retraining -----------------------------------------------------------------------------


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


def retrain(config: Config, train: tuple, val: tuple | None, device=None, progress: bool = True):
    """A Trainer that has trained `config` for config.epochs, with a tqdm bar (epochs, losses, ETA)."""
    from tqdm.auto import tqdm

    from cvae.train import Trainer

    trainer = Trainer(config, train, val, device)
    with tqdm(
        total=config.epochs,
        desc="retraining",
        unit="epoch",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        trainer.fit(callback=_progress_callback(bar))
    return trainer


def save_model(trainer, path) -> Path:
    """{'config', 'model', 'history', 'epoch', 'status'}: plain tensors and values, so
    `cvae.train.load_model` reads it with weights_only=True. No optimizer state."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "config": trainer.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
        "history": trainer.history,
        "epoch": trainer.epoch,
        "status": trainer.status,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


# --- evaluation -----------------------------------------------------------------------------


# --- finalize -------------------------------------------------------------------------------


def _write_png(fig, path: Path) -> str:
    from cvae.plots import figure_to_png

    path.write_bytes(figure_to_png(fig))
    return path.name


def finalize(
    experiment: Experiment,
    out,
    *,
    epochs: int | None = None,
    device=None,
    samples: int = VAL_SAMPLES,
    progress: bool = True,
    log=print,
) -> dict:
    """Retrain, validate, save model.pt, plots and report.json/report.md in `out`; returns the report."""
    from cvae.plots import plot_coverage, plot_samples, plot_training_curves

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = experiment.config if epochs is None else experiment.config.replace(epochs=epochs)
    functions = FunctionPair(config.functions)
    timings = {}

    t = time.perf_counter()
    train, val = experiment.data.build(functions)
    timings["data_s"] = time.perf_counter() - t
    log(
        f"data: {train[0].shape[0]} training rows ({experiment.data.train_file or 'synthetic'}), "
        f"{val[0].shape[0]} validation conditions ({experiment.data.val_file or 'synthetic'})"
    )
    x_true = val[0] if exact_x(val[0], val[1], functions) else None

    t = time.perf_counter()
    trainer = retrain(config, train, val, device, progress)
    timings["train_s"] = time.perf_counter() - t
    timings["epoch_mean_s"] = timings["train_s"] / max(trainer.epoch, 1)
    model_path = save_model(trainer, out / MODEL)
    if trainer.status != "finished":
        log(f"warning: training ended with status {trainer.status!r} after {trainer.epoch} epochs")

    t = time.perf_counter()
    objective = _report.objective_name(experiment.search)
    metric = _report.OBJECTIVES.get(objective, "val_score")
    regimes, shown = [], {}
    for entry in _report.report_regimes(objective, config, samples):
        regime = entry["regime"]
        generator = torch.Generator(trainer.device).manual_seed(config.seed + 1)
        x = regime.generate(trainer.model, val[1].to(trainer.device), functions, samples, generator).cpu()
        regimes.append(
            {
                "key": entry["key"],
                "label": regime.label,
                "role": entry["role"],
                "objective": entry["key"] == "objective",
                "regime": _report.regime_dict(regime),
                "validation": assess(x, val[1], functions, x_true),
            }
        )
        if entry["key"] == "objective" or regime.kind == "network":
            shown[regime.kind if entry["key"] != "objective" else "objective"] = (regime, x)
        log(f"validation, {regime.label}: {_summary_line(regimes[-1]['validation'])}")
    validation = regimes[0]["validation"]
    timings["evaluate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    plots, skipped = {}, {}
    about = f"{config.model} {config.head}, {trainer.epoch} epochs"
    plots["training_curves"] = _write_png(
        plot_training_curves(
            trainer.history,
            title=f"Retraining the best configuration ({about}); objective {metric}, validated after each epoch "
            f"with {config.val_samples} samples per condition",
            objective=metric,
        ),
        out / PLOTS["training_curves"],
    )
    pictures = [("", *shown["objective"])]
    if "network" in shown:
        pictures.append(("_network", *shown["network"]))
    for suffix, regime, x in pictures:
        role = " (the search objective's regime)" if not suffix else ""
        plots[f"samples{suffix}"] = _write_png(
            plot_samples(
                x,
                val[1],
                functions,
                x_true=x_true,
                conditions=PLOT_CONDITIONS,
                title=f"{regime.label}{role}: {samples} samples for each of {PLOT_CONDITIONS} validation "
                f"conditions ({about})",
            ),
            out / f"samples{suffix}.png",
        )
        try:
            figure = plot_coverage(
                x,
                val[1],
                functions,
                x_true=x_true,
                conditions=PLOT_CONDITIONS,
                title=f"Solution coverage, {regime.label}{role}",
            )
        except ValueError as err:
            skipped[f"coverage{suffix}"] = f"no coverage picture: {err}"
        else:
            plots[f"coverage{suffix}"] = _write_png(figure, out / f"coverage{suffix}.png")
    if experiment.path is not None and journal_path(experiment.path).is_file():
        try:
            study = load_study(experiment.path)
        except StudyError as err:
            skipped["search_history"] = str(err)
        else:
            files, missing = plot_study(study, out, objective=metric)
            plots.update({f"search_{k}": v for k, v in files.items()})
            skipped.update({f"search_{k}": v for k, v in missing.items()})
    elif experiment.results is not None and len(experiment.results):
        skipped["search_history"] = (
            f"no Optuna study ({JOURNAL}) in the experiment folder (a search from before it was kept)"
        )
    else:
        skipped["search_history"] = "no search results (finalized from a bare --config file)"
    timings["plots_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started

    final = trainer.history[-1] if trainer.history else {}
    report = {
        "experiment": str(experiment.path) if experiment.path else None,
        "config_source": experiment.source,
        "config": config.to_dict(),
        "objective": {
            "name": objective,
            "metric": metric,
            "mode": experiment.mode,
            "regime": regimes[0]["label"],
        },
        "data": {
            "train_rows": int(train[0].shape[0]),
            "train_file": experiment.data.train_file,
            "lines": experiment.data.lines,
            "x_targets": experiment.data.x_targets,
            "val_conditions": int(val[0].shape[0]),
            "val_file": experiment.data.val_file,
            "seed": experiment.data.seed,
            "true_x_known": x_true is not None,
        },
        "search": {
            "trials": 0 if experiment.results is None else len(experiment.results),
            "scored_trials": experiment.finished_trials,
            "ended": _report.trial_counts(experiment.results),
            "score_column": experiment.score_column,
            "mode": experiment.mode,
            "best_trial": experiment.best_trial,
        },
        "differences": _report.differences(experiment.search, config, experiment.data, samples)
        if experiment.search
        else [],
        "training": {
            "status": trainer.status,
            "epochs": trainer.epoch,
            "final": {k: _plain(final[k]) for k in ("loss", "kld", "x_loss", "y_loss", metric) if k in final},
            "history": [{k: _plain(v) for k, v in row.items()} for row in trainer.history],
        },
        "validation": validation,
        "regimes": regimes,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "device": str(trainer.device),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "files": {"model": model_path.name, **plots},
        "skipped_plots": skipped,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    return report


def _summary_line(v: dict) -> str:
    coverage = "n/a" if v["coverage_norm"] is None else f"{100 * v['coverage_norm']:.1f}%"
    score = "n/a" if v.get("score") is None else f"{v['score']:.4g}"
    return (
        f"gates {'PASS' if v['gates_pass'] else 'FAIL'}, valid {100 * v['valid_frac']:.1f}%, "
        f"coverage_norm {coverage}, score {score}"
    )


__all__ = [
    "DataFileError",
    "Experiment",
    "FinalizeError",
    "finalize",
    "load_config_file",
    "load_experiment",
    "report_markdown",
    "retrain",
    "save_model",
    "with_data",
]
