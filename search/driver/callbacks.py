"""The Tune callbacks of a search: what a user watches, and what stops a search in one line.

- `TrialBoard`: Tune's TensorBoard logger, one run per trial folder, with tags grouped (`train/`,
  `val/`, `refined/`, `time/`), Ray's bookkeeping left out, and HParams that show how each trial ended
  (`stop_reason`) and its objective's best and last values (`val/score_best`, `val/score_last`, or
  `refined/...` for refined_score; `time/epochs`).
- `TrialLines`: one line per ended trial and a progress line at a low rate, instead of Tune's boxes.
- `SigningCallback`: signs Tune's state files each time Tune saves them (search/driver/trust.py).
- `StorageFullCallback`, `RestoreCheck`: a full disk or a failed restore ends the search in one line.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import shutil
import sys
import time

from ray import tune
from ray.tune.logger import TBXLoggerCallback
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.summary import hparams

from ..spec import SearchError
from ..trials import ended, is_better, stop_reason
from . import compat, trust
from .faults import RestoreFailed, StorageFull, is_no_space, quiet_no_space, storage_full
from .files import TUNER_STATE
from .storage import Storage

# Tune's per-result bookkeeping: never a TensorBoard tag.
RAY_KEYS = {
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "timesteps_total",
    "timesteps_since_restore",
    "episodes_total",
    "training_iteration",
    "iterations_since_restore",
    "timestamp",
    "pid",
    "done",
    "config",
    "trial_id",
    "date",
    "hostname",
    "node_ip",
    "experiment_tag",
    "checkpoint_dir_name",
    "should_checkpoint",
    "node",
    "node_id",
    "epoch",
}
TRAIN_KEYS = ("loss", "kld", "x_loss", "y_loss", "diverged", "samples")
TIME_KEYS = ("seconds", "cpu_seconds", "image_seconds", "checkpoint_seconds", "report_seconds")


def tag(key: str) -> str | None:
    """The TensorBoard tag of a result key, or None for Ray's bookkeeping."""
    if key in RAY_KEYS:
        return None
    if key.startswith("val_refined_"):
        return "refined/" + key.removeprefix("val_refined_")
    if key.startswith("val_"):
        return "val/" + key.removeprefix("val_")
    if key in TRAIN_KEYS:
        return "train/" + key
    if key in TIME_KEYS:
        return "time/" + key
    return "other/" + key


class TrialBoard(TBXLoggerCallback):
    """Tune's TensorBoard logger, one run per trial folder, tags grouped, HParams that say how trials ended."""

    def __init__(self, metric: str, mode: str, max_t: int):
        super().__init__()
        compat.use_fast_crc32c()  # each result's event checksummed in C, not pure Python
        self._metric, self._mode, self._max_t = metric, mode, max_t
        self._best: dict = {}

    def log_trial_result(self, iteration: int, trial, result: dict):
        writers = compat.trial_writers(self)
        if trial not in writers:
            self.log_trial_start(trial)
        step = int(result.get("epoch") or result.get("training_iteration") or iteration)
        writer, logged = writers[trial], {}
        for key, value in result.items():
            name = tag(key)
            if name is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            logged[name] = value
        # One event holds the result's scalars (TensorBoard reads each as its tag's point at this step): an
        # event per scalar cost ~30 protobuf records and checksums per result (docs/benchmarks.md, section 9).
        if logged:
            values = [Summary.Value(tag=name, simple_value=float(v)) for name, v in logged.items()]
            compat.add_summaries(writer, [Summary(value=values)], step=step)
        if is_better(result.get(self._metric), self._best.get(trial), self._mode):
            self._best[trial] = result[self._metric]
        compat.trial_results(self)[trial] = dict(result)
        # No flush (an fsync) per result: tensorboardX's writer thread flushes every 30 s and at the
        # trial's end (docs/benchmarks.md, many trials: 1 fsync per epoch of every trial was the cost).

    def log_trial_end(self, trial, failed: bool = False):
        writers = compat.trial_writers(self)
        if trial not in writers:
            return
        last = compat.trial_results(self).pop(trial, None) or {}
        if trial.evaluated_params:
            self._hparams(trial, writers[trial], last, failed)
        writers.pop(trial).close()
        self._best.pop(trial, None)

    def _hparams(self, trial, writer, last: dict, failed: bool) -> None:
        params = {k: v for k, v in trial.evaluated_params.items() if isinstance(v, (str, bool, int, float))}
        params["stop_reason"] = stop_reason("ERROR" if failed else "TERMINATED", last, self._max_t)
        step = int(last.get("epoch") or 0)
        name = tag(self._metric)  # in the objective's own group: refined/score, val/score or train/loss
        metrics = {f"{name}_best": self._best.get(trial), f"{name}_last": last.get(self._metric)}
        metrics["time/epochs"] = step
        metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        for key, value in metrics.items():  # HParams shows a metric's value from the run's scalar of that tag
            writer.add_scalar(key, value, global_step=max(step, 1))
        compat.add_summaries(writer, hparams(hparam_dict=params, metric_dict=metrics))


class TrialLines(tune.Callback):
    """One line per ended trial and, at most every `every_s` seconds, one progress line."""

    def __init__(self, metric: str, mode: str, max_t: int, total: int, every_s: float = 60.0, out=None):
        self._metric, self._mode, self._max_t, self._total = metric, mode, max_t, total
        self._every, self._out = every_s, out
        self._last_progress, self._ended, self._best = time.monotonic(), 0, None

    def _print(self, text: str) -> None:
        print(text, file=self._out or sys.stdout, flush=True)

    def _line(self, trial, status: str) -> str:
        last = dict(trial.last_result or {})
        value = last.get(self._metric)
        shown = "n/a" if not isinstance(value, (int, float)) else f"{value:.4g}"
        parts = [f"{self._metric} {shown}"]
        for key, label in (("val_valid_frac", "valid"), ("val_coverage_norm", "coverage")):
            key = key.replace("val_", "val_refined_") if self._metric == "val_refined_score" else key
            if isinstance(last.get(key), (int, float)) and math.isfinite(last[key]):
                parts.append(f"{label} {100 * last[key]:.0f}%")
        if isinstance(last.get("loss"), (int, float)):
            parts.append(f"loss {last['loss']:.4g}")
        seconds = last.get("time_total_s")
        if isinstance(seconds, (int, float)):
            parts.append(f"{seconds:.0f} s")
        return f"[{self._ended}/{self._total}] {trial}: {ended(status, last, self._max_t)}; " + ", ".join(parts)

    def _note(self, trial, status: str) -> None:
        self._ended += 1
        value = (trial.last_result or {}).get(self._metric)
        if is_better(value, self._best, self._mode):
            self._best = value
        self._print(self._line(trial, status))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._note(trial, "TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._note(trial, "ERROR")

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last_progress < self._every:
            return
        self._last_progress = now
        running = sum(t.status == "RUNNING" for t in trials)
        best = "n/a" if self._best is None else f"{self._best:.4g}"
        self._print(f"... {self._ended}/{self._total} trials ended, {running} running; best {self._metric} {best}")


def quiet_ray() -> None:
    """Ray's driver lines a user cannot act on off: the token-auth default, 'Started a local Ray instance',
    Tune's 'Wrote the latest version of all result files', its 'operation took 0.6 s' notes on a busy
    machine, and its boxes and pointer to Ray's temp folder (the legacy output engine at verbose=0
    prints none; TrialLines prints instead).

    Call before ray.init. Warnings and errors about the search itself still show.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name, level in compat.QUIET_LOGGERS.items():  # Ray's internal logger names, kept in one place
        logging.getLogger(name).setLevel(level)


def staging_folder(name: str) -> str | None:
    """Tune's driver staging folder of the experiment `name`, found before any trial has started (Tune saves
    then too)."""
    found = glob.glob(os.path.join(compat.train_session_dir(), "*", name, "driver_artifacts"))
    return max(found, key=os.path.getmtime) if found else None


class SigningCallback(tune.Callback):
    """Signs Tune's state files each time Tune saves them, before they are copied to the storage.

    Tune calls `get_state` of every callback right after it wrote the experiment state and the
    searcher's files into its driver staging folder; the digests are recorded (in the storage's
    manifest) before the background copy starts, so the manifest already vouches for the new
    files while the older ones are still in place.
    """

    def __init__(self, storage_path: str, name: str):
        self.storage_path, self.name = storage_path, name
        self._staging: str | None = None
        self._known: dict[str, list[str]] | None = None
        self._key: bytes | None = None

    def __getstate__(self):  # pickled into tuner.pkl: no key, no history
        return {"storage_path": self.storage_path, "name": self.name}

    def __setstate__(self, state):
        self.__init__(state["storage_path"], state["name"])

    def _folder(self) -> trust.Folder:
        return trust.storage_folder(Storage(self.storage_path), self.name)

    def setup(self, **info):
        self._key = trust.load_key(create=True)
        self._known = trust.read_manifest(self._folder(), self._key) or {}

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._staging is None:
            self._staging = compat.driver_staging_path(trial)

    def get_state(self):
        try:
            self._sign_staging()
        except StorageFull:
            raise  # out of Tuner.fit, before Tune's copy would truncate the last good state on the storage
        except OSError as err:
            if is_no_space(err):
                raise storage_full(self.storage_path, "the experiment state") from None
            logging.getLogger(__name__).warning("could not sign the experiment state", exc_info=True)
        except Exception:  # never break the search over a signature; the resume check will say so
            logging.getLogger(__name__).warning("could not sign the experiment state", exc_info=True)
        return None  # stateless for Tune: no callback-states file

    def _check_room(self, size: int) -> None:
        """Refuse to let Tune overwrite its state on a local storage that cannot hold the new copy."""
        if "://" in self.storage_path:
            return
        free = shutil.disk_usage(self.storage_path).free
        if free < 2 * size + 64 * 1024:
            raise storage_full(self.storage_path, f"the experiment state ({size} bytes, {free} free)")

    def _sign_staging(self) -> None:
        if self._staging is None:
            self._staging = staging_folder(self.name)
        if self._staging is None or self._key is None:
            return
        new, size = trust.staged_digests(self._staging)
        self._check_room(size)
        folder = self._folder()
        tuner = folder.read(TUNER_STATE)
        if tuner is not None and TUNER_STATE not in new:
            new[TUNER_STATE] = trust.digest(tuner)  # written once by Tuner itself, straight to the storage
        if new:
            self._known = trust.record(folder, new, self._key, self._known or {})


class StorageFullCallback(tune.Callback):
    """Stops the search (raises StorageFull) at the first trial that failed for want of disk space."""

    def __init__(self, storage_path: str):
        self.storage_path = storage_path

    def setup(self, **info):
        quiet_no_space()

    def _check(self, trial) -> None:
        if is_no_space(compat.trial_error_text(trial)):
            raise storage_full(self.storage_path)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._check(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._check(trial)


class RestoreCheck(tune.Callback):
    """Ends a resumed search in one line when Tune could not restore its state (instead of the half-restored,
    restarted experiment Tune goes on with, which can hang). Tune restores before it sets callbacks up."""

    def setup(self, **info):
        recorded = compat.restore_failures()
        if isinstance(recorded.error, SearchError):  # ours, one line already: a state file that is not signed
            raise recorded.error
        failure = recorded.first
        if failure is not None:
            raise RestoreFailed(f"--resume: Tune could not restore the experiment's state ({failure[:200]})")
