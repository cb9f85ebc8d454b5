"""Carry out a search that passed preflight: start or join Ray, fit (or restore) the Tuner, record the results.

`run(plan)` is a sequence of named steps; `search.run_search` checks the inputs and calls it. The
experiment's own files (beside Tune's) are written in one place, `write_results`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from ray import tune

from ..spec import SearchError
from . import results, trust
from .callbacks import quiet_ray, staging_folder
from .compat import checked_state_reads, never_unpickle_trial_errors, restore_failures, time_budget_ends
from .faults import RestoreFailed, no_space_is_storage_full, search_failure
from .files import (
    BEST_CONFIG,
    JOURNAL,
    MANIFEST,
    RESULTS_CSV,
    RESULTS_PARQUET,
    SEARCH_CONFIG,
    TUNER_STATE,
    WARM_START,
)
from .preflight import Plan, is_local
from .study import close_running
from .tuner import check_resources, connect, make_trainable, make_tuner, study_folder
from .warm_start import carried_over


class SearchInterrupted(SearchError):
    """The search stopped (Ctrl-C) before all its trials ran; --resume finishes it."""

    exit_code = 130


def run(plan: Plan) -> Path:
    """Run (or finish) the search of `plan`; returns the experiment folder (a local copy for s3:// / gs://).

    Every state file Tune unpickles meanwhile is checked against the folder's signatures as it is read
    (compat entry 17): preflight's check came earlier, and the folder may have changed since.
    """
    if plan.warm_start is not None:
        print("\n".join(plan.warm_start.lines()), flush=True)
    action = "--more" if plan.more else "--resume"
    with checked_state_reads(trust.signed_reads(plan.storage, plan.name, action=action)):
        table = fit(plan)
        local = write_results(plan, result_files(table, plan))
        print(results.summary(table, plan.spec, plan.name, results.best_row(table, plan.spec)))
        left = results.trials_left(table, None if plan.storage.is_uri else plan.storage.experiment(plan.name))
    if not left:  # finished: no trial of it runs again
        close_journal(plan, table)
    check_outcome(table, plan, left)
    print_next_steps(plan)
    return local


def fit(plan: Plan) -> pd.DataFrame:
    """Ray up, the Tuner fitted to the end (or to Ctrl-C), the final state signed; the trials as a table."""
    quiet_ray()
    never_unpickle_trial_errors()  # a failed trial's error.pkl on a shared storage is nobody's code to run
    # Trials checkpoint often, so Tune snapshots its state often; that is wanted, its warning is not.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    done = earlier_trials(plan) if plan.more else 0  # before Ray starts: an unfinished one is one line
    stop = connect(plan.address)
    try:
        if is_local(plan.address):
            check_resources(plan.spec)
        tuner = restored_or_new_tuner(plan, make_trainable(plan.spec, plan.data), done)
        budget = time_budget_ends(fresh=True)
        try:
            tuner.fit()
        except Exception as err:
            failure = search_failure(err, plan.storage.path)  # a failed restore, a full storage: one line
            if failure is None:
                raise
            raise failure from None
        sign_final_state(plan)
        storage = plan.storage
        fs = None if storage.is_uri else storage.fs
        spent = budget.first is not None
        return results.build_table(storage.experiment(plan.name), plan.spec, storage_filesystem=fs, budget_spent=spent)
    finally:
        if stop is not None:
            stop()


def earlier_trials(plan: Plan) -> int:
    """--more: how many trials the experiment holds, once it is known to have finished (--resume finishes it)."""
    storage, experiment = plan.storage, plan.storage.experiment(plan.name)
    table = results.build_table(experiment, plan.spec, storage_filesystem=None if storage.is_uri else storage.fs)
    left = results.trials_left(table, None if storage.is_uri else experiment)
    if left:
        raise SearchError(
            f"--more: {experiment} is unfinished ({left} trials to go); finish it with --resume, then add trials"
        )
    return len(table)


def restored_or_new_tuner(plan: Plan, trainable, done: int = 0) -> tune.Tuner:
    """Tune's saved experiment on --resume, else a new Tuner (and the search file saved beside it); done: the
    trials a --more extension follows (search/driver/extend.py)."""
    experiment = plan.storage.experiment(plan.name)
    restore_failures(fresh=True)  # read by callbacks.RestoreCheck: this run's restore only, never an earlier one's
    if plan.resume and tune.Tuner.can_restore(experiment):
        try:
            return tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
        except SearchError:  # tuner.pkl is not the file this project signed (trust.signed_reads): one line already
            raise
        except Exception as err:  # a damaged (or, with --trust, foreign) tuner.pkl
            raise RestoreFailed(f"--resume: Tune could not restore {experiment} ({err!r:.200})") from None
    # a new search, or a resume of one killed before Tune saved any state: start it afresh
    if not plan.more:
        write_files(plan, {SEARCH_CONFIG: plan.spec.text, **warm_start_file(plan)})
    warm = plan.warm_start or (carried_over(study_folder(plan.storage, plan.name)) if plan.resume else None)
    tuner = make_tuner(plan.spec, trainable, plan.name, plan.storage, warm_start=warm, done=done)
    trust.sign_folder(plan.storage, plan.name, only=(TUNER_STATE,))
    return tuner


def warm_start_file(plan: Plan) -> dict[str, str]:
    """warm_start.json: what a --warm-start took from earlier experiments (finalize's report shows it)."""
    if plan.warm_start is None:
        return {}
    return {WARM_START: json.dumps(plan.warm_start.record(), indent=1) + "\n"}


def sign_final_state(plan: Plan) -> None:
    """Sign Tune's state as this process wrote it, for a later --resume: its staging copies, so that a file
    someone replaced on the storage meanwhile is not signed (the signing callback did this at every save;
    this is the last one's, in case that failed)."""
    with no_space_is_storage_full(plan.storage.path, f"{plan.name}/{MANIFEST}"):
        trust.sign_staged(plan.storage, plan.name, staging_folder(plan.name))


def result_files(table: pd.DataFrame, plan: Plan) -> dict[str, bytes | str]:
    """results.csv, results.parquet and (when a trial finished) best_config.yaml, as their contents."""
    csv, parquet = results.table_bytes(table)
    files = {RESULTS_CSV: csv, RESULTS_PARQUET: parquet}
    best = results.best_row(table, plan.spec)
    if best is not None:
        files[BEST_CONFIG] = results.best_config_yaml(best, plan.spec, plan.name)
    return files


def write_files(plan: Plan, files: dict[str, bytes | str]) -> None:
    """The one writer of the experiment's own files (Tune writes its own): a full storage is one line."""
    for file, content in files.items():
        with no_space_is_storage_full(plan.storage.path, f"{plan.name}/{file}"):
            plan.storage.write(plan.name, file, content)


def write_results(plan: Plan, files: dict[str, bytes | str]) -> Path:
    """Write the results to the storage, and for an s3:// / gs:// one a local copy in ./runs/<name>/."""
    write_files(plan, files)
    storage, name = plan.storage, plan.name
    if not storage.is_uri:
        return Path(storage.experiment(name))
    local = study_folder(storage, name)  # scripts (finalize) read best_config.yaml from a local folder
    local.mkdir(parents=True, exist_ok=True)
    for file, content in {**files, SEARCH_CONFIG: plan.spec.text}.items():
        (local / file).write_bytes(content.encode() if isinstance(content, str) else content)
    return local


def close_journal(plan: Plan, table: pd.DataFrame) -> None:
    """A finished search's Optuna journal with no trial left RUNNING (search/driver/study.py)."""
    if table.empty:
        return
    errored = table.loc[table["stop_reason"] == "error", "trial_id"]
    with no_space_is_storage_full(plan.storage.path, f"{plan.name}/{JOURNAL}"):
        close_running(study_folder(plan.storage, plan.name), known=table["trial_id"], errored=errored)


def check_outcome(table: pd.DataFrame, plan: Plan, left: int) -> None:
    """A search whose every trial failed, or one interrupted with `left` trials to go, ends in one line."""
    if not table.empty and (table["stop_reason"] == "error").all():
        raise SearchError(f"every trial failed; the first: {table['error'].iloc[0]} (see trial_*/error.txt)")
    if left:
        raise SearchInterrupted(
            f"interrupted with {left} trials to go; rerun the same command with --resume to finish {plan.name}"
        )


def print_next_steps(plan: Plan) -> None:
    experiment = plan.storage.experiment(plan.name)
    print(f"\nresults: {experiment}/{RESULTS_CSV}")
    print(f"tensorboard --logdir {experiment}")
    print(f"optuna-dashboard {study_folder(plan.storage, plan.name) / JOURNAL}")
