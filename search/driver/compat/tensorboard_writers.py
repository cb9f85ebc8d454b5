"""TensorBoard's and tensorboardX's writer internals (entries 10 and 24 of search/driver/compat/__init__.py)."""

from __future__ import annotations

from .base import (
    _attribute,
)

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
