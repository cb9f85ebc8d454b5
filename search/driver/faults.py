"""Faults a search stops on at once, in one line, instead of retrying every trial into the same wall.

A full storage makes every checkpoint fail: Tune would retry each trial `max_failures` times, each
failing again, and end in a traceback. search/driver/callbacks.py's `StorageFullCallback` raises
`StorageFull` out of `Tuner.fit` at the first such failure; the experiment state saved so far stays, so `--resume`
continues once there is room (finished trials are kept, unfinished ones continue from their last
checkpoint).
"""

from __future__ import annotations

import contextlib
import errno
import logging

from ..spec import SearchError
from .compat import TUNE_CONTROLLER_LOGGER, TUNE_RUN_LOGGER

NO_SPACE = ("No space left on device", "errno 28", "Errno 28", "Disk quota exceeded")


class StorageFull(SearchError):
    """The storage ran out of space mid-search."""


class RestoreFailed(SearchError):
    """Tune could not restore the experiment's state."""


def is_no_space(error: BaseException | str) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(marker in str(error) for marker in NO_SPACE)


def storage_full(storage: str, where: str = "a trial's checkpoint") -> StorageFull:
    return StorageFull(
        f"--storage {storage}: no space left on the device while writing {where}; the search stopped. "
        "Free some space (or move the experiment to a larger disk), then rerun with --resume: "
        "finished trials are kept"
    )


@contextlib.contextmanager
def no_space_is_storage_full(storage: str, where: str):
    """A full disk while writing `where` ends the search in StorageFull's one line; other OSErrors pass."""
    try:
        yield
    except OSError as err:
        if not is_no_space(err):
            raise
        raise storage_full(storage, where) from None


class _QuietNoSpace(logging.Filter):
    """Tune logs each trial failure (and a failed final snapshot) with a traceback; for a full disk the one line
    says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        # the full disk, or our StorageFull that says so in one line, may be the cause of what was raised
        chain = causes(record.exc_info[1] if record.exc_info else None)
        return not any(isinstance(error, StorageFull) or is_no_space(error) for error in chain)


def quiet_no_space() -> None:
    for name in (TUNE_CONTROLLER_LOGGER, TUNE_RUN_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietNoSpace) for f in logger.filters):
            logger.addFilter(_QuietNoSpace())


def causes(error: BaseException | None):
    """`error`, then what caused it, and so on (each once)."""
    seen = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def search_error_in(error: BaseException) -> SearchError | None:
    """The SearchError (restore failure, full storage) behind an exception Tune raised, if any."""
    return next((each for each in causes(error) if isinstance(each, SearchError)), None)


def search_failure(error: BaseException, storage: str) -> SearchError | None:
    """The one line for an exception out of `Tuner.fit`: the SearchError behind it (a failed restore, our
    StorageFull), or a full disk met where no callback of ours stood (the searcher's appends to the Optuna journal,
    a file of Tune's own); None for anything else."""
    found = search_error_in(error)
    if found is None and any(is_no_space(each) for each in causes(error)):
        return storage_full(storage, "the experiment's files (the Optuna journal or Tune's state)")
    return found
