"""One searched Config key (a range or a list of choices, optionally conditional) and the define-by-run space."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """One searched Config key: a range or a list of choices."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int = 1
    values: tuple = ()
    when: tuple = ()  # ((key, allowed values), ...): searched only when each earlier key takes one of them

    def applies(self, chosen: dict) -> bool:
        """Whether this key is searched, given the values chosen (or fixed) so far."""
        return all(chosen.get(key) in allowed for key, allowed in self.when)

    def suggest(self, trial):
        """The value Optuna proposes for this key (define-by-run)."""
        if self.type == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.type == "loguniform")

    def contains(self, value) -> bool:
        if self.type == "choice":
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and int(value) != value:
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "choice":
            return f"one of {list(self.values)}"
        return f"{self.type} in [{self.low}, {self.high}]"


class OptunaSpace:
    """Define-by-run space for OptunaSearch: a plain picklable object (the searcher is checkpointed).

    Define-by-run rather than a distributions dict so start points may name only some keys
    (Optuna samples the rest) and so a key can depend on another (`when:`): e.g. each latent
    family's own parameters are searched only in that family's trials.
    """

    def __init__(self, params: dict[str, Param], fixed: dict | None = None):
        self.params = dict(params)
        self.fixed = dict(fixed or {})

    def __call__(self, trial):
        chosen = dict(self.fixed)
        for param in self.params.values():
            if param.applies(chosen):
                chosen[param.key] = param.suggest(trial)
        return None

    @property
    def conditional(self) -> bool:
        return any(param.when for param in self.params.values())
