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
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from cvae.config import Config, ConfigError
from cvae.data import DataFileError, DataSpec
from cvae.functions import FunctionPair, FunctionSyntaxError
from cvae.submission import assess, exact_x
from cvae.submission import plain as _plain

from . import report as _report
from .report import report_markdown
from .study import JOURNAL, StudyError, journal_path, load_study, plot_study

SEARCH_CONFIG = "search_config.yaml"
BEST_CONFIG = "best_config.yaml"
RESULTS = "results.csv"
MODEL = "model.pt"
PLOTS = {
    "training_curves": "training_curves.png",
    "samples": "samples.png",  # the objective's regime; samples_network.png beside it when that is not network only
    "coverage": "coverage.png",
}
VAL_SAMPLES = 30  # samples per validation condition, as in a challenge submission
PLOT_CONDITIONS = 3
# A trial counts as finished when it reported a finite score and did not end in one of these.
UNFINISHED = {"error", "errored", "failed", "running", "pending", "paused"}  # Tune's trial status
FAILED = {"error", "diverged"}  # the search's stop_reason of a trial without a real score


class FinalizeError(Exception):
    """A user-facing problem (missing file, no finished trial, bad config); one line."""


# --- the experiment folder ------------------------------------------------------------------


@dataclass
class Experiment:
    """What finalize needs: the configuration to retrain, its data, and the search's trials."""

    config: Config
    data: DataSpec
    path: Path | None = None  # the experiment folder; None for a bare --config file
    source: str = ""  # where the configuration came from, for the report
    search: dict = field(default_factory=dict)  # the search file's sections
    results: object = None  # pandas DataFrame of results.csv, or None
    score_column: str = "score"
    mode: str = "max"
    best_trial: dict | None = None  # the best finished trial's row (trial_id, score, ...)
    finished_trials: int = 0

    @property
    def params(self) -> list[str]:
        """The searched hyperparameters (the search file's `space` keys)."""
        return list((self.search.get("space") or {}).keys())


def _read_yaml(path: Path, what: str):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise FinalizeError(f"{path}: not valid YAML{where} ({what}): {getattr(err, 'problem', err)}") from None
    except OSError as err:
        raise FinalizeError(f"{path}: cannot read {what}: {err.strerror or err}") from None


def _config_from(values, path: Path, functions=None) -> Config:
    if not isinstance(values, dict):
        raise FinalizeError(f"{path}: expected a mapping of Config keys to values, got {type(values).__name__}")
    values = dict(values)
    if functions is not None and "functions" not in values:
        values["functions"] = list(functions)
    try:
        return Config.from_dict(values)
    except (ConfigError, FunctionSyntaxError, TypeError) as err:
        raise FinalizeError(f"{path}: {err}") from None


def _resolve_file(name, base: Path | None, key: str):
    """A data file path as written, else relative to the experiment folder; None stays None."""
    if name in (None, ""):
        return None
    path = Path(str(name)).expanduser()
    if path.is_file() or base is None:
        return str(path)
    if (base / path).is_file():
        return str(base / path)
    return str(path)  # DataSpec.build reports the missing file by name


def _data_spec(values, path: Path, base: Path | None) -> DataSpec:
    values = dict(values or {})
    for key in ("train_file", "val_file"):
        if key in values:
            values[key] = _resolve_file(values[key], base, key)
    try:
        return DataSpec.from_dict(values)
    except (TypeError, ValueError) as err:
        raise FinalizeError(f"{path}: data: {err}") from None


def _finished(results):
    """Rows of results.csv that count as finished trials: a finite score, neither failed nor diverged.

    A trial ASHA stopped early or the time budget ended still counts (it was scored); a
    diverged one does not (its score is a placeholder). The score is the `score` column,
    the objective's last value, which the search ranks by.
    """
    import pandas as pd

    if "score" not in results:
        return results.iloc[0:0]
    scores = pd.to_numeric(results["score"], errors="coerce")
    keep = scores.apply(math.isfinite)
    for column, bad in (("status", UNFINISHED), ("stop_reason", FAILED)):
        if column in results:
            keep &= ~results[column].astype(str).str.lower().isin(bad)
    return results[keep]


def _best_trial(finished, mode: str):
    """The search's choice: the best full-length trial by score, else the best of all finished."""
    import pandas as pd

    full = finished[finished["stop_reason"].astype(str) == "finished"] if "stop_reason" in finished else finished
    pool = full if not full.empty else finished
    scores = pd.to_numeric(pool["score"], errors="coerce")
    return pool.loc[scores.idxmax() if mode == "max" else scores.idxmin()]


def load_experiment(path) -> Experiment:
    """Read `<storage>/<name>/`; raises FinalizeError naming the missing or bad file."""
    import pandas as pd

    folder = Path(path).expanduser()
    if not folder.exists():
        raise FinalizeError(f"{folder}: no such experiment folder; pass --experiment <storage>/<name>")
    if not folder.is_dir():
        raise FinalizeError(f"{folder}: not a folder; pass --experiment <storage>/<name> (or --config FILE)")
    search_file, results_file, best_file = folder / SEARCH_CONFIG, folder / RESULTS, folder / BEST_CONFIG
    if not search_file.is_file():
        raise FinalizeError(
            f"{folder}: {SEARCH_CONFIG} is missing; not a search experiment folder "
            f"(expected {SEARCH_CONFIG}, {BEST_CONFIG} and {RESULTS} written by the search)"
        )
    search = _read_yaml(search_file, "the search file")
    if not isinstance(search, dict):
        raise FinalizeError(f"{search_file}: expected the search file's sections, got {type(search).__name__}")
    if not results_file.is_file():
        raise FinalizeError(f"{folder}: {RESULTS} is missing; the search has not recorded any trial yet")
    try:
        results = pd.read_csv(results_file)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise FinalizeError(f"{results_file}: not a readable results table: {str(err).splitlines()[0]}") from None
    finished = _finished(results)
    if finished.empty:
        column = "stop_reason" if "stop_reason" in results else "status"
        counts = results[column].astype(str).value_counts().to_dict() if column in results else {}
        seen = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
        raise FinalizeError(
            f"{folder}: no finished trial in {RESULTS} ({len(results)} trials; {column}: {seen}); "
            "let the search finish at least one trial, or pass --config FILE"
        )
    if not best_file.is_file():
        raise FinalizeError(
            f"{folder}: {BEST_CONFIG} is missing although {len(finished)} trials finished; "
            "the search did not write its result (resume it), or pass --config FILE"
        )
    functions = search.get("functions")
    config = _config_from(_read_yaml(best_file, "the best configuration"), best_file, functions)
    if functions is not None and tuple(functions) != config.functions:
        try:
            same = FunctionPair(functions).texts == FunctionPair(config.functions).texts
        except FunctionSyntaxError:
            same = False
        if not same:
            raise FinalizeError(
                f"{best_file}: functions {list(config.functions)} differ from the search file's {list(functions)}"
            )
    mode = "min" if (search.get("search") or {}).get("objective") == "train_loss" else "max"
    best = _best_trial(finished, mode)
    best_trial = {
        k: _plain(best[k])
        for k in ("trial_id", "status", "stop_reason", "epochs", "node", "score", "best_score", "metric")
        if k in best
    }
    return Experiment(
        config=config,
        data=_data_spec(search.get("data"), search_file, folder),
        path=folder,
        source=str(best_file),
        search=search,
        results=results,
        mode=mode,
        best_trial=best_trial,
        finished_trials=len(finished),
    )


def load_config_file(path, data: dict | None = None) -> Experiment:
    """A bare configuration (`best_config.yaml` or any flat Config YAML) and its data.

    Data: DataSpec defaults, then the `data` section of a search_config.yaml next to the
    file (when it is an experiment's best_config.yaml), then `data` (command-line values).
    A search file (with `fixed`/`space` sections) is refused: it has no single configuration.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FinalizeError(f"{path}: no such config file; pass a flat Config YAML such as best_config.yaml")
    values = _read_yaml(path, "the configuration")
    if isinstance(values, dict) and {"space", "fixed"} & values.keys():
        raise FinalizeError(
            f"{path}: this is a search file, not one configuration; pass --experiment <storage>/<name> "
            f"or that experiment's {BEST_CONFIG}"
        )
    sibling = path.parent / SEARCH_CONFIG  # a best_config.yaml inside its experiment: use its data section
    search = _read_yaml(sibling, "the search file") if sibling.is_file() else None
    base = dict(search.get("data") or {}) if isinstance(search, dict) else {}
    return Experiment(
        config=_config_from(values, path),
        data=_data_spec({**base, **(data or {})}, path, path.parent),
        source=str(path),
    )


def with_data(experiment: Experiment, overrides: dict) -> Experiment:
    """The experiment with some data keys replaced (command-line overrides); None values are ignored."""
    import dataclasses

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        values = {**dataclasses.asdict(experiment.data), **overrides}
        experiment.data = _data_spec(values, Path("command line"), None)
    return experiment


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
    "with_data",
    "report_markdown",
    "retrain",
    "save_model",
]
