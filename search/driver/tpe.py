"""TPE that keeps between suggestions what Optuna's TPESampler recomputes from every trial at each one.

At each suggestion, and for each group of parameters modelled together, Optuna 5's TPESampler rescans every
trial of the study in Python: the decomposition of the space into groups (from each trial's parameters), each
trial's parameters in internal form, and each trial's rank (its value; a pruned trial's last step and value; how
far it breaks its constraints). That grows with the trials: most of a suggestion's cost after a few hundred.
A finished trial never changes, so this sampler computes those once per finished trial and keeps them (and a
running trial's values, the constant liar's, once it has been suggested). Everything else is TPESampler's own,
so up to 66 trials (and at any scale with `refit_share=0`) the suggestions are the same as TPESampler's with the
same arguments and seed (tests/test_tpe.py checks it); constraints and a study that starts with trials in it
(warm start) work as in TPESampler. The kept values are
not pickled (the searcher's state is saved often): after a restore they are computed again, once.

At cluster scale (thousands of trials, a thousand running) one fit of the Parzen estimators still costs tens of
milliseconds, and ASHA stops trials in waves that ask for hundreds of suggestions at once. So a fit is kept and
drawn from again until the trials it modelled have changed by more than `REFIT_SHARE` of them (each trial finished
or suggested since counts one): TPE with a model at most 1.5% out of date (the suggestions' quality is measured
against a fit per suggestion in docs/benchmarks.md, section 10). Below 67 trials that allows no change, so every
suggestion gets a fit of its own, as in TPESampler.

What is left grows with the trials too, mostly in numpy, but Optuna's log of the normal CDF
(`_truncnorm._log_ndtr`, for each discrete parameter's candidates against every trial, and in sampling) calls a
Python function per element. `log_ndtr` below computes the same values, bit for bit (the same libm `erf`, `erfc`
and `log` per element, the same arithmetic in numpy), without a Python call per element; the sampler puts it in
Optuna's place when it is created.

It overrides private methods of TPESampler, listed in search/driver/compat (entries 21 and 22).
"""

from __future__ import annotations

import copy
import math
import sys
from operator import itemgetter
from typing import NamedTuple

import numpy as np
from optuna.samplers import TPESampler
from optuna.study import StudyDirection
from optuna.trial import TrialState

from .compat import group_decomposition, tpe_default_gamma, tpe_log_ndtr, tpe_rank_keys, use_tpe_log_ndtr
from .parzen import keep_masses

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_KEPT = ("_groups_seen", "_groups_copy", "_reprs", "_ranks", "_last_split", "_fits")  # rebuilt after unpickling
REFIT_SHARE = 0.015  # a fit is drawn from until this share of the trials it modelled has changed


class IncrementalTPESampler(TPESampler):
    """TPESampler (same arguments) whose cost per suggestion grows far more slowly with the finished trials."""

    def __init__(self, *args, refit_share: float = REFIT_SHARE, **kwargs):
        super().__init__(*args, **kwargs)
        self._refit_share = refit_share  # 0: a fit per suggestion at any scale, as TPESampler
        use_tpe_log_ndtr(log_ndtr)
        self._groups = group_decomposition()  # the space's groups, from every finished trial seen so far
        self._forget()

    def _forget(self) -> None:
        self._groups_seen: set[int] = set()  # finished trials whose parameters _groups holds
        self._groups_copy = None  # what sample_relative reads, copied only when the groups change
        self._reprs: dict = {}  # search space -> {finished trial number: its values in internal form, or None}
        self._ranks: dict = {}  # finished trial number -> (kind, sort key) as TPE splits them
        self._last_split = (None, None)  # (the suggestion it was made for, below/above): the same for every group
        self._fits: dict = {}  # search space -> _Fit: the Parzen estimators last fitted for it

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in _KEPT:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        use_tpe_log_ndtr(log_ndtr)
        self._forget()

    # the groups of parameters (TPESampler: every finished trial's distributions added again at each suggestion)

    def infer_relative_search_space(self, study, trial):
        if not (self._group and self._is_multivariate(study)):
            return super().infer_relative_search_space(study, trial)
        before = [list(space) for space in self._groups.search_spaces]
        for each in study._get_trials(deepcopy=False, states=_FINISHED, use_cache=True):
            if each.number not in self._groups_seen:
                self._groups_seen.add(each.number)
                self._groups.add_distributions(each.distributions)
        if self._groups_copy is None or [list(space) for space in self._groups.search_spaces] != before:
            self._groups_copy = copy.deepcopy(self._groups)
        self._search_space_group = self._groups_copy
        return {
            name: distribution
            for sub_space in self._groups_copy.search_spaces
            for name, distribution in sorted(sub_space.items())
            if not distribution.single()
        }

    # each trial's parameters in internal form (TPESampler: converted again for every trial, every time)

    def _get_internal_repr(self, trials, search_space, study):
        kept = self._reprs.setdefault(tuple(search_space.items()), {})
        rows = []
        for trial in trials:
            # a running trial (the constant liar's) by its number and how far its suggestion has got: once
            # suggested its values stay, but another process could still be adding to them
            key = trial.number if trial.state in _FINISHED else (trial.number, *map(len, _attrs(trial)))
            row = kept.get(key, _MISSING)
            if row is _MISSING:
                params = self._get_params(trial, study)
                row = None
                if search_space.keys() <= params.keys():
                    row = tuple(d.to_internal_repr(params[name]) for name, d in search_space.items())
                kept[key] = row
            if row is not None:
                rows.append(row)
        columns = zip(*rows) if rows else ([] for _ in search_space)
        return {name: np.asarray(list(column)) for name, column in zip(search_space, columns)}

    # below / above (TPESampler: every trial's rank computed again, for each group, at every suggestion)

    def _sample(self, study, trial, search_space):
        if study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        mpe_below, mpe_above = self._estimators(study, trial, search_space)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acquisition = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        chosen = TPESampler._compare(samples_below, acquisition)
        return {name: d.to_external_repr(chosen[name]) for name, d in search_space.items()}

    def _estimators(self, study, trial, search_space) -> tuple:
        """TPE's Parzen estimators below and above for `trial`: the kept fit while fresh enough, else a new one."""
        group, counted = tuple(search_space.items()), self._finished_count(study)
        fit = self._fits.get(group)
        if fit is not None and fit.changes(trial.number, counted) <= int(self._refit_share * fit.trials):
            keep_masses(fit.below)  # drawn from again: its components' masses computed once
            keep_masses(fit.above)
            return fit.below, fit.above
        states = [*_FINISHED, TrialState.RUNNING] if self._constant_liar else list(_FINISHED)
        trials = study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
        if self._constant_liar:
            trials = [t for t in trials if trial.number != t.number]
        finished = sum(t.state != TrialState.RUNNING for t in trials)
        if self._gamma is None:
            self._gamma = tpe_default_gamma()
        key = (trial.number, len(trials), finished)
        if self._last_split[0] != key:
            self._last_split = (key, self._split(study, trials, self._gamma(finished)))
        below, above = self._last_split[1]
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
        self._fits[group] = _Fit(trial.number, counted, len(trials), mpe_below, mpe_above)
        return mpe_below, mpe_above

    def _finished_count(self, study) -> int:
        """How many trials have finished: those infer_relative_search_space has just gone through, where it did."""
        if self._group and self._is_multivariate(study):
            return len(self._groups_seen)
        return len(study._get_trials(deepcopy=False, states=_FINISHED, use_cache=True))

    def _rank(self, trial, study) -> tuple:
        """(kind, key): TPE's order within complete, pruned and infeasible trials (kept once finished)."""
        rank = self._ranks.get(trial.number)
        if rank is None:
            pruned_key, infeasible_key = tpe_rank_keys()
            infeasible = infeasible_key(trial)
            if infeasible > 0:
                rank = ("infeasible", infeasible)
            elif trial.state == TrialState.COMPLETE:
                rank = ("complete", trial.value)
            else:
                rank = ("pruned", pruned_key(trial, study))
            self._ranks[trial.number] = rank
        return rank

    def _split(self, study, trials, n_below: int):
        """optuna.samplers._tpe.sampler._split_trials (single objective) with each finished trial's rank kept."""
        groups = {"complete": [], "pruned": [], "infeasible": []}
        running = []
        for trial in trials:
            if trial.state == TrialState.RUNNING:
                running.append(trial)
            else:
                kind, key = self._rank(trial, study)
                groups[kind].append((key, trial))
        below, above = [], []
        maximize = study.direction == StudyDirection.MAXIMIZE
        for kind in ("complete", "pruned", "infeasible"):
            ranked = [t for _, t in sorted(groups[kind], key=itemgetter(0), reverse=kind == "complete" and maximize)]
            cut = min(n_below, len(ranked))
            below += ranked[:cut]
            above += ranked[cut:]
            n_below = max(0, n_below - cut)
        above += running
        by_number = lambda t: t.number  # noqa: E731
        return sorted(below, key=by_number), sorted(above, key=by_number)


_MISSING = object()


class _Fit(NamedTuple):
    """One fit of TPE's two Parzen estimators, and the study it was made on."""

    number: int  # the trial it was made for: later trials were suggested since
    finished: int
    trials: int  # how many trials it modelled
    below: object
    above: object

    def changes(self, number: int, finished: int) -> int:
        """Trials suggested or finished since the fit."""
        return (number - self.number) + (finished - self.finished)


def _attrs(trial) -> tuple:
    return trial.params, trial.system_attrs


_SMALL = 24  # below this many elements, numpy's per-call cost outweighs a Python call per element


def _each(function, x: np.ndarray) -> np.ndarray:
    """A math (libm) function per element, without a Python frame per element."""
    return np.fromiter(map(function, x.tolist()), dtype=float, count=x.size)


def _ndtr(a: np.ndarray) -> np.ndarray:
    """Optuna's `_truncnorm._ndtr_single` on an array: the normal CDF, by erfc in either tail."""
    x = a / 2**0.5
    out = np.empty_like(x)
    left, right = x < -1 / 2**0.5, x >= 1 / 2**0.5
    middle = ~(left | right)
    out[left] = 0.5 * _each(math.erfc, -x[left])
    out[middle] = 0.5 + 0.5 * _each(math.erf, x[middle])
    out[right] = 1.0 - 0.5 * _each(math.erfc, x[right])
    return out


def _log_ndtr_left_tail(a: np.ndarray) -> np.ndarray:
    """Optuna's asymptotic series for a <= -20, run on every element at once (each stops where Optuna's would)."""
    log_lhs = -0.5 * np.fromiter(map(math.pow, a.tolist(), [2.0] * a.size), float, a.size)  # Python's a**2
    log_lhs = log_lhs - _each(math.log, -a) - 0.5 * math.log(2 * math.pi)
    denom_cons = 1 / np.fromiter(map(math.pow, a.tolist(), [2.0] * a.size), float, a.size)
    last_total, right_hand_side = np.zeros_like(a), np.ones_like(a)
    numerator, denom_factor, sign, i = 1.0, np.ones_like(a), 1, 0
    active = np.abs(last_total - right_hand_side) > sys.float_info.epsilon
    while active.any():
        i += 1
        last_total[active] = right_hand_side[active]
        sign = -sign
        denom_factor[active] *= denom_cons[active]
        numerator *= 2 * i - 1
        right_hand_side[active] += sign * numerator * denom_factor[active]
        active &= np.abs(last_total - right_hand_side) > sys.float_info.epsilon
    return log_lhs + _each(math.log, right_hand_side)


def log_ndtr(a) -> np.ndarray:
    """Optuna's `_truncnorm._log_ndtr`: the same values, without a Python call per element (Optuna's own runs on
    infinities and NaN, and where there are too few elements for numpy to pay)."""
    a = np.asarray(a, dtype=float)
    if a.size < _SMALL:
        return tpe_log_ndtr(a)
    flat, out = a.ravel(), np.empty(a.size)
    high, middle = flat > 6, (flat > -20) & (flat <= 6)
    out[high] = -_ndtr(-flat[high])
    out[middle] = _each(math.log, _ndtr(flat[middle]))
    done = high | middle
    tail = np.isfinite(flat) & (flat <= -20)
    if np.count_nonzero(tail) >= _SMALL:
        out[tail] = _log_ndtr_left_tail(flat[tail])
        done |= tail
    if not done.all():
        out[~done] = tpe_log_ndtr(flat[~done])
    return out.reshape(a.shape)
