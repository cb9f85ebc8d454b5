"""A full disk's tracebacks that Tune logs (a trial's failure, the final snapshot's) are dropped: the one-line
error says it all. Other records go through. A full disk raised out of Tuner.fit is that one line too."""

import errno
import logging

from search.driver.compat import TUNE_CONTROLLER_LOGGER, TUNE_RUN_LOGGER
from search.driver.faults import RestoreFailed, StorageFull, quiet_no_space, search_failure, storage_full


def record(logger: str, error: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        logger, logging.ERROR, __file__, 1, "snapshotting failed:", None, (type(error), error, None)
    )


def wrapped_no_space() -> BaseException:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as full:
            raise RuntimeError("could not write the experiment state") from full
    except RuntimeError as error:
        return error


def test_a_full_disk_is_dropped_on_both_loggers_even_as_a_cause():
    quiet_no_space()
    for name in (TUNE_CONTROLLER_LOGGER, TUNE_RUN_LOGGER):
        logger = logging.getLogger(name)
        assert not logger.filter(record(name, wrapped_no_space()))
        assert not logger.filter(record(name, OSError(errno.ENOSPC, "No space left on device")))
        assert not logger.filter(record(name, storage_full("runs", "twobirds-trust.json")))
        assert logger.filter(record(name, ValueError("something else")))


def test_a_full_disk_out_of_the_fit_becomes_the_one_line_whatever_raised_it():
    raw = OSError(errno.ENOSPC, "No space left on device")  # the searcher's journal append, not our callback
    for error in (raw, wrapped_no_space()):
        failure = search_failure(error, "/mnt/runs")
        assert isinstance(failure, StorageFull)
        assert str(failure).startswith("--storage /mnt/runs: no space left on the device")
        assert "--resume" in str(failure)
    ours = RestoreFailed("--resume: Tune could not restore runs/x")
    assert search_failure(ours, "/mnt/runs") is ours
    assert search_failure(ValueError("a bug"), "/mnt/runs") is None
