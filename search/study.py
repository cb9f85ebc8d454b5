"""The search's Optuna study, kept in the experiment folder in a storage Optuna's own tools open.

The study lives in `<experiment>/optuna.journal` (Optuna's `JournalStorage` on a
`JournalFileBackend`: no server, works over NFS; the driver's searcher is its one writer),
named after the experiment. Each Optuna trial carries the Ray trial id (`ray_trial_id`) and
its TensorBoard run, i.e. its folder name (`tensorboard_run`), as user attributes.

    optuna-dashboard runs/NAME/optuna.journal
    optuna.load_study(study_name="NAME", storage=search.study.open_storage("runs/NAME"))
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file

from cvae.errors import UserError

JOURNAL = "optuna.journal"
# User attributes of each Optuna trial.
RAY_TRIAL_ID, TENSORBOARD_RUN = "ray_trial_id", "tensorboard_run"
# Optuna's matplotlib plots of the study, as finalize writes them.
PLOTS = {
    "history": "search_history.png",
    "intermediate": "search_epochs.png",
    "slices": "search_slices.png",
    "importances": "search_importances.png",
}


class StudyError(UserError):
    """No study in the folder, or more than one without a name; one line."""


def journal_path(experiment_dir) -> Path:
    """Where an experiment's study lives (the file need not exist yet)."""
    return Path(experiment_dir).expanduser() / JOURNAL


def open_storage(experiment_dir, create: bool = False, fsync: bool = True):
    """Optuna's JournalStorage on the experiment's journal file.

    create=False refuses a folder without one (JournalFileBackend would create an empty file).
    fsync=False: the search's driver, which writes ~20 lines a trial (see `AppendOnlyJournal`).
    """
    from optuna.storages import JournalStorage

    path = journal_path(experiment_dir)
    if not create and not path.is_file():
        raise StudyError(f"{Path(experiment_dir)}: no {JOURNAL}; is it a search's experiment folder?")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage((JournalFileBackend if fsync else AppendOnlyJournal)(str(path)))


class AppendOnlyJournal(JournalFileBackend):
    """Optuna's journal file whose appends are written and flushed but not fsync'ed one by one.

    Optuna fsyncs the journal on every write (each suggested parameter, intermediate value and user
    attribute is one): ~20 fsyncs per trial, most of the searcher's time (docs/benchmarks.md, many
    trials). Without them a killed driver still loses nothing (the data is in the OS's page cache),
    as for Tune's own state files, which are not fsync'ed either; only a machine crash can lose the
    last seconds, which `--resume` then runs again. The file is the same format: Optuna reads it. A
    write that fails (a full disk) is cut back to the last whole line, so the journal stays readable.
    Reaches into Optuna 5.0's JournalFileBackend (`_lock`, `_file_path`, the `get_lock_file` helper);
    tests/test_study.py reads a journal written this way back through `optuna.load_study`.
    """

    def append_logs(self, logs):
        data = memoryview(("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode())
        with get_lock_file(self._lock):
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError:  # a full disk: no half line left for the next append (or a reader) to run into
                os.ftruncate(fd, start)
                raise
            finally:
                os.close(fd)


def load_study(experiment_dir, name: str | None = None):
    """The experiment's Optuna study (read through optuna.load_study).

    name: the study name, by default the only study in the journal (the experiment's name).
    """
    import optuna

    storage = open_storage(experiment_dir)
    if name is None:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            raise StudyError(f"{journal_path(experiment_dir)}: {len(names)} studies ({names}); pass name=")
        name = names[0]
    return optuna.load_study(study_name=name, storage=storage)


def label_study(study, spec, experiment: str) -> None:
    """Name the objective (Optuna's dashboard shows 'Objective 0' otherwise) and say where the runs are."""
    from optuna.exceptions import ExperimentalWarning

    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names([spec.metric])
    study.set_user_attr("objective", spec.metric)
    study.set_user_attr("tensorboard", f"tensorboard --logdir {experiment}")
    study.set_user_attr("pruned", "trials ASHA stopped early (their last epoch is their step)")


def quiet_optuna() -> None:
    """Optuna's INFO lines (one per created study or told trial) off; warnings stay."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _save(ax, path: Path, title: str) -> str:
    """Optuna's figure with a title above it; log axes without crowded minor tick labels."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

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
    import matplotlib

    matplotlib.use("Agg")
    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    files, skipped = {}, {}
    counts = f"{len(complete)} complete, {len(pruned)} pruned by ASHA, {len(trials)} in all"
    name = f"{objective} (Optuna objective value)"

    def intermediate():
        ax = ovm.plot_intermediate_values(study)
        ax.set_xlabel("epoch")
        ax.set_ylabel(objective)
        return ax

    jobs = {
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
                study,
                evaluator=PedAnovaImportanceEvaluator(target_quantile=max(0.1, min(0.5, 2 / max(len(complete), 1)))),
                target_name=name,
            ),
            f"Parameter importances for {objective} (PED-ANOVA over {len(complete)} complete trials)",
            len(complete) >= 4,
            f"{len(complete)} complete trials; importances need at least 4",
        ),
    }
    for key, (plot, title, possible, why) in jobs.items():
        if not possible:
            skipped[key] = why
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                files[key] = _save(plot(), out / PLOTS[key], title)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            skipped[key] = f"Optuna could not plot it: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return files, skipped
