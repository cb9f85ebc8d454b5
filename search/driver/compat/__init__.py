"""Every private Ray, Optuna and tensorboardX attribute, module and patch this project relies on, in one package.

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
   "Failed to restore the run state", `RESTORE_FAILED`, turned into one error) and `TUNE_RUN_LOGGER` (tune.run's
   failed final snapshot, filtered the same way for a full disk); `QUIET_LOGGERS` are
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
   (`journal_lock`, `journal_file`), and `Study._storage._backend` (`journal_backend`): search/driver/study.py
   appends to the journal without an fsync per line, and a suggestion's lines under one hold of the lock; and
   `._log_number_offset` (`journal_offsets_reset`), the byte offset of every line read so far, which it leaves out of
   a pickle. Replacement: Optuna's own backend (an fsync per write).
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
   (`_group`, `_search_space_group`), to keep per finished trial what TPE recomputes at every suggestion;
   search/driver/parzen.py scores with a fit's Parzen mixtures (`_ParzenEstimator._mixture_distribution`,
   `parzen_mixture`) by the parts of Optuna's log_pdf (`parzen_parts`), each component's mass kept.
   tests/test_tpe.py checks its suggestions equal TPESampler's (up to 66 trials; past them it draws from kept
   fits). Replacement: TPESampler (slower).
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

The code of each entry is in the module of what it reaches into: `core.py` (Ray's core and cluster: 3, 5, 6, 8,
25), `tune.py` (Ray Tune: 2, 7, 11, 12, 14-20), `studies.py` (OptunaSearch and Optuna: 1, 13, 21-23),
`tensorboard_writers.py` (10, 24); `base.py` holds what they share (the version checked, entry 4's switch,
entry 9's logger names). Import from the package: every name is here.

Nothing here imports ray at module level: `loopback_only` must run before ray is first imported, and
the switches of entry 4 are read then.
"""

from .base import (
    HEAD_NODE_RESOURCE,
    LOOPBACK,
    LOOPBACK_SWITCH,
    QUIET_LOGGERS,
    RAY_CHECKED,
    RAY_TESTED_MINOR,
    RESTORE_FAILED,
    TIMEOUT_REACHED,
    TUNE_CONTROLLER_LOGGER,
    TUNE_RUN_LOGGER,
    RayCompatError,
    loopback_only,
)
from .core import (
    forget_auth_token,
    gcs_actors,
    keep_loopback,
    keep_loopback_in_ray_start,
    temp_dir_kwargs,
    validated_launcher_config,
)
from .studies import (
    completed_trials,
    group_decomposition,
    journal_backend,
    journal_file,
    journal_lock,
    journal_offsets_reset,
    optuna_study,
    optuna_trials,
    parzen_mixture,
    parzen_parts,
    running_trial,
    searcher_state,
    set_parzen_mixture,
    tpe_default_gamma,
    tpe_log_ndtr,
    tpe_rank_keys,
    use_tpe_log_ndtr,
)
from .tensorboard_writers import (
    add_summaries,
    trial_results,
    trial_writers,
    use_fast_crc32c,
)
from .tune import (
    LogRecorder,
    checked_state_reads,
    continue_numbering,
    driver_staging_path,
    forgive_failure,
    never_unpickle_trial_errors,
    restore_failures,
    restored_search,
    set_progress_metrics,
    state_trial_ids,
    time_budget_ends,
    train_session_dir,
    trial_error_text,
)

__all__ = [
    "HEAD_NODE_RESOURCE",
    "LOOPBACK",
    "LOOPBACK_SWITCH",
    "QUIET_LOGGERS",
    "RAY_CHECKED",
    "RAY_TESTED_MINOR",
    "RESTORE_FAILED",
    "TIMEOUT_REACHED",
    "TUNE_CONTROLLER_LOGGER",
    "TUNE_RUN_LOGGER",
    "LogRecorder",
    "RayCompatError",
    "add_summaries",
    "checked_state_reads",
    "completed_trials",
    "continue_numbering",
    "driver_staging_path",
    "forget_auth_token",
    "forgive_failure",
    "gcs_actors",
    "group_decomposition",
    "journal_backend",
    "journal_file",
    "journal_lock",
    "journal_offsets_reset",
    "keep_loopback",
    "keep_loopback_in_ray_start",
    "loopback_only",
    "never_unpickle_trial_errors",
    "optuna_study",
    "optuna_trials",
    "parzen_mixture",
    "parzen_parts",
    "restore_failures",
    "restored_search",
    "running_trial",
    "searcher_state",
    "set_parzen_mixture",
    "set_progress_metrics",
    "state_trial_ids",
    "temp_dir_kwargs",
    "time_budget_ends",
    "tpe_default_gamma",
    "tpe_log_ndtr",
    "tpe_rank_keys",
    "train_session_dir",
    "trial_error_text",
    "trial_results",
    "trial_writers",
    "use_fast_crc32c",
    "use_tpe_log_ndtr",
    "validated_launcher_config",
]
