"""The search's Optuna study, kept in the experiment folder in a storage Optuna's own tools open.

The study lives in `<experiment>/optuna.journal` (Optuna's `JournalStorage` on a
`JournalFileBackend`: no server, works over NFS; the driver's searcher is its one writer),
named after the experiment. Each Optuna trial carries the Ray trial id (`ray_trial_id`) and
its TensorBoard run, i.e. its folder name (`tensorboard_run`), as user attributes.

    optuna-dashboard runs/NAME/optuna.journal
    optuna.load_study(study_name="NAME", storage=search.driver.study.open_storage("runs/NAME"))
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

from cvae.errors import UserError

from ..trials import FAILURE
from .compat import journal_backend, journal_file, journal_lock, journal_offsets_reset
from .files import JOURNAL

# User attributes of each Optuna trial.
RAY_TRIAL_ID, TENSORBOARD_RUN = "ray_trial_id", "tensorboard_run"
FAILURE_CONSTRAINT = "failure"  # the constraint a failed trial violates (> 0: infeasible)


class StudyError(UserError):
    """No study in the folder, or more than one without a name; one line."""


def journal_path(experiment_dir) -> Path:
    """Where an experiment's study lives (the file need not exist yet)."""
    return Path(experiment_dir).expanduser() / JOURNAL


def open_storage(experiment_dir, create: bool = False, fsync: bool = True, read_only: bool = False):
    """Optuna's JournalStorage on the experiment's journal file.

    create=False refuses a folder without one (JournalFileBackend would create an empty file).
    fsync=False: the search's driver, which writes ~20 lines a trial (see `AppendOnlyJournal`).
    read_only=True: another experiment's journal, only read (see `ReadOnlyJournal`).
    """
    path = journal_path(experiment_dir)
    if not create and not path.is_file():
        raise StudyError(f"{Path(experiment_dir)}: no {JOURNAL}; is it a search's experiment folder?")
    if read_only:
        return JournalStorage(ReadOnlyJournal(str(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage((JournalFileBackend if fsync else AppendOnlyJournal)(str(path)))


class ReadOnlyJournal(BaseJournalBackend):
    """An experiment's journal opened to be read only: a warm start or a comparison reads earlier experiments,
    which belong to their own searches. Any write is refused (a StudyError), so nothing in their folder changes:
    reading takes no lock and creates no file."""

    def __init__(self, file_path: str):
        self._path, self._file = file_path, JournalFileBackend(file_path)  # the file exists: nothing created

    def read_logs(self, log_number_from: int):
        return self._file.read_logs(log_number_from)

    def append_logs(self, logs):
        raise StudyError(f"{self._path}: opened read-only; this command does not write another experiment's study")


class AppendOnlyJournal(JournalFileBackend):
    """Optuna's journal file whose appends are written and flushed but not fsync'ed one by one.

    Optuna fsyncs the journal on every write (each suggested parameter, intermediate value and user
    attribute is one): ~20 fsyncs per trial, most of the searcher's time (docs/benchmarks.md, many
    trials). Without them a killed driver still loses nothing (the data is in the OS's page cache),
    as for Tune's own state files, which are not fsync'ed either; only a machine crash can lose the
    last seconds, which `--resume` then runs again. The file is the same format: Optuna reads it. A
    write that fails (a full disk) is cut back to the last whole line, so the journal stays readable.
    It reaches into Optuna's JournalFileBackend through search/driver/compat (entry 13);
    tests/test_study.py reads a journal written this way back through `optuna.load_study`.
    """

    _held = False  # True while `held` keeps the lock for a run of appends

    def __getstate__(self):
        """Pickled (in the searcher's state, at every experiment-state save) without Optuna's offset of every line
        read so far, which grows with the search: an unpickled storage reads the journal from its first line."""
        return {**self.__dict__, **journal_offsets_reset(), "_held": False}

    @contextlib.contextmanager
    def held(self):
        """The journal's lock taken once for all the appends inside (a suggestion writes a line per parameter, and
        each append would take and release the lock, a symlink made and removed, on its own)."""
        if self._held:
            yield
            return
        with journal_lock(self):
            self._held = True
            try:
                yield
            finally:
                self._held = False

    def append_logs(self, logs):
        data = memoryview(("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode())
        with self.held():  # the lock, unless a run of appends holds it already
            fd = os.open(journal_file(self), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError:  # a full disk: no half line left for the next append (or a reader) to run into
                os.ftruncate(fd, start)
                raise
            finally:
                os.close(fd)


def writes_together(study):
    """A context in which the study's journal writes take its lock once (`AppendOnlyJournal.held`); nothing for
    another storage."""
    backend = journal_backend(study)
    return backend.held() if isinstance(backend, AppendOnlyJournal) else contextlib.nullcontext()


def load_study(experiment_dir, name: str | None = None, read_only: bool = False):
    """The experiment's Optuna study (read through optuna.load_study).

    name: the study name, by default the only study in the journal (the experiment's name).
    read_only: for another experiment's study, which must not change (`ReadOnlyJournal`).
    """
    storage = open_storage(experiment_dir, read_only=read_only)
    if name is None:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            raise StudyError(f"{journal_path(experiment_dir)}: {len(names)} studies ({names}); pass name=")
        name = names[0]
    return optuna.load_study(study_name=name, storage=storage)


def close_running(experiment_dir, known, errored=()) -> int:
    """Close the trials a finished search left RUNNING in its journal: FAIL for those Tune does not know (Ray
    trial ids not in `known`: suggested by a killed driver after Tune's last snapshot, never run since) and
    those that errored (`errored`: the searcher keeps them open while a --resume could run them again);
    those the time budget ended before they finished (Tune tells the searcher nothing of them) PRUNED at their
    last epoch, as ASHA's early stops are, or FAIL without one. Returns how many were closed."""
    from optuna.trial import TrialState

    study = load_study(experiment_dir)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    known, errored = set(known), set(errored)
    for trial in running:
        ray_id = trial.user_attrs.get(RAY_TRIAL_ID)
        failed = ray_id not in known or ray_id in errored or not trial.intermediate_values
        study.tell(trial.number, state=TrialState.FAIL if failed else TrialState.PRUNED)
    return len(running)


def mark_infeasible(trial, reason: str) -> None:
    """Record a trial that failure-aware pruning stopped as infeasible, before it is told.

    TPE puts a trial with a positive constraint below every feasible one, complete or pruned, whatever its
    value (optuna/samplers/_tpe/sampler.py: _split_trials reads trial.constraints), so it learns to avoid the
    region; study.best_trial skips it. `Trial.set_constraint` is Optuna 5's replacement of the sampler's
    deprecated `constraints_func`, and holds for PRUNED trials too (constraints_func is called after COMPLETE
    and PRUNED ones only). The reason is a user attribute (search.trials.FAILURE) for people and dashboards.
    """
    trial.set_user_attr(FAILURE, reason)
    trial.set_constraint(FAILURE_CONSTRAINT, 1.0)


def label_study(study, spec, experiment: str) -> None:
    """Name the objective (Optuna's dashboard shows 'Objective 0' otherwise) and say where the runs are."""
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names([spec.metric])
    study.set_user_attr("objective", spec.metric)
    study.set_user_attr("tensorboard", f"tensorboard --logdir {experiment}")
    study.set_user_attr("pruned", "trials ASHA stopped early (their last epoch is their step)")


def quiet_optuna() -> None:
    """Optuna's INFO lines (one per created study or told trial) off; warnings stay."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
