"""Distributed hyperparameter search for the cvae package: Ray Tune + Optuna TPE + ASHA + TensorBoard.

Modules, one job each: space (the search file), trainable (one trial), searcher (Optuna with
pruned early stops), study (the Optuna journal and its plots), monitor (trial names, TensorBoard,
console), runner (Tuner, Ray, resume), results (table, best config), finalize and report, cli.
Imports are lazy so that `twobirds-tune --help` answers without loading torch or Ray.
"""

__all__ = ["SearchConfigError", "SearchError", "load_search_config", "run_search"]


def run_search(*args, **kwargs):
    """See search.runner.run_search."""
    from .runner import run_search as run

    return run(*args, **kwargs)


def __getattr__(name):
    if name in ("SearchConfigError", "SearchError", "load_search_config"):
        from . import space

        return getattr(space, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
