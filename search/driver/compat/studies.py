"""OptunaSearch's and Optuna's internals (entries 1, 13, 21-23 of search/driver/compat/__init__.py)."""

from __future__ import annotations

from .base import (
    _attribute,
)

# 1. OptunaSearch's state


def optuna_trials(searcher) -> dict:
    """Ray trial id -> the optuna.Trial the searcher asked for it (OptunaSearch._ot_trials)."""
    return _attribute(searcher, "_ot_trials")


def optuna_study(searcher):
    """The optuna.Study behind the searcher (OptunaSearch._ot_study)."""
    return _attribute(searcher, "_ot_study")


def completed_trials(searcher) -> set:
    """Ray trial ids whose Optuna trial is already told (OptunaSearch._completed_trials): skipped after."""
    return _attribute(searcher, "_completed_trials")


def searcher_state(searcher) -> dict:
    """What Ray's OptunaSearch.save pickles (the searcher's __dict__) less the Optuna trials and the told ones."""
    optuna_trials(searcher), completed_trials(searcher)  # both still there
    return {k: v for k, v in searcher.__dict__.items() if k not in ("_ot_trials", "_completed_trials")}


# 13. Optuna's journal file


def journal_lock(backend):
    """The journal file's lock, as a context manager (JournalFileBackend._lock via get_lock_file)."""
    from optuna.storages.journal._file import get_lock_file

    return get_lock_file(_attribute(backend, "_lock"))


def journal_backend(study):
    """The backend under a study's JournalStorage (Study._storage._backend); None for another storage."""
    return getattr(_attribute(study, "_storage"), "_backend", None)


def journal_file(backend) -> str:
    return _attribute(backend, "_file_path")


def journal_offsets_reset() -> dict:
    """A JournalFileBackend's offsets as on a new one: line 0 at byte 0 (what a pickled backend needs)."""
    return {"_log_number_offset": {0: 0}}


# 21. TPESampler's per-trial work


def group_decomposition():
    """An empty partition of a space into groups of parameters seen together (what TPE's `group` option builds)."""
    from optuna.search_space.group_decomposed import _SearchSpaceGroup

    return _SearchSpaceGroup()


def tpe_rank_keys():
    """TPE's sort keys of a pruned trial (last step, last value) and of an infeasible one (constraint excess)."""
    from optuna.samplers._tpe.sampler import _get_infeasible_trial_score, _get_pruned_trial_score

    return _get_pruned_trial_score, _get_infeasible_trial_score


def tpe_default_gamma():
    """How many trials TPE counts as good, given how many have finished (single objective)."""
    from optuna.samplers._tpe.sampler import default_gamma

    return default_gamma


def parzen_mixture(estimator):
    """A TPE Parzen estimator's mixture (`_ParzenEstimator._mixture_distribution`), what its log_pdf scores with."""
    return _attribute(estimator, "_mixture_distribution", owner="optuna _ParzenEstimator")


def set_parzen_mixture(estimator, mixture) -> None:
    parzen_mixture(estimator)  # still there
    estimator._mixture_distribution = mixture


def parzen_parts():
    """What a Parzen mixture's log_pdf is made of (optuna.samplers._tpe.probability_distributions, _truncnorm)."""
    from optuna.samplers._tpe import _truncnorm, probability_distributions

    return (
        probability_distributions._BatchedCategoricalDistributions,
        probability_distributions._unique_inverse_2d,
        probability_distributions._log_gauss_mass_unique,
        _truncnorm._log_gauss_mass,
        _truncnorm._norm_logpdf,
    )


# 22. TPE's log of the normal CDF

_optuna_log_ndtr = None  # Optuna's own, once use_tpe_log_ndtr replaced it


def tpe_log_ndtr(a):
    """Optuna's own log normal CDF (a Python call per element)."""
    from optuna.samplers._tpe import _truncnorm

    return (_optuna_log_ndtr or _truncnorm._log_ndtr)(a)


def use_tpe_log_ndtr(replacement) -> None:
    """Make TPE compute its log normal CDF with `replacement` (idempotent)."""
    global _optuna_log_ndtr
    from optuna.samplers._tpe import _truncnorm

    if _optuna_log_ndtr is None:
        _optuna_log_ndtr = _attribute(_truncnorm, "_log_ndtr", owner="optuna.samplers._tpe._truncnorm")
    _truncnorm._log_ndtr = replacement


# 23. an Optuna trial found again


def running_trial(study, frozen):
    """The optuna.Trial that tells and reports for an existing trial of `study` (a FrozenTrial of it)."""
    from optuna.trial import Trial

    return Trial(study, _attribute(frozen, "_trial_id", owner="optuna.trial.FrozenTrial"))
