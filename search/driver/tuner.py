"""The Tuner of a search: Ray started or joined, the trainable, OptunaSearch/TPE + ASHA, the callbacks."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from cvae.errors import first_line

from ..spec import SearchError, SearchSpec
from ..trials import trial_name
from . import local_ray
from .callbacks import RestoreCheck, SigningCallback, StorageFullCallback, TrialBoard, TrialLines
from .compat import set_progress_metrics
from .extend import continued_search
from .preflight import is_local
from .retries import RetryWhileProgressing
from .searcher import PruningOptunaSearch
from .storage import Storage
from .study import journal_path, label_study, open_storage, quiet_optuna
from .tpe import IncrementalTPESampler
from .trainable import KEY_COLUMNS, image_epochs, shareable, train_trial

# Checkpoints Tune keeps per trial. Tune also forces a full experiment-state save as soon as a trial has written
# this many since the last save (when its checkpoint that save names is deleted). With 2, a trial that wrote two
# (a rung's and its last epoch's) forced a save when it ended, though nothing of it was in the last save: in a
# search of short trials, a save per trial in the driver's loop between a trial's end and the next one's start.
# With 3 such trials force none; a long trial forces one every 3 checkpoints instead of 2, at one more kept.
CHECKPOINTS_KEPT = 3


def connect(address: str | None):
    """Start or join Ray; returns what stops it at the end (None when a Ray was already running here).

    address None/"local": a new Ray on this machine's cores, on 127.0.0.1 without a dashboard.
    "auto", "host:port" or "ray://host:10001": join that cluster.
    """
    if ray.is_initialized():  # e.g. a test or a notebook already holds a Ray
        return None
    if is_local(address):
        return local_ray.start().stop  # private temp folder and token, no process left behind
    try:
        ray.init(address=address)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        first = first_line(err)
        raise SearchError(
            f"--address {address}: cannot join a Ray cluster ({first}); is `ray start` running?"
        ) from None
    return ray.shutdown


def concurrency(spec: SearchSpec) -> int:
    """max_concurrent_trials: the file's value, else as many trials as the cluster's CPUs/GPUs hold."""
    if spec.search.max_concurrent_trials:
        return spec.search.max_concurrent_trials
    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 1) / spec.search.cpus_per_trial]
    if spec.search.gpus_per_trial:
        fits.append(resources.get("GPU", 0) / spec.search.gpus_per_trial)
    return max(1, math.floor(min(fits) + 1e-9))


def check_resources(spec: SearchSpec) -> None:
    """Fail now, not after a silent wait, when no node could ever hold one trial."""
    resources = ray.cluster_resources()
    for key, need in (("CPU", spec.search.cpus_per_trial), ("GPU", spec.search.gpus_per_trial)):
        if need and resources.get(key, 0) < need:
            flag = f"--{key.lower()}s-per-trial"
            raise SearchError(
                f"{flag}={need}: this Ray has {resources.get(key, 0):g} {key}s; lower {flag} or add nodes"
            )


def trial_images(spec: SearchSpec) -> list[int]:
    """The epochs a trial draws its TensorBoard sample plots at (search.images)."""
    mode, grace = spec.search.images, spec.asha.grace_period
    if mode == "none":
        return []
    epochs = image_epochs(spec.max_t, grace, spec.asha.reduction_factor, first=mode == "first_and_rungs")
    # survivors: most trials stop at the grace period, so their plots would be most of a search's plots
    return [e for e in epochs if e > grace] if mode == "survivors" else epochs


def trial_settings(spec: SearchSpec) -> dict:
    """What every trial of the search gets beside its searched values (search.driver.trainable.train_trial)."""
    return {
        "base": spec.base_config(),
        "metric": spec.metric,
        "max_t": spec.max_t,
        "image_epochs": trial_images(spec),
        "checkpoint_every": spec.search.checkpoint_every,
        "failures": spec.failures.model_dump(),  # failure-aware pruning's thresholds (search.trials.failure)
    }


def make_trainable(spec: SearchSpec, data):
    """The function trainable with the data in the object store and the trial's resources attached."""
    settings = trial_settings(spec)
    # numpy, not tensors, in the object store: trials on a node share one zero-copy copy
    trainable = tune.with_parameters(train_trial, data=shareable(data), settings=settings)
    resources = {"cpu": spec.search.cpus_per_trial, "gpu": spec.search.gpus_per_trial}
    trainable = tune.with_resources(trainable, resources)
    # Tune prints each finished trial's result: only these keys (the progress table picks its own).
    set_progress_metrics(trainable, [spec.metric, *(k for k in KEY_COLUMNS if k != spec.metric), "epoch", "node"])
    return trainable


def study_folder(storage: Storage, name: str) -> Path:
    """Where the Optuna journal lives: the experiment folder, or ./runs/<name>/ for an s3:// / gs:// storage."""
    return Path("runs", name).resolve() if storage.is_uri else Path(storage.experiment(name))


def make_tuner(
    spec: SearchSpec,
    trainable,
    name: str,
    storage: Storage,
    reuse_actors: bool = True,
    out=None,
    sampler=None,
    warm_start=None,
    done: int = 0,
    scheduler=None,
):
    """The Tuner: OptunaSearch (TPE, study in the experiment's Optuna journal) + ASHA, quiet console.

    reuse_actors: a finished trial's worker process runs the next trial (all trials ask for the same
    resources), saving each trial a fresh process start (~3 s on 2 cores; see docs/benchmarks.md).
    out: where the one-line-per-trial console goes (default stdout).
    sampler: an Optuna sampler in place of the TPE one (benchmarks compare e.g. RandomSampler).
    warm_start: earlier experiments' trials for the new study (search/driver/warm_start.py).
    done: trials the experiment already holds (--more, search/driver/extend.py): the study and the trial
    numbers continue after them.
    scheduler: a Tune scheduler in place of ASHA (benchmarks: FIFO, every trial to max_t).
    """
    scheduler = scheduler or ASHAScheduler(
        time_attr="epoch",  # the trainer's own epoch count: unaffected by restores
        max_t=spec.max_t,
        grace_period=spec.asha.grace_period,
        reduction_factor=spec.asha.reduction_factor,
    )
    searcher = make_searcher(spec, name, storage, sampler, warm_start=warm_start, continued=done > 0)
    limit = concurrency(spec)
    if done:  # wrapped as Tune wraps it for max_concurrent_trials, counting on from the earlier trials
        searcher, limit = continued_search(searcher, done, limit), None
    tune_config = tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=spec.search.num_samples,
        max_concurrent_trials=limit,
        reuse_actors=reuse_actors,
        time_budget_s=spec.search.time_budget_s,
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_name,
    )
    run_config = _run_config(spec, name, storage, out)
    # param_space stays empty: the searcher owns the space, fixed values travel with the trainable.
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def _run_config(spec: SearchSpec, name: str, storage: Storage, out) -> tune.RunConfig:
    """Where the experiment lives, checkpoints kept, retries, and the callbacks."""
    return tune.RunConfig(
        name=name,
        storage_path=storage.path,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
        sync_config=tune.SyncConfig(sync_artifacts=True),  # the trials' image event files
        # One TensorBoard run per trial folder with grouped tags; one console line per trial; signs Tune's
        # state files for a later --resume; stops at once on a full storage or a failed restore.
        callbacks=[
            TrialBoard(spec.metric, spec.mode, spec.max_t),
            TrialLines(spec.metric, spec.mode, spec.max_t, spec.search.num_samples, out=out),
            SigningCallback(storage.path, name),
            StorageFullCallback(storage.path),
            RestoreCheck(),
            RetryWhileProgressing(),  # max_failures counts only failures without progress
        ],
        verbose=0,  # no Tune boxes or tables: TrialLines prints
    )


def start_points(spec: SearchSpec, warm_start=None) -> list[dict]:
    """The file's start points, less those a warm start's trials have tried already."""
    return spec.start_points if warm_start is None else warm_start.untried(spec.start_points)


def make_searcher(
    spec: SearchSpec, name: str, storage: Storage, sampler=None, warm_start=None, continued: bool = False
) -> PruningOptunaSearch:
    """OptunaSearch with TPE (or `sampler`), its study in the experiment's Optuna journal, named and labelled.

    warm_start: earlier experiments' trials, added before the first suggestion. continued: the experiment's
    study goes on (--more): its journal is kept and the start points, tried already, are not queued again.
    """
    quiet_optuna()
    stale = journal_path(study_folder(storage, name))
    if stale.is_file() and not continued:  # a resume of a search killed before Tune saved any state: it starts over
        stale.replace(stale.with_name(f"{stale.name}.before-restart"))
    space = spec.optuna_space()
    with warnings.catch_warnings():  # `group` is marked experimental; it is what a conditional space needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group: each latent family's own keys are modelled together, apart from the other family's
        sampler = sampler or IncrementalTPESampler(
            seed=spec.search.seed, n_startup_trials=spec.search.tpe_startup_trials, group=space.conditional
        )
    searcher = PruningOptunaSearch(
        space=space,
        # With its own space the searcher never receives TuneConfig's metric/mode, so both get them;
        # the scheduler gets them from TuneConfig only.
        metric=spec.metric,
        mode=spec.mode,
        points_to_evaluate=None if continued else start_points(spec, warm_start) or None,
        sampler=sampler,  # Optuna 5's TPE defaults (multivariate, constant liar); the seed lives here
        storage=open_storage(study_folder(storage, name), create=True, fsync=False),  # the driver: its one writer
        study_name=name,
        max_t=spec.max_t,
    )
    label_study(searcher.study, spec, storage.experiment(name))
    if warm_start is not None:
        warm_start.add_to(searcher.study)
    return searcher
