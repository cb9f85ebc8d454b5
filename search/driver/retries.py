"""Retries that count only failures without progress: a trial whose process keeps being killed is not lost.

Tune's `FailureConfig(max_failures=N)` counts every death of a trial's process, so on a machine or cluster
that loses processes often (a spot node, the OOM killer, bench/chaos.py's SIGKILLs) a long trial can run out
of retries although each run of it moved on. Ray already exempts a preempted node. Here a failure is
forgiven when the trial had reached a later epoch than at its previous failure (it progressed), so
`search.max_failures` bounds only failures that repeat without getting further: a crash loop (a bug, an
out-of-memory at the same epoch) still ends the trial after max_failures retries, and a trial is forgiven at
most once per epoch of its budget.
"""

from __future__ import annotations

from ray import tune

from .compat import forgive_failure

EPOCH = "epoch"  # the trainer's own epoch count (ASHA's time attribute): unaffected by restores


class RetryWhileProgressing(tune.Callback):
    """Forgives a trial's failure when it got further than at its previous one (see the module's docstring)."""

    def __init__(self):
        self._furthest: dict[str, int] = {}

    def on_trial_recover(self, iteration, trials, trial, **info):
        reached = int(trial.last_result.get(EPOCH) or 0)
        if reached > self._furthest.get(trial.trial_id, 0):
            forgive_failure(trial)
            self._furthest[trial.trial_id] = reached
