"""Every private Ray, Optuna and tensorboardX attribute, module and patch this project relies on, in one place.

Checked against Ray 2.60.0 (`RAY_CHECKED`; pyproject.toml allows 2.60.x only) and Optuna 5.1 (entries 13,
21-23). Each entry below says why it is needed and what public API would replace it. On a Ray upgrade, read
the entries again in the new Ray's source, run tests/test_ray_compat.py (each entry exists and still does what is said)
and the cluster and search tests, then widen the bound in pyproject.toml.

1. `OptunaSearch._ot_trials`, `._ot_study`, `._completed_trials` (ray.tune.search.optuna), through
   `optuna_trials`, `optuna_study` and `completed_trials`. search/driver/searcher.py tells an ASHA-stopped
   trial PRUNED (Ray tells every trial COMPLETE), tags each Optuna trial with its Ray trial id and
   TensorBoard run, and closes trials a killed driver left RUNNING: all need the Optuna trial behind
   a Ray trial id, the study, and the set of trials already told; its `save` pickles `OptunaSearch.__dict__`
   less those two (`searcher_state`), which Ray's `restore` takes back. No public API: OptunaSearch only
   exposes `suggest`/`on_trial_*`. Replacement: a `ray.tune.search.Searcher` of our own that drives
   an Optuna study with `ask`/`tell` (the study opened with `optuna.load_study` on our storage).
2. The `_progress_metrics` attribute of a trainable (read by
   `ray.tune.progress_reporter._detect_progress_metrics`), through `set_progress_metrics`: the only
   result keys Tune's console prints for a trial (its TrialProgressCallback, or the new output
   engine's reporter). Replacement: `RunConfig(progress_reporter=CLIReporter(metric_columns=...))`
   covers the legacy table only; the per-trial lines have no public switch.
3. `ray._private.services.resolve_ip_for_localhost`, patched by `keep_loopback_in_ray_start` (run by
   cluster/loopback_ray.py, the `ray start` of every node of cluster/local_cluster.py). Ray's CLI
   rewrites a loopback `--node-ip-address`/`--address` to the host's routable IP, so the nodes of a
   one-host cluster would listen beyond 127.0.0.1. No public replacement: `ray start` has no switch
   (on a real multi-host cluster, nodes are given real addresses and nothing is patched).
4. `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (`LOOPBACK_SWITCH`, read into
   `ray._private.ray_constants.ENABLE_RAY_CLUSTER` when ray is imported): with it, `ray.init` keeps
   a loopback address loopback (`get_node_ip_address` answers 127.0.0.1), so a local Ray and a
   driver of the local cluster stay on 127.0.0.1. Set by `loopback_only` below and by
   cluster/local_cluster.py for drivers. Meant for Windows/macOS; on Linux it is a side door.
   Replacement: `ray.init(_node_ip_address=...)`, private too; none public.
5. `ray.init(_temp_dir=...)` (`temp_dir_kwargs`), used by search/driver/local_ray.py: a fresh private temp
   folder per local search instead of the shared /tmp/ray. Replacement: `ray start --temp-dir`
   (public) with `ray.init(address=...)`, or `RAY_TMPDIR` (moves only the root, not the session).
6. `ray._private.state.actors()` (`gcs_actors`): every actor of a cluster, dead ones included, with
   its pid and node id; cluster/local_cluster.py's `inspect` maps trial pids to nodes with it.
   Replacement: `ray.util.state.list_actors(detail=True)`, which needs the dashboard (`ray[default]`),
   off on the local cluster. `HEAD_NODE_RESOURCE` ("node:__internal_head__", in `ray.nodes()`'s
   resources) marks the head; Ray's docs name it for scheduling onto the head.
7. `ray.train.constants._get_ray_train_session_dir()` (`train_session_dir`) and a trial's driver
   staging folder (`driver_staging_path`, the `local_experiment_path` property of Tune's `Trial`):
   search/driver/trust.py signs Tune's state files there before Tune copies them to the storage. No public
   API names the staging folder; Tune's state files are only public once synced to `storage_path`.
8. `ray.autoscaler._private.util.prepare_config` + `validate_config` (`validated_launcher_config`):
   the merge with provider defaults and the schema check `ray up` runs, used by
   tests/test_cluster_configs.py offline. Replacement: none offline (`ray up` goes on to call the
   cloud provider).
9. Internal logger names (module paths: they move when Ray's modules do). `TUNE_CONTROLLER_LOGGER`
   (search/driver/faults.py and search/driver/trust.py filter its records: a full disk's trial failure, and
   "Failed to restore the run state", `RESTORE_FAILED`, turned into one error); `QUIET_LOGGERS` are
   the ones search/driver/callbacks.py and search/driver/trainable.py lower (token-auth note, worker start lines,
   `warn_if_slow`, a line per checkpoint). Replacement: none (Ray's public
   logging config sets levels for "ray" and "ray.tune" only).

10. Tune's `TBXLoggerCallback` keeps one tensorboardX writer per trial in `_trial_writer` and the last
   result in `_trial_result` (`trial_writers`, `trial_results`); search/driver/callbacks.py's
   `TrialBoard` writes its grouped tags and HParams through them, and HParams summaries and each result's
   scalars (one event per result) go through the writer's `file_writer.add_summary` (`add_summaries`).
   Replacement: a `LoggerCallback` of our own with its own tensorboardX writers.
11. A trial's `error_file` and `get_error()` (`trial_error_text`): the worker's traceback, read by
   search/driver/callbacks.py (a full disk stops the search) and search/driver/results.py (the
   table's error column). Public only through `ResultGrid` after the run.
12. `SearchGenerator.restore_from_dir`, `is_finished`, `total_samples` (`restored_search`): how many
   trials an interrupted search still owes, read from its saved searcher state. Replacement: none
   without running `Tuner.restore`.
13. Optuna 5.0's `JournalFileBackend._lock`, `._file_path` and `optuna.storages.journal._file.get_lock_file`
   (`journal_lock`, `journal_file`): search/driver/study.py appends to the journal without an fsync per
   line; and `._log_number_offset` (`journal_offsets_reset`), the byte offset of every line read so far, which
   it leaves out of a pickle. Replacement: Optuna's own backend (an fsync per write).
14. Tune logs "Failed to restore the run state" and then restarts a half-restored experiment, which can
   hang (`restore_failures`, a `LogRecorder` filter on `TUNE_CONTROLLER_LOGGER`, records it;
   search/driver/callbacks.py's `RestoreCheck` stops the run on it at setup, before any trial runs). Replacement:
   `FailureConfig(fail_fast=True)`, which also stops on every trial failure.

15. `Trial.get_pickled_error`, replaced by `never_unpickle_trial_errors`: Tune's ResultGrid (built at the
   end of every `Tuner.fit`) reads a failed trial's error.pkl back from the storage with cloudpickle; on a
   shared storage whoever can write the experiment folder could put code there. The text traceback
   (error.txt, `get_error`) tells a user the same, and ResultGrid falls back to it. Replacement: none.

16. The time budget's end, seen as `TimeoutStopper`'s "Reached timeout of ..." on the `ray` logger
   (`time_budget_ends`): when it fires Tune stops the running trials and leaves the pending ones PENDING, which
   would otherwise read as an interrupted search owing trials. Replacement: a `tune.Stopper` of our own.

17. The readers that unpickle Tune's state files, wrapped by `checked_state_reads`: `ray.cloudpickle` as
   `tuner_internal.pickle` (tuner.pkl), `pickle` as `optuna_search` uses it (searcher-state-*.pkl, read by
   OptunaSearch.restore), `_loads_with_cloudpickle` in `tune_controller` and
   `experiment_analysis` (experiment_state-*.json), and `_load_newest_checkpoint` as imported by
   `search_generator`, `basic_variant` and `callback` (searcher-state-*.pkl, search_gen_state-*.json,
   callback-states-*). Checking a folder and then letting Tune read it again leaves a window in which
   whoever can write the folder swaps a file; wrapped, the bytes checked against search/driver/trust.py's
   signed manifest are the very bytes unpickled. Replacement: none (Tune has no hook between reading a
   state file and unpickling it).
18. A trial's failure count, `trial.run_metadata.num_failures` (`forgive_failure`): search/driver/retries.py
   takes back a failure that came after progress (a later epoch than at the previous one), so `max_failures` counts only
   failures without progress. Tune exempts preempted nodes the same way (`RayActorError.preempted`).
   Replacement: none (FailureConfig counts every failure).
19. `SearchGenerator.get_state()` / `set_state()` and their keys "counter" and "total_samples"
   (`continue_numbering`): search/driver/extend.py's `ContinuedSearch` runs more trials in a finished experiment
   (`--more`) as a new Tuner run whose trial numbers (experiment tags, trial folders, TensorBoard runs) go on after
   the earlier trials instead of starting again at 1; the counter is the generator's own, the sample count must
   cover it. Replacement: none (`Tuner.restore` cannot add trials to a finished experiment, ray-project/ray
   #30223); a `trial_name_creator` alone would leave Tune's experiment tags (and the searcher's run names) at 1.
20. The layout of Tune's `experiment_state-*.json` (`state_trial_ids`): JSON whose "trial_data" holds, per
   trial, its JSON state (with "trial_id") first. search/driver/extend.py reads which trials each Tuner run of an
   experiment holds without unpickling anything, so an extended experiment's results cover every run. Replacement:
   `ExperimentAnalysis` of each file (which unpickles and reads every trial's results, for each snapshot).
21. Optuna 5.1's TPESampler internals (`group_decomposition`, `tpe_rank_keys`, `tpe_default_gamma`):
   search/driver/tpe.py overrides TPESampler's private `_get_internal_repr`, `_sample` (reusing its
   `_get_params`, `_build_parzen_estimator`, `_compute_acquisition_func`, `_compare`, `_rng`, `_gamma`,
   `_constant_liar`, `_n_ei_candidates`) and the group bookkeeping of `infer_relative_search_space`
   (`_group`, `_search_space_group`), to keep per finished trial what TPE recomputes at every suggestion.
   tests/test_tpe.py checks its suggestions equal TPESampler's. Replacement: TPESampler (slower).
22. Optuna 5.1's `optuna.samplers._tpe._truncnorm._log_ndtr`, replaced process-wide by `use_tpe_log_ndtr`
   with search/driver/tpe.py's `log_ndtr`: the same values bit for bit (tests/test_tpe.py), without a Python
   call per element. Replacement: Optuna's own (`tpe_log_ndtr`; the same suggestions, slower).
23. `optuna.trial.Trial(study, trial_id)` on an existing trial, with `FrozenTrial._trial_id` (`running_trial`):
   search/driver/searcher.py saves its state without the Optuna trials and finds the running ones again in
   the journal after a restore. Replacement: Ray's OptunaSearch.save, which pickles every trial each time.
24. The CRC-32C of TensorBoard event records: `crc32c` in `tensorboard.compat.tensorflow_stub.pywrap_tensorflow`
   (torch's SummaryWriter: a trial's sample pictures) and in `tensorboardX.record_writer` (the driver's TrialBoard),
   replaced by google_crc32c's C one (`use_fast_crc32c`): both are pure Python without TensorFlow or the `crc32c`
   package, ~0.2 us a byte (tens of ms for a picture). The same values (tests/test_ray_compat.py).
   Replacement: TensorFlow installed, or tensorboardX's optional `crc32c` package (for tensorboardX only).
25. Ray's per-process auth token cache, `ray._raylet.AuthenticationTokenLoader.instance().reset_cache()` after
   `ray._raylet.Config.initialize("")` (`forget_auth_token`, what Ray's own `authentication_test_utils` does):
   a process loads the token once, and `ray.init` also sets `RAY_AUTH_MODE` for good. A second local Ray in the
   same process (a benchmark's, a test's, a search after another) with its own private token would otherwise
   present the first one's token to its GCS and fail with InvalidAuthToken. Replacement: none (one Ray per process).

Nothing here imports ray at module level: `loopback_only` must run before ray is first imported, and
the switches of entry 4 are read then.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from cvae.errors import UserError, first_line

RAY_CHECKED = "2.60.0"
RAY_TESTED_MINOR = (2, 60)

LOOPBACK = ("127.0.0.1", "localhost")
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
HEAD_NODE_RESOURCE = "node:__internal_head__"
TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
RESTORE_FAILED = "Failed to restore the run state"
TIMEOUT_REACHED = "Reached timeout of"
QUIET_LOGGERS = {
    "ray._private.authentication.authentication_token_setup": logging.ERROR,  # search/driver/callbacks.py (token note)
    "ray._private.worker": logging.WARNING,  # search/driver/callbacks.py
    "ray.tune.tune": logging.WARNING,  # search/driver/callbacks.py
    "ray.tune.utils.util": logging.ERROR,  # search/driver/callbacks.py (warn_if_slow on a busy machine)
    "ray.train._internal.storage": logging.WARNING,  # search/driver/trainable.py, in each trial
}


def loopback_only() -> None:
    """Make a Ray started by this process bind to 127.0.0.1 and nothing else (entry 4).

    On Linux Ray resolves 127.0.0.1 to the machine's network address and listens there; this switch
    (Ray's own, read when ray is imported) keeps a local search off the network. Call it before the
    first `import ray` of the process: the entry points (search.run_search, the cluster's drivers,
    the tests' conftest) do.
    """
    os.environ.setdefault(LOOPBACK_SWITCH, "0")


class RayCompatError(UserError):
    """An installed Ray without an internal this project relies on (see this module's docstring)."""


def _attribute(obj, name: str, owner: str | None = None):
    try:
        return getattr(obj, name)
    except AttributeError:
        import ray

        raise RayCompatError(
            f"{owner or type(obj).__name__}.{name} is gone in Ray {ray.__version__} (checked with {RAY_CHECKED}): "
            "see search/driver/compat.py"
        ) from None


# 1. OptunaSearch's state


def optuna_trials(searcher) -> dict:
    """Ray trial id -> the optuna.Trial the searcher asked for it (OptunaSearch._ot_trials)."""
    return _attribute(searcher, "_ot_trials")


def optuna_study(searcher):
    """The optuna.Study behind the searcher (OptunaSearch._ot_study)."""
    return _attribute(searcher, "_ot_study")


def completed_trials(searcher) -> set:
    """Ray trial ids whose Optuna trial is already told (OptunaSearch._completed_trials): skipped after."""
    return _attribute(searcher, "_completed_trials")


def searcher_state(searcher) -> dict:
    """What Ray's OptunaSearch.save pickles (the searcher's __dict__) less the Optuna trials and the told ones."""
    optuna_trials(searcher), completed_trials(searcher)  # both still there
    return {k: v for k, v in searcher.__dict__.items() if k not in ("_ot_trials", "_completed_trials")}


# 2. Tune's console


def set_progress_metrics(trainable, keys) -> None:
    """Only these result keys in Tune's line for a finished trial (read by _detect_progress_metrics)."""
    trainable._progress_metrics = list(keys)


# 3. `ray start` on loopback

_ray_resolve = None  # Ray's own resolve_ip_for_localhost, once keep_loopback_in_ray_start replaced it


def keep_loopback(host: str) -> str:
    """127.0.0.1 / localhost stay 127.0.0.1; any other host resolves as Ray does."""
    if host in LOOPBACK:
        return "127.0.0.1"
    import ray._private.services as services

    return (_ray_resolve or services.resolve_ip_for_localhost)(host)


def keep_loopback_in_ray_start() -> None:
    """Make Ray's CLI in this process keep a loopback node or head address as given (idempotent)."""
    global _ray_resolve
    import ray._private.services as services

    if _ray_resolve is None:
        _ray_resolve = _attribute(services, "resolve_ip_for_localhost", owner="ray._private.services")
        services.resolve_ip_for_localhost = keep_loopback


# 5. ray.init's temp folder


def temp_dir_kwargs(folder: str) -> dict:
    """ray.init keyword arguments that put a new local Ray's temp folder (sockets, logs, session) in `folder`."""
    return {"_temp_dir": folder}


# 6. the GCS's actor table


def gcs_actors() -> dict:
    """actor id -> the GCS's record of it (dead actors included); needs a connected ray."""
    import ray._private.state

    return _attribute(ray._private.state, "actors", owner="ray._private.state")()


# 7. Tune's driver staging folder


def driver_staging_path(trial) -> str:
    """Where the driver writes a trial's experiment state before Tune copies it to the storage."""
    return trial.local_experiment_path


def train_session_dir() -> str:
    """The folder of this Ray session's driver staging folders (one per experiment under */<name>/)."""
    from ray.train.constants import _get_ray_train_session_dir

    return _get_ray_train_session_dir()


# 8. `ray up`'s validation


def validated_launcher_config(config: dict) -> dict:
    """A cluster launcher config merged with its provider's defaults and validated, as `ray up` does."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    merged = prepare_config(config)
    validate_config(merged)
    return merged


# 10. TBXLoggerCallback's writers


def trial_writers(callback) -> dict:
    """trial -> its tensorboardX SummaryWriter (TBXLoggerCallback._trial_writer)."""
    return _attribute(callback, "_trial_writer")


def trial_results(callback) -> dict:
    """trial -> its last result (TBXLoggerCallback._trial_result)."""
    return _attribute(callback, "_trial_result")


def add_summaries(writer, summaries, step: int | None = None) -> None:
    """Write ready-made summaries (HParams; a result's scalars at `step`) through a tensorboardX writer's file
    writer."""
    file_writer = _attribute(writer, "file_writer")
    for summary in summaries:
        file_writer.add_summary(summary, global_step=step)


# 11. a trial's error


def trial_error_text(trial) -> str:
    """The worker's traceback of a failed trial ('' when there is none or it cannot be read)."""
    try:
        return trial.get_error() or ""
    except OSError:
        return ""


# 12. the saved search generator


def restored_search(folder: str, searcher):
    """Tune's SearchGenerator around `searcher`, restored from a local experiment folder."""
    from ray.tune.search import SearchGenerator

    generator = SearchGenerator(searcher)
    generator.restore_from_dir(folder)
    return generator


# 13. Optuna's journal file


def journal_lock(backend):
    """The journal file's lock, as a context manager (JournalFileBackend._lock via get_lock_file)."""
    from optuna.storages.journal._file import get_lock_file

    return get_lock_file(_attribute(backend, "_lock"))


def journal_file(backend) -> str:
    return _attribute(backend, "_file_path")


def journal_offsets_reset() -> dict:
    """A JournalFileBackend's offsets as on a new one: line 0 at byte 0 (what a pickled backend needs)."""
    return {"_log_number_offset": {0: 0}}


# 14. a failed restore


class LogRecorder(logging.Filter):
    """Records the first record of a logger whose message starts with `prefix` (`first`: its error's first
    line, or the message); hide=True keeps it, and the `hide_after` line that follows it, off the console.
    Filters only, never raises: the search checks `first` where it decides."""

    def __init__(self, prefix: str, hide: bool = False, hide_after: str | None = None):
        super().__init__()
        self.prefix, self.hide, self.hide_after = prefix, hide, hide_after
        self.first: str | None = None
        self.error: BaseException | None = None  # the exception behind `first`, if the record had one

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(self.prefix):
            error = record.exc_info[1] if record.exc_info else None
            if self.first is None:
                self.first, self.error = (first_line(error) if error else message), error
            return not self.hide
        return not (self.first is not None and self.hide_after and message.startswith(self.hide_after))


def _recorder(logger_name: str, prefix: str, fresh: bool, **options) -> LogRecorder:
    logger = logging.getLogger(logger_name)
    found = next((f for f in logger.filters if isinstance(f, LogRecorder) and f.prefix == prefix), None)
    if found is None:
        found = LogRecorder(prefix, **options)
        logger.addFilter(found)
    if fresh:
        found.first = found.error = None
    return found


def restore_failures(fresh: bool = False) -> LogRecorder:
    """Tune's 'Failed to restore the run state' on its controller logger, its traceback and 'Restarting
    experiment' hidden (entry 14); fresh=True forgets what was seen (before a restore)."""
    return _recorder(TUNE_CONTROLLER_LOGGER, RESTORE_FAILED, fresh, hide=True, hide_after="Restarting experiment")


def time_budget_ends(fresh: bool = False) -> LogRecorder:
    """Tune's TimeoutStopper logging 'Reached timeout' on the `ray` logger (entry 16): the search's time budget
    is spent, so trials still pending will never run."""
    return _recorder("ray", TIMEOUT_REACHED, fresh)


# 15. a trial's pickled error


def never_unpickle_trial_errors() -> None:
    """Make Tune read a failed trial's error as text (error.txt), never by unpickling error.pkl (idempotent)."""
    from ray.tune.experiment import Trial

    _attribute(Trial, "get_pickled_error", owner="ray.tune.experiment.Trial")
    Trial.get_pickled_error = _no_pickled_error


def _no_pickled_error(trial) -> None:
    return None


# 17. the readers of Tune's state files


@contextmanager
def checked_state_reads(check):
    """While inside, each state file Tune unpickles is first passed to `check(file, data)`, which raises to
    refuse it: the bytes checked are the bytes unpickled (entry 17). `file` is the file's name, or for the
    two readers that see only bytes its pattern (`tuner.pkl`, `experiment_state-*.json`)."""
    import ray.cloudpickle as cloudpickle
    from ray.tune import callback
    from ray.tune.analysis import experiment_analysis
    from ray.tune.execution import tune_controller
    from ray.tune.impl import tuner_internal
    from ray.tune.search import basic_variant, search_generator
    from ray.tune.search.optuna import optuna_search

    def checked_loads(pattern: str, loads):
        def load(data):
            check(pattern, data.encode() if isinstance(data, str) else bytes(data))
            return loads(data)

        return load

    def newest_checkpoint(dirpath: str, pattern: str):
        paths = glob.glob(os.path.join(dirpath, pattern))
        if not paths:
            return None
        newest = Path(max(paths))
        data = newest.read_bytes()
        check(newest.name, data)
        return cloudpickle.loads(data)

    readers = {
        (tuner_internal, "pickle"): lambda pickle: _CheckedPickle(pickle, check, "tuner.pkl"),
        (optuna_search, "pickle"): lambda pickle: _CheckedPickle(pickle, check),  # searcher-state-*.pkl
        (tune_controller, "_loads_with_cloudpickle"): lambda loads: checked_loads("experiment_state-*.json", loads),
        (experiment_analysis, "_loads_with_cloudpickle"): lambda loads: checked_loads("experiment_state-*.json", loads),
        (search_generator, "_load_newest_checkpoint"): lambda _: newest_checkpoint,  # search_gen_state-*.json
        (basic_variant, "_load_newest_checkpoint"): lambda _: newest_checkpoint,
        (callback, "_load_newest_checkpoint"): lambda _: newest_checkpoint,  # callback-states-*
    }
    saved = {(module, name): _attribute(module, name, owner=module.__name__) for module, name in readers}
    try:
        for (module, name), checked in readers.items():
            ray_own = getattr(saved[module, name], "__wrapped__", saved[module, name])  # inside another check: Ray's
            replacement = checked(ray_own)
            if not isinstance(replacement, _CheckedPickle):
                replacement = functools.wraps(ray_own)(replacement)
            setattr(module, name, replacement)
        yield
    finally:
        for (module, name), original in saved.items():
            setattr(module, name, original)


class _CheckedPickle:
    """A pickle module whose `loads` and `load` check the bytes first: Ray's modules that import one use it
    for dumps too. `file`: the name checked (else that of the file `load` reads)."""

    def __init__(self, module, check, file: str | None = None):
        self._module, self._check, self._file = module, check, file

    def loads(self, data, *args, **kwargs):
        self._check(self._file, bytes(data))
        return self._module.loads(data, *args, **kwargs)

    def load(self, stream, *args, **kwargs):
        data = stream.read()
        self._check(self._file or Path(stream.name).name, data)
        return self._module.loads(data, *args, **kwargs)

    @property
    def __wrapped__(self):
        return self._module

    def __getattr__(self, name):
        return getattr(self._module, name)


# 18. a trial's failure count


def forgive_failure(trial) -> None:
    """Take back the trial's last counted failure (entry 18)."""
    metadata = _attribute(trial, "run_metadata", owner="ray.tune.experiment.Trial")
    metadata.num_failures = max(0, metadata.num_failures - 1)
    metadata.invalidate_cache()


# 19. the search generator's trial count


def continue_numbering(generator, done: int) -> None:
    """Move a new run's search generator past `done` earlier trials: its next trial is number done + 1, and its
    sample count grows by as many (so is_finished still means the run's own trials were all created)."""
    state = generator.get_state()
    missing = {"counter", "total_samples"} - set(state)
    if missing:
        import ray

        raise RayCompatError(
            f"SearchGenerator state without {sorted(missing)} in Ray {ray.__version__} (checked with {RAY_CHECKED}): "
            "see search/driver/compat.py entry 19"
        )
    state["counter"] += done
    state["total_samples"] += done
    generator.set_state(state)


# 20. Tune's experiment state file


def state_trial_ids(data: bytes) -> list[str] | None:
    """The trial ids an experiment_state-*.json holds, read as plain JSON (its embedded pickles stay unread);
    None for a file that is not JSON (cut short by a crash)."""
    import json

    try:
        state = json.loads(data)
    except ValueError:
        return None
    try:
        return [json.loads(entry[0])["trial_id"] for entry in state["trial_data"]]
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise RayCompatError(
            f"an experiment_state file this Ray wrote is not laid out as in Ray {RAY_CHECKED} ({first_line(err)}): "
            "see search/driver/compat.py entry 20"
        ) from None


# 21. TPESampler's per-trial work


def group_decomposition():
    """An empty partition of a space into groups of parameters seen together (what TPE's `group` option builds)."""
    from optuna.search_space.group_decomposed import _SearchSpaceGroup

    return _SearchSpaceGroup()


def tpe_rank_keys():
    """TPE's sort keys of a pruned trial (last step, last value) and of an infeasible one (constraint excess)."""
    from optuna.samplers._tpe.sampler import _get_infeasible_trial_score, _get_pruned_trial_score

    return _get_pruned_trial_score, _get_infeasible_trial_score


def tpe_default_gamma():
    """How many trials TPE counts as good, given how many have finished (single objective)."""
    from optuna.samplers._tpe.sampler import default_gamma

    return default_gamma


# 22. TPE's log of the normal CDF

_optuna_log_ndtr = None  # Optuna's own, once use_tpe_log_ndtr replaced it


def tpe_log_ndtr(a):
    """Optuna's own log normal CDF (a Python call per element)."""
    from optuna.samplers._tpe import _truncnorm

    return (_optuna_log_ndtr or _truncnorm._log_ndtr)(a)


def use_tpe_log_ndtr(replacement) -> None:
    """Make TPE compute its log normal CDF with `replacement` (idempotent)."""
    global _optuna_log_ndtr
    from optuna.samplers._tpe import _truncnorm

    if _optuna_log_ndtr is None:
        _optuna_log_ndtr = _attribute(_truncnorm, "_log_ndtr", owner="optuna.samplers._tpe._truncnorm")
    _truncnorm._log_ndtr = replacement


# 23. an Optuna trial found again


def running_trial(study, frozen):
    """The optuna.Trial that tells and reports for an existing trial of `study` (a FrozenTrial of it)."""
    from optuna.trial import Trial

    return Trial(study, _attribute(frozen, "_trial_id", owner="optuna.trial.FrozenTrial"))


# 24. TensorBoard's record checksums


def use_fast_crc32c() -> None:
    """TensorBoard's and tensorboardX's event writers checksum with google_crc32c's C code (idempotent; a no-op
    where google_crc32c has no compiled implementation)."""
    import google_crc32c

    if google_crc32c.implementation != "c":
        return
    import tensorboardX.record_writer as tensorboardx_writer
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

    for module in (pywrap_tensorflow, tensorboardx_writer):
        _attribute(module, "crc32c", owner=module.__name__)
        module.crc32c = google_crc32c.value


# 25. Ray's auth token cache


def forget_auth_token() -> None:
    """Make this process read Ray's authentication settings and token afresh at the next ray.init (entry 25)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
