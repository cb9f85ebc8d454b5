"""A search experiment as finalize reads it: the configuration to retrain, its data, and the trials.

`load_experiment` reads an experiment folder (`search_config.yaml`, `best_config.yaml`,
`results.csv`, `optuna.journal`); `load_config_file` a bare Config file. Every user mistake
raises `FinalizeError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cvae.config import Config, ConfigError
from cvae.data import DataSpec
from cvae.errors import UserError, first_line
from cvae.functions import FunctionPair, FunctionSyntaxError
from cvae.inputs import user_path
from cvae.submission import plain as _plain

from ..driver.files import BEST_CONFIG, SEARCH_CONFIG
from ..driver.files import RESULTS_CSV as RESULTS
from ..trials import OBJECTIVES, best_trial, finished_trials, read_results

VAL_SAMPLES = 30  # samples per validation condition, as in a challenge submission


class FinalizeError(UserError):
    """A user-facing problem (missing file, no finished trial, bad config); one line."""


@dataclass
class Experiment:
    """What finalize needs: the configuration to retrain, its data, and the search's trials."""

    config: Config
    data: DataSpec
    path: Path | None = None  # the experiment folder; None for a bare --config file
    source: str = ""  # where the configuration came from, for the report
    search: dict = field(default_factory=dict)  # the search file's sections
    results: object = None  # pandas DataFrame of results.csv, or None
    mode: str = "max"
    best_trial: dict | None = None  # the best finished trial's row (trial_id, score, ...)
    finished_trials: int = 0
    search_data: DataSpec | None = None  # the search's own data (command-line overrides change `data` only)

    @property
    def objective(self) -> str:
        return objective_name(self.search)

    @property
    def params(self) -> list[str]:
        """The searched hyperparameters (the search file's `space` keys)."""
        return list((self.search.get("space") or {}).keys())


def objective_name(search: dict | None) -> str:
    """The search file's objective (search.trials.OBJECTIVES), `score` when it names none."""
    return ((search or {}).get("search") or {}).get("objective") or "score"


def _read_yaml(path: Path, what: str):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise FinalizeError(f"{path}: not valid YAML{where} ({what}): {getattr(err, 'problem', err)}") from None
    except OSError as err:
        raise FinalizeError(f"{path}: cannot read {what}: {err.strerror or err}") from None


def _config_from(values, path: Path, functions=None) -> Config:
    if not isinstance(values, dict):
        raise FinalizeError(f"{path}: expected a mapping of Config keys to values, got {type(values).__name__}")
    values = dict(values)
    if functions is not None and "functions" not in values:
        values["functions"] = list(functions)
    try:
        return Config.from_dict(values)
    except (ConfigError, FunctionSyntaxError, TypeError) as err:
        raise FinalizeError(f"{path}: {err}") from None


def _resolve_file(name, base: Path | None, key: str):
    """A data file path as written, else relative to the experiment folder; None stays None."""
    if name in (None, ""):
        return None
    path = user_path(str(name))
    if path.is_file() or base is None:
        return str(path)
    if (base / path).is_file():
        return str(base / path)
    return str(path)  # DataSpec.build reports the missing file by name


def _data_spec(values, path: Path, base: Path | None) -> DataSpec:
    values = dict(values or {})
    for key in ("train_file", "val_file"):
        if key in values:
            values[key] = _resolve_file(values[key], base, key)
    try:
        return DataSpec.from_dict(values)
    except (TypeError, ValueError) as err:
        raise FinalizeError(f"{path}: data: {err}") from None


def load_experiment(path) -> Experiment:
    """Read `<storage>/<name>/`; raises FinalizeError naming the missing or bad file."""
    folder = user_path(path)
    if not folder.exists():
        raise FinalizeError(f"{folder}: no such experiment folder; pass --experiment <storage>/<name>")
    if not folder.is_dir():
        raise FinalizeError(f"{folder}: not a folder; pass --experiment <storage>/<name> (or --config FILE)")
    search = _search_file(folder)
    results = _results(folder)
    finished = finished_trials(results)
    best_file = folder / BEST_CONFIG
    if not best_file.is_file():
        raise FinalizeError(
            f"{folder}: {BEST_CONFIG} is missing although {len(finished)} trials finished; "
            "the search did not write its result (resume it), or pass --config FILE"
        )
    mode = OBJECTIVES[objective_name(search)][1]
    best = best_trial(finished, mode)
    keys = ("trial_id", "status", "stop_reason", "epochs", "node", "score", "best_score", "metric")
    data = _data_spec(search.get("data"), folder / SEARCH_CONFIG, folder)
    return Experiment(
        config=_best_config(best_file, search.get("functions")),
        data=data,
        search_data=data,
        path=folder,
        source=str(best_file),
        search=search,
        results=results,
        mode=mode,
        best_trial={k: _plain(best[k]) for k in keys if k in best},
        finished_trials=len(finished),
    )


def _search_file(folder: Path) -> dict:
    """The experiment's search_config.yaml, as its sections."""
    search_file = folder / SEARCH_CONFIG
    if not search_file.is_file():
        raise FinalizeError(
            f"{folder}: {SEARCH_CONFIG} is missing; not a search experiment folder "
            f"(expected {SEARCH_CONFIG}, {BEST_CONFIG} and {RESULTS} written by the search)"
        )
    search = _read_yaml(search_file, "the search file")
    if not isinstance(search, dict):
        raise FinalizeError(f"{search_file}: expected the search file's sections, got {type(search).__name__}")
    return search


def _results(folder: Path):
    """results.csv, with at least one finished trial."""
    import pandas as pd

    results_file = folder / RESULTS
    if not results_file.is_file():
        raise FinalizeError(f"{folder}: {RESULTS} is missing; the search has not recorded any trial yet")
    try:
        results = read_results(results_file)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise FinalizeError(f"{results_file}: not a readable results table: {first_line(err)}") from None
    if finished_trials(results).empty:
        column = "stop_reason" if "stop_reason" in results else "status"
        counts = results[column].astype(str).value_counts().to_dict() if column in results else {}
        seen = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
        raise FinalizeError(
            f"{folder}: no finished trial in {RESULTS} ({len(results)} trials; {column}: {seen}); "
            "let the search finish at least one trial, or pass --config FILE"
        )
    return results


def _best_config(best_file: Path, functions) -> Config:
    """best_config.yaml, whose functions must be the search file's."""
    config = _config_from(_read_yaml(best_file, "the best configuration"), best_file, functions)
    if functions is not None and tuple(functions) != config.functions:
        try:
            same = FunctionPair(functions).texts == FunctionPair(config.functions).texts
        except FunctionSyntaxError:
            same = False
        if not same:
            raise FinalizeError(
                f"{best_file}: functions {list(config.functions)} differ from the search file's {list(functions)}"
            )
    return config


def load_config_file(path, data: dict | None = None) -> Experiment:
    """A bare configuration (`best_config.yaml` or any flat Config YAML) and its data.

    Data: DataSpec defaults, then the `data` section of a search_config.yaml next to the
    file (when it is an experiment's best_config.yaml), then `data` (command-line values).
    A search file (with `fixed`/`space` sections) is refused: it has no single configuration.
    """
    path = user_path(path)
    if not path.is_file():
        raise FinalizeError(f"{path}: no such config file; pass a flat Config YAML such as best_config.yaml")
    values = _read_yaml(path, "the configuration")
    if isinstance(values, dict) and {"space", "fixed"} & values.keys():
        raise FinalizeError(
            f"{path}: this is a search file, not one configuration; pass --experiment <storage>/<name> "
            f"or that experiment's {BEST_CONFIG}"
        )
    sibling = path.parent / SEARCH_CONFIG  # a best_config.yaml inside its experiment: use its data section
    search = _read_yaml(sibling, "the search file") if sibling.is_file() else None
    base = dict(search.get("data") or {}) if isinstance(search, dict) else {}
    return Experiment(
        config=_config_from(values, path),
        data=_data_spec({**base, **(data or {})}, path, path.parent),
        source=str(path),
    )


def with_data(experiment: Experiment, overrides: dict) -> Experiment:
    """The experiment with some data keys replaced (command-line overrides); None values are ignored."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        values = {**experiment.data.model_dump(), **overrides}
        experiment.data = _data_spec(values, Path("command line"), None)
    return experiment
