"""Assemble and run the search: Ray (local or a cluster), Tuner + OptunaSearch/TPE + ASHA, resume, results.

`run_search` is the one public entry point; the CLI and other scripts call it.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

import yaml

from .space import SearchConfigError, SearchError, SearchSpec, load_search_config, parse_search_config
from .storage import Storage

SEARCH_CONFIG = "search_config.yaml"
RESULTS_CSV, RESULTS_PARQUET, BEST_CONFIG = "results.csv", "results.parquet", "best_config.yaml"
# A trial that raised is retried this many times from its last checkpoint.


class SearchInterrupted(SearchError):
    """The search stopped (Ctrl-C) before all its trials ran; --resume finishes it."""

    exit_code = 130


def loopback_only() -> None:
    """Make a Ray started by this process bind to 127.0.0.1 and nothing else.

    On Linux Ray resolves 127.0.0.1 to the machine's network address and listens there;
    this switch (Ray's own, read when ray is imported) keeps a local search off the network.
    Call it before the first `import ray` of the process.
    """
    from .ray_compat import LOOPBACK_SWITCH  # imports no ray

    os.environ.setdefault(LOOPBACK_SWITCH, "0")


def _connect(address: str | None) -> bool:
    """Start or join Ray; True if this call started it (and so must shut it down).

    address None/"local": a new Ray on this machine's cores, on 127.0.0.1 without a dashboard.
    "auto", "host:port" or "ray://host:10001": join that cluster.
    """
    import ray

    if ray.is_initialized():  # e.g. a test or a notebook already holds a Ray
        return False
    if address in (None, "", "local"):
        # Workers are started by the local raylet and inherit this environment: let them import
        # search/ and cvae/ from this checkout even when the project is not pip-installed.
        root = str(Path(__file__).resolve().parents[1])
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if root not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, paths)])
        from . import local_ray

        local_ray.start(ray)  # private temp folder and token, no process left behind (search/local_ray.py)
        return True
    try:
        ray.init(address=address)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SearchError(
            f"--address {address}: cannot join a Ray cluster ({first}); is `ray start` running?"
        ) from None
    return True


def _concurrency(spec: SearchSpec) -> int:
    """max_concurrent_trials: the file's value, else as many trials as the cluster's CPUs/GPUs hold."""
    import ray

    if spec.search["max_concurrent_trials"]:
        return spec.search["max_concurrent_trials"]
    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 1) / spec.search["cpus_per_trial"]]
    if spec.search["gpus_per_trial"]:
        fits.append(resources.get("GPU", 0) / spec.search["gpus_per_trial"])
    return max(1, math.floor(min(fits) + 1e-9))


def _check_resources(spec: SearchSpec) -> None:
    """Fail now, not after a silent wait, when no node could ever hold one trial."""
    import ray

    resources = ray.cluster_resources()
    for key, need in (("CPU", spec.search["cpus_per_trial"]), ("GPU", spec.search["gpus_per_trial"])):
        if need and resources.get(key, 0) < need:
            flag = f"--{key.lower()}s-per-trial"
            raise SearchError(
                f"{flag}={need}: this Ray has {resources.get(key, 0):g} {key}s; lower {flag} or add nodes"
            )


def trial_images(spec: SearchSpec) -> list[int]:
    """The epochs a trial draws its TensorBoard sample plots at (search.images)."""
    from .trainable import image_epochs

    mode, grace = spec.search["images"], spec.asha["grace_period"]
    if mode == "none":
        return []
    epochs = image_epochs(spec.max_t, grace, spec.asha["reduction_factor"], first=mode == "first_and_rungs")
    # survivors: most trials stop at the grace period, so their plots would be most of a search's plots
    return [e for e in epochs if e > grace] if mode == "survivors" else epochs


def trial_settings(spec: SearchSpec) -> dict:
    """What every trial of the search gets beside its searched values (search.trainable.train_trial)."""
    return {
        "base": spec.base_config(),
        "metric": spec.metric,
        "max_t": spec.max_t,
        "image_epochs": trial_images(spec),
        "checkpoint_every": spec.search["checkpoint_every"],
    }


def make_trainable(spec: SearchSpec, data):
    """The function trainable with the data in the object store and the trial's resources attached."""
    from ray import tune

    from .ray_compat import set_progress_metrics
    from .trainable import KEY_COLUMNS, shareable, train_trial

    settings = trial_settings(spec)
    # numpy, not tensors, in the object store: trials on a node share one zero-copy copy
    trainable = tune.with_parameters(train_trial, data=shareable(data), settings=settings)
    resources = {"cpu": spec.search["cpus_per_trial"], "gpu": spec.search["gpus_per_trial"]}
    trainable = tune.with_resources(trainable, resources)
    # Tune prints each finished trial's result: only these keys (the progress table picks its own).
    set_progress_metrics(trainable, [spec.metric, *(k for k in KEY_COLUMNS if k != spec.metric), "epoch", "node"])
    return trainable


def study_folder(storage: Storage, name: str) -> Path:
    """Where the Optuna journal lives: the experiment folder, or ./runs/<name>/ for an s3:// / gs:// storage."""
    return Path("runs", name).resolve() if storage.is_uri else Path(storage.experiment(name))


def make_tuner(
    spec: SearchSpec, trainable, name: str, storage: Storage, reuse_actors: bool = True, out=None, sampler=None
):
    """The Tuner: OptunaSearch (TPE, study in the experiment's Optuna journal) + ASHA, quiet console.

    reuse_actors: a finished trial's worker process runs the next trial (all trials ask for the same
    resources), saving each trial a fresh process start (~3 s on 2 cores; see docs/benchmarks.md).
    out: where the one-line-per-trial console goes (default stdout).
    sampler: an Optuna sampler in place of the TPE one (benchmarks compare e.g. RandomSampler).
    """
    import optuna
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from .faults import StorageFullCallback
    from .monitor import TrialBoard, TrialLines
    from .searcher import PruningOptunaSearch
    from .study import journal_path, label_study, open_storage, quiet_optuna
    from .trainable import trial_name
    from .trust import SigningCallback

    quiet_optuna()
    stale = journal_path(study_folder(storage, name))
    if stale.is_file():  # a resume of a search killed before Tune saved any state: its suggestions start over too
        stale.replace(stale.with_name(f"{stale.name}.before-restart"))
    space = spec.optuna_space()
    with warnings.catch_warnings():  # `group` is marked experimental; it is what a conditional space needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group: each latent family's own keys are modelled together, apart from the other family's
        sampler = sampler or TPESampler(
            seed=spec.search["seed"], n_startup_trials=spec.search["tpe_startup_trials"], group=space.conditional
        )
    searcher = PruningOptunaSearch(
        space=space,
        # With its own space the searcher never receives TuneConfig's metric/mode, so both get them;
        # the scheduler gets them from TuneConfig only.
        metric=spec.metric,
        mode=spec.mode,
        points_to_evaluate=spec.start_points or None,
        sampler=sampler,  # Optuna 5's TPE defaults (multivariate, constant liar); the seed lives here
        storage=open_storage(study_folder(storage, name), create=True, fsync=False),  # the driver: its one writer
        study_name=name,
        max_t=spec.max_t,
    )
    label_study(searcher.study, spec, storage.experiment(name))
    scheduler = ASHAScheduler(
        time_attr="epoch",  # the trainer's own epoch count: unaffected by restores
        max_t=spec.max_t,
        grace_period=spec.asha["grace_period"],
        reduction_factor=spec.asha["reduction_factor"],
    )
    tune_config = tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=spec.search["num_samples"],
        max_concurrent_trials=_concurrency(spec),
        reuse_actors=reuse_actors,
        time_budget_s=spec.search["time_budget_s"],
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_name,
    )
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage.path,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=spec.search["max_failures"]),
        sync_config=tune.SyncConfig(sync_artifacts=True),  # the trials' image event files
        # One TensorBoard run per trial folder with grouped tags; one console line per trial; signs Tune's
        # state files for a later --resume; stops at once on a full storage.
        callbacks=[
            TrialBoard(spec.metric, spec.mode, spec.max_t),
            TrialLines(spec.metric, spec.mode, spec.max_t, spec.search["num_samples"], out=out),
            SigningCallback(storage.path, name),
            StorageFullCallback(storage.path),
        ],
        verbose=0,  # no Tune boxes or tables: TrialLines prints
    )
    # param_space stays empty: the searcher owns the space, fixed values travel with the trainable.
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def _spec_for(config_path, name: str, storage: Storage, resume: bool) -> SearchSpec:
    """The validated search file: the given one, or on --resume the experiment's saved copy."""
    if not resume:
        if config_path is None:
            raise SearchConfigError("--config: a search file is required (see search/configs/)")
        return load_search_config(config_path)
    if not storage.exists(name, SEARCH_CONFIG):
        raise SearchConfigError(
            f"--resume: {storage.experiment(name)} holds no {SEARCH_CONFIG}; check --name and --storage"
        )
    saved = storage.read_text(name, SEARCH_CONFIG)
    if config_path is not None and Path(config_path).read_text() != saved:
        raise SearchConfigError(
            f"--config {config_path} differs from the experiment's saved {SEARCH_CONFIG}; "
            "a resume continues the saved search: drop --config or use a new --name"
        )
    try:
        return parse_search_config(
            yaml.safe_load(saved), path=Path(storage.experiment(name), SEARCH_CONFIG), text=saved
        )
    except SearchConfigError as err:
        raise SearchConfigError(f"{storage.experiment(name)}/{SEARCH_CONFIG}: {err}") from None


def _check_trust(storage: Storage, name: str, trusted: bool) -> None:
    """Before Tune unpickles anything of the folder: its state files must be this project's own, or vouched for."""
    from . import trust

    if trusted:
        print(f"note: --trust: resuming {storage.experiment(name)} without checking who wrote it", file=sys.stderr)
        trust.sign_folder(storage, name)
    else:
        trust.verify(storage, name)


def run_search(
    config_path,
    name: str,
    storage,
    num_samples: int | None = None,
    address: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    time_budget: float | None = None,
    resume: bool = False,
    trust: bool = False,
) -> Path:
    """Run (or with resume=True finish) the search `name` under `storage`; returns the experiment folder.

    The folder ends with search_config.yaml, results.csv, results.parquet, best_config.yaml and
    Tune's trial folders. For an s3:// or gs:// storage, those four files are also copied to
    ./runs/<name>/ and that local folder is returned. A resume unpickles Tune's state only if this
    project signed it (search/trust.py), or with trust=True.
    """
    from . import guards

    guards.check_name(name)
    guards.check_storage(storage)
    if address in (None, "", "local") or guards.is_loopback(address):
        loopback_only()  # before ray is first imported (results imports it); a loopback address stays loopback
    from . import results
    from . import trust as signing
    from .faults import is_no_space, search_error_in, storage_full

    storage = Storage(storage)
    spec = _spec_for(config_path, name, storage, resume)
    overrides = dict(
        num_samples=num_samples, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, time_budget_s=time_budget
    )
    if resume and any(v is not None for v in overrides.values()):
        print("note: --resume continues with the original run's samples, resources and budget", file=sys.stderr)
    spec = spec.with_overrides(**({} if resume else overrides))
    if not resume and storage.exists(name):
        raise SearchError(
            f"--name {name}: {storage.experiment(name)} exists; pass --resume to finish it or pick a new name"
        )
    if resume and storage.exists(name, "tuner.pkl"):
        _check_trust(storage, name, trust)
    guards.probe_address(address)  # seconds, not Ray's minutes of retries, when no cluster is there
    # Built once, here on the driver (trials receive it through the object store): the data files are
    # read and checked before Ray starts.
    data = guards.build_data(spec)
    # Validation is over: only now start (or join) Ray.
    from ray import tune

    # Each epoch checkpoints, so Tune snapshots its state often; that is wanted, its warning is not.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    from .monitor import quiet_ray

    quiet_ray()
    started = _connect(address)
    try:
        if address in (None, "", "local"):
            _check_resources(spec)
        trainable = make_trainable(spec, data)
        experiment = storage.experiment(name)
        if resume and tune.Tuner.can_restore(experiment):
            signing.fail_on_restore_error()  # a failed restore is one line, not a restarted, hanging experiment
            try:
                tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
            except Exception as err:  # a damaged (or, with --trust, foreign) tuner.pkl
                raise signing.RestoreFailed(f"--resume: Tune could not restore {experiment} ({err!r:.200})") from None
        else:  # a new search, or a resume of one killed before Tune saved any state: start it afresh
            storage.write(name, SEARCH_CONFIG, spec.text)
            tuner = make_tuner(spec, trainable, name, storage)
            signing.sign_folder(storage, name, only=("tuner.pkl",))
        try:
            tuner.fit()
        except Exception as err:
            failure = search_error_in(err)  # a failed restore, a full storage: one line
            if failure is None:
                raise
            raise failure from None
        try:
            signing.sign_folder(storage, name)  # the final state, as this process left it
        except OSError as err:
            if not is_no_space(err):
                raise
            raise storage_full(storage.path, f"{name}/{signing.MANIFEST}") from None
        table = results.build_table(experiment, spec, storage_filesystem=None if storage.is_uri else storage.fs)
    finally:
        if started:
            import ray

            from . import local_ray

            ray.shutdown()
            local_ray.restore_env()
    csv, parquet = results.table_bytes(table)
    best = results.best_row(table, spec)
    files = {RESULTS_CSV: csv, RESULTS_PARQUET: parquet}
    if best is not None:
        files[BEST_CONFIG] = results.best_config_yaml(best, spec, name)
    try:
        for file, content in files.items():
            storage.write(name, file, content)
    except OSError as err:
        if not is_no_space(err):
            raise
        raise storage_full(storage.path, f"{name}/{file}") from None
    local = Path(storage.experiment(name))
    if storage.is_uri:  # a local copy for scripts (e.g. finalize) that read best_config.yaml
        local = Path("runs", name).resolve()
        local.mkdir(parents=True, exist_ok=True)
        for file, content in {**files, SEARCH_CONFIG: spec.text}.items():
            (local / file).write_bytes(content.encode() if isinstance(content, str) else content)
    print(results.summary(table, spec, name, best))
    if not table.empty and (table["stop_reason"] == "error").all():
        raise SearchError(f"every trial failed; the first: {table['error'].iloc[0]} (see trial_*/error.txt)")
    left = results.trials_left(table, None if storage.is_uri else storage.experiment(name))
    if left:
        raise SearchInterrupted(
            f"interrupted with {left} trials to go; rerun the same command with --resume to finish {name}"
        )
    from .study import JOURNAL

    print(f"\nresults: {storage.experiment(name)}/{RESULTS_CSV}")
    print(f"tensorboard --logdir {storage.experiment(name)}")
    print(f"optuna-dashboard {study_folder(storage, name) / JOURNAL}")
    return local
