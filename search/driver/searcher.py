"""OptunaSearch that keeps TPE from mixing fidelities: ASHA-stopped trials are told as PRUNED.

Ray's OptunaSearch tells Optuna COMPLETE with the last value of every trial, so a trial that
ASHA stopped after one epoch would enter TPE's history as if its one-epoch score were a
full-length result. Here such trials are told PRUNED: Optuna stores their last intermediate
value and step, and TPE ranks pruned trials by (step, value) below every complete trial.

With `storage` (search/driver/study.py: a JournalStorage in the experiment folder) the study is one Optuna's
own tools open; each Optuna trial carries the Ray trial id and its TensorBoard run as user attributes.
The searcher's own state (Optuna trial per Ray trial, the study, trials told) is OptunaSearch's private
state, reached through search/driver/compat.py.
"""

from __future__ import annotations

import math

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from ..trials import FAILURE, run_name, stopped_early
from .compat import completed_trials, optuna_study, optuna_trials
from .study import RAY_TRIAL_ID, TENSORBOARD_RUN, mark_infeasible


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch (TPE) that reports trials stopped before `max_t` epochs as PRUNED."""

    def __init__(self, *args, max_t: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._max_t = max_t
        self._last_step: dict[str, int] = {}

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        self._orphans_pending = True  # closed at the first suggestion (not when only reading the state)
        self._closed_before_restore = None  # read from the journal once, when first asked

    def _close_orphans(self) -> None:
        """Close trials the journal holds as RUNNING but this restored state never suggested.

        A driver killed between a suggestion (written to the journal at once) and Tune's next
        snapshot leaves such a trial behind; Tune never ran it and never will: it is told FAIL so
        that TPE's constant liar does not count it as running forever.
        """
        study, tracked = optuna_study(self), {t.number for t in optuna_trials(self).values()}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in tracked:
                study.tell(trial.number, state=TrialState.FAIL)

    def suggest(self, trial_id: str):
        if getattr(self, "_orphans_pending", False):
            self._orphans_pending = False
            self._close_orphans()
        config = super().suggest(trial_id)
        trials = optuna_trials(self)
        if trial_id in trials and config is not None:
            trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def _finished_in_storage(self, trial_id: str) -> bool:
        """A trial the storage had already closed when this state was restored (the journal of a killed driver
        is ahead of Tune's last snapshot). Only a restore can make it so: the journal is read once then, and a
        search that was never restored asks nothing of it."""
        if not hasattr(self, "_closed_before_restore"):
            return False
        if self._closed_before_restore is None:
            states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            closed = optuna_study(self).get_trials(deepcopy=False, states=states)
            self._closed_before_restore = {t.number for t in closed}
        return optuna_trials(self)[trial_id].number in self._closed_before_restore

    def on_trial_result(self, trial_id: str, result: dict):
        if trial_id in optuna_trials(self) and self._finished_in_storage(trial_id):
            completed_trials(self).add(trial_id)
            return
        step = result.get("training_iteration")
        if step is not None and step <= self._last_step.get(trial_id, 0):
            return  # a retry from an older checkpoint repeats epochs Optuna holds (it would ignore them, warning)
        super().on_trial_result(trial_id, result)
        self._last_step[trial_id] = result.get("training_iteration")

    def _name(self, trial_id: str, result: dict | None) -> None:
        number = str((result or {}).get("experiment_tag", "")).split("_", 1)[0]
        if number.isdigit():
            trial = optuna_trials(self)[trial_id]
            trial.set_user_attr(TENSORBOARD_RUN, run_name(number, trial.params, trial_id))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trials, told = optuna_trials(self), completed_trials(self)
        if trial_id in trials and trial_id not in told:
            if self._finished_in_storage(trial_id):
                told.add(trial_id)
                return
            self._name(trial_id, result)
            if not error and (result or {}).get(FAILURE):  # failure-aware pruning stopped it: TPE avoids it
                mark_infeasible(trials[trial_id], result[FAILURE])
            if error:  # kept RUNNING: a --resume runs it again (resume_errored); a finished search closes it FAIL
                return None
        if error or trial_id in told or trial_id not in trials or not result:
            return super().on_trial_complete(trial_id, result=result, error=error)
        # The result that made the scheduler stop the trial never reached on_trial_result
        # (Tune skips the searcher on STOP): record it so the history has every epoch.
        value, step = result.get(self.metric), result.get("training_iteration")
        if value is not None and step is not None and step > self._last_step.get(trial_id, 0) and math.isfinite(value):
            trials[trial_id].report(value, step)
        if not stopped_early(result, self._max_t):
            return super().on_trial_complete(trial_id, result=result, error=error)
        optuna_study(self).tell(trials[trial_id], state=TrialState.PRUNED)
        told.add(trial_id)
        self._last_step.pop(trial_id, None)

    @property
    def study(self):
        """The Optuna study behind the search (for tests and reports)."""
        return optuna_study(self)
