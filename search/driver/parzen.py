"""A TPE Parzen mixture whose log-density keeps, between calls, the terms that depend on the mixture only.

TPE scores each suggestion's candidates under two Parzen mixtures (below and above), a component per trial.
Optuna's `_MixtureOfProductDistribution.log_pdf` computes at every call each component's probability mass
within the parameter's range, and for a stepped parameter its mass in the step around each candidate's value
(a log of a difference of normal CDFs per component and parameter): with a thousand trials that is most of a
call, and it depends on the mixture and the value alone (a stepped parameter takes few values). search/driver/
tpe.py draws several suggestions from one fit at cluster scale, so `KeptMixture` computes each of those masses
once per fit and the rest as Optuna does, in the same order: the same values bit for bit (tests/test_tpe.py).
It reads Optuna's private parts through search/driver/compat (entry 21).
"""

from __future__ import annotations

import numpy as np

from .compat import parzen_mixture, parzen_parts, set_parzen_mixture


def keep_masses(estimator) -> None:
    """Make a fitted Parzen estimator score with its components' masses kept (idempotent)."""
    mixture = parzen_mixture(estimator)
    if not isinstance(mixture, KeptMixture):
        set_parzen_mixture(estimator, KeptMixture(mixture))


class KeptMixture:
    """Optuna's Parzen mixture (sampled as before) with a log_pdf that reuses each component's mass."""

    def __init__(self, mixture):
        categorical, unique_inverse_2d, self._log_gauss_mass_unique, log_gauss_mass, self._norm_logpdf = parzen_parts()
        self._mixture = mixture
        self._log_weights = np.log(mixture.weights[np.newaxis])
        self._terms = []  # (index, distribution, None) for a categorical, (index, distribution, kept) for a step
        continuous = []
        for i, d in enumerate(mixture.distributions):
            if isinstance(d, categorical):
                self._terms.append((i, d, None))
            elif d.step == 0.0:
                continuous.append((i, d))
            else:
                mu, sigma, inverse = unique_inverse_2d(d.mu, d.sigma)
                mass = log_gauss_mass((d.adapted_low - mu) / sigma, (d.adapted_high - mu) / sigma)[inverse]
                self._terms.append((i, d, (mu, sigma, inverse, mass, {})))
        self._continuous = [(i, d.is_log) for i, d in continuous]
        if continuous:
            self._loc = np.asarray([d.mu for _, d in continuous]).T
            self._scale = np.asarray([d.sigma for _, d in continuous]).T
            lows = np.asarray([d.adapted_low for _, d in continuous])
            highs = np.asarray([d.adapted_high for _, d in continuous])
            a, b = (lows - self._loc) / self._scale, (highs - self._loc) / self._scale
            self._a, self._b = np.atleast_1d(a, b)
            self._mass, self._log_scale = log_gauss_mass(self._a, self._b), np.log(self._scale)

    def __getattr__(self, name):  # sample, weights, distributions: the mixture's own
        return getattr(self._mixture, name)

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        """`_MixtureOfProductDistribution.log_pdf`, step by step, with the masses computed once."""
        weighted = np.zeros((len(x), len(self._log_weights[0])), dtype=np.float64)
        for i, d, kept in self._terms:
            if kept is None:
                xi = x[:, i, np.newaxis, np.newaxis].astype(np.int64)
                weighted += np.log(np.take_along_axis(d.weights[np.newaxis], xi, axis=-1))[..., 0]
                continue
            mu, sigma, inverse, mass, rows = kept
            xi, xi_inverse = np.unique(x[:, i], return_inverse=True)
            new = np.asarray([value for value in xi.tolist() if value not in rows])
            if new.size:  # a stepped parameter takes few values: each value's masses, once
                left = np.log(new - d.step / 2) if d.is_log else (new - d.step / 2)
                right = np.log(new + d.step / 2) if d.is_log else (new + d.step / 2)
                a, b = (left[:, np.newaxis] - mu) / sigma, (right[:, np.newaxis] - mu) / sigma
                masses = self._log_gauss_mass_unique(a, b)
                rows.update(zip(new.tolist(), masses))
            between = np.asarray([rows[value] for value in xi.tolist()])
            weighted += between[np.ix_(xi_inverse, inverse)]
            weighted -= mass
        if self._continuous:
            columns = np.asarray([np.log(x[:, i]) if is_log else x[:, i] for i, is_log in self._continuous])
            z = np.atleast_1d((columns.T[:, np.newaxis, :] - self._loc) / self._scale)
            out = self._norm_logpdf(z) - self._mass - self._log_scale
            z, a, b = np.broadcast_arrays(z, self._a, self._b)
            weighted += np.select([a == b, (z < a) | (z > b)], [np.nan, -np.inf], default=out).sum(axis=-1)
        weighted += self._log_weights
        top = weighted.max(axis=1)
        top[np.isneginf(top)] = 0  # as Optuna: no (-inf) - (-inf) where the density is zero
        with np.errstate(divide="ignore"):
            return np.log(np.exp(weighted - top[:, None]).sum(axis=1)) + top
