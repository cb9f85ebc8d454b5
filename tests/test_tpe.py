"""search/driver/tpe.py: IncrementalTPESampler suggests exactly what Optuna's TPESampler does, only faster.

Two studies side by side on the wide search file's conditional space (two latent families, TPE's `group`),
fed the same made-up results: complete, pruned and failed trials, several running at once (the constant liar),
a constraint some trials break, trials already in the study before the first suggestion (a warm start), and
the sampler pickled and restored half way (the searcher's state is saved so).
"""

from __future__ import annotations

import pickle
import random
import warnings

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from search.driver.tpe import IncrementalTPESampler
from search.spec import load_search_config


def constraint(trial) -> list[float]:
    """A made-up constraint: trials with a tiny lr break it (failure-aware pruning's kind of constraints_func)."""
    return [1e-3 - trial.params.get("lr", 1.0)]


def make(cls, space, warm, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = cls(seed=3, n_startup_trials=4, group=True, **options)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for params, value in warm:  # a warm start: trials of an earlier search, before the first suggestion
        distributions = {k: study_distribution(space, k, v) for k, v in params.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
    return study


def study_distribution(space, key, value):
    probe = optuna.create_study()
    trial = probe.ask()
    space.params[key].suggest(trial, key)
    return trial.distributions[key]


def drive(study, space, trials: int, running: int, roundtrip_at: int | None = None):
    """Ask, report and tell `trials` trials, `running` of them open at once; returns every suggestion's params."""
    rng, open_trials, suggestions = random.Random(0), [], []
    while len(suggestions) < trials:
        while len(open_trials) < running and len(suggestions) < trials:
            trial = study.ask()
            space(trial)
            open_trials.append(trial)
            suggestions.append(dict(trial.params))
        trial = open_trials.pop(0)
        value = -abs(trial.params["lr"] - 1e-3) * 100 + rng.random()
        fate = rng.random()
        if fate < 0.1:
            study.tell(trial, state=TrialState.FAIL)
        elif fate < 0.6:
            for step in range(1, rng.randint(1, 4) + 1):
                trial.report(value + 0.1 * step, step)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
        if roundtrip_at is not None and len(suggestions) == roundtrip_at:
            study.sampler = pickle.loads(pickle.dumps(study.sampler))
    return suggestions


@pytest.mark.parametrize("constrained", [False, True])
def test_the_suggestions_are_tpes_own(repo, constrained):
    spec = load_search_config(repo / "search" / "configs" / "wide.yaml")
    space = spec.optuna_space()
    warm = [({"latent": "gaussian", "hidden": 256, "lr": 1e-3}, 0.5), ({"latent": "categorical", "lr": 3e-3}, 0.2)]
    options = {"constraints_func": constraint} if constrained else {}
    stock = make(optuna.samplers.TPESampler, space, warm, **options)
    ours = make(IncrementalTPESampler, space, warm, **options)
    expected = drive(stock, space, trials=45, running=3)
    assert drive(ours, space, trials=45, running=3, roundtrip_at=25) == expected
    states = {t.state for t in ours.trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL} <= states  # every kind of trial was ranked
    assert len({s["latent"] for s in expected}) == 2  # both families, so TPE's groups split the space


def test_what_it_keeps_is_not_pickled():
    sampler = IncrementalTPESampler(seed=0, n_startup_trials=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=8)
    assert sampler._reprs  # it kept the finished trials' values ...
    restored = pickle.loads(pickle.dumps(sampler))
    assert restored._reprs == {}
    assert restored._ranks == {}


def test_log_ndtr_equals_optunas_bit_for_bit():
    from search.driver.compat import tpe_log_ndtr
    from search.driver.tpe import log_ndtr

    rng = np.random.default_rng(0)
    a = np.concatenate(
        [
            np.linspace(-45, 45, 90001),  # both branches' edges (-20, 6, the erf/erfc switches at +-1) and tails
            -np.logspace(1, 150, 1000),  # far in the left tail, where the series runs longest
            rng.normal(0, 5, 20000),
            [0.0, -0.0, 6.0, -20.0, 1.0, -1.0, np.inf, -np.inf, np.nan],
        ]
    )
    with np.errstate(invalid="ignore"):  # Optuna's own warns on NaN
        expected, got = tpe_log_ndtr(a), log_ndtr(a)
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))
    for size in (1, 5, 23, 24, 40, 300):  # small arrays and few elements in the tail take other paths
        part = np.concatenate([rng.normal(0, 3, size), -20 - rng.exponential(5, size // 10)])
        assert np.array_equal(log_ndtr(part).view(np.int64), tpe_log_ndtr(part).view(np.int64)), size
    assert log_ndtr(a.reshape(-1, 1)).shape == (a.size, 1)
    assert log_ndtr(np.array([])).shape == (0,)


class CountingTPE(IncrementalTPESampler):
    """Counts the Parzen estimators it builds (two per fit)."""

    built = 0

    def _build_parzen_estimator(self, *args, **kwargs):
        self.built += 1
        return super()._build_parzen_estimator(*args, **kwargs)


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize(("finished", "fits"), [(40, 12), (200, 3)])
def test_a_fit_is_drawn_from_again_until_its_trials_have_changed(finished, fits, group):
    """Below 67 trials every suggestion has a fit of its own (TPESampler's way); at 200, a fit serves until
    int(1.5% of 200) = 3 trials have been suggested or finished since: 12 suggestions, 3 fits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = CountingTPE(seed=0, n_startup_trials=4, multivariate=True, constant_liar=True, group=group)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rng = np.random.default_rng(0)
    space = {"x": optuna.distributions.FloatDistribution(0, 1), "n": optuna.distributions.IntDistribution(1, 9)}
    for x, n in zip(rng.random(finished), rng.integers(1, 10, finished)):
        params = {"x": float(x), "n": int(n)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=-((x - 0.3) ** 2)))
    asked = [study.ask(space) for _ in range(12)]  # all left running: the constant liar's trials
    assert sampler.built == 2 * fits
    assert len({t.params["x"] for t in asked}) == 12  # each suggestion drawn on its own from the fit it used
    for trial in asked[:4]:  # four finished: the kept fit is out of date at the next suggestion
        study.tell(trial, 0.0)
    study.ask(space)
    assert sampler.built == 2 * (fits + 1)


def test_kept_masses_score_as_optunas_own_bit_for_bit():
    """A fit drawn from again scores candidates with its components' masses kept: the values of Optuna's log_pdf."""
    from search.driver.compat import parzen_mixture
    from search.driver.parzen import KeptMixture, keep_masses

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = IncrementalTPESampler(seed=0, n_startup_trials=4, multivariate=True, constant_liar=True)
    study = optuna.create_study(sampler=sampler)
    d = optuna.distributions
    space = {  # every kind of parameter TPE models: plain, log, stepped, stepped log, categorical
        "x": d.FloatDistribution(-1, 1),
        "lr": d.FloatDistribution(1e-5, 1e-1, log=True),
        "w": d.FloatDistribution(0, 2, step=0.25),
        "n": d.IntDistribution(1, 9),
        "h": d.IntDistribution(16, 1024, log=True),
        "opt": d.CategoricalDistribution(["adam", "sgd", "rmsprop"]),
    }
    rng = np.random.default_rng(0)
    for _ in range(120):
        params = {name: dist.to_external_repr(_draw(dist, rng)) for name, dist in space.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=float(rng.random())))
    study.ask(space)
    estimators = [e for fit in sampler._fits.values() for e in (fit.below, fit.above)]
    assert estimators
    for estimator in estimators:
        draws = [estimator.sample(np.random.RandomState(seed), 300) for seed in (1, 2)]  # values seen again, and new
        expected = [estimator.log_pdf(samples) for samples in draws]
        keep_masses(estimator)
        assert isinstance(parzen_mixture(estimator), KeptMixture)
        for samples, optunas in zip(draws, expected):
            got = estimator.log_pdf(samples)
            assert np.array_equal(got.view(np.int64), optunas.view(np.int64))


def _draw(distribution, rng):
    """A value of the distribution in Optuna's internal form."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return int(rng.integers(len(distribution.choices)))
    low, high = distribution.low, distribution.high
    if distribution.log:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    step = distribution.step
    value = rng.uniform(low, high)
    return float(low + round((value - low) / step) * step) if step else float(value)
