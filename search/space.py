"""The search file: load the YAML, validate every part before Ray starts, build the Optuna space.

A search file has the sections `functions`, `data`, `search`, `asha`, `fixed`, `space` and
optional `start_points`. Every mistake ends in one `SearchConfigError` line that names the
key (e.g. ``space.lr``) and says how to fix it, so a typo costs seconds, not a cluster start.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cvae.config import Config, ConfigError
from cvae.data import DataSpec
from cvae.errors import UserError
from cvae.functions import FunctionPair, FunctionSyntaxError

from .params import OptunaSpace, Param

SECTIONS = ("functions", "data", "search", "asha", "fixed", "space", "start_points")
OBJECTIVES = {
    # objective name -> (metric reported to Tune, mode)
    "score": ("val_score", "max"),
    "train_loss": ("loss", "min"),
    # the same score after refining each validation sample: ranks models as proposal distributions
    "refined_score": ("val_refined_score", "max"),
}
SEARCH_DEFAULTS = {
    "num_samples": 20,
    "max_concurrent_trials": None,  # None: as many as the cluster's CPUs/GPUs allow
    "objective": "score",
    "seed": 0,
    "tpe_startup_trials": 10,  # random suggestions before TPE models the history (Optuna's default)
    "time_budget_s": None,
    "cpus_per_trial": 1,
    "gpus_per_trial": 0,
    "max_failures": 2,  # retries of a failed trial (a lost node), each from its last checkpoint
    "checkpoint_every": 5,  # epochs between a trial's checkpoints (and its last epoch); a retry repeats < this
    "images": "rungs",  # TensorBoard sample plots: at each ASHA rung and the last epoch; first_and_rungs; none
}
IMAGES = ("rungs", "first_and_rungs", "none")
ASHA_KEYS = ("max_t", "grace_period", "reduction_factor")
PARAM_TYPES = {
    "loguniform": ("low", "high", "when"),
    "uniform": ("low", "high", "when"),
    "int": ("low", "high", "log", "step", "when"),
    "choice": ("values", "when"),
}
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
NOT_SEARCHABLE = {
    "functions": "set the top-level `functions:` list instead",
    "epochs": "epochs is the ASHA budget; set fixed.epochs or asha.max_t instead",
}


class SearchError(UserError):
    """A search that cannot start (bad file, flag, cluster address or experiment name); one line."""


class SearchConfigError(SearchError):
    """A search file that cannot run; the message is one line naming the key and the fix."""


def _is_int_key(key: str) -> bool:
    default = CONFIG_FIELDS[key].default
    return isinstance(default, int) and not isinstance(default, bool)


def _is_numeric_key(key: str) -> bool:
    default = CONFIG_FIELDS[key].default
    return isinstance(default, (int, float)) and not isinstance(default, bool)


def _number(where: str, value, integer: bool = False):
    """YAML reads `1e-4` as text (YAML 1.1 wants `1.0e-4`); accept both, reject the rest."""
    if isinstance(value, bool):
        raise SearchConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SearchConfigError(f"{where}: expected a number, got {value!r}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchConfigError(f"{where}: expected a finite number, got {value!r}")
    if integer:
        if int(value) != value:
            raise SearchConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


@dataclass
class SearchSpec:
    """A validated search file."""

    path: Path
    text: str  # the file exactly as the user wrote it (saved as search_config.yaml)
    functions: tuple
    data: DataSpec
    search: dict
    asha: dict
    fixed: dict
    space: dict[str, Param]
    start_points: list = field(default_factory=list)

    @property
    def metric(self) -> str:
        return OBJECTIVES[self.search["objective"]][0]

    @property
    def mode(self) -> str:
        return OBJECTIVES[self.search["objective"]][1]

    @property
    def max_t(self) -> int:
        return self.asha["max_t"]

    def base_config(self) -> dict:
        """Fixed values plus functions and epochs = the full budget: the constant part of every trial."""
        return {**self.fixed, "functions": list(self.functions), "epochs": self.max_t}

    def trial_config(self, searched: dict) -> Config:
        return Config.from_dict({**self.base_config(), **searched})

    def optuna_space(self) -> OptunaSpace:
        return OptunaSpace(self.space, self.fixed)

    def with_overrides(self, **overrides) -> SearchSpec:
        """A copy with command-line values (None = keep the file's) applied and validated."""
        search = dict(self.search)
        for key, value in overrides.items():
            if value is not None:
                search[key] = value
        return dataclasses.replace(self, search=_check_search(search))


def load_search_config(path) -> SearchSpec:
    """Read and validate a search file; raises SearchConfigError naming the first bad key."""
    path = Path(path)
    if not path.is_file():
        raise SearchConfigError(f"{path}: no such search file; see search/configs/ for examples")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SearchConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    try:
        return parse_search_config(raw, path=path, text=text)
    except SearchConfigError as err:
        raise SearchConfigError(f"{path}: {err}") from None


def parse_search_config(raw, path=Path("<dict>"), text: str | None = None) -> SearchSpec:
    """Validate an already-loaded search dict (see load_search_config)."""
    if not isinstance(raw, dict):
        raise SearchConfigError("the search file must be a mapping with sections " + ", ".join(SECTIONS))
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        raise SearchConfigError(f"unknown section {unknown[0]!r}; allowed are {', '.join(SECTIONS)}")
    for section in ("data", "search", "asha", "fixed", "space"):
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise SearchConfigError(f"{section}: must be a mapping of keys to values")
    functions = _check_functions(raw.get("functions"))
    data = _check_data(raw.get("data") or {})
    search = _check_search(raw.get("search") or {})
    fixed = _check_fixed(raw.get("fixed") or {}, functions)
    asha = _check_asha(raw.get("asha") or {}, fixed)
    if search["objective"] == "refined_score" and not fixed.get("val_refine_steps"):
        raise SearchConfigError(
            "search.objective: refined_score needs fixed.val_refine_steps > 0 (e.g. 10): the steps that refine "
            "each validation sample"
        )
    fixed = {k: v for k, v in fixed.items() if k != "epochs"}  # the budget lives in asha.max_t
    base = {**fixed, "functions": list(functions), "epochs": asha["max_t"]}
    space = _check_space(raw.get("space") or {}, fixed, base)
    start_points = _check_start_points(raw.get("start_points"), space, base)
    if text is None:
        text = yaml.safe_dump(raw, sort_keys=False)
    return SearchSpec(Path(path), text, functions, data, search, asha, fixed, space, start_points)


def _check_functions(functions) -> tuple:
    if functions is None:
        raise SearchConfigError(
            "functions: missing; write e.g. functions: ['cos(49*x0 + 42*x1)', 'cos(56*x0 + 63*x1)']"
        )
    if not isinstance(functions, (list, tuple)) or len(functions) != 2:
        raise SearchConfigError(f"functions: expected a list of exactly two expressions, got {functions!r}")
    try:
        return FunctionPair(functions).texts
    except FunctionSyntaxError as err:
        raise SearchConfigError(f"functions: {err}") from None


def _check_data(data: dict) -> DataSpec:
    known = [f.name for f in dataclasses.fields(DataSpec)]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise SearchConfigError(f"data.{unknown[0]}: unknown key; allowed are {', '.join(known)}")
    values = dict(data)
    for key in ("train_size", "val_conditions", "seed"):
        if key in values:
            values[key] = _number(f"data.{key}", values[key], integer=True)
    for key in ("train_size", "val_conditions"):
        if key in values and values[key] < 1:
            raise SearchConfigError(f"data.{key}: must be a positive integer, got {values[key]}")
    for key in ("train_file", "val_file"):
        name = values.get(key)
        if name is None:
            continue
        if not isinstance(name, str):
            raise SearchConfigError(f"data.{key}: expected a path to a challenge .pt file, got {name!r}")
        if "://" not in name:
            resolved = Path(name).expanduser().resolve()
            if not resolved.is_file():
                raise SearchConfigError(
                    f"data.{key}: no such file {name!r} (relative paths start at the current directory)"
                )
            values[key] = str(resolved)  # the driver builds the data; an absolute path survives a cwd change
    try:
        return DataSpec.from_dict(values)
    except (TypeError, ValueError) as err:
        raise SearchConfigError(f"data: {err}") from None


def _check_search(search: dict) -> dict:
    unknown = [k for k in search if k not in SEARCH_DEFAULTS]
    if unknown:
        raise SearchConfigError(f"search.{unknown[0]}: unknown key; allowed are {', '.join(SEARCH_DEFAULTS)}")
    values = {**SEARCH_DEFAULTS, **search}

    def positive(key, integer=False, allow_zero=False, optional=False):
        value = values[key]
        if value is None and optional:
            return
        value = _number(f"search.{key}", value, integer)
        if value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise SearchConfigError(f"search.{key}: must be {bound}, got {value}")
        values[key] = value

    positive("num_samples", integer=True)
    positive("max_concurrent_trials", integer=True, optional=True)
    positive("seed", integer=True, allow_zero=True)
    positive("tpe_startup_trials", integer=True, allow_zero=True)
    positive("time_budget_s", optional=True)
    positive("cpus_per_trial")
    positive("gpus_per_trial", allow_zero=True)
    positive("max_failures", integer=True, allow_zero=True)
    positive("checkpoint_every", integer=True)
    if values["images"] not in IMAGES:
        raise SearchConfigError(f"search.images: {values['images']!r} is not one of {', '.join(IMAGES)}")
    if values["objective"] not in OBJECTIVES:
        raise SearchConfigError(f"search.objective: {values['objective']!r} is not one of {', '.join(OBJECTIVES)}")
    return values


def _check_fixed(fixed: dict, functions: tuple) -> dict:
    for key in fixed:
        if key == "functions":
            raise SearchConfigError("fixed.functions: set the top-level `functions:` list instead")
        if key not in CONFIG_FIELDS:
            raise SearchConfigError(f"fixed.{key}: unknown Config key; known keys: {', '.join(CONFIG_FIELDS)}")
    try:
        Config.from_dict({**fixed, "functions": list(functions)})
    except (ConfigError, TypeError, ValueError) as err:
        raise SearchConfigError(f"fixed: {err}") from None
    return dict(fixed)


def _check_asha(asha: dict, fixed: dict) -> dict:
    unknown = [k for k in asha if k not in ASHA_KEYS]
    if unknown:
        raise SearchConfigError(f"asha.{unknown[0]}: unknown key; allowed are {', '.join(ASHA_KEYS)}")
    epochs = fixed.get("epochs")
    max_t = asha.get("max_t", epochs if epochs is not None else Config.epochs)
    max_t = _number("asha.max_t", max_t, integer=True)
    if epochs is not None and int(epochs) != max_t:
        raise SearchConfigError(
            f"asha.max_t: {max_t} differs from fixed.epochs={epochs}; epochs is the ASHA budget, set only one"
        )
    grace = _number("asha.grace_period", asha.get("grace_period", 1), integer=True)
    factor = _number("asha.reduction_factor", asha.get("reduction_factor", 3))
    if max_t < 1:
        raise SearchConfigError(f"asha.max_t: must be a positive number of epochs, got {max_t}")
    if not 1 <= grace <= max_t:
        raise SearchConfigError(f"asha.grace_period: must be between 1 and max_t={max_t}, got {grace}")
    if factor <= 1:
        raise SearchConfigError(f"asha.reduction_factor: must be > 1, got {factor}")
    return {"max_t": max_t, "grace_period": grace, "reduction_factor": factor}


def _check_when(where: str, when, earlier: dict[str, Param], fixed: dict) -> tuple:
    """`when: {latent: categorical}` (or a list of values): keys chosen before this one, and their values."""
    if not isinstance(when, dict) or not when:
        raise SearchConfigError(f"{where}.when: expected a mapping like {{latent: categorical}}, got {when!r}")
    checked = []
    for key, allowed in when.items():
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        if key in earlier:
            if earlier[key].type != "choice":
                raise SearchConfigError(f"{where}.when.{key}: only a choice key can be a condition")
            outside = [v for v in allowed if v not in earlier[key].values]
            if outside:
                raise SearchConfigError(
                    f"{where}.when.{key}: {outside[0]!r} is not one of space.{key}'s values {list(earlier[key].values)}"
                )
        elif key not in fixed:
            raise SearchConfigError(
                f"{where}.when.{key}: not a searched (or fixed) key; a condition names a choice key of space:"
            )
        checked.append((key, allowed))
    return tuple(checked)


def _check_param(key: str, spec, base: dict, earlier: dict | None = None) -> Param:
    where = f"space.{key}"
    if not isinstance(spec, dict) or "type" not in spec:
        raise SearchConfigError(
            f"{where}: expected a mapping like {{type: loguniform, low: 1.0e-4, high: 1.0e-2}} "
            f"or {{type: choice, values: [...]}}, got {spec!r}"
        )
    kind = spec["type"]
    if kind not in PARAM_TYPES:
        raise SearchConfigError(f"{where}.type: {kind!r} is not one of {', '.join(PARAM_TYPES)}")
    extra = [k for k in spec if k != "type" and k not in PARAM_TYPES[kind]]
    if extra:
        raise SearchConfigError(
            f"{where}.{extra[0]}: not a key of type {kind}; allowed are {', '.join(PARAM_TYPES[kind])}"
        )
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SearchConfigError(f"{where}.values: a choice needs a non-empty list of values")
        param = Param(key, kind, values=tuple(values))
        checks = values
    else:
        if not _is_numeric_key(key):
            raise SearchConfigError(f"{where}: Config {key} is not a number; use {{type: choice, values: [...]}}")
        if _is_int_key(key) and kind != "int":
            raise SearchConfigError(
                f"{where}: Config {key} is an integer; use type: int (with log: true for a log scale)"
            )
        for bound in ("low", "high"):
            if bound not in spec:
                raise SearchConfigError(f"{where}.{bound}: missing; a {kind} range needs low and high")
        integer = kind == "int"
        low = _number(f"{where}.low", spec["low"], integer)
        high = _number(f"{where}.high", spec["high"], integer)
        if low > high:
            raise SearchConfigError(f"{where}: low={low} > high={high}; swap them")
        log = kind == "loguniform" or bool(spec.get("log", False))
        if log and low <= 0:
            raise SearchConfigError(f"{where}.low: a log-scale range needs bounds > 0, got low={low}")
        step = _number(f"{where}.step", spec.get("step", 1), integer=True)
        if step < 1 or (log and step != 1):
            raise SearchConfigError(f"{where}.step: must be a positive integer (and 1 with log: true), got {step}")
        param = Param(key, kind, low=low, high=high, log=log, step=step)
        checks = [low, high]
    if "when" in spec:
        when = _check_when(where, spec["when"], earlier or {}, base)
        param = dataclasses.replace(param, when=when)
        # each end of the range is checked in the branch it is searched in
        base = {**base, **{k: allowed[0] for k, allowed in when}}
    for value in checks:  # each end of the range must be a Config the trainer accepts
        try:
            Config.from_dict({**base, key: value})
        except (ConfigError, TypeError, ValueError) as err:
            raise SearchConfigError(f"{where}: value {value!r} is not usable: {err}") from None
    return param


def _check_space(space: dict, fixed: dict, base: dict) -> dict[str, Param]:
    if not space:
        raise SearchConfigError(
            "space: empty; name at least one Config key to search, e.g. lr: {type: loguniform, ...}"
        )
    for key in space:
        if key in NOT_SEARCHABLE:
            raise SearchConfigError(f"space.{key}: not searchable; {NOT_SEARCHABLE[key]}")
        if key not in CONFIG_FIELDS:
            raise SearchConfigError(f"space.{key}: unknown Config key; known keys: {', '.join(CONFIG_FIELDS)}")
        if key in fixed:
            raise SearchConfigError(f"space.{key}: also set in fixed; a key is either fixed or searched, remove one")
    # Keys in file order, except that a key's conditions (`when:`) come before it, in whatever order written.
    params, pending = {}, dict(space)
    while pending:
        ready = [key for key, spec in pending.items() if all(c in params or c in fixed for c in _conditions(spec))]
        for key in ready or list(pending)[:1]:  # nothing ready: the first one's condition names an unknown key
            params[key] = _check_param(key, pending.pop(key), base, params)
    return params


def _conditions(spec) -> list:
    when = spec.get("when") if isinstance(spec, dict) else None
    return list(when) if isinstance(when, dict) else []


def _check_start_points(points, space: dict[str, Param], base: dict) -> list:
    if points is None:
        return []
    if not isinstance(points, list):
        raise SearchConfigError("start_points: expected a list of mappings of space keys to values")
    checked = []
    for i, point in enumerate(points):
        where = f"start_points[{i}]"
        if not isinstance(point, dict) or not point:
            raise SearchConfigError(f"{where}: expected a non-empty mapping of space keys to values")
        for key, value in point.items():
            if key not in space:
                raise SearchConfigError(f"{where}.{key}: not a searched key; start points name keys of `space:` only")
            if not space[key].applies({**base, **point}):
                conditions = ", ".join(f"{k} in {list(v)}" for k, v in space[key].when)
                raise SearchConfigError(
                    f"{where}.{key}: searched only when {conditions}; name those values in the start point too"
                )
            if space[key].type != "choice" and isinstance(value, str):
                value = _number(f"{where}.{key}", value, integer=space[key].type == "int")
            if not space[key].contains(value):
                raise SearchConfigError(f"{where}.{key}: {value!r} is outside the space ({space[key].describe()})")
            point = {**point, key: value}
        try:
            Config.from_dict({**base, **point})
        except (ConfigError, TypeError, ValueError) as err:
            raise SearchConfigError(f"{where}: {err}") from None
        checked.append(point)
    return checked
