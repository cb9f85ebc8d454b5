"""What a user watches during a search: trial names, TensorBoard runs, and a quiet console.

- `run_name`: a trial's folder (= its TensorBoard run) and console name, e.g.
  `t03_mlp_lr=2.3e-03_beta=0.52_4f1c2a9b`: trial number, a few key parameters, Ray's trial id.
- `TrialBoard`: Tune's TensorBoard logger with tags grouped (`train/`, `val/`, `refined/`,
  `time/`), Ray's bookkeeping left out, and HParams that show how each trial ended
  (`stop_reason`) and its objective's best and last values (`val/score_best`, `val/score_last`,
  or `refined/...` for refined_score; `time/epochs`).
- `TrialLines`: one line per ended trial and a progress line at a low rate, instead of Tune's
  boxes.
"""

from __future__ import annotations

import math
import sys
import time

from ray import tune
from ray.tune.logger import TBXLoggerCallback

# Parameters a name shows first (when searched), then the others in the space's order.
KEY_PARAMS = ("model", "latent", "head", "lr", "beta", "latent_dim", "components", "hidden", "optimizer", "wy")
NAME_PARAMS = 3
SHORT = {"optimizer": "opt", "latent_dim": "z", "hidden": "h", "batch_size": "bs", "weight_decay": "wd"}
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


def _value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.1e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.3g}"
    return str(value)


def run_name(number, config: dict, trial_id: str = "", params=None) -> str:
    """`t<number>_<key params>_<trial id>`: readable in TensorBoard's run list and on the console."""
    keys = [k for k in KEY_PARAMS if k in config] + [k for k in config if k not in KEY_PARAMS]
    if params is not None:
        keys = [k for k in keys if k in params]
    parts = [f"t{int(number):02d}" if str(number).isdigit() else "t"]
    for key in keys[:NAME_PARAMS]:
        value = config[key]
        parts.append(str(value) if isinstance(value, str) else f"{SHORT.get(key, key)}={_value(value)}")
    if trial_id:
        parts.append(trial_id)
    name = "_".join(parts)
    return "".join(c if c.isalnum() or c in "._=-+" else "-" for c in name)


def trial_number(trial) -> str:
    """Tune's 1-based count of the trial (the start of its experiment_tag)."""
    return (getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]


def trial_name(trial) -> str:
    """Tune's trial_name_creator / trial_dirname_creator."""
    return run_name(trial_number(trial), dict(trial.config or {}), trial.trial_id)


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


def ended(status: str, last: dict, max_t: int) -> str:
    """How a trial ended, in words: 'finished', 'stopped by ASHA at epoch 3', 'diverged at epoch 2', ..."""
    from .results import stop_reason

    reason = stop_reason(status, last, max_t)
    epoch = int(last.get("epoch") or 0)
    return {
        "finished": f"finished {epoch} epochs",
        "asha": f"stopped by ASHA at epoch {epoch}",
        "diverged": f"diverged at epoch {epoch}",
        "error": f"errored after {epoch} epochs",
        "time_budget": f"ended by the time budget at epoch {epoch}",
        "interrupted": f"interrupted at epoch {epoch}",
    }[reason]


class TrialBoard(TBXLoggerCallback):
    """Tune's TensorBoard logger, one run per trial folder, tags grouped, HParams that say how trials ended."""

    def __init__(self, metric: str, mode: str, max_t: int):
        super().__init__()
        self._metric, self._mode, self._max_t = metric, mode, max_t
        self._best: dict = {}

    def log_trial_result(self, iteration: int, trial, result: dict):
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        step = int(result.get("epoch") or result.get("training_iteration") or iteration)
        writer, logged = self._trial_writer[trial], {}
        for key, value in result.items():
            name = tag(key)
            if name is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            writer.add_scalar(name, value, global_step=step)
            logged[name] = value
        value = result.get(self._metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            best = self._best.get(trial)
            if best is None or (value > best if self._mode == "max" else value < best):
                self._best[trial] = value
        self._trial_result[trial] = dict(result)
        # No flush (an fsync) per result: tensorboardX's writer thread flushes every 30 s and at the
        # trial's end (docs/benchmarks.md, many trials: 1 fsync per epoch of every trial was the cost).

    def log_trial_end(self, trial, failed: bool = False):
        if trial not in self._trial_writer:
            return
        last = self._trial_result.get(trial) or {}
        if trial.evaluated_params:
            self._hparams(trial, last, failed)
        self._trial_writer[trial].close()
        del self._trial_writer[trial]
        self._trial_result.pop(trial, None)
        self._best.pop(trial, None)

    def _hparams(self, trial, last: dict, failed: bool) -> None:
        from tensorboardX.summary import hparams

        from .results import stop_reason

        params = {k: v for k, v in trial.evaluated_params.items() if isinstance(v, (str, bool, int, float))}
        params["stop_reason"] = stop_reason("ERROR" if failed else "TERMINATED", last, self._max_t)
        step = int(last.get("epoch") or 0)
        writer = self._trial_writer[trial]
        name = tag(self._metric)  # in the objective's own group: refined/score, val/score or train/loss
        metrics = {f"{name}_best": self._best.get(trial), f"{name}_last": last.get(self._metric)}
        metrics["time/epochs"] = step
        metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        for key, value in metrics.items():  # HParams shows a metric's value from the run's scalar of that tag
            writer.add_scalar(key, value, global_step=max(step, 1))
        experiment, start, end = hparams(hparam_dict=params, metric_dict=metrics)
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)


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
        finite = isinstance(value, (int, float)) and math.isfinite(value)
        if finite and (self._best is None or (value > self._best if self._mode == "max" else value < self._best)):
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
    import logging
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from .ray_compat import QUIET_LOGGERS

    for name, level in QUIET_LOGGERS.items():  # Ray's internal logger names, kept in one place
        logging.getLogger(name).setLevel(level)
