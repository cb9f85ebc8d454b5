"""Retries that count only failures without progress: a trial whose process keeps being killed is not lost.

Tune's `FailureConfig(max_failures=N)` counts every death of a trial's process, so on a machine or cluster
that loses processes often (a spot node, the OOM killer, bench/chaos.py's SIGKILLs) a long trial can run out
of retries although each run of it moved on. Ray already exempts a preempted node. Here a failure is
forgiven when the trial saved a newer checkpoint since its previous failure (it progressed), so
`search.max_failures` bounds only failures that repeat at the same place: a crash loop (a bug, an
out-of-memory at the same epoch) still ends the trial after max_failures retries, and every retry starts
from the newest checkpoint, so the forgiven ones cost at most `checkpoint_every` epochs each.
"""

from __future__ import annotations

from ray import tune

from .compat import forgive_failure


class RetryWhileProgressing(tune.Callback):
    """Forgives a trial's failure when it checkpointed since the previous one (see the module's docstring)."""

    def __init__(self):
        self._checkpoint_at_failure: dict[str, str | None] = {}

    def on_trial_recover(self, iteration, trials, trial, **info):
        checkpoint = trial.checkpoint
        path = checkpoint.path if checkpoint is not None else None
        if path is not None and path != self._checkpoint_at_failure.get(trial.trial_id):
            forgive_failure(trial)
        self._checkpoint_at_failure[trial.trial_id] = path
