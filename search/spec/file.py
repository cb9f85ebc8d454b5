"""The search file: load the YAML, validate every part before Ray starts, build the Optuna space.

A search file has the sections `functions`, `data`, `search`, `asha`, `failures`, `fixed`, `space` and
optional `start_points` (search/spec/sections.py, search/spec/params.py). Every mistake ends in one
`SearchConfigError` line that names the key (e.g. ``space.lr.low``) and says how to fix it, so a typo
costs seconds, not a cluster start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import Field, PrivateAttr, model_validator

from cvae.config import At, Config, Functions, Model, key_path, validated
from cvae.errors import UserError

from ..trials import OBJECTIVES
from .params import OptunaSpace, Param
from .sections import Asha, Failures, Run, SearchConfigError, SearchData

NOT_SEARCHABLE = {
    "functions": "set the top-level `functions:` list instead",
    "epochs": "epochs is the ASHA budget; set fixed.epochs or asha.max_t instead",
}


class SearchSpec(Model):
    """A validated search file."""

    error: ClassVar[type[UserError]] = SearchConfigError
    functions: Functions
    data: SearchData = Field(default_factory=SearchData)
    search: Run = Field(default_factory=Run)
    asha: Asha = Field(default_factory=Asha)
    failures: Failures = Field(default_factory=Failures)  # failure-aware pruning's thresholds
    fixed: dict[str, Any] = Field(default_factory=dict)  # Config keys held constant
    space: dict[str, Param] = Field(min_length=1)  # Config keys searched
    start_points: list[dict[str, Any]] = Field(
        default_factory=list
    )  # tried first, in order: each any subset of the space keys
    _path: Path = PrivateAttr(Path("<dict>"))
    _text: str = PrivateAttr("")  # the file as the user wrote it (saved as search_config.yaml)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, raw):
        if isinstance(raw, dict) and raw.get("functions") is None:
            raise At("functions", "missing; write e.g. functions: ['cos(49*x0 + 42*x1)', 'cos(56*x0 + 63*x1)']")
        return {k: v for k, v in raw.items() if v is not None} if isinstance(raw, dict) else raw

    @model_validator(mode="after")
    def _consistent(self):
        self._check_fixed()
        base = self.base_config()
        self.space = _checked_space(self.space, self.fixed, base)
        self.start_points = [
            _start_point(("start_points", i), p, self.space, base) for i, p in enumerate(self.start_points)
        ]
        return self

    def _check_fixed(self):
        if "functions" in self.fixed:
            raise At(("fixed", "functions"), NOT_SEARCHABLE["functions"])
        config = validated(Config, {**self.fixed, "functions": self.functions}, "fixed")
        if "epochs" in self.fixed:  # the ASHA budget: asha.max_t holds it
            if "max_t" in self.asha.model_fields_set and self.asha.max_t != config.epochs:
                raise At(
                    ("asha", "max_t"),
                    f"{self.asha.max_t} differs from fixed.epochs={config.epochs}; "
                    "epochs is the ASHA budget, set only one",
                )
            self.asha.max_t = config.epochs
        self.fixed = {key: getattr(config, key) for key in self.fixed if key != "epochs"}  # as the trainer reads them
        if self.asha.grace_period > self.asha.max_t:
            raise At(
                ("asha", "grace_period"), f"must be between 1 and max_t={self.asha.max_t}, got {self.asha.grace_period}"
            )
        if self.search.objective == "refined_score" and not config.val_refine_steps:
            raise At(
                ("search", "objective"),
                "refined_score needs fixed.val_refine_steps > 0 (e.g. 10): "
                "the steps that refine each validation sample",
            )

    path = property(lambda self: self._path)
    text = property(lambda self: self._text)

    @property
    def metric(self) -> str:
        return OBJECTIVES[self.search.objective][0]

    @property
    def mode(self) -> str:
        return OBJECTIVES[self.search.objective][1]

    @property
    def max_t(self) -> int:
        return self.asha.max_t

    def base_config(self) -> dict:
        """Fixed values plus functions and epochs = the full budget: the constant part of every trial."""
        return {**self.fixed, "functions": list(self.functions), "epochs": self.max_t}

    def trial_config(self, searched: dict) -> Config:
        return Config.from_dict({**self.base_config(), **searched})

    def optuna_space(self) -> OptunaSpace:
        return OptunaSpace(self.space, self.fixed)

    def with_overrides(self, **overrides) -> SearchSpec:
        """A copy with command-line values (None = keep the file's) applied to `search:` and validated."""
        search = {**self.search.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        return self.model_copy(update={"search": Run.from_dict(search, where=("search",))})


def _checked_space(space: dict, fixed: dict, base: dict) -> dict:
    """The space in the order its keys are chosen: file order, except that a key's conditions come first."""
    for key, param in space.items():
        if key in NOT_SEARCHABLE:
            raise At(("space", key), f"not searchable; {NOT_SEARCHABLE[key]}")
        if key not in Config.model_fields:
            raise At(("space", key), f"unknown Config key; known keys: {', '.join(Config.model_fields)}")
        if key in fixed:
            raise At(("space", key), "also set in fixed; a key is either fixed or searched, remove one")
        number = Config.model_fields[key].annotation
        if param.type != "choice" and number not in (int, float):
            raise At(("space", key), f"Config {key} is not a number; use {{type: choice, values: [...]}}")
        if number is int and param.type not in ("int", "choice"):
            raise At(("space", key), f"Config {key} is an integer; use type: int (with log: true for a log scale)")
    ordered, pending = {}, dict(space)
    while pending:
        ready = [key for key, param in pending.items() if all(c in ordered or c in fixed for c in param.when)]
        for key in ready or list(pending)[:1]:  # nothing ready: the first one's condition names an unknown key
            ordered[key] = _checked_param(key, pending.pop(key), ordered, fixed, base)
    return ordered


def _checked_param(key: str, param, earlier: dict, fixed: dict, base: dict):
    for name, allowed in param.when.items():
        where = ("space", key, "when", name)
        if name in earlier:
            if earlier[name].type != "choice":
                raise At(where, "only a choice key can be a condition")
            outside = [v for v in allowed if v not in earlier[name].values]
            if outside:
                raise At(where, f"{outside[0]!r} is not one of space.{name}'s values {earlier[name].values}")
        elif name not in fixed:
            raise At(where, "not a searched (or fixed) key; a condition names a choice key of space:")
    branch = {**base, **{name: allowed[0] for name, allowed in param.when.items()}}  # where the key is searched
    for value in param.values if param.type == "choice" else (param.low, param.high):
        try:  # each value (each end of a range) must be a Config the trainer accepts
            validated(Config, {**branch, key: value})
        except At as err:
            problem = str(err) if err.loc == (key,) else f"value {value!r} is not usable: {key_path(err.loc)}: {err}"
            raise At(("space", key), problem) from None
    return param


def _start_point(where: tuple, point: dict, space: dict, base: dict) -> dict:
    if not point:
        raise At(where, "expected a non-empty mapping of space keys to values")
    for key in point:
        if key not in space:
            raise At((*where, key), "not a searched key; start points name keys of `space:` only")
        if not space[key].applies({**base, **point}):
            conditions = ", ".join(f"{k} in {v}" for k, v in space[key].when.items())
            raise At((*where, key), f"searched only when {conditions}; name those values in the start point too")
    config = validated(Config, {**base, **point}, *where)
    point = {k: v if space[k].type == "choice" else getattr(config, k) for k, v in point.items()}  # "1e-4": a number
    for key, value in point.items():
        if not space[key].contains(value):
            raise At((*where, key), f"{value!r} is outside the space ({space[key].describe()})")
    return point


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
        raise SearchConfigError("the search file must be a mapping with sections " + ", ".join(SearchSpec.model_fields))
    spec = SearchSpec.from_dict(raw)
    spec._path, spec._text = Path(path), yaml.safe_dump(raw, sort_keys=False) if text is None else text
    return spec
