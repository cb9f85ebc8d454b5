"""Ray Tune's internals (entries 2, 7, 11, 12, 14-20 of search/driver/compat/__init__.py)."""

from __future__ import annotations

import functools
import glob
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from cvae.errors import first_line

from .base import (
    RAY_CHECKED,
    RESTORE_FAILED,
    TIMEOUT_REACHED,
    TUNE_CONTROLLER_LOGGER,
    RayCompatError,
    _attribute,
)

# 2. Tune's console


def set_progress_metrics(trainable, keys) -> None:
    """Only these result keys in Tune's line for a finished trial (read by _detect_progress_metrics)."""
    trainable._progress_metrics = list(keys)


# 7. Tune's driver staging folder


def driver_staging_path(trial) -> str:
    """Where the driver writes a trial's experiment state before Tune copies it to the storage."""
    return trial.local_experiment_path


def train_session_dir() -> str:
    """The folder of this Ray session's driver staging folders (one per experiment under */<name>/)."""
    from ray.train.constants import _get_ray_train_session_dir

    return _get_ray_train_session_dir()


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
            "see search/driver/compat entry 19"
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
            "see search/driver/compat entry 20"
        ) from None
