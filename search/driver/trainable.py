"""The Tune function trainable: one CVAE configuration, trained and reported epoch by epoch.

The data arrives through `tune.with_parameters` (put in the object store once by the driver),
never read from disk per trial. Every `checkpoint_every`-th epoch (and the last) writes a
checkpoint, so a retried trial or a resumed experiment continues where it stopped instead of
starting over, repeating at most checkpoint_every - 1 epochs.
"""

from __future__ import annotations

import logging
import math
import pickle
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from cvae.config import Config
from cvae.errors import first_line
from cvae.plots import PLOT_CONDITIONS
from cvae.regimes import Regime
from cvae.sample_image import png_bytes, sample_image
from cvae.train import Trainer

from ..trials import DIVERGED, FAILURE, FAILURE_DETAIL, failure, objective_regime
from .compat import QUIET_LOGGERS, use_fast_crc32c

CHECKPOINT_FILE = "trainer.pt"
# The sample images' event file goes in the trial folder itself, beside Tune's scalars: one run per trial.
IMAGE_DIR = "."
# The first four non-default keys of a result become the console table's columns: keep these first.
KEY_COLUMNS = ("val_score", "loss", "val_valid_frac", "val_coverage_norm", "val_gates_pass")


def image_epochs(max_t: int, grace_period: int, reduction_factor: float, first: bool = True) -> list[int]:
    """Epochs with a sample plot: the first (unless first=False), each ASHA rung (where trials are compared)
    and the last."""
    epochs, rung = ({1} if first else set()) | {max_t}, float(grace_period)
    while rung < max_t:
        epochs.add(int(rung))
        rung *= reduction_factor
    return sorted(epochs)


def checkpoint_epoch(epoch: int, every: int, max_t: int) -> bool:
    """Whether a trial checkpoints after `epoch`: every `every`-th epoch and the last one."""
    return epoch % max(1, int(every)) == 0 or epoch >= max_t


def _trial_resources() -> tuple[float, float]:
    try:
        resources = tune.get_context().get_trial_resources().required_resources
    except Exception:  # outside a Tune session (e.g. called directly in a test)
        return 1.0, 0.0
    return float(resources.get("CPU", 1)), float(resources.get("GPU", 0))


def _metrics(row: dict, metric: str, node: str, node_id: str = "") -> dict:
    """The epoch's row with the objective first, never NaN for the objective, plus node and diverged.

    node is the IP; node_id tells apart Ray nodes that share one (several nodes on one machine).
    """
    diverged = not math.isfinite(row.get("loss", math.nan))
    value = row.get(metric, math.nan)
    if diverged or not math.isfinite(value):
        value = DIVERGED[metric]
    out = {metric: value}
    out.update({k: row[k] for k in KEY_COLUMNS if k in row and k != metric})
    out.update({k: v for k, v in row.items() if k not in out})
    out.update(node=node, node_id=node_id, diverged=int(diverged))
    return out


class _Images:
    """Sample plots (generated lines vs the condition) for TensorBoard, written in the trial folder.

    Tag `samples`: the objective's regime (network only, or network + refinement for refined_score);
    tag `samples_network_only` beside it when the objective refines.
    """

    def __init__(self, trainer: Trainer, epochs: list[int], metric: str = "val_score"):
        self.trainer, self.epochs, self.writer, self.metric = trainer, set(epochs), None, metric

    def maybe_write(self, epoch: int) -> None:
        if epoch not in self.epochs or self.trainer.val is None:
            return
        trainer = self.trainer
        x_val, y_val = (t[:PLOT_CONDITIONS] for t in trainer.val)
        count = min(trainer.config.val_samples, 16)
        regime = objective_regime(self.metric, trainer.config, count)
        shown = [("samples", regime)]
        if regime.kind != "network":
            shown.append(("samples_network_only", Regime("network")))
        if self.writer is None:
            use_fast_crc32c()  # a picture's event is ~100 KB: checksummed in pure Python, tens of ms
            self.writer = SummaryWriter(log_dir=str(Path.cwd() / IMAGE_DIR))
        trainer.model.eval()
        for tag, each in shown:
            generator = torch.Generator(trainer.device).manual_seed(trainer.config.seed + 2)
            with torch.no_grad():
                samples = each.generate(trainer.model, y_val, trainer.functions, count, generator)
            title = f"epoch {epoch}: {count} samples, {each.label}"
            image = sample_image(samples.cpu(), y_val.cpu(), trainer.functions, x_true=x_val.cpu(), title=title)
            self._add(tag, image, epoch)
        self.writer.flush()  # before the report: artifacts are synced with the checkpoint

    def _add(self, tag: str, image, epoch: int) -> None:
        """TensorBoard's image summary of the picture (what add_image writes), its PNG from png_bytes."""
        height, width, _ = image.shape
        png = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png_bytes(image))
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=png)]), global_step=epoch)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def shareable(data):
    """((x, y), (x_val, y_val)) tensors as numpy arrays, for the object store.

    Ray hands numpy arrays to every trial on a node as read-only views of one shared-memory copy
    (zero-copy); torch tensors are unpickled into a private copy per trial. With 100,000 rows this
    saves ~150 MB of peak RSS and ~0.1 s per trial (docs/benchmarks.md, data sharing).
    """
    return tuple(tuple(t.detach().cpu().numpy() for t in part) for part in data)


def _tensors(data):
    """shareable()'s arrays back as tensors without copying (tensors pass through unchanged).

    The arrays are read-only: torch warns that writing to them is undefined; the Trainer never
    writes to its data (it indexes batches, which copies), so the warning is silenced.
    """

    def one(t):
        if isinstance(t, np.ndarray):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*not writable.*")
                return torch.from_numpy(t)
        return t

    return tuple(tuple(one(t) for t in part) for part in data)


def _restore(checkpoint, train, val, device) -> Trainer | None:
    """The trainer of the trial's last checkpoint; None (start afresh) when that checkpoint is damaged.

    A corrupted or truncated checkpoint would otherwise fail the trial on every retry.
    """
    try:
        with checkpoint.as_directory() as folder:
            return Trainer.restore(Path(folder) / CHECKPOINT_FILE, train, val, device)
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, TypeError, pickle.UnpicklingError) as err:
        first = first_line(err)
        print(f"warning: damaged checkpoint {checkpoint.path} ({first}); the trial starts again at epoch 0")
        return None


def train_trial(config: dict, data=None, settings=None, after_report=None) -> None:
    """Train `config` (fixed + searched Config keys) for up to settings['max_t'] epochs.

    config: the searched values (Tune's trial config, so HParams and the console show only those);
    data: ((x_train, y_train), (x_val, y_val)) tensors, or numpy arrays from `shareable`;
    settings: search.driver.tuner.trial_settings ({'base': fixed Config values, 'metric', 'max_t',
    'image_epochs', 'checkpoint_every', 'failures'}); after_report(row), if given, runs after each epoch's report
    (a test makes a trial fail there).

    Each result also says what the trial spent beside training (TensorBoard `time/`): image_seconds
    (this epoch's sample plots), checkpoint_seconds (saving this epoch's checkpoint, 0 without one) and
    report_seconds (the previous epoch's `tune.report`, which copies its checkpoint to the storage).
    """
    train, val = _tensors(data)
    storage_logger = "ray.train._internal.storage"  # a line per checkpoint
    logging.getLogger(storage_logger).setLevel(QUIET_LOGGERS[storage_logger])
    cpus, gpus = _trial_resources()
    torch.set_num_threads(max(1, int(cpus)))  # Ray sets OMP_NUM_THREADS; torch keeps its own count
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    checkpoint = tune.get_checkpoint()
    trainer = _restore(checkpoint, train, val, device) if checkpoint else None
    if trainer is None:
        trainer = Trainer(Config.from_dict({**settings["base"], **config}), train, val, device)
    node, node_id = ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id()
    images = _Images(trainer, settings.get("image_epochs", []), settings["metric"])
    every, last_report = settings["checkpoint_every"], [0.0]

    def report(row: dict) -> bool:
        failed = failure(row, settings.get("failures"), trainer.config.wy_delay, settings["metric"])
        if failed:
            row = {**row, FAILURE: failed[0], FAILURE_DETAIL: failed[1]}
        started = time.perf_counter()
        images.maybe_write(row["epoch"])
        drawn = time.perf_counter()
        costs = {"image_seconds": drawn - started, "checkpoint_seconds": 0.0, "report_seconds": last_report[0]}
        if not checkpoint_epoch(row["epoch"], every, settings["max_t"]):
            tune.report(_metrics({**row, **costs}, settings["metric"], node, node_id))
            last_report[0] = time.perf_counter() - drawn
        else:
            _report_with_checkpoint(row, costs, drawn)
        if after_report is not None:
            after_report(row)
        return failed is not None

    def _report_with_checkpoint(row: dict, costs: dict, drawn: float) -> None:
        with tempfile.TemporaryDirectory() as folder:
            trainer.save(Path(folder) / CHECKPOINT_FILE)
            saved = time.perf_counter()
            costs["checkpoint_seconds"] = saved - drawn
            tune.report(
                _metrics({**row, **costs}, settings["metric"], node, node_id),
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
            last_report[0] = time.perf_counter() - saved

    try:
        trainer.fit(settings["max_t"], report)
    finally:
        images.close()
