"""The sections of a search file that stand alone (`search:`, `asha:`, `data:`) and the search's errors."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from cvae.config import Config, Float, Int, Model
from cvae.data import DataSpec
from cvae.errors import UserError
from cvae.inputs import user_path

from ..trials import OBJECTIVES


class SearchError(UserError):
    """A search that cannot start (bad file, flag, cluster address or experiment name); one line."""


class SearchConfigError(SearchError):
    """A search file that cannot run; the message is one line naming the key and the fix."""


class Section(Model):
    error: ClassVar[type[UserError]] = SearchConfigError


class Run(Section):
    """The `search:` section: how many trials, ranked by what, on which resources. A new key is one line."""

    num_samples: Int = Field(20, gt=0)
    max_concurrent_trials: Int | None = Field(None, gt=0)  # None: as many as the cluster's CPUs/GPUs allow
    objective: Literal[tuple(OBJECTIVES)] = "score"  # search.trials.OBJECTIVES
    seed: Int = Field(0, ge=0)
    tpe_startup_trials: Int = Field(10, ge=0)  # random suggestions before TPE models the history (Optuna's default)
    time_budget_s: Float | None = Field(None, gt=0)
    cpus_per_trial: Float = Field(1, gt=0)
    gpus_per_trial: Float = Field(0, ge=0)
    max_failures: Int = Field(2, ge=0)  # retries of a trial failing without progress (search/driver/retries.py)
    checkpoint_every: Int = Field(5, gt=0)  # epochs between a trial's checkpoints (and its last): a retry repeats fewer
    # TensorBoard sample plots: at the rungs a trial survives to and its last epoch (survivors), at every rung
    # (rungs), those and epoch 1 (first_and_rungs), or none; each plot costs a trial about a third of a second
    images: Literal["survivors", "rungs", "first_and_rungs", "none"] = "survivors"


class Asha(Section):
    """The `asha:` section; max_t is the epochs of a full-length trial (or fixed.epochs, not both)."""

    max_t: Int = Field(Config.model_fields["epochs"].default, gt=0)
    grace_period: Int = Field(1, gt=0)
    reduction_factor: Float = Field(3, gt=1)


class SearchData(DataSpec):
    """The `data:` section: a DataSpec whose files are found now, from the current directory."""

    @field_validator("train_file", "val_file")
    @classmethod
    def _found(cls, name):
        if name is None or "://" in name:
            return name
        path = user_path(name).resolve()
        if not path.is_file():
            raise ValueError(f"no such file {name!r} (relative paths start at the current directory)")
        return str(path)  # the driver builds the data; an absolute path survives a cwd change
