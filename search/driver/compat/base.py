"""What every compat module shares: the Ray version checked, the loopback switch (entry 4), Ray's internal logger
names (entry 9), and the one error an internal that moved raises. Imports no Ray: `loopback_only` must run first."""

from __future__ import annotations

import logging
import os

from cvae.errors import UserError

RAY_CHECKED = "2.60.0"
RAY_TESTED_MINOR = (2, 60)

LOOPBACK = ("127.0.0.1", "localhost")
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
HEAD_NODE_RESOURCE = "node:__internal_head__"
TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
TUNE_RUN_LOGGER = "ray.tune.tune"  # tune.run: logs a failed final experiment-state snapshot with its traceback
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
            "see search/driver/compat"
        ) from None
