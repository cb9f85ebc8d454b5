"""A full disk's tracebacks that Tune logs (a trial's failure, the final snapshot's) are dropped: the one-line
error says it all. Other records go through."""

import errno
import logging

from search.driver.compat import TUNE_CONTROLLER_LOGGER, TUNE_RUN_LOGGER
from search.driver.faults import quiet_no_space, storage_full


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
