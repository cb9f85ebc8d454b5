"""Distributed hyperparameter search for the cvae package: Ray Tune + Optuna TPE + ASHA + TensorBoard.

Layers, each importing only those below it (`make lint` checks it, docs/architecture.md draws it):

    search.cli                 twobirds-tune
    search.finalize            retrain the best configuration, validate, report, plot
    search.driver              everything that touches Ray: preflight, local Ray, tuner, trials, callbacks
    search.spec, search.trials the search file; the vocabulary of trials (no Ray)
    cvae                       the model library
"""

from __future__ import annotations

from pathlib import Path

from .driver import preflight
from .spec import SearchConfigError, SearchError, SearchSpec, load_search_config

__all__ = ["SearchConfigError", "SearchError", "SearchSpec", "load_search_config", "run_search"]


def run_search(
    config_path,
    name: str,
    storage,
    num_samples: int | None = None,
    address: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    time_budget: float | None = None,
    resume: bool = False,
    trust: bool = False,
    warm_start=(),
    more: int | None = None,
) -> Path:
    """Run (or with resume=True finish) the search `name` under `storage`; returns the experiment folder.

    Every input is checked first, without Ray (search.driver.preflight); then Ray is imported, after
    the switch that keeps a local Ray on 127.0.0.1, and the search runs (search.driver.run).
    The folder ends with search_config.yaml, results.csv, results.parquet, best_config.yaml and
    Tune's trial folders; for an s3:// or gs:// storage those files are also copied to ./runs/<name>/,
    which is returned. A resume unpickles Tune's state only if this project signed it, or with trust=True.
    warm_start: earlier experiment folders whose finished trials the new study starts with (their journals only);
    more: add that many trials to the finished experiment `name` (its study and numbering continue).
    """
    overrides = dict(
        num_samples=num_samples, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, time_budget_s=time_budget
    )
    plan = preflight.prepare(
        config_path, name, storage, overrides, address=address, resume=resume, trust=trust, warm=warm_start, more=more
    )
    from .driver.run import run  # the one import that brings in Ray: after preflight set the loopback switch

    return run(plan)
