"""Finalize's pictures: training curves, samples and coverage in the regimes shown, and Optuna's own plots
of the study (history, per-epoch values, slices, importances). Each is a PNG in the output folder."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
from optuna.exceptions import ExperimentalWarning
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import TrialState
from optuna.visualization import matplotlib as ovm

from cvae.errors import first_line
from cvae.plots import PLOT_CONDITIONS, figure_to_png, plot_coverage, plot_samples, plot_training_curves

from ..driver.files import JOURNAL
from ..driver.study import StudyError, journal_path, load_study

# Optuna's matplotlib plots of the study, as finalize writes them.
STUDY_PLOTS = {
    "history": "search_history.png",
    "intermediate": "search_epochs.png",
    "slices": "search_slices.png",
    "importances": "search_importances.png",
}
TRAINING_CURVES = "training_curves.png"


def write_png(fig, path: Path) -> str:
    path.write_bytes(figure_to_png(fig))
    return path.name


def training_curves(trainer, config, metric: str, about: str, out: Path) -> str:
    title = (
        f"Retraining the best configuration ({about}); objective {metric}, validated after each epoch "
        f"with {config.val_samples} samples per condition"
    )
    return write_png(plot_training_curves(trainer.history, title=title, objective=metric), out / TRAINING_CURVES)


def sample_pictures(shown: list, val, functions, x_true, samples: int, about: str, out: Path) -> tuple[dict, dict]:
    """samples.png and coverage.png for the objective's regime, `_network` ones beside them when it is not
    network only: ({key: file}, {key: why skipped})."""
    files, skipped = {}, {}
    for suffix, regime, x in shown:
        role = " (the search objective's regime)" if not suffix else ""
        title = f"{regime.label}{role}: {samples} samples for each of {PLOT_CONDITIONS} validation conditions ({about})"
        figure = plot_samples(x, val[1], functions, x_true=x_true, title=title)
        files[f"samples{suffix}"] = write_png(figure, out / f"samples{suffix}.png")
        try:
            figure = plot_coverage(
                x, val[1], functions, x_true=x_true, title=f"Solution coverage, {regime.label}{role}"
            )
        except ValueError as err:
            skipped[f"coverage{suffix}"] = f"no coverage picture: {err}"
        else:
            files[f"coverage{suffix}"] = write_png(figure, out / f"coverage{suffix}.png")
    return files, skipped


def study_pictures(experiment, metric: str, out: Path) -> tuple[dict, dict]:
    """Optuna's plots of the experiment's study, or why there are none."""
    if experiment.path is not None and journal_path(experiment.path).is_file():
        try:
            study = load_study(experiment.path)
        except StudyError as err:
            return {}, {"search_history": str(err)}
        files, missing = plot_study(study, out, objective=metric)
        return {f"search_{k}": v for k, v in files.items()}, {f"search_{k}": v for k, v in missing.items()}
    if experiment.results is not None and len(experiment.results):
        return {}, {
            "search_history": f"no Optuna study ({JOURNAL}) in the experiment folder (a search from before it was kept)"
        }
    return {}, {"search_history": "no search results (finalized from a bare --config file)"}


def _save(ax, path: Path, title: str) -> str:
    """Optuna's figure with a title above it; log axes without crowded minor tick labels."""
    axes = list(ax.flat) if hasattr(ax, "flat") else [ax]
    figure = axes[0].figure
    for each in figure.axes:
        if each.get_xscale() == "log":
            each.xaxis.set_minor_formatter(NullFormatter())
    width = max(40, int(figure.get_size_inches()[0] * 11))
    figure.suptitle(textwrap.fill(title, width), fontsize=10, y=1.02)
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)
    return path.name


def plot_study(study, out, objective: str = "objective") -> tuple[dict, dict]:
    """Optuna's own matplotlib plots of the study as PNGs in `out`: ({key: file}, {key: why skipped}).

    - history: every complete trial's value in trial order, with the best so far;
    - intermediate: every trial's objective per epoch (ASHA-stopped trials end early);
    - slices: the objective against each parameter (log axes for log-scale parameters);
    - importances: PED-ANOVA parameter importances (needs no scikit-learn).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, skipped = {}, {}
    for key, (plot, title, possible, why) in _study_plots(study, objective).items():
        if not possible:
            skipped[key] = why
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                files[key] = _save(plot(), out / STUDY_PLOTS[key], title)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            skipped[key] = f"Optuna could not plot it: {first_line(err)}"
    return files, skipped


def _study_plots(study, objective: str) -> dict:
    """key -> (draw, title, possible, why not): each of Optuna's plots and when it can be drawn."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    counts = f"{len(complete)} complete, {len(pruned)} pruned by ASHA, {len(trials)} in all"
    name = f"{objective} (Optuna objective value)"

    def intermediate():
        ax = ovm.plot_intermediate_values(study)
        ax.set_xlabel("epoch")
        ax.set_ylabel(objective)
        return ax

    quantile = max(0.1, min(0.5, 2 / max(len(complete), 1)))
    return {
        "history": (
            lambda: ovm.plot_optimization_history(study, target_name=name),
            f"Optimisation history of study {study.study_name!r}: complete trials in trial order, "
            f"best so far ({counts})",
            len(complete) >= 1,
            "no complete trial",
        ),
        "intermediate": (
            intermediate,
            f"{objective} per epoch of every trial (x: epoch; trials ASHA pruned end early)",
            any(t.intermediate_values for t in trials),
            "no trial reported an epoch",
        ),
        "slices": (
            lambda: ovm.plot_slice(study, target_name=name),
            f"{objective} against each searched parameter (complete trials; log axes for log-scale ranges)",
            len(complete) >= 1,
            "no complete trial",
        ),
        "importances": (
            lambda: ovm.plot_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile), target_name=name
            ),
            f"Parameter importances for {objective} (PED-ANOVA over {len(complete)} complete trials)",
            len(complete) >= 4,
            f"{len(complete)} complete trials; importances need at least 4",
        ),
    }
