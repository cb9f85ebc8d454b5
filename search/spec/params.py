"""The kinds of a searched Config key (a union tagged by `type:`, optionally conditional); the define-by-run space."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cvae.config import At, Float, Int, Model


class Kind(Model):
    """What every kind takes: `when: {latent: categorical}` (or a list of values) searches the key only
    in trials where each named key, chosen before it, took one of those values."""

    type: str  # the tag: each kind's own Literal
    when: dict[str, Annotated[list, Field(min_length=1)]] = Field(default_factory=dict)

    @field_validator("when", mode="before")
    @classmethod
    def _listed(cls, when):
        return {k: v if isinstance(v, list) else [v] for k, v in when.items()} if isinstance(when, dict) else when

    def applies(self, chosen: dict) -> bool:
        """Whether this key is searched, given the values chosen (or fixed) so far."""
        return all(chosen.get(key) in allowed for key, allowed in self.when.items())


class Choice(Kind):
    type: Literal["choice"]
    values: list = Field(min_length=1)

    def suggest(self, trial, key: str):
        """The value Optuna proposes for this key (define-by-run)."""
        return trial.suggest_categorical(key, self.values)

    def contains(self, value) -> bool:
        return value in self.values

    def describe(self) -> str:
        return f"one of {self.values}"


class Range(Kind):
    """low to high; on a log scale when `log` (loguniform: always, uniform: never, int: as written)."""

    low: Float
    high: Float

    @model_validator(mode="after")
    def _bounds(self):
        if self.low > self.high:
            raise ValueError(f"low={self.low} > high={self.high}; swap them")
        if self.log and self.low <= 0:
            raise At("low", f"a log-scale range needs bounds > 0, got low={self.low}")
        return self

    def suggest(self, trial, key: str):
        return trial.suggest_float(key, self.low, self.high, log=self.log)

    def contains(self, value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.type} in [{self.low}, {self.high}]"


class FloatRange(Range):
    type: Literal["uniform", "loguniform"]

    @property
    def log(self) -> bool:
        return self.type == "loguniform"


class IntRange(Range):
    type: Literal["int"]
    low: Int
    high: Int
    log: bool = False
    step: Int = Field(1, gt=0)

    @model_validator(mode="after")
    def _log_step(self):
        if self.log and self.step != 1:
            raise At("step", f"must be 1 with log: true, got {self.step}")
        return self

    def suggest(self, trial, key: str):
        return trial.suggest_int(key, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value) -> bool:
        return super().contains(value) and int(value) == value


Param = Annotated[Choice | FloatRange | IntRange, Field(discriminator="type")]


class OptunaSpace:
    """Define-by-run space for OptunaSearch: a plain picklable object (the searcher is checkpointed).

    Define-by-run rather than a distributions dict so start points may name only some keys
    (Optuna samples the rest) and so a key can depend on another (`when:`): e.g. each latent
    family's own parameters are searched only in that family's trials.
    """

    def __init__(self, params: dict, fixed: dict | None = None):
        self.params = dict(params)
        self.fixed = dict(fixed or {})

    def __call__(self, trial):
        chosen = dict(self.fixed)
        for key, param in self.params.items():
            if param.applies(chosen):
                chosen[key] = param.suggest(trial, key)
        return None

    @property
    def conditional(self) -> bool:
        return any(param.when for param in self.params.values())
