"""OptunaSearch that keeps TPE from mixing fidelities: ASHA-stopped trials are told as PRUNED.

Ray's OptunaSearch tells Optuna COMPLETE with the last value of every trial, so a trial that
ASHA stopped after one epoch would enter TPE's history as if its one-epoch score were a
full-length result. Here such trials are told PRUNED: Optuna stores their last intermediate
value and step, and TPE ranks pruned trials by (step, value) below every complete trial.

With `storage` (search/driver/study.py: a JournalStorage in the experiment folder) the study is one Optuna's
own tools open; each Optuna trial carries the Ray trial id and its TensorBoard run as user attributes.
The searcher's own state (Optuna trial per Ray trial, the study, trials told) is OptunaSearch's private
state, reached through search/driver/compat; it is saved without the Optuna trials, which the journal holds.
"""

from __future__ import annotations

import math
import pickle

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from ..trials import FAILURE, run_name, stopped_early
from .compat import completed_trials, optuna_study, optuna_trials, running_trial, searcher_state
from .study import RAY_TRIAL_ID, TENSORBOARD_RUN, mark_infeasible, writes_together


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch (TPE) that reports trials stopped before `max_t` epochs as PRUNED."""

    def __init__(self, *args, max_t: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._max_t = max_t
        self._last_step: dict[str, int] = {}
        self._from_journal: dict | None = None  # after a restore: {Ray trial id: Optuna number} of the running ones

    def save(self, checkpoint_path: str):
        """The searcher's state without its Optuna trials: Tune saves it at every experiment-state save, and Ray's
        own save pickles every trial of the search each time. Only the running trials' numbers are kept; the
        journal holds the rest, read back at the first use after a restore (`_rejoin_journal`)."""
        self._rejoin_journal()
        trials, told = optuna_trials(self), completed_trials(self)
        running = {ray_id: t.number for ray_id, t in trials.items() if ray_id not in told}
        state = {**searcher_state(self), "_from_journal": running}
        state["_last_step"] = {k: v for k, v in self._last_step.items() if k in running}
        with open(checkpoint_path, "wb") as file:
            pickle.dump(state, file)

    def restore(self, checkpoint_path: str):
        optuna_trials(self).clear()  # the saved state has none (the journal has them), or all of them (Ray's own)
        completed_trials(self).clear()
        super().restore(checkpoint_path)  # Ray's: unpickles (what search/driver/trust.py checks) and takes the state
        self._orphans_pending = True  # closed at the first suggestion (not when only reading the state)

    def _rejoin_journal(self) -> None:
        """After a restore: the running trials of the saved state, and the trials the journal holds closed (a
        killed driver's journal can be ahead of Tune's last snapshot: Tune runs those again, but they are told)."""
        running, self._from_journal = self._from_journal, None
        if running is None:
            return
        study, trials, told = optuna_study(self), optuna_trials(self), completed_trials(self)
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for frozen in by_number.values():
            if frozen.state.is_finished() and RAY_TRIAL_ID in frozen.user_attrs:
                told.add(frozen.user_attrs[RAY_TRIAL_ID])
        for ray_id, number in running.items():
            if number in by_number and not by_number[number].state.is_finished():
                trials[ray_id] = running_trial(study, by_number[number])
                last = by_number[number].last_step or 0  # the journal may hold epochs past the snapshot
                self._last_step[ray_id] = max(self._last_step.get(ray_id, 0), last)

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
        self._rejoin_journal()
        if getattr(self, "_orphans_pending", False):
            self._orphans_pending = False
            self._close_orphans()
        with writes_together(optuna_study(self)):  # a line per parameter, under one hold of the journal's lock
            config = super().suggest(trial_id)
            trials = optuna_trials(self)
            if trial_id in trials and config is not None:
                trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict):
        self._rejoin_journal()
        if trial_id in completed_trials(self):  # closed in the journal before a restore: Tune runs it again
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
        self._rejoin_journal()
        trials, told = optuna_trials(self), completed_trials(self)
        step = self._last_step.pop(trial_id, None)
        if trial_id in told:  # told already, or closed in the journal before a restore
            return None
        if trial_id in trials:
            self._name(trial_id, result)
            if not error and (result or {}).get(FAILURE):  # failure-aware pruning stopped it: TPE avoids it
                mark_infeasible(trials[trial_id], result[FAILURE])
            if error:  # kept RUNNING: a --resume runs it again (resume_errored); a finished search closes it FAIL
                return None
        if error or trial_id not in trials or not result:
            return super().on_trial_complete(trial_id, result=result, error=error)
        # The result that made the scheduler stop the trial never reached on_trial_result
        # (Tune skips the searcher on STOP): record it so the history has every epoch.
        value, now = result.get(self.metric), result.get("training_iteration")
        if value is not None and now is not None and now > (step or 0) and math.isfinite(value):
            trials[trial_id].report(value, now)
        if not stopped_early(result, self._max_t):
            return super().on_trial_complete(trial_id, result=result, error=error)
        optuna_study(self).tell(trials[trial_id], state=TrialState.PRUNED)
        told.add(trial_id)

    @property
    def study(self):
        """The Optuna study behind the search (for tests and reports)."""
        return optuna_study(self)
